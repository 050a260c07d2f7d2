//! Check-in, no-shows and approval that expires (SPEC §12): a booking not
//! checked in (or not confirmed) by its resource's deadline stops
//! counting at that instant in every check, before any sweeper has run;
//! the sweeper then records `booking.no_show` (or `booking.expired`) and
//! releases it, and the client's history counts it.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, fields, spawn_app};

async fn resource_with(app: &TestApp, policy: Value) -> String {
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name": "Desk", "kind": "room", "capacity": 1, "policy": policy}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// `now + secs`, to the millisecond.
fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn booking(resource: &str, from: &str, to: &str, email: &str) -> Value {
    json!({
        "title": "Desk day", "client": {"name": "Dee", "email": email},
        "starts_at": from, "ends_at": to, "headcount": 1,
        "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to}]
    })
}

async fn recorded(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("select count(*) from events where event_type = $1")
        .bind(event_type)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Waits (at most 10 s) until an event of `event_type` is recorded.
async fn until_recorded(app: &TestApp, event_type: &str) {
    let started = Instant::now();
    while recorded(app, event_type).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{event_type} was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sleep_until(at: &str) {
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let left = at.signed_duration_since(Utc::now());
    if let Ok(left) = left.to_std() {
        tokio::time::sleep(left).await;
    }
}

#[tokio::test]
async fn a_booking_not_checked_in_stops_counting_at_its_deadline_before_any_sweeper() {
    let app = spawn_app().await;
    let desk = resource_with(&app, json!({"check_in_within": "PT1S"})).await;
    let (from, to) = (in_secs(2), in_secs(3600));
    let missed = app
        .post(
            "/v1/bookings",
            &booking(&desk, &from, &to, "Dee@Example.com"),
        )
        .await;
    assert_eq!(missed.status, StatusCode::CREATED, "{:?}", missed.body);
    let missed_id = missed.body["id"].as_str().unwrap().to_owned();
    // Until the deadline the desk is taken.
    let early = app
        .post(
            "/v1/bookings",
            &booking(&desk, &from, &to, "eve@example.com"),
        )
        .await;
    assert_problem(&early, 409, "reservation-conflict");

    // Just past the deadline (start + 1 s) it is free at once, before the
    // sweeper (which waits a second past a deadline) recorded anything.
    sleep_until(&in_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [desk], "starts_at": from, "ends_at": to}),
        )
        .await;
    let taken = app
        .post(
            "/v1/bookings",
            &booking(&desk, &in_secs(60), &to, "eve@example.com"),
        )
        .await;
    assert_eq!(
        recorded(&app, "booking.no_show").await,
        0,
        "no sweeper ran yet"
    );
    assert_eq!(taken.status, StatusCode::CREATED, "{:?}", taken.body);
    assert_eq!(check.status, StatusCode::OK, "{:?}", check.body);
    assert_eq!(check.body["available"], true, "{:?}", check.body);

    // Too late to check in now.
    let late = app
        .post(&format!("/v1/bookings/{missed_id}/check-in"), &json!({}))
        .await;
    assert_problem(&late, 409, "invalid-transition");

    // The sweeper records the no-show and releases the booking.
    until_recorded(&app, "booking.no_show").await;
    let position = recorded(&app, "booking.no_show").await;
    assert_eq!(position, 1);
    let started = Instant::now();
    loop {
        let read = app
            .get(&format!("/v1/bookings/{missed_id}"), &app.analyst)
            .await;
        if read.body["no_show"] == true {
            assert_eq!(read.body["status"], "cancelled");
            // Released from the deadline on: what is left ends there.
            let kept = &read.body["reservations"][0];
            let start = chrono::DateTime::parse_from_rfc3339(kept["starts_at"].as_str().unwrap());
            let end = chrono::DateTime::parse_from_rfc3339(kept["ends_at"].as_str().unwrap());
            assert_eq!(end.unwrap() - start.unwrap(), chrono::Duration::seconds(1));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            read.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing of it is overdue any more (the sweeper would find it again).
    let overdue: i64 = sqlx::query_scalar(
        "select count(*) from reservations where booking_id = $1::uuid
            and (expires_at is not null or check_in_by is not null or approve_by is not null)",
    )
    .bind(&missed_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(overdue, 0);
    let history = app.get("/v1/clients/dee@example.com", &app.analyst).await;
    assert_eq!(history.status, StatusCode::OK, "{:?}", history.body);
    assert_eq!(history.body["bookings"], 1);
    assert_eq!(history.body["no_shows"], 1);
    assert_eq!(history.body["cancellations"], 0);
    assert_eq!(history.body["recent"][0]["id"], missed_id.as_str());
}

#[tokio::test]
async fn a_checked_in_booking_keeps_its_resource_and_check_in_has_a_window() {
    let app = spawn_app().await;
    let desk = resource_with(&app, json!({"check_in_within": "PT2S"})).await;
    let (from, to) = (in_secs(1), in_secs(3600));
    let made = app
        .post(
            "/v1/bookings",
            &booking(&desk, &from, &to, "dee@example.com"),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let checked = app
        .post(&format!("/v1/bookings/{id}/check-in"), &json!({}))
        .await;
    assert_eq!(checked.status, StatusCode::OK, "{:?}", checked.body);
    let again = app
        .post(&format!("/v1/bookings/{id}/check-in"), &json!({}))
        .await;
    assert_problem(&again, 409, "invalid-transition");
    // Moved after its check-in, it gets no new check-in deadline.
    let longer = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": from, "ends_at": in_secs(7200)}),
        )
        .await;
    assert_eq!(longer.status, StatusCode::OK, "{:?}", longer.body);

    sleep_until(&in_secs(4)).await;
    let other = app
        .post(
            "/v1/bookings",
            &booking(&desk, &in_secs(60), &to, "eve@example.com"),
        )
        .await;
    assert_problem(&other, 409, "reservation-conflict");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(recorded(&app, "booking.no_show").await, 0);

    // A booking three hours ahead cannot be checked in yet; nothing is
    // written.
    let later = app
        .post(
            "/v1/bookings",
            &booking(
                &desk,
                &in_secs(3 * 3600),
                &in_secs(4 * 3600),
                "dee@example.com",
            ),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{:?}", later.body);
    let later_id = later.body["id"].as_str().unwrap();
    let before = recorded(&app, "booking.checked_in").await;
    let early = app
        .post(&format!("/v1/bookings/{later_id}/check-in"), &json!({}))
        .await;
    assert_problem(&early, 409, "invalid-transition");
    assert!(
        early.body["detail"]
            .as_str()
            .unwrap()
            .contains("check-in opens at")
    );
    assert_eq!(recorded(&app, "booking.checked_in").await, before);
    let unknown = app
        .post(
            "/v1/bookings/018f2a8e-0000-7000-8000-000000000000/check-in",
            &json!({}),
        )
        .await;
    assert_problem(&unknown, 404, "not-found");
}

#[tokio::test]
async fn a_request_left_unconfirmed_past_its_approval_timeout_stops_counting_and_expires() {
    let app = spawn_app().await;
    let room = resource_with(&app, json!({"approval_timeout": "PT1S"})).await;
    let (from, to) = (in_secs(3600), in_secs(7200));
    let waiting = app
        .post(
            "/v1/bookings",
            &booking(&room, &from, &to, "dee@example.com"),
        )
        .await;
    assert_eq!(waiting.status, StatusCode::CREATED);
    let waiting_id = waiting.body["id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post(
            "/v1/bookings",
            &booking(&room, &in_secs(9000), &in_secs(9600), "eve@example.com"),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::CREATED);
    let confirmed_id = confirmed.body["id"].as_str().unwrap().to_owned();
    let ok = app
        .post(&format!("/v1/bookings/{confirmed_id}/confirm"), &json!({}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let taken = app
        .post(
            "/v1/bookings",
            &booking(&room, &from, &to, "fay@example.com"),
        )
        .await;
    assert_eq!(
        recorded(&app, "booking.expired").await,
        0,
        "no sweeper ran yet"
    );
    assert_eq!(taken.status, StatusCode::CREATED, "{:?}", taken.body);
    // Confirming the expired request now would put two bookings on the room.
    let too_late = app
        .post(&format!("/v1/bookings/{waiting_id}/confirm"), &json!({}))
        .await;
    assert_problem(&too_late, 409, "invalid-transition");
    // The confirmed one still holds its time.
    let clash = app
        .post(
            "/v1/bookings",
            &booking(&room, &in_secs(9000), &in_secs(9600), "fay@example.com"),
        )
        .await;
    assert_problem(&clash, 409, "reservation-conflict");

    until_recorded(&app, "booking.expired").await;
    let requested = app.get("/v1/bookings?status=requested", &app.analyst).await;
    assert!(
        requested.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["id"] != waiting_id.as_str()),
        "{:?}",
        requested.body
    );
}

#[tokio::test]
async fn deadlines_must_be_positive_durations() {
    let app = spawn_app().await;
    for (policy, field) in [
        (json!({"check_in_within": "PT0S"}), "policy.check_in_within"),
        (
            json!({"approval_timeout": "P0D"}),
            "policy.approval_timeout",
        ),
    ] {
        let answer = app
            .post(
                "/v1/resources",
                &json!({"name": "Desk", "kind": "room", "policy": policy}),
            )
            .await;
        assert_problem(&answer, 422, "validation");
        assert_eq!(fields(&answer), [field]);
    }
}

#[tokio::test]
async fn a_no_show_of_a_booking_that_ended_before_its_deadline_is_recorded_once() {
    let app = spawn_app().await;
    // The deadline (start + 2 s) comes after the booking's end (start +
    // 1 s): nothing is left to release, and nothing may stay overdue.
    let desk = resource_with(&app, json!({"check_in_within": "PT2S"})).await;
    let made = app
        .post(
            "/v1/bookings",
            &booking(&desk, &in_secs(1), &in_secs(2), "dee@example.com"),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    until_recorded(&app, "booking.no_show").await;
    // Sweeps keep running every second; the booking is not found again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(recorded(&app, "booking.no_show").await, 1);
    let overdue: i64 = sqlx::query_scalar(
        "select count(*) from reservations where booking_id = $1::uuid and expires_at is not null",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(overdue, 0);
}
