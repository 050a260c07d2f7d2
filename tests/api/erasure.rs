//! Erasure of a client's personal data (SPEC §12): every copy muster keeps,
//! checked by grepping a `pg_dump` of the whole database.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::deployments::{subscribe, wait_for};
use crate::helpers::{TestApp, assert_problem, spawn_app_with_workers, worker_config};
use crate::receiver::{Receiver, SmtpServer};
use crate::reports::request_report;

const NAME: &str = "Zebulon Quixotic-Marsh";
const EMAIL: &str = "zeb.quixotic@example.org";
const OTHER_NAME: &str = "Olive Untouchable";
const OTHER_EMAIL: &str = "olive.untouchable@example.org";

/// The whole database as `pg_dump` writes it, lower-cased.
async fn dump(app: &TestApp) -> String {
    let out = Command::new("pg_dump")
        .arg("--no-owner")
        .arg(app.db.url())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("pg_dump runs (PostgreSQL's client binaries are on PATH)");
    assert!(out.status.success(), "pg_dump failed");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

fn booking(resource: &str, hour: u32, name: &str, email: &str, notes: &str) -> Value {
    let (from, to) = (
        format!("2030-04-0{}T{hour:02}:00:00Z", 1),
        format!("2030-04-0{}T{:02}:00:00Z", 1, hour + 1),
    );
    json!({"title": "Planning session", "client": {"name": name, "email": email, "phone": "+44 20 7946 0001"},
           "notes": notes, "starts_at": from, "ends_at": to,
           "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to}]})
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A read-model checksum that a rebuild must leave as it is.
async fn checksum(app: &TestApp) -> Vec<(String, i64, String)> {
    crate::projector::read_model_checksum(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_client_is_nowhere_in_the_database_and_others_are_untouched() {
    let smtp = SmtpServer::start().await;
    let mut config = worker_config();
    config.smtp_url = Some(smtp.url.clone().into());
    config.smtp_from = "muster@example.com".into();
    let app = spawn_app_with_workers(config).await;
    let receiver = Receiver::start(Arc::new(|_, _| 204), Duration::ZERO).await;
    let webhook = subscribe(&app, &receiver.url, &["booking.requested"]).await;
    let on = app
        .send(
            Method::PUT,
            "/v1/settings/client-notifications",
            Some(&app.admin),
            Some(&json!({"enabled": true})),
            &[],
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    let room = app.resource(3).await;

    // The client: a booking made with an idempotency key (and replayed),
    // confirmed (a confirmation is mailed), another with notes naming
    // them, a waitlist entry, and a booking an older muster wrote in the
    // clear (schema version 1, email in another case).
    let first = app
        .send(
            Method::POST,
            "/v1/bookings",
            Some(&app.planner),
            Some(&booking(
                &room,
                9,
                NAME,
                EMAIL,
                "Zebulon prefers the window seat",
            )),
            &[("Idempotency-Key", "zeb-first")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let a = first.body["id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post(&format!("/v1/bookings/{a}/confirm"), &json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
    let second = app
        .post(
            "/v1/bookings",
            &booking(&room, 11, NAME, EMAIL, "Quixotic-Marsh asked twice"),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    let b = second.body["id"].as_str().unwrap().to_owned();
    let joined = app
        .post(
            "/v1/waitlist",
            &json!({"resource_id": room, "starts_at": "2030-04-02T10:00:00Z", "ends_at": "2030-04-02T11:00:00Z",
                    "client": {"name": NAME, "email": EMAIL}, "offer_ttl": "PT10M", "priority": 0}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    let entry = joined.body["id"].as_str().unwrap().to_owned();
    let legacy = uuid::Uuid::now_v7();
    let mut tx = app.db.pool.begin().await.unwrap();
    muster_store::event_store::append_as_stored(
        &mut tx,
        &"acme".parse().unwrap(),
        "booking",
        legacy,
        0,
        "booking.requested",
        1,
        json!({"title": "Old gala", "client_name": NAME, "client_email": "Zeb.Quixotic@Example.org",
               "starts_at": "2030-03-01T10:00:00Z", "ends_at": "2030-03-01T12:00:00Z",
               "headcount": 3}),
        &muster_store::EventMetadata {
            command_id: uuid::Uuid::now_v7(),
            correlation_id: "old".into(),
            causation_id: uuid::Uuid::now_v7(),
            actor: "old-muster".into(),
            tenant: "acme".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Another client, who must keep everything.
    let other = app
        .post(
            "/v1/bookings",
            &booking(
                &room,
                13,
                OTHER_NAME,
                OTHER_EMAIL,
                "Olive brings a projector",
            ),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    let c = other.body["id"].as_str().unwrap().to_owned();

    // Copies everywhere: the mail, webhook deliveries, a report.
    wait_until("the confirmation was mailed", async || {
        !smtp.messages.lock().unwrap().is_empty()
    })
    .await;
    wait_until("the webhooks were delivered", async || {
        receiver.requests().len() >= 4
    })
    .await;
    let report = request_report(
        &app,
        &json!({"kind": "bookings", "from": "2030-01-01T00:00:00Z", "to": "2030-12-31T00:00:00Z", "format": "csv"}),
    )
    .await;
    let done = wait_for(&app, &format!("/v1/reports/{report}"), |r| {
        r["status"] == "done" || r["status"] == "failed"
    })
    .await;
    assert_eq!(done["status"], "done", "{done}");
    let replayed = app
        .send(
            Method::POST,
            "/v1/bookings",
            Some(&app.planner),
            Some(&booking(
                &room,
                9,
                NAME,
                EMAIL,
                "Zebulon prefers the window seat",
            )),
            &[("Idempotency-Key", "zeb-first")],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::CREATED, "{:?}", replayed.body);
    assert_eq!(replayed.body, first.body, "the replay is the first answer");

    // The events hold the client only sealed; the copies in the clear.
    let before = dump(&app).await;
    assert!(before.contains("zebulon"), "the test sees the copies");
    assert!(before.contains(EMAIL));
    let sealed: i64 = sqlx::query_scalar(
        "select count(*) from events where payload::text ilike '%zebulon%' and schema_version = 2",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(sealed, 0, "current events hold personal fields sealed only");

    // Erasure is for admins, and needs an email.
    let planner = app
        .send(
            Method::POST,
            "/v1/clients/erase",
            Some(&app.planner),
            Some(&json!({"email": EMAIL})),
            &[],
        )
        .await;
    assert_problem(&planner, 403, "forbidden");
    let bad = app
        .send(
            Method::POST,
            "/v1/clients/erase",
            Some(&app.admin),
            Some(&json!({"email": "not an email"})),
            &[],
        )
        .await;
    assert_problem(&bad, 422, "validation");

    let erased = app
        .send(
            Method::POST,
            "/v1/clients/erase",
            Some(&app.admin),
            Some(&json!({"email": "ZEB.Quixotic@Example.ORG"})),
            &[],
        )
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{:?}", erased.body);
    let mut bookings: Vec<String> = erased.body["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect();
    bookings.sort();
    let mut expected = vec![a.clone(), b.clone(), legacy.to_string()];
    expected.sort();
    assert_eq!(bookings, expected);
    assert_eq!(erased.body["waitlist_entries"], json!([entry]));
    assert_eq!(erased.body["keys_deleted"], 3, "{:?}", erased.body);
    assert_eq!(erased.body["events_redacted"], 1, "{:?}", erased.body);
    assert_eq!(erased.body["read_models_scrubbed"], true);
    let position = erased.body["position"].as_i64().unwrap();

    // The client messages' scrub by the reactor, too.
    app.get(
        &format!("/v1/bookings/{a}?consistent_with={position}"),
        &app.planner,
    )
    .await;

    // Nothing of them in the database.
    let after = dump(&app).await;
    for trace in ["zebulon", "quixotic", "zeb.quixotic"] {
        assert!(!after.contains(trace), "{trace:?} is still in the pg_dump");
    }
    // The other client keeps everything.
    assert!(after.contains(&OTHER_NAME.to_lowercase()));
    assert!(after.contains(OTHER_EMAIL));

    // The API shows them as erased, the events keep their shape.
    for id in [&a, &b, &legacy.to_string()] {
        let got = app.get(&format!("/v1/bookings/{id}"), &app.planner).await;
        assert_eq!(got.body["client"], json!({"erased": true}), "{id}");
        assert!(got.body.get("notes").is_none(), "{:?}", got.body);
    }
    let olive = app.get(&format!("/v1/bookings/{c}"), &app.planner).await;
    assert_eq!(olive.body["client"]["name"], OTHER_NAME);
    assert_eq!(olive.body["notes"], "Olive brings a projector");
    let feed = app
        .get(
            &format!("/v1/events?after=0&limit=50&stream_id={a}"),
            &app.planner,
        )
        .await;
    let requested = &feed.body["events"][0];
    assert_eq!(requested["type"], "booking.requested");
    assert_eq!(requested["data"]["client"], json!({"erased": true}));
    assert_eq!(requested["data"]["title"], "Planning session");
    assert_eq!(requested["data"]["starts_at"], "2030-04-01T09:00:00Z");
    let history = app.get(&format!("/v1/clients/{EMAIL}"), &app.planner).await;
    assert!(history.body["erased_at"].is_string(), "{:?}", history.body);
    let waiting = app
        .get(&format!("/v1/waitlist/{entry}"), &app.planner)
        .await;
    assert_eq!(
        waiting.body["client"],
        json!({"erased": true}),
        "{:?}",
        waiting.body
    );
    let messages = app
        .get(&format!("/v1/bookings/{a}/notifications"), &app.analyst)
        .await;
    for m in messages.body["items"].as_array().unwrap() {
        assert_eq!(m["recipient"], "", "{m}");
    }
    let gone = app
        .get(&format!("/v1/reports/{report}"), &app.analyst)
        .await;
    assert_eq!(gone.body["status"], "failed", "{:?}", gone.body);
    // A replay of the idempotent request renders the events, and names
    // no one.
    let again = app
        .send(
            Method::POST,
            "/v1/bookings",
            Some(&app.planner),
            Some(&booking(
                &room,
                9,
                NAME,
                EMAIL,
                "Zebulon prefers the window seat",
            )),
            &[("Idempotency-Key", "zeb-first")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_eq!(again.body, first.body);
    // The past, too: as of before the erasure, the client reads erased.
    let then = app
        .get(
            &format!(
                "/v1/bookings/{a}?as_of={}",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            &app.planner,
        )
        .await;
    assert_eq!(then.body["client"], json!({"erased": true}));
    // A webhook replay sends what the events say now.
    let sent = receiver.requests().len();
    let replay = app
        .send(
            Method::POST,
            &format!("/v1/webhooks/{webhook}/replay"),
            Some(&app.admin),
            Some(&json!({"since": "2000-01-01T00:00:00Z"})),
            &[],
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    wait_until("the replay arrived", async || {
        receiver.requests().len() >= sent + 4
    })
    .await;
    for r in &receiver.requests()[sent..] {
        let body = String::from_utf8_lossy(&r.body).to_lowercase();
        assert!(
            !body.contains("zebulon") && !body.contains("zeb.quixotic"),
            "{body}"
        );
    }

    // A rebuild changes nothing: the erased stay erased.
    let live = checksum(&app).await;
    let status = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["projections", "rebuild", "bookings"])
        .env("DATABASE_URL", app.db.url())
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(
        checksum(&app).await,
        live,
        "a rebuild leaves the erasure as it was"
    );

    // Erasing again finds nothing more.
    let twice = app
        .send(
            Method::POST,
            "/v1/clients/erase",
            Some(&app.admin),
            Some(&json!({"email": EMAIL})),
            &[],
        )
        .await;
    assert_eq!(twice.status, StatusCode::OK, "{:?}", twice.body);
    assert_eq!(twice.body["keys_deleted"], 0);
    assert_eq!(twice.body["events_redacted"], 0);
}

/// How many of `email`'s keys are left, and how many erasures are recorded.
async fn erasure_state(app: &TestApp, email: &str) -> (i64, i64) {
    // A killed process's transaction ends when Postgres notices: wait
    // until no backend of the database holds a transaction id.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let writing: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and backend_xid is not null
                and pid <> pg_backend_pid()",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if writing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query_as(
        "select (select count(*) from personal_keys where subject = $1),
                (select count(*) from events where event_type = 'client.erased')",
    )
    .bind(email)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_an_erasure_leaves_it_done_or_redoable_never_half_visible() {
    const BOOKINGS: usize = 300;
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app_with_workers(worker_config()).await;
    let room = app.resource(1).await;
    let email = "kill.nine@example.org";
    let mut last = 0;
    for i in 0..BOOKINGS {
        let from = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").unwrap()
            + chrono::Duration::hours(i as i64);
        let to = from + chrono::Duration::minutes(30);
        let made = app
            .post(
                "/v1/bookings",
                &json!({"title": "Kill", "client": {"name": "Kilian Ninefold", "email": email},
                        "starts_at": from, "ends_at": to,
                        "reservations": [{"resource_id": room, "starts_at": from, "ends_at": to}]}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
        last = made.body["position"].as_i64().unwrap();
    }
    let any = app.get("/v1/bookings?limit=1", &app.planner).await;
    let id = any.body["items"][0]["id"].as_str().unwrap().to_owned();
    app.get(
        &format!("/v1/bookings/{id}?consistent_with={last}"),
        &app.planner,
    )
    .await;
    assert_eq!(erasure_state(&app, email).await, (BOOKINGS as i64, 0));

    // The erasure is sent to a real `muster api`, killed -9 after a delay
    // that grows until one kill comes after the commit: at every kill the
    // state is all or nothing.
    let url = app.db.url();
    let mut done = false;
    for delay in [0u64, 5, 15, 40, 80, 150, 300, 600, 1200, 2500] {
        let (mut child, address) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
        let http = reqwest::Client::new();
        let admin = app.admin.clone();
        let sent = tokio::spawn(async move {
            http.post(format!("{address}/v1/clients/erase"))
                .bearer_auth(admin)
                .json(&json!({"email": email}))
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let _ = sent.await;
        let (keys, erasures) = erasure_state(&app, email).await;
        assert!(
            (keys == BOOKINGS as i64 && erasures == 0) || (keys == 0 && erasures == 1),
            "after a kill at {delay} ms: {keys} keys left, {erasures} erasures: half done"
        );
        if erasures == 0 {
            // Nothing done is nothing visible: every copy still names them.
            let named: i64 =
                sqlx::query_scalar("select count(*) from read.bookings where client_email = $1")
                    .bind(email)
                    .fetch_one(&app.db.pool)
                    .await
                    .unwrap();
            assert_eq!(named, BOOKINGS as i64, "after a kill at {delay} ms");
        }
        if erasures == 1 {
            done = true;
            break;
        }
    }
    if !done {
        // Never killed after the commit: it is redoable, and redone here.
        let again = app
            .send(
                Method::POST,
                "/v1/clients/erase",
                Some(&app.admin),
                Some(&json!({"email": email})),
                &[],
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
        assert_eq!(again.body["bookings"].as_array().unwrap().len(), BOOKINGS);
    }
    // Either way, the read model shows the erasure once it reaches it.
    wait_until("the read model scrubbed every booking", async || {
        let named: i64 =
            sqlx::query_scalar("select count(*) from read.bookings where client_email = $1")
                .bind(email)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        named == 0
    })
    .await;
    assert_eq!(erasure_state(&app, email).await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_the_retention_is_erased_by_itself_and_no_one_else() {
    let mut config = worker_config();
    config.client_retention = Some("P1D".parse().unwrap());
    config.client_retention_every = Duration::from_millis(200);
    let app = spawn_app_with_workers(config).await;
    let room = app.resource(3).await;
    let now = chrono::Utc::now();
    let book = async |email: &str, days: i64| {
        let from = now + chrono::Duration::days(days);
        let to = from + chrono::Duration::hours(1);
        let made = app
            .post(
                "/v1/bookings",
                &json!({"title": "Retained", "client": {"name": format!("Client {email}"), "email": email},
                        "starts_at": from, "ends_at": to,
                        "reservations": [{"resource_id": room, "starts_at": from, "ends_at": to}]}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
        made.body["id"].as_str().unwrap().to_owned()
    };
    // Their last booking ended three days ago: erased.
    let old = book("old.client@example.org", -3).await;
    // Booked again for next month: kept, old booking and all.
    let back = book("back.client@example.org", -10).await;
    book("back.client@example.org", 30).await;
    // Only next month: kept.
    let new = book("new.client@example.org", 30).await;

    wait_until("the old client was erased by the retention", async || {
        let got = app.get(&format!("/v1/bookings/{old}"), &app.planner).await;
        got.body["client"] == json!({"erased": true})
    })
    .await;
    let feed = app
        .get(
            "/v1/events?after=0&limit=200&event_type=client.erased",
            &app.planner,
        )
        .await;
    let erasures = feed.body["events"].as_array().unwrap();
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    assert_eq!(erasures[0]["metadata"]["actor"], "system:retention");
    assert_eq!(erasures[0]["data"]["bookings"], json!([old]));
    // A few more looks change nothing for the others.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (id, email) in [
        (&back, "back.client@example.org"),
        (&new, "new.client@example.org"),
    ] {
        let got = app.get(&format!("/v1/bookings/{id}"), &app.planner).await;
        assert_eq!(got.body["client"]["email"], email, "{:?}", got.body);
    }
    let feed = app
        .get(
            "/v1/events?after=0&limit=200&event_type=client.erased",
            &app.planner,
        )
        .await;
    assert_eq!(feed.body["events"].as_array().unwrap().len(), 1);
}
