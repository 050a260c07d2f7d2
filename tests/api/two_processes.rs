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

async fn spawn_api_process(database_url: &str) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("api")
        .env("DATABASE_URL", database_url)
        .env("MUSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MUSTER_RATE_LIMIT", "0")
        .env("MUSTER_DB_POOL_SIZE", "16")
        .env("RUST_LOG", "warn")
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

fn hour(h: u32) -> String {
    Utc.with_ymd_and_hms(2030, 3, 4, h, 0, 0)
        .unwrap()
        .to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_processes_and_64_clients_never_double_book() {
    const CLIENTS: usize = 64;
    const REQUESTS_PER_CLIENT: usize = 12;
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
