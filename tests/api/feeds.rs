//! Calendar feeds: a secret URL per resource, iCalendar with the
//! resource's VTIMEZONE, validated by an independent parser (Python's
//! `icalendar`), revalidated with ETags, revocable.

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

/// A Python with the `icalendar` package, in a virtual environment made
/// once (from PyPI) beside the other test tools.
pub(crate) fn python_with_icalendar() -> PathBuf {
    let venv = std::env::temp_dir().join("muster-ics-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import icalendar"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "icalendar>=6,<8",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip install icalendar failed");
    }
    python
}

const CHECK: &str = r#"
import sys, json, icalendar, datetime
cal = icalendar.Calendar.from_ical(sys.stdin.read())
zones = [c for c in cal.walk("VTIMEZONE")]
events = []
for e in cal.walk("VEVENT"):
    start = e.decoded("DTSTART")
    end = e.decoded("DTEND")
    events.append({
        "uid": str(e.get("UID")),
        "summary": str(e.get("SUMMARY")),
        "tzid": e["DTSTART"].params.get("TZID"),
        "start": start.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
print(json.dumps({"zones": [str(z["TZID"]) for z in zones], "events": events}))
"#;

#[tokio::test]
async fn a_resource_feed_is_valid_icalendar_in_its_zone_cached_and_revocable() {
    let python = python_with_icalendar();
    let app = spawn_app().await;
    let hall = app.resource(1).await; // Europe/Berlin
    let winter = app
        .book(&hall, "2027-01-15T09:00:00Z", "2027-01-15T10:00:00Z")
        .await;
    let summer = app
        .book(&hall, "2027-06-12T12:00:00Z", "2027-06-12T21:00:00Z")
        .await;
    let dropped = app
        .book(&hall, "2027-07-01T12:00:00Z", "2027-07-01T13:00:00Z")
        .await;
    let dropped_id = dropped.body["id"].as_str().unwrap();
    let cancelled = app
        .post(&format!("/v1/bookings/{dropped_id}/cancel"), &json!({}))
        .await;
    let position = cancelled.body["position"].as_i64().unwrap();
    // The feed reads the read model: wait until it has the cancel.
    app.get(
        &format!("/v1/bookings/{dropped_id}?consistent_with={position}"),
        &app.analyst,
    )
    .await;

    let created = app
        .post(&format!("/v1/resources/{hall}/feeds"), &json!({}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let path = created.body["path"].as_str().unwrap().to_owned();
    assert!(path.starts_with("/calendar/cf.acme.") && path.ends_with(".ics"));
    assert!(created.body["url"].as_str().unwrap().ends_with(&path));

    let feed = app.send(Method::GET, &path, None, None, &[]).await;
    assert_eq!(feed.status, StatusCode::OK);
    assert!(
        feed.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let body = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut child = Command::new(&python)
        .args(["-c", CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "icalendar refused the feed:\n{body}");
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["zones"], json!(["Europe/Berlin"]));
    let events = parsed["events"].as_array().unwrap();
    assert_eq!(
        events.len(),
        2,
        "the cancelled booking is not in it: {parsed}"
    );
    let reservation = |answer: &crate::helpers::Answer| {
        format!(
            "{}@muster",
            answer.body["reservations"][0]["reservation_id"]
                .as_str()
                .unwrap()
        )
    };
    assert_eq!(events[0]["uid"], reservation(&winter));
    assert_eq!(events[0]["tzid"], "Europe/Berlin");
    assert_eq!(events[0]["start"], "2027-01-15T09:00:00Z");
    assert_eq!(events[1]["uid"], reservation(&summer));
    assert_eq!(events[1]["start"], "2027-06-12T12:00:00Z");
    assert_eq!(events[1]["end"], "2027-06-12T21:00:00Z");
    assert_eq!(events[1]["summary"], "Smith wedding");

    let etag = feed.headers["etag"].to_str().unwrap().to_owned();
    let again = app
        .send(Method::GET, &path, None, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    let feed_id = created.body["id"].as_str().unwrap();
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/v1/feeds/{feed_id}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let gone = app.send(Method::GET, &path, None, None, &[]).await;
    assert_problem(&gone, 404, "not-found");
    let guessed = app
        .send(
            Method::GET,
            &format!("/calendar/cf.acme.{}.ics", "0".repeat(64)),
            None,
            None,
            &[],
        )
        .await;
    assert_problem(&guessed, 404, "not-found");
    let unknown = app
        .post(
            &format!("/v1/resources/{}/feeds", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_problem(&unknown, 404, "not-found");
}
