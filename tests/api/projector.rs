//! The projection runner as real processes: exactly-once under `kill -9`,
//! and one lease holder per projection.

use std::process::Stdio;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, booking, spawn_api_only};

/// Starts `muster project` on the app's database.
fn projector(app: &TestApp, batch: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("project")
        .env("DATABASE_URL", app.db.url())
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("MUSTER_PROJECTION_BATCH", batch.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Posts `bookings` bookings (a third of them confirmed) over `resources`
/// resources from 32 concurrent clients; returns the events written.
async fn seed(app: &TestApp, resources: usize, bookings: usize) {
    let mut ids = Vec::new();
    for _ in 0..resources {
        ids.push(app.resource(1).await);
    }
    let ids = std::sync::Arc::new(ids);
    let tasks: Vec<_> = (0..32)
        .map(|worker| {
            let (address, key, ids) = (app.address.clone(), app.planner.clone(), ids.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in (worker..bookings).step_by(32) {
                    let resource = &ids[n % ids.len()];
                    let hour = n / ids.len();
                    let start = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
                        .unwrap()
                        + chrono::Duration::hours(hour as i64);
                    let end = start + chrono::Duration::minutes(45);
                    let answer = client
                        .post(format!("{address}/v1/bookings"))
                        .bearer_auth(&key)
                        .json(&booking(resource, &start.to_rfc3339(), &end.to_rfc3339()))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), StatusCode::CREATED);
                    if n % 3 == 0 {
                        let body: serde_json::Value = answer.json().await.unwrap();
                        let id = body["id"].as_str().unwrap();
                        let confirmed = client
                            .post(format!("{address}/v1/bookings/{id}/confirm"))
                            .bearer_auth(&key)
                            .send()
                            .await
                            .unwrap();
                        assert!(confirmed.status().is_success());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn head(app: &TestApp) -> i64 {
    sqlx::query_scalar("select coalesce(max(position), 0) from events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn checkpoints(app: &TestApp) -> Vec<(String, i64, String, Option<String>)> {
    sqlx::query_as("select name, position, state, owner from projection_checkpoints order by name")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// A content checksum of every read-model table.
pub(crate) async fn read_model_checksum(app: &TestApp) -> Vec<(String, i64, String)> {
    let mut sums = Vec::new();
    for table in [
        "resources",
        "bookings",
        "booking_reservations",
        "booking_tasks",
        "booking_status_history",
        "resource_bookings",
        "deployments",
    ] {
        let (count, sum): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select count(*), md5(string_agg(t::text, '|' order by t::text)) from read.{table} t"
        )))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        sums.push((table.to_owned(), count, sum.unwrap_or_default()));
    }
    sums
}

/// Every index of schema `read` (name and definition) and every table's
/// persistence (`p`: logged).
async fn read_model_indexes(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select indexname::text, indexdef from pg_indexes where schemaname = 'read'
         union all
         select relname::text, relpersistence::text from pg_class
          where relnamespace = 'read'::regnamespace and relkind = 'r'
         order by 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

async fn wait_until_caught_up(app: &TestApp, within: Duration) {
    let target = head(app).await;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let at = checkpoints(app).await;
        if at.len() == 3 && at.iter().all(|c| c.1 >= target) {
            return;
        }
        assert!(
            at.iter().all(|c| c.2 == "running"),
            "a projection failed: {at:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "not caught up: {at:?} < {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn kill_9_during_catch_up_neither_loses_nor_repeats_an_event() {
    let app = spawn_api_only().await;
    seed(&app, 40, 2_400).await;
    let target = head(&app).await;
    assert!(target > 5_000, "{target} events");

    // Small batches, killed at random instants, over and over.
    let mut kills = 0;
    loop {
        let mut child = projector(&app, 10);
        let pause = rand::rng().random_range(120..360);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        let at = checkpoints(&app).await;
        assert!(at.iter().all(|c| c.2 == "running"), "{at:?}");
        if at.len() == 3 && at.iter().all(|c| c.1 >= target) {
            break;
        }
        assert!(kills < 200, "no progress: {at:?}");
    }
    assert!(
        kills >= 3,
        "only {kills} kills: the test must interrupt catch-up"
    );
    let live = read_model_checksum(&app).await;
    let indexes = read_model_indexes(&app).await;

    // Batches far smaller than the seed, so that the rebuild loads most of
    // it with its writers (and unique indexes only) before the swap.
    for name in ["resources", "bookings", "deployments"] {
        let status = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["projections", "rebuild", name, "--batch", "97"])
            .env("DATABASE_URL", app.db.url())
            .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(
        read_model_checksum(&app).await,
        live,
        "the killed projector's models equal a rebuild"
    );
    assert_eq!(
        read_model_indexes(&app).await,
        indexes,
        "the rebuilt tables have the live tables' indexes, and are logged"
    );
    assert_eq!(live[1].1, 2_400);
    assert_eq!(
        live[4].1,
        2_400 + 800,
        "one history entry per request and per confirmation"
    );
}

#[tokio::test]
async fn one_process_holds_a_projection_and_another_takes_over_when_it_dies() {
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_api_only().await;
    seed(&app, 5, 100).await;
    let mut first = projector(&app, 50);
    wait_until_caught_up(&app, Duration::from_secs(20)).await;
    let owner = checkpoints(&app).await[0].3.clone().unwrap();
    assert!(
        owner.ends_with(&format!(":{}", first.id().unwrap())),
        "{owner}"
    );

    // A second process waits for the lease: while the first lives, every
    // batch is applied by the first.
    let second = projector(&app, 50);
    let writer = {
        let app_address = app.address.clone();
        let key = app.planner.clone();
        let resource = app.resource(1000).await;
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..150 {
                let from = format!("2028-01-01T{:02}:00:00Z", n % 24);
                let to = format!("2028-01-01T{:02}:30:00Z", n % 24);
                client
                    .post(format!("{app_address}/v1/bookings"))
                    .bearer_auth(&key)
                    .json(&booking(&resource, &from, &to))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        for c in checkpoints(&app).await {
            assert_eq!(
                c.3.as_deref(),
                Some(owner.as_str()),
                "only the lease holder applies"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    wait_until_caught_up(&app, Duration::from_secs(20)).await;
    assert!(
        checkpoints(&app)
            .await
            .iter()
            .all(|c| c.3.as_deref() == Some(owner.as_str()))
    );

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    app.book(
        &app.resource(1).await,
        "2028-02-01T10:00:00Z",
        "2028-02-01T11:00:00Z",
    )
    .await;
    wait_until_caught_up(&app, Duration::from_secs(10)).await;
    let successor = format!(":{}", second.id().unwrap());
    assert!(
        checkpoints(&app)
            .await
            .iter()
            .all(|c| c.3.as_deref().is_some_and(|o| o.ends_with(&successor))),
        "the second process took over: {:?}",
        checkpoints(&app).await
    );
}
