//! Client notifications against a real SMTP listener: a confirmation, a
//! change and a cancellation with calendar invitations (checked by an
//! independent parser: Python's `email` and `icalendar`), reminders that
//! fire at their time, and a reminder of a booking that moved that does
//! not.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::feeds::python_with_icalendar;
use crate::helpers::{TestApp, assert_problem, spawn_app_with_workers, worker_config};
use crate::receiver::SmtpServer;

/// What Python makes of one message: its headers, its parts, and its
/// invitation.
const READ: &str = r#"
import sys, json, email, icalendar
from email import policy
msg = email.message_from_string(sys.stdin.read(), policy=policy.default)
out = {"from": str(msg["From"]), "to": str(msg["To"]), "subject": str(msg["Subject"]),
       "types": [], "text": "", "html": ""}
for part in msg.walk():
    t = part.get_content_type()
    out["types"].append(t)
    if t == "text/plain":
        out["text"] = part.get_content()
    elif t == "text/html":
        out["html"] = part.get_content()
    elif t == "text/calendar":
        cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        ev = next(c for c in cal.walk() if c.name == "VEVENT")
        out["method"] = str(cal["METHOD"])
        out["content_method"] = part.get_param("method")
        out["uid"] = str(ev["UID"])
        out["sequence"] = int(ev["SEQUENCE"])
        out["status"] = str(ev["STATUS"])
        out["tzid"] = str(ev["DTSTART"].params.get("TZID"))
        out["start"] = ev.decoded("DTSTART").isoformat()
        out["zones"] = [str(z["TZID"]) for z in cal.walk() if z.name == "VTIMEZONE"]
print(json.dumps(out))
"#;

