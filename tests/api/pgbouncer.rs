//! PgBouncer in transaction mode as `DATABASE_URL` (SPEC §10): every role
//! (`api`, `project`, `work`, `migrate`, `keys`) runs through a real
//! PgBouncer whose few server connections are shared by many more clients,
//! while leases and `LISTEN` take `MUSTER_DIRECT_DATABASE_URL`. Concurrent
//! commands and queries must all succeed and read their own writes, and the
//! jobs behind them (deployments, a report) must finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::process::Child;

use crate::cluster::{Client, Cluster, PgBouncer, muster_with, new_key_with, spawn_role};
use crate::helpers::{booking, one_multi_process_test_at_a_time};
use crate::two_processes::spawn_api_process_with;

/// Server connections PgBouncer keeps to Postgres: far fewer than the
/// clients, so that transactions of different clients share them.
const SERVER_POOL: u32 = 4;

/// A role behind the pooler, with its sessions direct.
fn role(role: &str, pooled: &str, direct: &str) -> Child {
    spawn_role(
        role,
        pooled,
        &[
            ("MUSTER_DIRECT_DATABASE_URL", direct),
            ("MUSTER_DB_POOL_SIZE", "8"),
            ("MUSTER_DEPLOYMENT_RETRY_MS", "100"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_works_behind_pgbouncer_in_transaction_mode() {
    let _turn = one_multi_process_test_at_a_time().await;
    let cluster = Cluster::start();
    let bouncer = PgBouncer::start(&cluster, SERVER_POOL);
    let direct = cluster.url();
    // PgBouncer refuses startup `options`: the timeouts go on the role, as
    // docs/scaling.md tells operators.
    let admin = sqlx::PgPool::connect(&direct).await.unwrap();
    for statement in [
        "alter role postgres set statement_timeout = '5s'",
        "alter role postgres set idle_in_transaction_session_timeout = '30s'",
    ] {
        sqlx::query(statement).execute(&admin).await.unwrap();
    }
    let env = [("MUSTER_DIRECT_DATABASE_URL", direct.as_str())];
    muster_with(&bouncer.url(), &env, &["migrate"]);
    let key = new_key_with(&bouncer.url(), &env, "admin");
    let _project = role("project", &bouncer.url(), &direct);
    let _work = role("work", &bouncer.url(), &direct);
    let (_api, address) = spawn_api_process_with(&bouncer.url(), &env).await;
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        address,
        key,
    });

    // Sixteen planners at once through 16 API connections and 4 servers:
    // each writes, reads its own write, confirms and deploys.
    let planners: Vec<_> = (0..16)
        .map(|planner| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut deployments = Vec::new();
                for round in 0..8 {
                    let (status, created) = client
                        .post(
                            "/v1/resources",
                            &json!({"name": format!("Van {planner}-{round}"), "kind": "vehicle"}),
                        )
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "{created}");
                    let resource = created["id"].as_str().unwrap().to_owned();
                    let day = 1 + round;
                    let (from, to) = (
                        format!("2027-05-{day:02}T09:00:00Z"),
                        format!("2027-05-{day:02}T11:00:00Z"),
                    );
                    let (status, booked) = client
                        .post("/v1/bookings", &booking(&resource, &from, &to))
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "{booked}");
                    let id = booked["id"].as_str().unwrap().to_owned();
                    // The same slot again: the conflict check runs through
                    // the pooler too.
                    let (status, refused) = client
                        .post("/v1/bookings", &booking(&resource, &from, &to))
                        .await;
                    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
                    let position = booked["position"].as_i64().unwrap();
                    let (status, read) = client
                        .get(&format!("/v1/bookings/{id}?consistent_with={position}"))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{read}");
                    assert_eq!(read["status"], "requested");
                    let (status, confirmed) = client
                        .post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{confirmed}");
                    let (status, listed) = client.get("/v1/bookings?limit=20").await;
                    assert_eq!(status, StatusCode::OK, "{listed}");
                    if round % 4 == 0 {
                        let (status, deployment) = client
                            .post("/v1/deployments", &json!({"booking_id": id}))
                            .await;
                        assert_eq!(status, StatusCode::ACCEPTED, "{deployment}");
                        deployments.push(deployment["id"].as_str().unwrap().to_owned());
                    }
                }
                deployments
            })
        })
        .collect();
    let (status, report) = client
        .post(
            "/v1/reports",
            &json!({"kind": "utilization", "format": "csv",
                    "from": "2027-05-01T00:00:00Z", "to": "2027-05-10T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    let report = report["id"].as_str().unwrap().to_owned();
    let mut deployments = Vec::new();
    for planner in planners {
        deployments.extend(planner.await.unwrap());
    }

    // Clients outnumbered servers, so transactions shared them: this is
    // transaction pooling, not one server per client.
    let clients = bouncer.show("clients").len();
    let servers = bouncer.show("servers").len();
    assert!(
        servers <= SERVER_POOL as usize && clients > 2 * servers,
        "{clients} clients on {servers} servers"
    );
    let transactions: u64 = bouncer
        .show("stats")
        .iter()
        .filter(|row| row["database"] == "postgres")
        .map(|row| row["total_xact_count"].parse::<u64>().unwrap())
        .sum();
    assert!(transactions > 1_000, "{transactions} pooled transactions");

    // The workers (job claims through the pooler, their wake-ups and
    // leases on the direct URL) finish every job.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &deployments {
        loop {
            let (status, deployment) = client.get(&format!("/v1/deployments/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{deployment}");
            if deployment["status"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "deployment {deployment}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    loop {
        let (status, answer) = client.get(&format!("/v1/reports/{report}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "report {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
