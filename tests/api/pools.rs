//! Pools (SPEC §12): created by explicit members or a selector, read,
//! listed and changed; bad bodies are refused by field and write nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, event_count, fields, spawn_app};

#[tokio::test]
async fn a_pool_is_created_read_listed_and_changed() {
    let app = spawn_app().await;
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let created = app
        .post(
            "/v1/pools",
            &json!({"name": " Barbers ", "members": [a, b]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["version"], 1);

    let read = app.get(&format!("/v1/pools/{id}"), &app.analyst).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["name"], "Barbers");
    assert_eq!(read.body["members"], json!([a, b]));
    assert_eq!(read.body["strategy"], "least_booked");
    assert!(read.body.get("selector").is_none());

    // A selector pool, then the list of both.
    let rooms = app
        .post(
            "/v1/pools",
            &json!({"name": "Rooms for 40", "selector": {"kind": "room", "min_seats": 40},
                    "strategy": "first"}),
        )
        .await;
    assert_eq!(rooms.status, StatusCode::CREATED, "{:?}", rooms.body);
    let listed = app.get("/v1/pools?limit=1", &app.analyst).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let cursor = listed.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(&format!("/v1/pools?limit=1&cursor={cursor}"), &app.analyst)
        .await;
    assert_eq!(
        next.body["items"][0]["selector"],
        json!({"kind": "room", "tags": [], "min_seats": 40, "min_capacity": null})
    );

    // Changed under If-Match; the same change again is a no-op; a stale
    // version is 412.
    let changed = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"strategy": "round_robin", "members": [b, a]})),
            &[("If-Match", "1")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["version"], 2);
    let again = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"strategy": "round_robin"})),
            &[],
        )
        .await;
    assert_eq!(again.body["version"], 2, "nothing changed");
    let stale = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"name": "Late"})),
            &[("If-Match", "1")],
        )
        .await;
    assert_problem(&stale, 412, "stale-version");
    let read = app.get(&format!("/v1/pools/{id}"), &app.analyst).await;
    assert_eq!(read.body["members"], json!([b, a]));
    assert_eq!(read.body["strategy"], "round_robin");

    let feed = app.get("/v1/events?stream_type=pool", &app.analyst).await;
    let types: Vec<&str> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pool.created", "pool.created", "pool.updated"]);
}

#[tokio::test]
async fn bad_pools_are_refused_by_field_and_write_nothing() {
    let app = spawn_app().await;
    let a = app.resource(1).await;
    let nobody = uuid::Uuid::now_v7();
    let before = event_count(&app).await;
    for (body, field) in [
        (json!({"name": "P", "members": [a, nobody]}), "members[1]"),
        (json!({"name": "P", "members": [a, a]}), "members[1]"),
        (json!({"name": "P", "members": []}), "members"),
        (json!({"name": "", "members": [a]}), "name"),
        (json!({"name": "P"}), "members"),
        (
            json!({"name": "P", "members": [a], "selector": {"kind": "room"}}),
            "selector",
        ),
        (json!({"name": "P", "selector": {}}), "selector"),
        (
            json!({"name": "P", "selector": {"kind": "room", "min_capacity": 0}}),
            "selector.min_capacity",
        ),
        (
            json!({"name": "P", "members": [a], "strategy": "random"}),
            "strategy",
        ),
    ] {
        let answer = app.post("/v1/pools", &body).await;
        assert_problem(&answer, 422, "validation");
        assert!(
            fields(&answer).contains(&field.to_owned()),
            "{body}: {:?}",
            answer.body
        );
    }
    assert_eq!(event_count(&app).await, before);
    let missing = app.get(&format!("/v1/pools/{nobody}"), &app.analyst).await;
    assert_problem(&missing, 404, "not-found");
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{nobody}"),
            Some(&app.planner),
            Some(&json!({"name": "Ghost"})),
            &[("If-Match", "1")],
        )
        .await;
    assert_problem(&patched, 404, "not-found");
    let analyst = app
        .send(
            Method::POST,
            "/v1/pools",
            Some(&app.analyst),
            Some(&json!({"name": "P", "members": [a]})),
            &[],
        )
        .await;
    assert_eq!(analyst.status, StatusCode::FORBIDDEN);
}
