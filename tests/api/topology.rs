//! The multi-process topology under faults: two `muster api`, two
//! `muster project` and two `muster work` processes on one database under
//! mixed load (commands, queries, webhooks, deployments, reports), one
//! process of each role killed with `kill -9` at a random instant. What
//! must hold afterwards: no acknowledged command lost, never more bookings
//! on a resource than it holds, read models equal to a rebuild, every
//! deployment step and every delivery done (at least once, under the same
//! idempotency ids), every job finished or dead-lettered with a reason.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::deployments::subscribe;
use crate::helpers::{TestApp, spawn_api_only};
use crate::receiver::Receiver;
use crate::two_processes::spawn_api_process_with;

/// How long the load runs; every kill falls inside it.
const LOAD: Duration = Duration::from_secs(20);

fn role(app: &TestApp, role: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg(role)
        .env("DATABASE_URL", app.db.url())
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("MUSTER_ALLOW_PRIVATE_WEBHOOKS", "true")
        // Six processes beside the rest of the suite in Postgres' 100
        // connections; a worker's pool carries its full deployment and
        // report concurrency, so that the load drains within the settle
        // time (a smaller pool runs fewer of them: WorkerConfig::fitted_to).
        .env(
            "MUSTER_DB_POOL_SIZE",
            if role == "work" { "16" } else { "6" },
        )
        .env("MUSTER_JOB_HEARTBEAT_MS", "500")
        .env("MUSTER_JOB_MISSED_HEARTBEATS", "4")
        .env("MUSTER_DEPLOYMENT_RETRY_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What the clients were told.
#[derive(Default)]
struct Acknowledged {
    /// Booking id → the resource it holds, for every 201.
    bookings: HashMap<String, String>,
    /// Bookings confirmed (200).
    confirmed: Vec<String>,
    /// Deployments accepted (202).
    deployments: Vec<String>,
    /// Reports accepted (202).
    reports: Vec<String>,
    /// Highest position any answer carried.
    position: i64,
    /// Answers that were neither a success nor an expected refusal.
    unexpected: Vec<String>,
}

/// A client that sends to whichever API process answers: a killed one
/// refuses connections, and the request goes to the other.
struct Client {
    http: reqwest::Client,
    addresses: Vec<String>,
    key: String,
}

impl Client {
    /// Sends until some process answers other than 503; a command carries
    /// one Idempotency-Key over its retries, so that a retry of a command
    /// the killed process committed gets that first answer. A 503 (the
    /// database had no connection to spare: the test suite runs beside)
    /// is retried, as a careful client does.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let idempotency_key = uuid::Uuid::now_v7().to_string();
        let first = rand::rng().random_range(0..self.addresses.len());
        for n in 0..self.addresses.len() * 20 {
            let address = &self.addresses[(first + n) % self.addresses.len()];
            let mut request = self
                .http
                .request(method.clone(), format!("{address}{path}"))
                .bearer_auth(&self.key);
            if let Some(body) = body {
                request = request
                    .json(body)
                    .header("idempotency-key", &idempotency_key);
            }
            match request.send().await {
                Ok(answer) if answer.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(answer) => {
                    let status = answer.status();
                    return (status, answer.json().await.unwrap_or(Value::Null));
                }
                // Not sent, or no answer (the process was killed): try the
                // other one.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        (StatusCode::BAD_GATEWAY, Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_each_role_under_load_survive_a_kill_9_of_each() {
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_api_only().await;
    let receiver = Receiver::start(Arc::new(|_, _| 200), Duration::from_millis(5)).await;
    subscribe(
        &app,
        &receiver.url,
        &["booking.confirmed", "deployment.step"],
    )
    .await;
    let resources: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(app.resource(1).await);
        }
        ids
    };

    let mut apis = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let (child, address) = spawn_api_process_with(
            &app.db.url(),
            &[
                ("MUSTER_ALLOW_PRIVATE_WEBHOOKS", "true"),
                ("MUSTER_DB_POOL_SIZE", "8"),
            ],
        )
        .await;
        apis.push(child);
        addresses.push(address);
    }
    let mut projectors = [role(&app, "project"), role(&app, "project")];
    let mut workers = [role(&app, "work"), role(&app, "work")];
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        addresses,
        key: app.admin.clone(),
    });
    // The projectors have the resources before the load begins.
    let visible = Instant::now() + Duration::from_secs(20);
    for id in &resources {
        while client
            .send(reqwest::Method::GET, &format!("/v1/resources/{id}"), None)
            .await
            .0
            != StatusCode::OK
        {
            assert!(Instant::now() < visible, "the projectors never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let deadline = Instant::now() + LOAD;

    // Planners: book (capacity 1, so many are refused), confirm some,
    // deploy some of those.
    let planners: Vec<_> = (0..12)
        .map(|_| {
            let (client, acknowledged, resources) =
                (client.clone(), acknowledged.clone(), resources.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let resource = resources[rand::rng().random_range(0..resources.len())].clone();
                    let hour = rand::rng().random_range(0..480);
                    let from = chrono::DateTime::parse_from_rfc3339("2027-09-01T00:00:00Z").unwrap()
                        + chrono::Duration::minutes(30 * hour);
                    let to = from + chrono::Duration::minutes(90);
                    let body = json!({
                        "title": "Topology", "client": {"name": "Ann"},
                        "starts_at": from, "ends_at": to,
                        "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to}]
                    });
                    let (status, answer) = client
                        .send(reqwest::Method::POST, "/v1/bookings", Some(&body))
                        .await;
                    let id = match status {
                        StatusCode::CREATED => answer["id"].as_str().unwrap().to_owned(),
                        StatusCode::CONFLICT | StatusCode::BAD_GATEWAY => continue,
                        other => {
                            acknowledged.lock().unwrap().unexpected.push(format!("book: {other} {answer}"));
                            continue;
                        }
                    };
                    {
                        let mut a = acknowledged.lock().unwrap();
                        a.bookings.insert(id.clone(), resource);
                        a.position = a.position.max(answer["position"].as_i64().unwrap());
                    }
                    if rand::rng().random_range(0..3) > 0 {
                        continue;
                    }
                    let (status, answer) = client
                        .send(reqwest::Method::POST, &format!("/v1/bookings/{id}/confirm"), Some(&json!({})))
                        .await;
                    if status != StatusCode::OK {
                        if status != StatusCode::BAD_GATEWAY {
                            acknowledged.lock().unwrap().unexpected.push(format!("confirm: {status} {answer}"));
                        }
                        continue;
                    }
                    acknowledged.lock().unwrap().confirmed.push(id.clone());
                    if rand::rng().random_range(0..2) == 0 {
                        let (status, answer) = client
                            .send(reqwest::Method::POST, "/v1/deployments", Some(&json!({"booking_id": id})))
                            .await;
                        let mut a = acknowledged.lock().unwrap();
                        match status {
                            StatusCode::ACCEPTED => a.deployments.push(answer["id"].as_str().unwrap().to_owned()),
                            StatusCode::BAD_GATEWAY => {}
                            other => a.unexpected.push(format!("deploy: {other} {answer}")),
                        }
                    }
                }
            })
        })
        .collect();
    // Analysts: queries and a few reports.
    let analysts: Vec<_> = (0..4)
        .map(|n| {
            let (client, acknowledged, resources) =
                (client.clone(), acknowledged.clone(), resources.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    round += 1;
                    let path = match round % 3 {
                        0 => "/v1/bookings?limit=50".to_owned(),
                        1 => format!(
                            "/v1/resources/{}/schedule?from=2027-09-01T00:00:00Z&to=2027-09-03T00:00:00Z",
                            resources[round % resources.len()]
                        ),
                        _ => "/v1/resources".to_owned(),
                    };
                    let (status, answer) = client.send(reqwest::Method::GET, &path, None).await;
                    if !(status.is_success() || status == StatusCode::BAD_GATEWAY) {
                        acknowledged.lock().unwrap().unexpected.push(format!("GET {path}: {status} {answer}"));
                    }
                    if n == 0 && round % 40 == 0 {
                        let body = json!({"kind": "utilization", "format": "csv",
                                          "from": "2027-09-01T00:00:00Z", "to": "2027-09-04T00:00:00Z"});
                        let (status, answer) =
                            client.send(reqwest::Method::POST, "/v1/reports", Some(&body)).await;
                        let mut a = acknowledged.lock().unwrap();
                        match status {
                            StatusCode::ACCEPTED => a.reports.push(answer["id"].as_str().unwrap().to_owned()),
                            StatusCode::BAD_GATEWAY => {}
                            other => a.unexpected.push(format!("report: {other} {answer}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    // One kill -9 of each role, at random instants of the load.
    let mut instants: Vec<(Duration, &str)> = ["api", "project", "work"]
        .into_iter()
        .map(|r| {
            (
                Duration::from_millis(
                    rand::rng().random_range(2_000..LOAD.as_millis() as u64 - 3_000),
                ),
                r,
            )
        })
        .collect();
    instants.sort();
    let started = Instant::now();
    for (at, which) in instants {
        tokio::time::sleep_until((started + at).into()).await;
        let victim = match which {
            "api" => &mut apis[0],
            "project" => &mut projectors[0],
            _ => &mut workers[0],
        };
        let pid = victim.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        eprintln!("killed {which} ({pid}) at {at:?}");
    }
    for task in planners.into_iter().chain(analysts) {
        task.await.unwrap();
    }

    let acknowledged = Arc::try_unwrap(acknowledged)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    assert!(
        acknowledged.unexpected.is_empty(),
        "{:?}",
        acknowledged.unexpected
    );
    assert!(
        acknowledged.bookings.len() > 50,
        "{} bookings",
        acknowledged.bookings.len()
    );
    assert!(
        !acknowledged.deployments.is_empty(),
        "no deployment was requested"
    );
    eprintln!(
        "{} bookings, {} confirmed, {} deployments, {} reports acknowledged",
        acknowledged.bookings.len(),
        acknowledged.confirmed.len(),
        acknowledged.deployments.len(),
        acknowledged.reports.len()
    );
    let pool = &app.db.pool;

    // No acknowledged command lost: every booking is in the event store.
    let stored: HashSet<String> = sqlx::query_scalar::<_, uuid::Uuid>(
        "select distinct stream_id from events where stream_type = 'booking'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|id| id.to_string())
    .collect();
    let lost: Vec<_> = acknowledged
        .bookings
        .keys()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // Never over capacity: no two reservations of one resource overlap.
    let overlaps: i64 = sqlx::query_scalar(
        "select count(*) from reservations a join reservations b
            on a.tenant_id = b.tenant_id and a.resource_id = b.resource_id
           and a.reservation_id < b.reservation_id
           and a.starts_at < b.ends_at and b.starts_at < a.ends_at",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "a resource of capacity 1 was double-booked");

    // Every deployment succeeds, every job ends.
    let settle = Instant::now() + Duration::from_secs(60);
    loop {
        let (deployments_open, jobs_open, deliveries_open): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from read.deployments where status not in ('succeeded', 'failed')),
                    (select count(*) from apalis.jobs
                      where status not in ('Done', 'Failed', 'Killed')
                         or (status = 'Failed' and attempts < max_attempts)),
                    (select count(*) from webhook_deliveries where status = 'pending')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if deployments_open == 0 && jobs_open == 0 && deliveries_open == 0 {
            let deployed: i64 = sqlx::query_scalar("select count(*) from read.deployments")
                .fetch_one(pool)
                .await
                .unwrap();
            if deployed >= acknowledged.deployments.len() as i64 {
                break;
            }
        }
        assert!(
            Instant::now() < settle,
            "{deployments_open} deployments, {jobs_open} jobs, {deliveries_open} deliveries still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Vec<(String, Value)> = sqlx::query_as(
        "select deployment_id::text, document from read.deployments where status <> 'succeeded'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        failed.is_empty(),
        "deployments that did not succeed: {failed:?}"
    );
    let unexplained: i64 = sqlx::query_scalar(
        "select count(*) from apalis.jobs where status <> 'Done' and last_result is null",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(unexplained, 0, "a dead letter without a reason");

    // Every step of every deployment reached the receiver, each under one
    // idempotency key; every delivery arrived under its delivery id.
    let steps: i64 = sqlx::query_scalar(
        "select coalesce(sum(jsonb_array_length(document->'steps')), 0)::bigint from read.deployments",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let received = receiver.requests();
    let step_keys: HashSet<String> = received
        .iter()
        .map(|r| r.header("idempotency-key"))
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        step_keys.len() as i64,
        steps,
        "every deployment step, once per key"
    );
    let delivered: Vec<String> = sqlx::query_scalar(
        "select delivery_id::text from webhook_deliveries where status = 'delivered'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let undelivered: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where status <> 'delivered'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(undelivered, 0, "every delivery done");
    let delivery_ids: HashSet<String> = received
        .iter()
        .map(|r| r.header("x-muster-delivery"))
        .collect();
    let missing: Vec<_> = delivered
        .iter()
        .filter(|id| !delivery_ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "deliveries recorded but never received: {missing:?}"
    );
    let confirmations: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'booking.confirmed'")
            .fetch_one(pool)
            .await
            .unwrap();
    let confirmation_deliveries: i64 = sqlx::query_scalar(
        "select count(distinct event_position) from webhook_deliveries d
           join events e on e.position = d.event_position where e.event_type = 'booking.confirmed'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        confirmation_deliveries, confirmations,
        "one delivery per confirmation"
    );

    // The read models the surviving projectors built equal a rebuild.
    let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from events")
        .fetch_one(pool)
        .await
        .unwrap();
    let caught_up = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: i64 = sqlx::query_scalar(
            "select count(*) from projection_checkpoints where position < $1 or state <> 'running'",
        )
        .bind(head)
        .fetch_one(pool)
        .await
        .unwrap();
        if behind == 0 {
            break;
        }
        assert!(
            Instant::now() < caught_up,
            "{behind} projections behind {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = crate::projector::read_model_checksum(&app).await;
    for name in ["resources", "bookings", "deployments"] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["projections", "rebuild", name])
            .env("DATABASE_URL", app.db.url())
            .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rebuild {name}");
    }
    let after = crate::projector::read_model_checksum(&app).await;
    assert_eq!(before, after, "the read models equal a rebuild");
    for report in &acknowledged.reports {
        let (status, answer) = client
            .send(reqwest::Method::GET, &format!("/v1/reports/{report}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        if answer["status"] != "done" {
            let jobs: Vec<(String, i32, i32, Option<Value>)> = sqlx::query_as(
                "select status, attempts, max_attempts, last_result from apalis.jobs
                  where job_type = 'muster.report' and convert_from(job, 'UTF8')::jsonb->>'report_id' = $1",
            )
            .bind(report)
            .fetch_all(pool)
            .await
            .unwrap();
            panic!("report {report} is {answer}; its jobs: {jobs:?}");
        }
    }
}
