//! Zero double-booking across processes: two real `muster api` processes on
//! one database, 64 concurrent clients racing for overlapping slots.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use muster_domain::capacity::peak_concurrency;
use muster_domain::time::TimeRange;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::spawn_app;

/// A real `muster api` process on `database_url`, with `env` on top of the
/// test settings; answers its address once it is up.
pub(crate) async fn spawn_api_process_with(
    database_url: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("api")
        .env("DATABASE_URL", database_url)
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("MUSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MUSTER_RATE_LIMIT", "0")
        .env("MUSTER_DB_POOL_SIZE", "16")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the muster binary starts");
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{address}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return (child, address);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("muster api did not come up on {address}");
}

async fn spawn_api_process(database_url: &str) -> (Child, String) {
    spawn_api_process_with(database_url, &[]).await
}

fn hour(h: u32) -> String {
    Utc.with_ymd_and_hms(2030, 3, 4, h, 0, 0)
        .unwrap()
        .to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_processes_and_64_clients_never_double_book() {
    const CLIENTS: usize = 64;
    const REQUESTS_PER_CLIENT: usize = 12;
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app().await;
    let capacities = [1u32, 1, 1, 2, 2];
    let mut resources = Vec::new();
    for capacity in capacities {
        resources.push((app.resource(capacity).await, capacity));
    }
    let url = app.db.url();
    let (_first, a) = spawn_api_process(&url).await;
    let (_second, b) = spawn_api_process(&url).await;
    let addresses = Arc::new([a, b]);
    let resources = Arc::new(resources);
    let key = Arc::new(app.planner.clone());

    let mut clients = Vec::new();
    for client_no in 0..CLIENTS {
        let (addresses, resources, key) = (addresses.clone(), resources.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut outcomes = Vec::new();
            for n in 0..REQUESTS_PER_CLIENT {
                let address = &addresses[(client_no + n) % 2];
                let (body, cancel) = {
                    let mut rng = rand::rng();
                    let mut reservations = Vec::new();
                    for _ in 0..rng.random_range(1..=2) {
                        let (resource, _) = &resources[rng.random_range(0..resources.len())];
                        let start = rng.random_range(0..10);
                        let end = start + rng.random_range(1..=3);
                        reservations.push(json!({"resource_id": resource, "starts_at": hour(start), "ends_at": hour(end)}));
                    }
                    let body = json!({"title": "race", "client": {"name": "c"},
                        "starts_at": hour(0), "ends_at": hour(23), "reservations": reservations});
                    (body, rng.random_range(0..5) == 0)
                };
                let response = http
                    .post(format!("{address}/v1/bookings"))
                    .bearer_auth(key.as_str())
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let answer: Value = response.json().await.unwrap();
                let mut cancelled = false;
                if status == StatusCode::CREATED && cancel {
                    let id = answer["id"].as_str().unwrap();
                    let c = http
                        .post(format!("{address}/v1/bookings/{id}/cancel"))
                        .bearer_auth(key.as_str())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(c.status(), StatusCode::OK);
                    cancelled = true;
                }
                outcomes.push((status, answer, cancelled));
            }
            outcomes
        }));
    }
    let mut held = HashSet::new();
    let mut released = HashSet::new();
    let (mut created, mut refused) = (0, 0);
    for client in clients {
        for (status, answer, cancelled) in client.await.unwrap() {
            match status {
                StatusCode::CREATED => {
                    created += 1;
                    for r in answer["reservations"].as_array().unwrap() {
                        let id: uuid::Uuid = r["reservation_id"].as_str().unwrap().parse().unwrap();
                        if cancelled {
                            released.insert(id);
                        } else {
                            held.insert(id);
                        }
                    }
                }
                StatusCode::CONFLICT => {
                    assert_eq!(answer["type"], "urn:muster:problem:reservation-conflict");
                    assert!(!answer["conflicts"].as_array().unwrap().is_empty());
                    refused += 1;
                }
                other => panic!("unexpected {other}: {answer}"),
            }
        }
    }
    assert!(
        created > 20 && refused > 20,
        "too little contention: {created} created, {refused} refused"
    );

    let rows: Vec<(uuid::Uuid, uuid::Uuid, DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("select reservation_id, resource_id, starts_at, ends_at from reservations")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let stored: HashSet<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        stored, held,
        "every 201 (not cancelled) matches a stored reservation, and nothing else is stored"
    );
    assert!(released.is_disjoint(&stored));

    let mut by_resource: HashMap<uuid::Uuid, Vec<TimeRange>> = HashMap::new();
    for (_, resource, starts_at, ends_at) in rows {
        by_resource
            .entry(resource)
            .or_default()
            .push(TimeRange { starts_at, ends_at });
    }
    for (resource, capacity) in resources.iter() {
        let ranges = by_resource
            .remove(&resource.parse().unwrap())
            .unwrap_or_default();
        let peak = peak_concurrency(&ranges);
        assert!(
            peak <= *capacity as usize,
            "resource {resource} holds {peak} at once, capacity {capacity}"
        );
    }
}

