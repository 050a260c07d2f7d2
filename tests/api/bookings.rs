use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, booking, event_count, fields, spawn_app};

#[tokio::test]
async fn a_booking_with_a_reservation_is_created_and_overlaps_conflict() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let first = app
        .book(
            &hall,
            "2027-06-12T14:00:00+02:00",
            "2027-06-12T23:00:00+02:00",
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["status"], "requested");
    assert_eq!(first.body["version"], 2);
    let reservation = &first.body["reservations"][0];
    // Stored and answered in UTC.
    assert_eq!(reservation["starts_at"], "2027-06-12T12:00:00Z");

    let clash = app
        .book(
            &hall,
            "2027-06-12T22:00:00+02:00",
            "2027-06-13T02:00:00+02:00",
        )
        .await;
    assert_problem(&clash, 409, "reservation-conflict");
    let conflict = &clash.body["conflicts"][0];
    assert_eq!(conflict["reservation_id"], reservation["reservation_id"]);
    assert_eq!(conflict["booking_id"], first.body["id"]);
    assert_eq!(conflict["resource_id"], hall);

    // Back to back is not an overlap.
    let next = app
        .book(
            &hall,
            "2027-06-12T23:00:00+02:00",
            "2027-06-13T02:00:00+02:00",
        )
        .await;
    assert_eq!(next.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_failed_multi_reservation_booking_writes_nothing() {
    let app = spawn_app().await;
    let a = app.resource(1).await;
    let b = app.resource(1).await;
    app.book(&b, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let before = event_count(&app).await;
    let mut body = booking(&a, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    body["reservations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource_id": b, "starts_at": "2030-01-01T11:00:00Z", "ends_at": "2030-01-01T13:00:00Z"}));
    let refused = app.post("/v1/bookings", &body).await;
    assert_problem(&refused, 409, "reservation-conflict");
    assert_eq!(event_count(&app).await, before);
    // Resource a is still free.
    let free = app
        .book(&a, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    assert_eq!(free.status, StatusCode::CREATED);
}

#[tokio::test]
async fn invalid_bookings_name_their_fields() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let mut body = booking(&hall, "2030-01-01T12:00:00Z", "2030-01-01T10:00:00Z");
    body["client"]["email"] = json!("nope");
    let answer = app.post("/v1/bookings", &body).await;
    assert_problem(&answer, 422, "validation");
    assert_eq!(
        fields(&answer),
        ["client.email", "ends_at", "reservations[0].ends_at"]
    );

    let ghost = uuid::Uuid::now_v7().to_string();
    let mut body = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    body["reservations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource_id": ghost, "starts_at": "2030-01-02T10:00:00Z", "ends_at": "2030-01-02T12:00:00Z"}));
    let unknown = app.post("/v1/bookings", &body).await;
    assert_problem(&unknown, 422, "validation");
    assert_eq!(fields(&unknown), ["reservations[1].resource_id"]);

    let mut no_offset = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    no_offset["starts_at"] = json!("2030-01-01T10:00:00");
    let no_offset = app.post("/v1/bookings", &no_offset).await;
    assert_eq!(fields(&no_offset), ["starts_at"]);
    let too_long = app
        .post(
            "/v1/bookings",
            &booking(&hall, "2030-01-01T10:00:00Z", "2032-01-01T12:00:00Z"),
        )
        .await;
    assert_problem(&too_long, 422, "validation");
    for (from, to) in [
        ("+12000-01-01T10:00:00Z", "+12000-01-01T12:00:00Z"),
        ("0000-01-01T10:00:00Z", "0000-01-01T12:00:00Z"),
    ] {
        let out_of_range = app.post("/v1/bookings", &booking(&hall, from, to)).await;
        assert_problem(&out_of_range, 422, "validation");
    }
    assert_eq!(event_count(&app).await, 1, "only the resource was recorded");
}

#[tokio::test]
async fn the_status_machine_runs_and_refuses_other_transitions() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let created = app
        .book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let id = created.body["id"].as_str().unwrap();
    let start_too_early = app
        .post(&format!("/v1/bookings/{id}/start"), &json!({}))
        .await;
    assert_problem(&start_too_early, 409, "invalid-transition");
    for (action, status) in [
        ("confirm", "confirmed"),
        ("start", "in_progress"),
        ("complete", "completed"),
    ] {
        let answer = app
            .send(
                Method::POST,
                &format!("/v1/bookings/{id}/{action}"),
                Some(&app.planner),
                None,
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{action}: {:?}", answer.body);
        assert_eq!(answer.body["status"], status);
    }
    let cancel = app
        .post(
            &format!("/v1/bookings/{id}/cancel"),
            &json!({"reason": "late"}),
        )
        .await;
    assert_problem(&cancel, 409, "invalid-transition");
    let junk = app
        .post(&format!("/v1/bookings/{id}/confirm"), &json!({"extra": 1}))
        .await;
    assert_problem(&junk, 422, "validation");
}

#[tokio::test]
async fn cancelling_or_releasing_frees_the_slot() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let (from, to) = ("2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    let first = app.book(&hall, from, to).await;
    let id = first.body["id"].as_str().unwrap();
    let cancelled = app
        .post(
            &format!("/v1/bookings/{id}/cancel"),
            &json!({"reason": "rain"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");

    let second = app.book(&hall, from, to).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let id = second.body["id"].as_str().unwrap();
    let rid = second.body["reservations"][0]["reservation_id"]
        .as_str()
        .unwrap();
    let released = app
        .send(
            Method::DELETE,
            &format!("/v1/bookings/{id}/reservations/{rid}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{:?}", released.body);
    let gone = app
        .send(
            Method::DELETE,
            &format!("/v1/bookings/{id}/reservations/{rid}"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_problem(&gone, 404, "not-found");
    let third = app.book(&hall, from, to).await;
    assert_eq!(third.status, StatusCode::CREATED);

    // Adding a reservation to an existing booking is checked the same way.
    let clash = app
        .post(
            &format!("/v1/bookings/{id}/reservations"),
            &json!({"resource_id": hall, "starts_at": from, "ends_at": to}),
        )
        .await;
    assert_problem(&clash, 409, "reservation-conflict");
    let later = app
        .post(
            &format!("/v1/bookings/{id}/reservations"),
            &json!({"resource_id": hall, "starts_at": to, "ends_at": "2030-01-01T13:00:00Z"}),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED);
    assert!(later.body["reservations"][0]["reservation_id"].is_string());
}

#[tokio::test]
async fn tasks_are_added_with_known_assignees_and_completed() {
    let app = spawn_app().await;
    let chef = app.resource(1).await;
    let created = app
        .book(&chef, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let id = created.body["id"].as_str().unwrap();
    let ghost = app
        .post(
            &format!("/v1/bookings/{id}/tasks"),
            &json!({"title": "Cook", "assignee_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_problem(&ghost, 422, "validation");
    assert_eq!(fields(&ghost), ["assignee_id"]);
    let task = app
        .post(
            &format!("/v1/bookings/{id}/tasks"),
            &json!({"title": "Cook", "assignee_id": chef, "due_at": "2030-01-01T09:00:00Z"}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{:?}", task.body);
    let tid = task.body["task_id"].as_str().unwrap();
    let done = app
        .post(
            &format!("/v1/bookings/{id}/tasks/{tid}/complete"),
            &json!({}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let twice = app
        .post(
            &format!("/v1/bookings/{id}/tasks/{tid}/complete"),
            &json!({}),
        )
        .await;
    assert_problem(&twice, 409, "invalid-transition");
}