fn read(raw: &str) -> Value {
    let mut child = Command::new(python_with_icalendar())
        .args(["-c", READ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not read:\n{raw}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The messages the SMTP listener got, as Python reads them.
fn mails(smtp: &SmtpServer) -> Vec<Value> {
    smtp.messages
        .lock()
        .unwrap()
        .iter()
        .map(|m| read(m))
        .collect()
}

async fn wait_for_mails(smtp: &SmtpServer, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        if smtp.messages.lock().unwrap().len() >= n {
            return mails(smtp);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{n} messages expected; got {:?}",
            mails(smtp)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put_settings(app: &TestApp, body: Value) -> crate::helpers::Answer {
    app.send(
        Method::PUT,
        "/v1/settings/client-notifications",
        Some(&app.admin),
        Some(&body),
        &[],
    )
    .await
}

async fn book_and_confirm(app: &TestApp, resource: &str, starts_in: i64) -> String {
    let start = Utc::now()
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap()
        + chrono::Duration::seconds(starts_in);
    let end = start + chrono::Duration::hours(1);
    let booked = app
        .post(
            "/v1/bookings",
            &json!({"title": "Smith wedding", "client": {"name": "Ann Smith", "email": "ann@example.com"},
                    "starts_at": start, "ends_at": end,
                    "reservations": [{"resource_id": resource, "starts_at": start, "ends_at": end}]}),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let id = booked.body["id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
    id
}

async fn notifications(app: &TestApp, booking: &str) -> Vec<Value> {
    let answer = app
        .get(
            &format!("/v1/bookings/{booking}/notifications"),
            &app.analyst,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hear_of_their_bookings_with_invitations_and_timely_reminders() {
    let smtp = SmtpServer::start().await;
    let mut config = worker_config();
    config.smtp_url = Some(smtp.url.clone().into());
    config.smtp_from = "muster@example.com".into();
    let app = spawn_app_with_workers(config).await;

    // Settings: validated, off until set.
    let off = app
        .get("/v1/settings/client-notifications", &app.analyst)
        .await;
    assert_eq!(off.body["enabled"], false);
    for bad in [
        json!({"enabled": true, "reminders": ["P31D"]}),
        json!({"enabled": true, "reminders": ["soon"]}),
        json!({"enabled": true, "reminders": ["PT0S"]}),
        json!({"enabled": true, "sender": "Planning <p@example.com>\r\nBcc: x@evil.test"}),
        json!({"enabled": true, "sender": "nobody"}),
    ] {
        assert_problem(&put_settings(&app, bad).await, 422, "validation");
    }
    // SPEC §5's example, answered in canonical form, largest first.
    let spec = put_settings(
        &app,
        json!({"enabled": true, "reminders": ["PT1H", "PT24H"]}),
    )
    .await;
    assert_eq!(spec.status, StatusCode::OK, "{:?}", spec.body);
    assert_eq!(spec.body["reminders"], json!(["P1D", "PT1H"]));
    let set = put_settings(
        &app,
        json!({"enabled": true, "reminders": ["PT1M"], "sender": "Planning <planning@example.com>"}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["reminders"], json!(["PT1M"]));

    let resource = app.resource(2).await;
    // A starts in 64 s: its reminder (a minute before) is due in ~4 s.
    let a = book_and_confirm(&app, &resource, 64).await;
    let got = wait_for_mails(&smtp, 2).await;
    let confirmation = &got[0];
    assert_eq!(confirmation["to"], "ann@example.com");
    assert!(
        confirmation["from"]
            .as_str()
            .unwrap()
            .contains("planning@example.com")
    );
    assert!(
        confirmation["subject"]
            .as_str()
            .unwrap()
            .starts_with("Confirmed")
    );
    assert!(
        confirmation["text"]
            .as_str()
            .unwrap()
            .contains("Smith wedding")
    );
    assert!(
        confirmation["html"]
            .as_str()
            .unwrap()
            .contains("<strong>Smith wedding</strong>")
    );
    assert_eq!(confirmation["method"], "REQUEST");
    assert_eq!(confirmation["content_method"], "REQUEST");
    assert_eq!(confirmation["uid"], format!("{a}@muster"));
    assert_eq!(confirmation["sequence"], 0);
    assert_eq!(confirmation["tzid"], "Europe/Berlin");
    assert_eq!(confirmation["zones"], json!(["Europe/Berlin"]));
    let reminder = &got[1];
    assert!(
        reminder["subject"]
            .as_str()
            .unwrap()
            .starts_with("Reminder"),
        "{reminder}"
    );
    assert!(
        reminder.get("method").is_none(),
        "a reminder carries no invitation"
    );

    // B moves two days on before its reminder is due: a change (SEQUENCE
    // 1), and the old reminder never goes out.
    let b = book_and_confirm(&app, &resource, 70).await;
    let later = Utc::now() + chrono::Duration::days(2);
    let moved = app
        .post(
            &format!("/v1/bookings/{b}/reschedule"),
            &json!({"starts_at": later, "ends_at": later + chrono::Duration::hours(1)}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    // A is cancelled: CANCEL, SEQUENCE 1.
    let cancelled = app
        .post(
            &format!("/v1/bookings/{a}/cancel"),
            &json!({"reason": "rain"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    let got = wait_for_mails(&smtp, 5).await;
    let about = |uid: &str, method: &str, sequence: i64| {
        got.iter().any(|m| {
            m["uid"] == format!("{uid}@muster")
                && m["method"] == method
                && m["sequence"] == sequence
        })
    };
    assert!(about(&b, "REQUEST", 0), "B's confirmation: {got:?}");
    assert!(about(&b, "REQUEST", 1), "B's change: {got:?}");
    assert!(about(&a, "CANCEL", 1), "A's cancellation: {got:?}");

    // B's first reminder (due ~10 s after its confirmation) is skipped at
    // once by the move, and the reminder for the new time waits; when its
    // time comes, nothing goes out.
    let started = Instant::now();
    loop {
        let listed = notifications(&app, &b).await;
        let reminders: Vec<&Value> = listed.iter().filter(|m| m["kind"] == "reminder").collect();
        if reminders.iter().any(|m| m["status"] == "skipped") {
            assert_eq!(reminders.len(), 2, "{listed:?}");
            assert!(
                reminders.iter().any(|m| m["status"] == "pending"),
                "{listed:?}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        smtp.messages.lock().unwrap().len(),
        5,
        "nothing more went out: {:?}",
        mails(&smtp)
    );
    let listed = notifications(&app, &a).await;
    let kinds: Vec<(&str, &str)> = listed
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("confirmation", "sent"),
            ("reminder", "sent"),
            ("cancellation", "sent")
        ]
    );
    let unknown = app
        .get(
            &format!("/v1/bookings/{}/notifications", uuid::Uuid::now_v7()),
            &app.analyst,
        )
        .await;
    assert_problem(&unknown, 404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_hears_of_its_offer_once() {
    let smtp = SmtpServer::start().await;
    let mut config = worker_config();
    config.smtp_url = Some(smtp.url.clone().into());
    config.smtp_from = "muster@example.com".into();
    let app = spawn_app_with_workers(config).await;
    let on = put_settings(&app, json!({"enabled": true})).await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    // Webhooks see the waitlist's events like any others.
    let receiver = crate::receiver::Receiver::ok().await;
    crate::deployments::subscribe(&app, &receiver.url, &["waitlist.*"]).await;

    let room = app.resource(1).await;
    let (from, to) = ("2030-05-07T08:00:00Z", "2030-05-07T09:00:00Z");
    let taken = app.book(&room, from, to).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{:?}", taken.body);
    let joined = app
        .post(
            "/v1/waitlist",
            &json!({"resource_id": room, "starts_at": from, "ends_at": to, "offer_ttl": "PT20M",
                    "client": {"name": "Wes Wait", "email": "wes@example.com"}}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    // A requested booking's cancel tells its client nothing: the one
    // message is the offer.
    let cancelled = app
        .post(
            &format!("/v1/bookings/{}/cancel", taken.body["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    let got = wait_for_mails(&smtp, 1).await;
    let offer = &got[0];
    assert_eq!(offer["to"], "wes@example.com");
    let subject = offer["subject"].as_str().unwrap();
    assert!(subject.starts_with("A place is free for you"), "{subject}");
    let text = offer["text"].as_str().unwrap();
    // 08:00 UTC is 10:00 in the room's Berlin summer time.
    assert!(
        text.contains("Hello Wes Wait") && text.contains("10:00 – 11:00 (Europe/Berlin)"),
        "{text}"
    );
    assert!(text.contains("The offer holds until"), "{text}");
    assert!(
        offer["types"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t != "text/calendar")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages.lock().unwrap().len(), 1, "{:?}", mails(&smtp));
    let started = Instant::now();
    while receiver.requests().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut hooked: Vec<String> = receiver
        .requests()
        .iter()
        .map(|call| call.header("x-muster-event"))
        .collect();
    hooked.sort();
    assert_eq!(hooked, ["waitlist.joined", "waitlist.offered"]);
}
