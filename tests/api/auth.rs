use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{api_config, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn requests_without_a_valid_key_are_401() {
    let app = spawn_app().await;
    let body = json!({"name": "A", "kind": "room"});
    let none = app
        .send(Method::POST, "/v1/resources", None, Some(&body), &[])
        .await;
    assert_problem(&none, 401, "unauthorized");
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let forged = format!("mk.acme.{}", "0".repeat(64));
    let wrong = app
        .send(
            Method::POST,
            "/v1/resources",
            Some(&forged),
            Some(&body),
            &[],
        )
        .await;
    assert_problem(&wrong, 401, "unauthorized");
    let garbage = app
        .send(Method::GET, "/v1/events", Some("hello"), None, &[])
        .await;
    assert_problem(&garbage, 401, "unauthorized");
}

#[tokio::test]
async fn analysts_read_but_may_not_command() {
    let app = spawn_app().await;
    let refused = app
        .send(
            Method::POST,
            "/v1/resources",
            Some(&app.analyst),
            Some(&json!({"name": "A", "kind": "room"})),
            &[],
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    let feed = app.get("/v1/events", &app.analyst).await;
    assert_eq!(feed.status, StatusCode::OK);
    let admin = app
        .send(
            Method::POST,
            "/v1/resources",
            Some(&app.admin),
            Some(&json!({"name": "A", "kind": "room"})),
            &[],
        )
        .await;
    assert_eq!(admin.status, StatusCode::CREATED);
}

#[tokio::test]
async fn another_tenants_ids_are_404_and_its_events_invisible() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let booking = app
        .book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let id = booking.body["id"].as_str().unwrap();
    let confirm = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/confirm"),
            Some(&app.other_tenant),
            None,
            &[],
        )
        .await;
    assert_problem(&confirm, 404, "not-found");
    let retire = app
        .send(
            Method::POST,
            &format!("/v1/resources/{hall}/retire"),
            Some(&app.other_tenant),
            None,
            &[],
        )
        .await;
    assert_problem(&retire, 404, "not-found");
    // Reserving acme's resource from tenant other: no such resource there.
    let body = crate::helpers::booking(&hall, "2030-02-01T10:00:00Z", "2030-02-01T12:00:00Z");
    let cross = app
        .send(
            Method::POST,
            "/v1/bookings",
            Some(&app.other_tenant),
            Some(&body),
            &[],
        )
        .await;
    assert_problem(&cross, 422, "validation");
    let feed = app.get("/v1/events", &app.other_tenant).await;
    assert_eq!(feed.body["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let mut config = api_config();
    config.rate_limit = 1;
    config.rate_burst = 3;
    let app = spawn_app_with(config).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get("/v1/events", &app.analyst).await);
    }
    assert!(statuses[..3].iter().all(|a| a.status == StatusCode::OK));
    // Each answer says what is left (IETF RateLimit headers).
    assert_eq!(
        statuses[0].headers["ratelimit"]
            .to_str()
            .unwrap()
            .split(';')
            .nth(1),
        Some("r=2")
    );
    assert!(
        statuses[0].headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("q=3")
    );
    assert!(
        statuses[2].headers["ratelimit"]
            .to_str()
            .unwrap()
            .contains("r=0")
    );
    let limited = &statuses[4];
    assert_problem(limited, 429, "rate-limited");
    assert_eq!(limited.headers["retry-after"], "1");
    // Other keys have their own budget.
    assert_eq!(
        app.get("/v1/events", &app.admin).await.status,
        StatusCode::OK
    );

    // Made-up keys from one address meet 429 too, after the burst of
    // failed attempts, without a key lookup each; a valid key already in
    // use from the same address still gets through.
    let mut made_up = Vec::new();
    for i in 0..6 {
        let key = format!("mk.acme.{}", format!("{i:x}").repeat(64)[..64].to_owned());
        made_up.push(app.get("/v1/events", &key).await.status);
    }
    assert_eq!(made_up[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert!(
        made_up[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{made_up:?}"
    );
    assert_eq!(
        app.get("/v1/events", &app.admin).await.status,
        StatusCode::OK
    );
}
