use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, fields, spawn_app};

#[tokio::test]
async fn the_feed_pages_through_the_tenants_events_with_their_metadata() {
    let app = spawn_app().await;
    let created = app
        .send(
            Method::POST,
            "/v1/resources",
            Some(&app.planner),
            Some(&json!({"name": "A", "kind": "room"})),
            &[("x-correlation-id", "corr-42")],
        )
        .await;
    assert_eq!(created.headers["x-correlation-id"], "corr-42");
    let hall = created.body["id"].as_str().unwrap().to_owned();
    app.book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;

    let page = app.get("/v1/events?limit=2", &app.analyst).await;
    assert_eq!(page.status, StatusCode::OK);
    let events = page.body["events"].as_array().unwrap();
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["resource.registered", "booking.requested"]);
    assert_eq!(events[0]["metadata"]["correlation_id"], "corr-42");
    assert_eq!(events[0]["metadata"]["tenant"], "acme");
    assert!(events[0]["metadata"]["command_id"].is_string());
    let next = page.body["next_after"].as_i64().unwrap();
    assert_eq!(next, events[1]["position"].as_i64().unwrap());

    let rest = app
        .get(&format!("/v1/events?after={next}"), &app.analyst)
        .await;
    let types: Vec<_> = rest.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["reservation.added"]);
    assert_eq!(
        created.body["position"],
        json!(page.body["events"][0]["position"])
    );
}

#[tokio::test]
async fn bad_feed_parameters_are_named() {
    let app = spawn_app().await;
    let limit = app.get("/v1/events?limit=0", &app.analyst).await;
    assert_problem(&limit, 422, "validation");
    assert_eq!(fields(&limit), ["limit"]);
    let after = app.get("/v1/events?after=x", &app.analyst).await;
    assert_problem(&after, 422, "validation");
    assert_eq!(fields(&after), ["after"]);
}