/// A `reservations` row: id, resource, start, end, a hold's expiry.
type StoredRow = (
    uuid::Uuid,
    uuid::Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// One client's view of a reservation it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Held {
    booking: String,
    reservation: uuid::Uuid,
    resource: uuid::Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

fn at_minutes(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 4, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// Where the answer of a successful booking command says its (only)
/// reservation is now.
fn held_from(booking: &str, answer: &Value) -> Option<Held> {
    let r = answer["reservations"].as_array()?.first()?;
    Some(Held {
        booking: booking.to_owned(),
        reservation: r["reservation_id"].as_str()?.parse().ok()?,
        resource: r["resource_id"].as_str()?.parse().ok()?,
        starts_at: r["starts_at"].as_str()?.parse().ok()?,
        ends_at: r["ends_at"].as_str()?.parse().ok()?,
    })
}

/// Moves, reschedules, holds, hold conversions (raced from both processes)
/// and new bookings on resources with buffers: afterwards no instant is
/// over capacity counting buffers and holds, every 2xx matches what is
/// stored, and each hold was converted by exactly one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moves_holds_and_conversions_across_two_processes_never_over_book() {
    const CLIENTS: usize = 64;
    const OPERATIONS_PER_CLIENT: usize = 10;
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app().await;
    let mut resources = Vec::new();
    for capacity in [1u32, 1, 2, 2] {
        let answer = app
            .post(
                "/v1/resources",
                &json!({"name": "Buffered", "kind": "room", "capacity": capacity,
                        "policy": {"buffer_before": "PT30M", "buffer_after": "PT15M"}}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        resources.push((answer.body["id"].as_str().unwrap().to_owned(), capacity));
    }
    let url = app.db.url();
    let (_first, a) = spawn_api_process(&url).await;
    let (_second, b) = spawn_api_process(&url).await;
    let addresses = Arc::new([a, b]);
    let resources = Arc::new(resources);
    let key = Arc::new(app.planner.clone());

    let mut clients = Vec::new();
    for client_no in 0..CLIENTS {
        let (addresses, resources, key) = (addresses.clone(), resources.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let send = |method: reqwest::Method, address: &str, path: String, body: Value| {
                http.request(method, format!("{address}{path}"))
                    .bearer_auth(key.as_str())
                    .json(&body)
                    .send()
            };
            let mut mine: Vec<Held> = Vec::new();
            let mut holds: Vec<uuid::Uuid> = Vec::new();
            let mut conversions = 0;
            for n in 0..OPERATIONS_PER_CLIENT {
                let address = addresses[(client_no + n) % 2].as_str();
                let (op, resource, start, length, pick) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..5),
                        resources[rng.random_range(0..resources.len())].0.clone(),
                        rng.random_range(0..40) * 15,
                        rng.random_range(1..=6) * 15,
                        rng.random_range(0..usize::MAX),
                    )
                };
                let (from, to) = (at_minutes(start), at_minutes(start + length));
                let one = json!([{"resource_id": resource, "starts_at": from, "ends_at": to}]);
                match op {
                    0 => {
                        let body = json!({"title": "race", "client": {"name": "c"},
                            "starts_at": from, "ends_at": to, "reservations": one});
                        let r = send(reqwest::Method::POST, address, "/v1/bookings".into(), body).await.unwrap();
                        let status = r.status();
                        let answer: Value = r.json().await.unwrap();
                        match status {
                            StatusCode::CREATED => mine.push(held_from(answer["id"].as_str().unwrap(), &answer).unwrap()),
                            StatusCode::CONFLICT => assert_eq!(answer["type"], "urn:muster:problem:reservation-conflict"),
                            other => panic!("booking: {other} {answer}"),
                        }
                    }
                    1 => {
                        let body = json!({"resource_id": resource, "starts_at": from, "ends_at": to, "ttl": "PT1H"});
                        let r = send(reqwest::Method::POST, address, "/v1/holds".into(), body).await.unwrap();
                        let status = r.status();
                        let answer: Value = r.json().await.unwrap();
                        if status == StatusCode::CONFLICT {
                            continue;
                        }
                        assert_eq!(status, StatusCode::CREATED, "hold: {answer}");
                        let hold: uuid::Uuid = answer["id"].as_str().unwrap().parse().unwrap();
                        if pick % 4 == 0 {
                            holds.push(hold);
                            continue;
                        }
                        if pick % 4 == 1 {
                            let r = send(reqwest::Method::DELETE, address, format!("/v1/holds/{hold}"), json!({})).await.unwrap();
                            assert_eq!(r.status(), StatusCode::OK);
                            continue;
                        }
                        // Two conversions of one hold, one through each process.
                        let body = json!({"title": "checkout", "client": {"name": "c"},
                            "starts_at": from, "ends_at": to, "reservations": [{"hold_id": hold}]});
                        let (x, y) = tokio::join!(
                            send(reqwest::Method::POST, &addresses[0], "/v1/bookings".into(), body.clone()),
                            send(reqwest::Method::POST, &addresses[1], "/v1/bookings".into(), body),
                        );
                        let mut won = 0;
                        for r in [x.unwrap(), y.unwrap()] {
                            let status = r.status();
                            let answer: Value = r.json().await.unwrap();
                            match status {
                                StatusCode::CREATED => {
                                    won += 1;
                                    mine.push(held_from(answer["id"].as_str().unwrap(), &answer).unwrap());
                                }
                                StatusCode::CONFLICT => {}
                                other => panic!("conversion: {other} {answer}"),
                            }
                        }
                        assert_eq!(won, 1, "exactly one conversion of a hold wins");
                        conversions += 1;
                    }
                    2 | 3 if !mine.is_empty() => {
                        let i = pick % mine.len();
                        let h = mine[i].clone();
                        let (method, path, body) = if op == 2 {
                            (reqwest::Method::POST, format!("/v1/bookings/{}/reschedule", h.booking),
                             json!({"starts_at": from, "ends_at": to}))
                        } else {
                            (reqwest::Method::PATCH,
                             format!("/v1/bookings/{}/reservations/{}", h.booking, h.reservation),
                             json!({"resource_id": resource, "starts_at": from, "ends_at": to}))
                        };
                        let r = send(method, address, path, body).await.unwrap();
                        let status = r.status();
                        let answer: Value = r.json().await.unwrap();
                        match status {
                            StatusCode::OK => mine[i] = held_from(&h.booking, &answer).unwrap_or(h),
                            StatusCode::CONFLICT => assert_eq!(answer["type"], "urn:muster:problem:reservation-conflict"),
                            other => panic!("move: {other} {answer}"),
                        }
                    }
                    _ if !mine.is_empty() => {
                        let h = mine.swap_remove(pick % mine.len());
                        let r = send(reqwest::Method::POST, address, format!("/v1/bookings/{}/cancel", h.booking), json!({})).await.unwrap();
                        assert_eq!(r.status(), StatusCode::OK);
                    }
                    _ => {}
                }
            }
            (mine, holds, conversions)
        }));
    }
    let mut expected: HashSet<(uuid::Uuid, uuid::Uuid, DateTime<Utc>, DateTime<Utc>)> =
        HashSet::new();
    let mut open_holds = HashSet::new();
    let mut conversions = 0;
    for client in clients {
        let (mine, holds, converted) = client.await.unwrap();
        conversions += converted;
        open_holds.extend(holds);
        for h in mine {
            expected.insert((h.reservation, h.resource, h.starts_at, h.ends_at));
        }
    }
    eprintln!("raced conversions: {conversions}");
    assert!(conversions >= 3, "too few raced conversions: {conversions}");

    let rows: Vec<StoredRow> = sqlx::query_as(
        "select reservation_id, resource_id, starts_at, ends_at, expires_at from reservations",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let stored: HashSet<_> = rows
        .iter()
        .filter(|r| r.4.is_none())
        .map(|r| (r.0, r.1, r.2, r.3))
        .collect();
    assert_eq!(
        stored, expected,
        "every 2xx matches what is stored, and nothing else is"
    );
    let stored_holds: HashSet<uuid::Uuid> =
        rows.iter().filter(|r| r.4.is_some()).map(|r| r.0).collect();
    assert_eq!(
        stored_holds, open_holds,
        "holds neither released nor converted still count"
    );

    let (before, after) = (chrono::Duration::minutes(30), chrono::Duration::minutes(15));
    for (resource, capacity) in resources.iter() {
        let id: uuid::Uuid = resource.parse().unwrap();
        let occupied: Vec<TimeRange> = rows
            .iter()
            .filter(|r| r.1 == id)
            .map(|r| TimeRange {
                starts_at: r.2 - before,
                ends_at: r.3 + after,
            })
            .collect();
        let peak = peak_concurrency(&occupied);
        assert!(
            peak <= *capacity as usize,
            "resource {resource} holds {peak} at once with buffers and holds, capacity {capacity}"
        );
    }
}
