//! Waitlists (SPEC §12): freed capacity is offered to the first fitting
//! entry as a hold, by itself; offers convert, lapse to the next entry,
//! and are never two for one freed unit, across processes and `kill -9`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use muster_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, acme, assert_problem, feed_types, fields, spawn_app};
use crate::two_processes::spawn_api_process_with;

const FROM: &str = "2030-05-06T10:00:00Z";
const TO: &str = "2030-05-06T11:00:00Z";

fn entry(target: (&str, &str), email: &str, priority: i32, ttl: &str) -> Value {
    json!({
        target.0: target.1,
        "starts_at": FROM, "ends_at": TO,
        "client": {"name": "Waiting client", "email": email},
        "offer_ttl": ttl, "priority": priority,
    })
}

async fn join(app: &TestApp, body: &Value) -> String {
    let joined = app.post("/v1/waitlist", body).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    joined.body["id"].as_str().unwrap().to_owned()
}

async fn booked(app: &TestApp, resource: &str) -> String {
    let answer = app.book(resource, FROM, TO).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn cancel(app: &TestApp, booking_id: &str) {
    let answer = app
        .post(&format!("/v1/bookings/{booking_id}/cancel"), &json!({}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

async fn entry_now(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/v1/waitlist/{id}"), &app.analyst).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

/// Waits (at most 10 s) until entry `id` is in `status`.
async fn until_status(app: &TestApp, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let entry = entry_now(app, id).await;
        if entry["status"] == status {
            return entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "entry {id} never became {status}: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn converting(hold_id: &str) -> Value {
    json!({
        "title": "From the waitlist", "client": {"name": "Waiting client"},
        "starts_at": FROM, "ends_at": TO,
        "reservations": [{"hold_id": hold_id}]
    })
}

#[tokio::test]
async fn a_cancel_offers_the_slot_to_the_first_entry_by_priority_which_converts_it() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let taken = booked(&app, &room).await;
    let early = join(
        &app,
        &entry(("resource_id", &room), "early@example.com", 0, "PT10M"),
    )
    .await;
    let urgent = join(
        &app,
        &entry(("resource_id", &room), "urgent@example.com", 5, "PT10M"),
    )
    .await;
    assert_eq!(entry_now(&app, &early).await["status"], "waiting");

    cancel(&app, &taken).await;
    let offered = until_status(&app, &urgent, "offered").await;
    assert_eq!(offered["offered_resource_id"], room.as_str());
    let hold_id = offered["hold_id"].as_str().unwrap().to_owned();
    assert!(offered["expires_at"].is_string());
    // The offer is a hold: it counts, so nobody else gets the slot, and
    // the next entry keeps waiting.
    assert_problem(
        &app.book(&room, FROM, TO).await,
        409,
        "reservation-conflict",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(entry_now(&app, &early).await["status"], "waiting");

    let converted = app.post("/v1/bookings", &converting(&hold_id)).await;
    assert_eq!(
        converted.status,
        StatusCode::CREATED,
        "{:?}",
        converted.body
    );
    let fulfilled = entry_now(&app, &urgent).await;
    assert_eq!(fulfilled["status"], "fulfilled", "{fulfilled}");
    assert_eq!(fulfilled["booking_id"], converted.body["id"]);
    assert_eq!(
        feed_types(&app, &urgent).await,
        ["waitlist.joined", "waitlist.offered", "waitlist.fulfilled"]
    );
    let listed = app
        .get(
            &format!("/v1/waitlist?resource_id={room}&status=waiting"),
            &app.analyst,
        )
        .await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [early.as_str()]);
}

#[tokio::test]
async fn an_offer_that_runs_out_or_is_declined_lapses_to_the_next_entry() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let taken = booked(&app, &room).await;
    let first = join(
        &app,
        &entry(("resource_id", &room), "a@example.com", 0, "PT1S"),
    )
    .await;
    let second = join(
        &app,
        &entry(("resource_id", &room), "b@example.com", 0, "PT10M"),
    )
    .await;
    let third = join(
        &app,
        &entry(("resource_id", &room), "c@example.com", 0, "PT10M"),
    )
    .await;
    cancel(&app, &taken).await;

    let offered = until_status(&app, &first, "offered").await;
    let first_hold = offered["hold_id"].as_str().unwrap().to_owned();
    // Its hold runs out after a second: the offer lapses and the next
    // entry has the slot.
    let lapsed = until_status(&app, &first, "lapsed").await;
    assert_eq!(lapsed["hold_id"], first_hold.as_str());
    let offered = until_status(&app, &second, "offered").await;
    let second_hold = offered["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(
        feed_types(&app, &first).await,
        ["waitlist.joined", "waitlist.offered", "waitlist.lapsed"]
    );
    // A lapsed offer's hold no longer converts.
    let late = app.post("/v1/bookings", &converting(&first_hold)).await;
    assert!(late.status.is_client_error(), "{:?}", late.body);

    // The second client declines by releasing the hold: the third has it.
    let released = app
        .send(
            Method::DELETE,
            &format!("/v1/holds/{second_hold}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{:?}", released.body);
    until_status(&app, &second, "lapsed").await;
    let offered = until_status(&app, &third, "offered").await;

    // Leaving with an open offer releases its hold, and the room is free.
    let left = app
        .send(
            Method::DELETE,
            &format!("/v1/waitlist/{third}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(left.status, StatusCode::OK, "{:?}", left.body);
    assert_eq!(entry_now(&app, &third).await["status"], "left");
    let hold = app
        .get(
            &format!("/v1/holds/{}", offered["hold_id"].as_str().unwrap()),
            &app.analyst,
        )
        .await;
    assert_eq!(hold.body["status"], "released", "{:?}", hold.body);
    let again = app.book(&room, FROM, TO).await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
}

#[tokio::test]
async fn a_pool_entry_is_offered_the_member_that_frees() {
    let app = spawn_app().await;
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let pool = app
        .post(
            "/v1/pools",
            &json!({"name": "Halls", "members": [a, b], "strategy": "first"}),
        )
        .await;
    assert_eq!(pool.status, StatusCode::CREATED, "{:?}", pool.body);
    let pool_id = pool.body["id"].as_str().unwrap().to_owned();
    booked(&app, &a).await;
    let on_b = booked(&app, &b).await;
    let waiting = join(
        &app,
        &entry(("pool_id", &pool_id), "p@example.com", 0, "PT10M"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(entry_now(&app, &waiting).await["status"], "waiting");
    cancel(&app, &on_b).await;
    let offered = until_status(&app, &waiting, "offered").await;
    assert_eq!(offered["pool_id"], pool_id.as_str());
    assert_eq!(offered["offered_resource_id"], b.as_str());
}

#[tokio::test]
async fn bad_entries_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let before = crate::helpers::event_count(&app).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            entry(("resource_id", &room), "a@example.com", 0, "PT2H"),
            422,
            "offer_ttl",
        ),
        (
            entry(("resource_id", &room), "a@example.com", 0, "PT0S"),
            422,
            "offer_ttl",
        ),
        (
            entry(("resource_id", &room), "a@example.com", 5000, "PT5M"),
            422,
            "priority",
        ),
        (
            entry(("resource_id", &room), "a@example.com", i32::MIN, "PT5M"),
            422,
            "priority",
        ),
        (
            entry(("resource_id", &room), "not-an-email", 0, "PT5M"),
            422,
            "client.email",
        ),
        (
            entry(("resource_id", &unknown), "a@example.com", 0, "PT5M"),
            422,
            "resource_id",
        ),
        (
            entry(("pool_id", &unknown), "a@example.com", 0, "PT5M"),
            422,
            "pool_id",
        ),
        (
            json!({"starts_at": FROM, "ends_at": TO, "client": {"name": "X"}}),
            422,
            "resource_id",
        ),
        (
            json!({"resource_id": room, "pool_id": unknown, "starts_at": FROM, "ends_at": TO,
                   "client": {"name": "X"}}),
            422,
            "pool_id",
        ),
        (
            json!({"resource_id": room, "starts_at": TO, "ends_at": FROM, "client": {"name": "X"}}),
            422,
            "ends_at",
        ),
        (
            json!({"resource_id": room, "starts_at": "2020-01-01T10:00:00Z",
                   "ends_at": "2020-01-01T11:00:00Z", "client": {"name": "X"}}),
            422,
            "ends_at",
        ),
    ];
    for (body, status, field) in cases {
        let answer = app.post("/v1/waitlist", &body).await;
        assert_eq!(answer.status.as_u16(), status, "{body}: {:?}", answer.body);
        assert!(
            fields(&answer).iter().any(|f| f == field),
            "{body}: {:?}",
            answer.body
        );
    }
    assert_eq!(crate::helpers::event_count(&app).await, before);
    let missing = app
        .get(&format!("/v1/waitlist/{unknown}"), &app.analyst)
        .await;
    assert_problem(&missing, 404, "not-found");
    let bad_filter = app.get("/v1/waitlist?status=sleeping", &app.analyst).await;
    assert_problem(&bad_filter, 422, "validation");
}

/// How many entries of `ids` are in each status.
async fn statuses(app: &TestApp, ids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        let status = entry_now(app, id).await["status"]
            .as_str()
            .unwrap()
            .to_owned();
        *counts.entry(status).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_cancels_across_two_processes_offer_each_freed_unit_once() {
    let _serial = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app().await;
    let url = app.db.url();
    let (_p1, one) = spawn_api_process_with(&url, &[]).await;
    let (_p2, two) = spawn_api_process_with(&url, &[]).await;
    // Ten rooms, each taken; three entries wait for each.
    let mut rooms = Vec::new();
    let mut bookings = Vec::new();
    for _ in 0..10 {
        let room = app.resource(1).await;
        bookings.push(booked(&app, &room).await);
        rooms.push(room);
    }
    let mut entries: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..3 {
        for room in &rooms {
            let email = format!("c{round}@example.com");
            let id = join(&app, &entry(("resource_id", room), &email, 0, "PT10M")).await;
            entries.entry(room.clone()).or_default().push(id);
        }
    }
    // Every booking cancelled at once, half through each process.
    let client = reqwest::Client::new();
    let cancels = bookings.iter().enumerate().map(|(i, id)| {
        let address = if i % 2 == 0 { &one } else { &two };
        client
            .post(format!("{address}/v1/bookings/{id}/cancel"))
            .bearer_auth(&app.planner)
            .json(&json!({}))
            .send()
    });
    for answer in futures::future::join_all(cancels).await {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    let all: Vec<String> = entries.values().flatten().cloned().collect();
    let started = Instant::now();
    while statuses(&app, &all).await.get("offered") != Some(&10) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            statuses(&app, &all).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Settled: still exactly one offer per freed room, to its first entry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(statuses(&app, &all).await.get("offered"), Some(&10));
    for room in &rooms {
        let ids = &entries[room];
        assert_eq!(entry_now(&app, &ids[0]).await["status"], "offered");
        for later in &ids[1..] {
            assert_eq!(entry_now(&app, later).await["status"], "waiting");
        }
    }
    let held: i64 = sqlx::query_scalar(
        "select count(*) from reservations where expires_at is not null and expires_at > now()",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(held, 10, "one offer hold per freed unit");
}

/// `muster api` on `database_url` as a child, without waiting for it.
fn api_process(database_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("api")
        .env("DATABASE_URL", database_url)
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("MUSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MUSTER_RATE_LIMIT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the muster binary starts")
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether some session holds the offering loop's lease.
async fn lease_held(db: &TestDatabase) -> bool {
    sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from pg_locks where locktype = 'advisory' and granted
                          and classid::int = 1297307468 and database = (select oid from pg_database where datname = current_database()))",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_holder_killed_between_a_cancel_and_its_offer_loses_no_offer() {
    let _serial = crate::helpers::one_multi_process_test_at_a_time().await;
    let db = TestDatabase::new().await;
    muster_jobs::migrate(&db.pool).await.unwrap();
    let store =
        muster_store::Store::connect_lazy(db.options.clone(), &crate::helpers::pool_settings());
    let planner = store
        .create_key(&acme(), muster_store::Role::Planner)
        .await
        .unwrap();
    // The first process takes the lease, then freezes with it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let frozen = api_process(&db.url(), port);
    let started = Instant::now();
    while !lease_held(&db).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no process took the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = frozen.id().unwrap();
    signal(pid, "-STOP");
    let (_other, address) = spawn_api_process_with(&db.url(), &[]).await;
    let app = TestApp::remote(address, planner, db);
    let room = app.resource(1).await;
    let taken = booked(&app, &room).await;
    let waiting = join(
        &app,
        &entry(("resource_id", &room), "k@example.com", 0, "PT10M"),
    )
    .await;
    cancel(&app, &taken).await;
    // Nobody offers while the frozen process holds the lease...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(entry_now(&app, &waiting).await["status"], "waiting");
    // ...and once it dies, the other process does.
    signal(pid, "-9");
    let offered = until_status(&app, &waiting, "offered").await;
    assert_eq!(offered["offered_resource_id"], room.as_str());
}

#[tokio::test]
async fn an_entry_behind_more_than_a_page_of_others_still_gets_its_offer() {
    let app = spawn_app().await;
    let (busy, room) = (app.resource(1).await, app.resource(1).await);
    booked(&app, &busy).await;
    // More entries than the offering loop reads at once wait for a slot
    // that stays taken, all ahead of the last one in order.
    let ahead = muster_store::waitlist::PAGE as usize + 1;
    for i in 0..ahead {
        join(
            &app,
            &entry(
                ("resource_id", &busy),
                &format!("w{i}@example.com"),
                0,
                "PT10M",
            ),
        )
        .await;
    }
    let taken = booked(&app, &room).await;
    let last = join(
        &app,
        &entry(("resource_id", &room), "last@example.com", 0, "PT10M"),
    )
    .await;
    cancel(&app, &taken).await;
    until_status(&app, &last, "offered").await;
}

#[tokio::test]
async fn a_reschedule_away_and_a_capacity_raise_each_free_a_unit_for_the_next_entry() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let taken = booked(&app, &room).await;
    let first = join(
        &app,
        &entry(("resource_id", &room), "a@example.com", 0, "PT10M"),
    )
    .await;
    let second = join(
        &app,
        &entry(("resource_id", &room), "b@example.com", 0, "PT10M"),
    )
    .await;
    // The booking moves to the next day: its old range is free.
    let moved = app
        .post(
            &format!("/v1/bookings/{taken}/reschedule"),
            &json!({"starts_at": "2030-05-07T10:00:00Z", "ends_at": "2030-05-07T11:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    until_status(&app, &first, "offered").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(entry_now(&app, &second).await["status"], "waiting");
    // A second unit of capacity: the next entry has it.
    let raised = app
        .send(
            Method::PATCH,
            &format!("/v1/resources/{room}"),
            Some(&app.planner),
            Some(&json!({"capacity": 2})),
            &[],
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK, "{:?}", raised.body);
    until_status(&app, &second, "offered").await;
}
