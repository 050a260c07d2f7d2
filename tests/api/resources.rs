use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, event_count, fields, spawn_app};

#[tokio::test]
async fn registering_a_resource_answers_its_id_version_and_position() {
    let app = spawn_app().await;
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name":"Hall A","kind":"room","capacity":1,"timezone":"Europe/Berlin",
                    "working_hours":[{"weekday":"mon","start":"08:00","end":"18:00"}],
                    "tags":["ground-floor"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["version"], 1);
    assert!(answer.body["position"].as_i64().unwrap() > 0);
    assert!(
        answer.body["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
}

#[tokio::test]
async fn invalid_resources_name_every_field_and_write_nothing() {
    let app = spawn_app().await;
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name":"","kind":"room","capacity":0,"timezone":"Mars/Base",
                    "working_hours":[{"weekday":"mon","start":"8am","end":"18:00"}]}),
        )
        .await;
    assert_problem(&answer, 422, "validation");
    assert_eq!(fields(&answer), ["working_hours[0].start"]);
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name":"","kind":"room","capacity":0,"timezone":"Mars/Base"}),
        )
        .await;
    assert_problem(&answer, 422, "validation");
    assert_eq!(fields(&answer), ["name", "capacity", "timezone"]);
    assert_eq!(event_count(&app).await, 0);
}

#[tokio::test]
async fn bad_bodies_are_4xx_problems() {
    let app = spawn_app().await;
    let unknown = app
        .post(
            "/v1/resources",
            &json!({"name":"A","kind":"room","colour":"red"}),
        )
        .await;
    assert_problem(&unknown, 422, "validation");
    assert_eq!(fields(&unknown), ["colour"]);
    let wrong_type = app
        .post(
            "/v1/resources",
            &json!({"name":"A","kind":"room","capacity":"two"}),
        )
        .await;
    assert_problem(&wrong_type, 422, "validation");
    assert_eq!(fields(&wrong_type), ["capacity"]);
    let missing = app.post("/v1/resources", &json!({"kind":"room"})).await;
    assert_eq!(fields(&missing), ["name"]);
    let negative = app
        .post(
            "/v1/resources",
            &json!({"name":"A","kind":"room","capacity":-1}),
        )
        .await;
    assert_eq!(fields(&negative), ["capacity"]);

    let malformed = app
        .client
        .post(format!("{}/v1/resources", app.address))
        .bearer_auth(&app.planner)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let not_json = app
        .client
        .post(format!("{}/v1/resources", app.address))
        .bearer_auth(&app.planner)
        .header("content-type", "text/plain")
        .body("name=A")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"name": "x".repeat(70_000), "kind": "room"});
    let too_large = app.post("/v1/resources", &huge).await;
    assert_problem(&too_large, 413, "payload-too-large");
    assert_eq!(event_count(&app).await, 0);
}

#[tokio::test]
async fn updates_honour_if_match_and_record_only_changes() {
    let app = spawn_app().await;
    let id = app.resource(1).await;
    let path = format!("/v1/resources/{id}");
    let patch = json!({"name": "Hall B", "capacity": 2});
    let updated = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.planner),
            Some(&patch),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.body["version"], 2);
    let stale = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.planner),
            Some(&json!({"name": "C"})),
            &[("if-match", "1")],
        )
        .await;
    assert_problem(&stale, 412, "stale-version");
    assert_eq!(stale.body["current_version"], 2);
    // The same change again records nothing.
    let same = app
        .send(Method::PATCH, &path, Some(&app.planner), Some(&patch), &[])
        .await;
    assert_eq!(same.body["version"], 2);
    let garbage = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.planner),
            Some(&patch),
            &[("if-match", "banana")],
        )
        .await;
    assert_problem(&garbage, 400, "bad-request");
}

#[tokio::test]
async fn a_retired_resource_cannot_be_reserved_or_changed() {
    let app = spawn_app().await;
    let id = app.resource(1).await;
    let retired = app
        .post(&format!("/v1/resources/{id}/retire"), &json!({}))
        .await;
    assert_eq!(retired.status, StatusCode::OK);
    let booking = app
        .book(&id, "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")
        .await;
    assert_problem(&booking, 409, "resource-retired");
    let again = app
        .post(&format!("/v1/resources/{id}/retire"), &json!({}))
        .await;
    assert_problem(&again, 409, "invalid-transition");
}

#[tokio::test]
async fn capacity_cannot_drop_below_what_reservations_need() {
    let app = spawn_app().await;
    let id = app.resource(2).await;
    for _ in 0..2 {
        let b = app
            .book(&id, "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")
            .await;
        assert_eq!(b.status, StatusCode::CREATED);
    }
    let lower = app
        .send(
            Method::PATCH,
            &format!("/v1/resources/{id}"),
            Some(&app.planner),
            Some(&json!({"capacity": 1})),
            &[],
        )
        .await;
    assert_problem(&lower, 409, "capacity-in-use");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = spawn_app().await;
    let unknown = app
        .post(
            &format!("/v1/resources/{}/retire", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_problem(&unknown, 404, "not-found");
    let malformed = app
        .post("/v1/resources/not-a-uuid/retire", &json!({}))
        .await;
    assert_problem(&malformed, 404, "not-found");
}
