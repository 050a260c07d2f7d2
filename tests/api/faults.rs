//! Fail fast and heal: a real `muster api` on a Postgres cluster of its own
//! that is stopped and started again under it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{Cluster, muster, new_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_database_is_failed_fast_and_healed_without_a_restart() {
    let cluster = Cluster::start();
    let url = cluster.url();
    muster(&url, &["migrate"]);
    let key = new_key(&url, "planner");
    let (_api, address) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let client = reqwest::Client::new();
    let register = || {
        client
            .post(format!("{address}/v1/resources"))
            .bearer_auth(&key)
            .json(&json!({"name": "Room", "kind": "room"}))
            .send()
    };
    assert_eq!(register().await.unwrap().status(), 201);

    cluster.stop_immediately();
    // The probe notices within a few of its 100 ms rounds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let answer = register().await.unwrap();
        let took = started.elapsed();
        assert_eq!(answer.status(), 503);
        assert!(
            took < Duration::from_millis(100),
            "a command's 503 took {took:?}"
        );
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["type"], "urn:muster:problem:unavailable");
        let started = Instant::now();
        let list = client
            .get(format!("{address}/v1/resources"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 503);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a query's 503 took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(body["problems"][0].as_str().unwrap().contains("database"));

    cluster.pg_ctl_start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = register().await.unwrap().status();
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "muster did not heal: still {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
