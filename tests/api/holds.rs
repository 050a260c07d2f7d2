//! Holds count against capacity like reservations until their expiry
//! instant, without any sweeper; converting one is atomic.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, booking, feed_types, fields, spawn_app};

const FROM: &str = "2030-04-02T10:00:00Z";
const TO: &str = "2030-04-02T12:00:00Z";

async fn hold(app: &TestApp, resource: &str, ttl: &str) -> crate::helpers::Answer {
    app.post(
        "/v1/holds",
        &json!({"resource_id": resource, "starts_at": FROM, "ends_at": TO, "ttl": ttl}),
    )
    .await
}

fn converting(hold_id: &str) -> Value {
    json!({
        "title": "Checkout", "client": {"name": "Bo"},
        "starts_at": FROM, "ends_at": TO,
        "reservations": [{"hold_id": hold_id, "label": "room"}]
    })
}

#[tokio::test]
async fn a_hold_blocks_others_until_converted_atomically() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let placed = hold(&app, &room, "PT10M").await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let hold_id = placed.body["id"].as_str().unwrap().to_owned();
    let expires: DateTime<Utc> = placed.body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - Utc::now();
    assert!(ttl > chrono::Duration::minutes(9) && ttl <= chrono::Duration::minutes(10));

    // Every check counts it.
    let other = app
        .book(&room, "2030-04-02T11:00:00Z", "2030-04-02T13:00:00Z")
        .await;
    assert_problem(&other, 409, "reservation-conflict");
    assert_eq!(
        other.body["conflicts"][0]["reservation_id"],
        hold_id.as_str()
    );
    assert!(other.body["conflicts"][0]["hold_expires_at"].is_string());
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [room], "starts_at": FROM, "ends_at": TO}),
        )
        .await;
    assert_eq!(check.body["available"], false);
    let slots = app
        .get(
            &format!("/v1/availability?resource_ids={room}&from=2030-04-02T00:00:00Z&to=2030-04-03T00:00:00Z&duration=60"),
            &app.analyst,
        )
        .await;
    assert_eq!(
        slots.body["resources"][0]["slots"],
        json!([
            {"starts_at": "2030-04-02T00:00:00Z", "ends_at": FROM},
            {"starts_at": TO, "ends_at": "2030-04-03T00:00:00Z"}
        ])
    );
    let shown = app.get(&format!("/v1/holds/{hold_id}"), &app.analyst).await;
    assert_eq!(shown.body["status"], "active", "{:?}", shown.body);
    let schedule = app
        .get(
            &format!(
                "/v1/resources/{room}/schedule?from=2030-04-02T00:00:00Z&to=2030-04-03T00:00:00Z"
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(schedule.status, StatusCode::OK, "{:?}", schedule.body);
    assert_eq!(schedule.body["entries"][0]["status"], "held");
    assert_eq!(
        schedule.body["entries"][0]["reservation_id"],
        hold_id.as_str()
    );
    assert!(schedule.body["entries"][0]["expires_at"].is_string());

    // Converted, with an idempotency key: the replay answers the same.
    let key = "convert-1";
    let converted = app
        .post_keyed("/v1/bookings", &converting(&hold_id), key)
        .await;
    assert_eq!(
        converted.status,
        StatusCode::CREATED,
        "{:?}",
        converted.body
    );
    assert_eq!(
        converted.body["reservations"][0]["resource_id"],
        room.as_str()
    );
    let replayed = app
        .post_keyed("/v1/bookings", &converting(&hold_id), key)
        .await;
    assert_eq!(replayed.body, converted.body);
    let booking_id = converted.body["id"].as_str().unwrap();
    let shown = app.get(&format!("/v1/holds/{hold_id}"), &app.analyst).await;
    assert_eq!(shown.body["status"], "converted");
    assert_eq!(shown.body["booking_id"], booking_id);
    assert_eq!(
        feed_types(&app, &hold_id).await,
        ["hold.placed", "hold.converted"]
    );

    // The booking holds the slot now, and the hold cannot be used again.
    let again = app.post("/v1/bookings", &converting(&hold_id)).await;
    assert_problem(&again, 409, "invalid-transition");
    let other = app.book(&room, FROM, TO).await;
    assert_problem(&other, 409, "reservation-conflict");
    assert_eq!(other.body["conflicts"][0]["booking_id"], booking_id);
    let released = app
        .send(
            Method::DELETE,
            &format!("/v1/holds/{hold_id}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_problem(&released, 409, "invalid-transition");
}

#[tokio::test]
async fn a_hold_stops_counting_at_its_expiry_instant_without_a_sweeper() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let first = hold(&app, &room, "PT1S").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let first_id = first.body["id"].as_str().unwrap().to_owned();
    let expires: DateTime<Utc> = first.body["expires_at"].as_str().unwrap().parse().unwrap();
    // Before the instant: refused.
    assert!(Utc::now() < expires);
    let early = app.book(&room, FROM, TO).await;
    assert_problem(&early, 409, "reservation-conflict");
    // Just after it: admitted. The sweeper records `hold.expired` only a
    // second after the instant, so this does not depend on it.
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(20);
    tokio::time::sleep(wait).await;
    let shown = app
        .get(&format!("/v1/holds/{first_id}"), &app.analyst)
        .await;
    assert_eq!(shown.body["status"], "expired");
    let taken = app.book(&room, FROM, TO).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{:?}", taken.body);

    // Converting the expired hold now fails: its range is taken.
    let late = app.post("/v1/bookings", &converting(&first_id)).await;
    assert_problem(&late, 409, "reservation-conflict");

    // An expired hold whose range is still free converts.
    let other_room = app.resource(1).await;
    let second = hold(&app, &other_room, "PT1S").await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let converted = app.post("/v1/bookings", &converting(&second_id)).await;
    assert_eq!(
        converted.status,
        StatusCode::CREATED,
        "{:?}",
        converted.body
    );

    // The feed learns of the first one's expiry afterwards.
    let mut types = Vec::new();
    for _ in 0..50 {
        types = feed_types(&app, &first_id).await;
        if types.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(types, ["hold.placed", "hold.expired"]);
}

#[tokio::test]
async fn holds_are_released_and_refuse_bad_input() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let placed = hold(&app, &room, "PT5M").await;
    let hold_id = placed.body["id"].as_str().unwrap().to_owned();
    let released = app
        .send(
            Method::DELETE,
            &format!("/v1/holds/{hold_id}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{:?}", released.body);
    let fits = app.post("/v1/bookings", &booking(&room, FROM, TO)).await;
    assert_eq!(fits.status, StatusCode::CREATED, "{:?}", fits.body);
    let shown = app.get(&format!("/v1/holds/{hold_id}"), &app.analyst).await;
    assert_eq!(shown.body["status"], "released");
    let converted = app.post("/v1/bookings", &converting(&hold_id)).await;
    assert_problem(&converted, 409, "invalid-transition");

    let missing = app.get(&format!("/v1/holds/{room}"), &app.analyst).await;
    assert_problem(&missing, 404, "not-found");
    for (body, field) in [
        (
            json!({"resource_id": room, "starts_at": FROM, "ends_at": TO, "ttl": "PT2H"}),
            "ttl",
        ),
        (
            json!({"resource_id": room, "starts_at": TO, "ends_at": FROM}),
            "ends_at",
        ),
        (
            json!({"resource_id": hold_id, "starts_at": FROM, "ends_at": TO}),
            "resource_id",
        ),
    ] {
        let answer = app.post("/v1/holds", &body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(fields(&answer), [field], "{body}");
    }
    let both = json!({
        "title": "x", "client": {"name": "y"}, "starts_at": FROM, "ends_at": TO,
        "reservations": [{"hold_id": hold_id, "resource_id": room}]
    });
    let answer = app.post("/v1/bookings", &both).await;
    assert_eq!(fields(&answer), ["reservations[0].hold_id"]);
    let unknown = app.post("/v1/bookings", &converting(&room)).await;
    assert_eq!(fields(&unknown), ["reservations[0].hold_id"]);
    let analyst = app
        .send(
            Method::POST,
            "/v1/holds",
            Some(&app.analyst),
            Some(&json!({"resource_id": room, "starts_at": FROM, "ends_at": TO})),
            &[],
        )
        .await;
    assert_problem(&analyst, 403, "forbidden");
}
