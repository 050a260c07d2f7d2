//! The async side as real processes: a `muster work` killed with `kill -9`
//! mid-deployment and another one finishing it, the reactor killed while
//! events flow, NOTIFY pickup, and cleanup.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::deployments::{subscribe, wait_for};
use crate::helpers::{TestApp, booking, spawn_app, spawn_app_with_workers, worker_config};
use crate::receiver::Receiver;

/// Heartbeat and missed heartbeats of the worker processes: a dead
/// worker's jobs are rescued within 500 ms × (4 + 1).
const HEARTBEAT_MS: u64 = 500;
const MISSED: u64 = 4;

/// Starts `muster work` on the app's database.
fn worker(app: &TestApp) -> Child {
    worker_with(app, &[])
}

/// Starts `muster work` with extra environment.
fn worker_with(app: &TestApp, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .envs(env.iter().copied())
        .arg("work")
        .env("DATABASE_URL", app.db.url())
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("MUSTER_ALLOW_PRIVATE_WEBHOOKS", "true")
        .env("MUSTER_JOB_HEARTBEAT_MS", HEARTBEAT_MS.to_string())
        .env("MUSTER_JOB_MISSED_HEARTBEATS", MISSED.to_string())
        .env("MUSTER_JOB_POLL_MS", "100")
        .env("MUSTER_DEPLOYMENT_RETRY_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_deployment_of_a_killed_worker_is_finished_by_another_without_redoing_steps() {
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app().await;
    let receiver = Receiver::start(Arc::new(|_, _| 200), Duration::from_millis(300)).await;
    subscribe(&app, &receiver.url, &["deployment.step"]).await;
    // Five resources: five dispatch steps and `notify`.
    let (from, to) = ("2027-06-12T14:00:00Z", "2027-06-12T23:00:00Z");
    let mut reservations = Vec::new();
    for _ in 0..5 {
        let id = app.resource(1).await;
        reservations.push(json!({"resource_id": id, "starts_at": from, "ends_at": to}));
    }
    let booked = app
        .post(
            "/v1/bookings",
            &json!({"title": "Gala", "client": {"name": "Ann"}, "starts_at": from, "ends_at": to,
                    "reservations": reservations}),
        )
        .await;
    let booking_id = booked.body["id"].as_str().unwrap();
    app.post(&format!("/v1/bookings/{booking_id}/confirm"), &json!({}))
        .await;

    let mut workers = vec![worker(&app), worker(&app)];
    let deployed = app
        .post("/v1/deployments", &json!({"booking_id": booking_id}))
        .await;
    assert_eq!(deployed.status, StatusCode::ACCEPTED);
    let id = deployed.body["id"].as_str().unwrap().to_owned();

    // Kill the process holding the job once two steps have reached the receiver.
    let started = Instant::now();
    while receiver.arrivals() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deployment never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
    let (holder,): (String,) = sqlx::query_as(
        "select lock_by from apalis.jobs where job_type = 'muster.deployment' and lock_by is not null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // Worker names are `kind@host:pid:random`.
    let pid: u32 = holder.split(':').nth(1).unwrap().parse().unwrap();
    kill_9(pid);
    let killed_at = Instant::now();
    let before_kill = receiver.arrivals();

    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), |b| {
        b["status"] == "succeeded"
    })
    .await;
    // The rescue bound, then the remaining steps (300 ms each), with room
    // for a loaded machine.
    let rescue_bound = Duration::from_millis(HEARTBEAT_MS * (MISSED + 1));
    let remaining_steps = Duration::from_millis(5 * 300);
    let within = rescue_bound + remaining_steps + Duration::from_secs(5);
    assert!(
        killed_at.elapsed() < within,
        "finished {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(doc["steps_done"], 6);

    let mut calls: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        *calls.entry(r.header("idempotency-key")).or_default() += 1;
    }
    assert_eq!(calls.len(), 6, "every step was called");
    let repeated: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    // Only the step in flight at the kill may be called again (its success
    // was not recorded); receivers dedupe it by its idempotency key.
    assert!(
        repeated.len() <= 1 && repeated.iter().all(|(_, n)| **n == 2),
        "{calls:?}"
    );
    assert!(
        receiver.arrivals() <= 6 + 1,
        "{before_kill} before the kill, {calls:?}"
    );
    for step in doc["steps"].as_array().unwrap() {
        let succeeded = step["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["succeeded"] == true)
            .count();
        assert_eq!(succeeded, 1, "a step succeeds once: {step}");
    }
    for w in &mut workers {
        let _ = w.kill().await;
    }
}

#[tokio::test]
async fn a_killed_reactor_neither_loses_nor_repeats_an_enqueue() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    subscribe(&app, &receiver.url, &["booking.requested"]).await;
    let resource = app.resource(100).await;
    let bookings = 400;

    // Writers in the background; the reactor's process is killed and
    // restarted at random moments meanwhile.
    let writer = {
        let (address, key, resource) = (app.address.clone(), app.planner.clone(), resource.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..bookings {
                let start = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap()
                    + chrono::Duration::hours(n);
                let end = start + chrono::Duration::minutes(30);
                let answer = client
                    .post(format!("{address}/v1/bookings"))
                    .bearer_auth(&key)
                    .json(&booking(&resource, &start.to_rfc3339(), &end.to_rfc3339()))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), StatusCode::CREATED);
            }
        })
    };
    let mut kills = 0;
    while !writer.is_finished() {
        let mut process = worker(&app);
        let pause = rand::rng().random_range(150..450);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        kill_9(process.id().unwrap());
        let _ = process.wait().await;
        kills += 1;
    }
    writer.await.unwrap();
    assert!(kills >= 2, "the reactor was killed while events flowed");
    let _last = worker(&app);

    let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
    let started = Instant::now();
    loop {
        let (deliveries, positions, jobs): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from webhook_deliveries),
                    (select count(distinct event_position) from webhook_deliveries),
                    (select count(*) from apalis.jobs where job_type = 'muster.notification')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            deliveries <= bookings && jobs <= bookings,
            "{deliveries} deliveries, {jobs} jobs"
        );
        if deliveries == bookings {
            assert_eq!(positions, bookings, "one delivery per event");
            assert_eq!(jobs, bookings, "one job per delivery");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{deliveries} of {bookings} enqueued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And every one of them is delivered (at least once) in the end.
    let started = Instant::now();
    loop {
        let (delivered,): (i64,) =
            sqlx::query_as("select count(*) from webhook_deliveries where status = 'delivered'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if delivered == bookings {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{delivered} delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("x-muster-delivery"))
        .collect();
    assert_eq!(ids.len() as i64, bookings);
}

#[tokio::test]
async fn new_jobs_are_picked_up_by_notify_without_waiting_for_the_poll() {
    let mut config = worker_config();
    // The poll would take 30 s: only LISTEN/NOTIFY can be this quick.
    config.poll_interval = Duration::from_secs(30);
    let app = spawn_app_with_workers(config).await;
    // Let the workers register and listen.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let receiver = Receiver::ok().await;
    subscribe(&app, &receiver.url, &["resource.registered"]).await;
    let started = Instant::now();
    app.resource(1).await;
    while receiver.arrivals() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not picked up within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn finished_jobs_are_cleaned_up_keeping_the_configured_history() {
    let mut config = worker_config();
    config.job_history = Duration::from_millis(300);
    config.cleanup_interval = Duration::from_millis(200);
    let app = spawn_app_with_workers(config).await;
    let receiver = Receiver::ok().await;
    subscribe(&app, &receiver.url, &["resource.registered"]).await;
    app.resource(1).await;
    wait_for(&app, "/v1/jobs?status=done", |b| {
        !b["items"].as_array().unwrap().is_empty()
    })
    .await;
    // Older than the history: gone at the next cleanup.
    wait_for(&app, "/v1/jobs", |b| {
        b["items"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(receiver.arrivals(), 1);
}

#[tokio::test]
async fn a_worker_process_serves_its_job_metrics() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    subscribe(&app, &receiver.url, &["resource.registered"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = worker_with(&app, &[("MUSTER_METRICS_LISTEN", &listen)]);
    app.resource(1).await;
    let started = Instant::now();
    loop {
        let page = reqwest::get(format!("http://{listen}/metrics"))
            .await
            .ok()
            .map(|r| r.text());
        let text = match page {
            Some(text) => text.await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains(r#"muster_jobs_total{kind="notification",outcome="succeeded"} 1"#)
            && text.contains("muster_job_start_latency_seconds_bucket")
            && text.contains(r#"muster_projection_position{projection="reactor.notifications"}"#)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "metrics never showed the job:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
