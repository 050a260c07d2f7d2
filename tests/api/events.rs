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

/// "Who cancelled this booking, and when?" without paging the whole feed.
#[tokio::test]
async fn the_feed_answers_an_audit_by_stream_type_actor_and_time() {
    let app = crate::helpers::spawn_app().await;
    let hall = app.resource(1).await;
    let kept = app
        .book(&hall, "2030-03-01T10:00:00Z", "2030-03-01T11:00:00Z")
        .await;
    let gone = app
        .book(&hall, "2030-03-02T10:00:00Z", "2030-03-02T11:00:00Z")
        .await;
    let gone_id = gone.body["id"].as_str().unwrap().to_owned();
    let before_cancel = chrono::Utc::now();
    let cancelled = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{gone_id}/cancel"),
            Some(&app.admin),
            Some(&serde_json::json!({"reason": "client called"})),
            &[],
        )
        .await;
    assert_eq!(cancelled.status, reqwest::StatusCode::OK);
    let admin_id = app.get("/v1/whoami", &app.admin).await.body["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let planner_id = app.get("/v1/whoami", &app.planner).await.body["key_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let types = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let history = app
        .get(&format!("/v1/events?stream_id={gone_id}"), &app.analyst)
        .await;
    assert_eq!(
        history.status,
        reqwest::StatusCode::OK,
        "{:?}",
        history.body
    );
    assert_eq!(
        types(&history),
        [
            "booking.requested",
            "reservation.added",
            "booking.cancelled",
            "reservation.released"
        ]
    );
    let who = app
        .get(
            &format!("/v1/events?event_type=booking.cancelled&actor={admin_id}"),
            &app.analyst,
        )
        .await;
    assert_eq!(types(&who), ["booking.cancelled"]);
    assert_eq!(who.body["events"][0]["stream_id"], gone_id.as_str());
    let by_planner = app
        .get(
            &format!("/v1/events?actor={planner_id}&stream_type=booking"),
            &app.analyst,
        )
        .await;
    assert_eq!(
        by_planner.body["events"].as_array().unwrap().len(),
        4,
        "two bookings, two events each"
    );
    let since = before_cancel.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let late = app
        .get(
            &format!("/v1/events?from={}", since.replace('+', "%2B")),
            &app.analyst,
        )
        .await;
    assert_eq!(types(&late), ["booking.cancelled", "reservation.released"]);
    let bad = app
        .get(
            "/v1/events?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
            &app.analyst,
        )
        .await;
    assert_eq!(bad.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);

    // The booking detail names who changed its status.
    let position = cancelled.body["position"].as_i64().unwrap();
    let detail = app
        .get(
            &format!("/v1/bookings/{gone_id}?consistent_with={position}"),
            &app.analyst,
        )
        .await;
    let actors: Vec<&str> = detail.body["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, [planner_id.as_str(), admin_id.as_str()]);
    let _ = kept;
}
