//! The server's secret key (SPEC §12): a wrong or missing one stops muster
//! at boot with one line, and it rotates while the data stays readable.

use std::process::Output;

use reqwest::StatusCode;
use serde_json::json;
use tokio::process::Command;

use crate::helpers::{TEST_SECRET_KEY, TestApp, spawn_app};

/// `muster projections rebuild bookings` (it checks the key, then reads
/// every sealed event) with `keys` as (`MUSTER_SECRET_KEY`,
/// `MUSTER_EXTRA_SECRET_KEY`).
async fn muster(app: &TestApp, args: &[&str], keys: (Option<&str>, Option<&str>)) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command
        .args(args)
        .env("DATABASE_URL", app.db.url())
        .env("RUST_LOG", "warn")
        .env_remove("MUSTER_SECRET_KEY")
        .env_remove("MUSTER_EXTRA_SECRET_KEY");
    if let Some(key) = keys.0 {
        command.env("MUSTER_SECRET_KEY", key);
    }
    if let Some(key) = keys.1 {
        command.env("MUSTER_EXTRA_SECRET_KEY", key);
    }
    command.output().await.unwrap()
}

fn one_line_saying(out: &Output, words: &str) {
    assert!(!out.status.success(), "it should have stopped");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(words), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(!said.contains(TEST_SECRET_KEY), "the key is never printed");
}

async fn client_name(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("select client_name from read.bookings where booking_id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrong_or_missing_key_stops_muster_and_the_key_rotates_without_losing_data() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let booked = app
        .post(
            "/v1/bookings",
            &json!({"title": "Board", "client": {"name": "Rotating Rhea", "email": "rhea@example.com"},
                    "starts_at": "2030-06-01T09:00:00Z", "ends_at": "2030-06-01T10:00:00Z",
                    "reservations": [{"resource_id": room, "starts_at": "2030-06-01T09:00:00Z", "ends_at": "2030-06-01T10:00:00Z"}]}),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let id = booked.body["id"].as_str().unwrap().to_owned();
    let rebuild = ["projections", "rebuild", "bookings"];

    let (_, new_text) = muster_store::secret::SecretKey::generate();
    let wrong = "c29tZSBvdGhlciBrZXksIDMyIGJ5dGVzIGxvbmchISE=";
    one_line_saying(
        &muster(&app, &rebuild, (Some(wrong), None)).await,
        "MUSTER_SECRET_KEY is not the key this database",
    );
    one_line_saying(
        &muster(&app, &rebuild, (None, None)).await,
        "MUSTER_SECRET_KEY, which is not set",
    );
    let right = muster(&app, &rebuild, (Some(TEST_SECRET_KEY), None)).await;
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(client_name(&app, &id).await, "Rotating Rhea");

    // Rotation: the servers run with the new key and the old one as extra;
    // the command re-seals everything; then the old key alone is wrong
    // and the new one alone reads everything.
    let both = muster(&app, &rebuild, (Some(&new_text), Some(TEST_SECRET_KEY))).await;
    assert!(
        both.status.success(),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let rotated = muster(
        &app,
        &["keys", "rotate-secret"],
        (Some(&new_text), Some(TEST_SECRET_KEY)),
    )
    .await;
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(said.contains("re-sealed 1 data keys"), "{said}");
    one_line_saying(
        &muster(&app, &rebuild, (Some(TEST_SECRET_KEY), None)).await,
        "MUSTER_SECRET_KEY is not the key this database",
    );
    sqlx::query("update read.bookings set client_name = 'stale'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let after = muster(&app, &rebuild, (Some(&new_text), None)).await;
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert_eq!(client_name(&app, &id).await, "Rotating Rhea");
}
