//! Read replicas: a real streaming standby (`pg_basebackup -R`) serves the
//! query endpoints and the live stream (`READ_DATABASE_URL`) while commands
//! go to the primary, and a client still reads its own writes through
//! `consistent_with`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::cluster::{Client, Cluster, muster, new_key, spawn_role};
use crate::helpers::booking;
use crate::two_processes::spawn_api_process_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_standby_serves_queries_and_read_your_writes_holds() {
    let primary = Cluster::start();
    muster(&primary.url(), &["migrate"]);
    let key = new_key(&primary.url(), "planner");
    let standby = primary.standby();
    let _projector = spawn_role("project", &primary.url(), &[]);
    let (_api, address) =
        spawn_api_process_with(&primary.url(), &[("READ_DATABASE_URL", &standby.url())]).await;
    let client = std::sync::Arc::new(Client {
        http: reqwest::Client::new(),
        address,
        key,
    });

    // Eight clients at once, each reading what it has just written: every
    // read goes to the standby and must see the write.
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                for round in 0..10 {
                    let (status, created) = client
                        .post(
                            "/v1/resources",
                            &json!({"name": format!("Room {worker}-{round}"), "kind": "room"}),
                        )
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "{created}");
                    let id = created["id"].as_str().unwrap().to_owned();
                    let position = created["position"].as_i64().unwrap();
                    let (status, read) = client
                        .get(&format!("/v1/resources/{id}?consistent_with={position}"))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{read}");
                    assert_eq!(read["name"], format!("Room {worker}-{round}"));

                    let day = 1 + (worker * 10 + round) % 28;
                    let (from, to) = (
                        format!("2027-03-{day:02}T09:00:00Z"),
                        format!("2027-03-{day:02}T10:00:00Z"),
                    );
                    let (status, booked) =
                        client.post("/v1/bookings", &booking(&id, &from, &to)).await;
                    assert_eq!(status, StatusCode::CREATED, "{booked}");
                    let booking_id = booked["id"].as_str().unwrap();
                    let position = booked["position"].as_i64().unwrap();
                    let (status, read) = client
                        .get(&format!(
                            "/v1/bookings/{booking_id}?consistent_with={position}"
                        ))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{read}");
                    assert_eq!(read["status"], "requested");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // The reads really come from the standby: with its replay paused, a
    // new write cannot be read consistently (the primary has it at once),
    // and it can as soon as replay resumes.
    let mut live = client
        .http
        .get(format!(
            "{}/v1/subscribe?stream_types=resource",
            client.address
        ))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let replica = sqlx::PgPool::connect(&standby.url()).await.unwrap();
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let (_, created) = client
        .post(
            "/v1/resources",
            &json!({"name": "Late room", "kind": "room"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let position = created["position"].as_i64().unwrap();
    let read = format!("/v1/resources/{id}?consistent_with={position}");
    let (status, problem) = client.get(&read).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let (status, _) = client.get(&format!("/v1/resources/{id}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the standby has not replayed it"
    );
    // The live stream reads the standby too: nothing of it arrives yet.
    let mut seen = String::new();
    let early = tokio::time::timeout(Duration::from_millis(1500), async {
        while !seen.contains(&id) {
            let chunk = live.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        early.is_err(),
        "the live stream served an event the standby lacks"
    );
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .unwrap();
    let (status, read) = client.get(&read).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["name"], "Late room");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(&id) {
            let chunk = live.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the live stream serves the event once the standby has it");

    // The replica's lag is a metric.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = client
        .http
        .get(format!("{}/metrics", client.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("muster_replica_lag_seconds"),
        "no replica lag metric"
    );
}
