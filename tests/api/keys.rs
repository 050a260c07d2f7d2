//! Keys: named, listed with their last use, revoked through the API or the
//! CLI, and refused by every process within two seconds.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_process_within_two_seconds() {
    let app = spawn_app().await;
    let url = app.db.url();
    let (_a, a) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let (_b, b) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("{a}/v1/keys"))
        .bearer_auth(&app.admin)
        .json(&json!({"role": "planner", "name": "checkout service"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: serde_json::Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["role"], "planner");

    // Used on the other process: works, and it is cached there now.
    let list = |address: String| {
        let client = client.clone();
        let key = key.clone();
        async move {
            client
                .get(format!("{address}/v1/resources"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(list(b.clone()).await, StatusCode::OK);
    let keys = client
        .get(format!("{a}/v1/keys"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let listed = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["name"], "checkout service");
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(listed.get("key").is_none(), "the secret is never listed");

    let revoked = client
        .delete(format!("{a}/v1/keys/{id}"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    loop {
        if list(b.clone()).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "the other process still accepts the key after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(list(a.clone()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_are_admin_only_validated_and_managed_from_the_cli() {
    let app = spawn_app().await;
    let planner = app
        .send(Method::GET, "/v1/keys", Some(&app.planner), None, &[])
        .await;
    assert_problem(&planner, 403, "forbidden");
    let bad = app
        .send(
            Method::POST,
            "/v1/keys",
            Some(&app.admin),
            Some(&json!({"role": "root"})),
            &[],
        )
        .await;
    assert_problem(&bad, 422, "validation");
    let missing = app
        .send(
            Method::DELETE,
            &format!("/v1/keys/{}", uuid::Uuid::now_v7()),
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_problem(&missing, 404, "not-found");

    let muster = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(args)
            .env("DATABASE_URL", app.db.url())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let key = muster(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--role",
        "analyst",
        "--name",
        "night audit",
    ]);
    let key = key.trim().to_owned();
    let listed = muster(&["keys", "list", "--tenant", "acme"]);
    let line = listed
        .lines()
        .find(|l| l.contains("night audit"))
        .expect("the named key is listed");
    let id = line.split('\t').next().unwrap().to_owned();
    let me = app.get("/v1/whoami", &key).await;
    assert_eq!(me.body["role"], "analyst");
    assert!(muster(&["keys", "revoke", "--tenant", "acme", &id]).contains("revoked"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let me = app.get("/v1/whoami", &key).await;
    assert_problem(&me, 401, "unauthorized");

    // The CLI names keys by the API's rule: one use case serves both.
    let long = "x".repeat(201);
    let refused = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "keys", "create", "--tenant", "acme", "--role", "planner", "--name", &long,
        ])
        .env("DATABASE_URL", app.db.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("name: must be at most 200 characters"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
}
