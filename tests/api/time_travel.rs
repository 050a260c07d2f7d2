//! Time travel (SPEC §12): a booking and a resource's schedule as muster
//! knew them at a past instant, folded from the events recorded up to it.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

/// When the event of `stream` at `version` was recorded, from the feed.
async fn recorded_at(app: &TestApp, stream: &str, version: i64) -> DateTime<Utc> {
    let feed = app
        .get(
            &format!("/v1/events?after=0&limit=100&stream_id={stream}"),
            &app.planner,
        )
        .await;
    let event = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["version"] == version)
        .unwrap_or_else(|| panic!("version {version} of {stream} in {:?}", feed.body));
    event["recorded_at"].as_str().unwrap().parse().unwrap()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B")
}

/// (resource, start) of each reservation of a booking document.
fn held(document: &Value) -> Vec<(String, String)> {
    document["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource_id"].as_str().unwrap().to_owned(),
                r["starts_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The (booking, start) entries of a resource's schedule in March 2030.
async fn schedule(app: &TestApp, resource: &str, as_of: Option<DateTime<Utc>>) -> Vec<String> {
    let as_of = as_of.map_or(String::new(), |t| format!("&as_of={}", at(t)));
    let answer = app
        .get(
            &format!(
                "/v1/resources/{resource}/schedule?from=2030-03-01T00:00:00Z&to=2030-04-01T00:00:00Z{as_of}"
            ),
            &app.planner,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["starts_at"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_past_answers_what_muster_knew_then() {
    let app = spawn_app().await;
    let (hall, chef) = (app.resource(1).await, app.resource(1).await);
    let created = app
        .post(
            "/v1/bookings",
            &json!({
                "title": "Gala", "client": {"name": "Ann"},
                "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z",
                "reservations": [
                    {"resource_id": hall, "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z"},
                    {"resource_id": chef, "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T11:00:00Z"}
                ]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let created_version = created.body["version"].as_i64().unwrap();
    let requested = recorded_at(&app, &id, 1).await;
    let made = recorded_at(&app, &id, created_version).await;

    let moved = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-05T10:00:00Z", "ends_at": "2030-03-05T12:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let rescheduled = recorded_at(&app, &id, moved.body["version"].as_i64().unwrap()).await;

    // The chef's reservation then moves to the hall.
    let rid = moved.body["reservations"][1]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/bookings/{id}/reservations/{rid}"),
            Some(&app.planner),
            Some(&json!({"resource_id": hall, "starts_at": "2030-03-05T13:00:00Z", "ends_at": "2030-03-05T14:00:00Z"})),
            &[],
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
    let position = one.body["position"].as_i64().unwrap();
    let now = app
        .get(
            &format!("/v1/bookings/{id}?consistent_with={position}"),
            &app.planner,
        )
        .await;
    assert_eq!(now.status, StatusCode::OK);

    // Before the booking existed: not found.
    let before = app
        .get(
            &format!(
                "/v1/bookings/{id}?as_of={}",
                at(requested - Duration::milliseconds(1))
            ),
            &app.planner,
        )
        .await;
    assert_problem(&before, 404, "not-found");

    // As made: the old times, and its version then.
    let then = app
        .get(
            &format!("/v1/bookings/{id}?as_of={}", at(made)),
            &app.planner,
        )
        .await;
    assert_eq!(then.status, StatusCode::OK, "{:?}", then.body);
    assert_eq!(then.body["starts_at"], "2030-03-04T10:00:00Z");
    assert_eq!(then.body["version"], created_version);
    assert_eq!(
        held(&then.body),
        [
            (hall.clone(), "2030-03-04T10:00:00Z".to_owned()),
            (chef.clone(), "2030-03-04T10:00:00Z".to_owned())
        ]
    );
    assert_eq!(then.body["client"]["name"], "Ann");

    // After the reschedule, before the move: the new times, chef still held.
    let later = app
        .get(
            &format!("/v1/bookings/{id}?as_of={}", at(rescheduled)),
            &app.planner,
        )
        .await;
    assert_eq!(later.body["starts_at"], "2030-03-05T10:00:00Z");
    assert_eq!(
        held(&later.body),
        [
            (hall.clone(), "2030-03-05T10:00:00Z".to_owned()),
            (chef.clone(), "2030-03-05T10:00:00Z".to_owned())
        ]
    );

    // As of now, the past fold and the read model agree to the byte.
    let today = app
        .get(
            &format!(
                "/v1/bookings/{id}?as_of={}",
                at(Utc::now() + Duration::seconds(1))
            ),
            &app.planner,
        )
        .await;
    assert_eq!(today.body, now.body);

    // The chef's schedule: its reservation then, gone now.
    assert_eq!(schedule(&app, &chef, None).await, Vec::<String>::new());
    assert_eq!(
        schedule(&app, &chef, Some(made)).await,
        ["2030-03-04T10:00:00Z"]
    );
    assert_eq!(
        schedule(&app, &chef, Some(rescheduled)).await,
        ["2030-03-05T10:00:00Z"]
    );
    assert_eq!(
        schedule(&app, &hall, None).await,
        ["2030-03-05T10:00:00Z", "2030-03-05T13:00:00Z"]
    );
    assert_eq!(
        schedule(&app, &hall, Some(requested - Duration::milliseconds(1))).await,
        Vec::<String>::new()
    );

    // A bad instant is a 422 that names the field.
    let bad = app
        .get(&format!("/v1/bookings/{id}?as_of=yesterday"), &app.planner)
        .await;
    assert_problem(&bad, 422, "validation");
    assert_eq!(bad.body["errors"][0]["field"], "as_of");
}
