//! Seats and booking policy: buffers, notice, horizon and enforced working
//! hours, decided by one rule that bookings, moves, the conflict check,
//! availability and the free-resource search share.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, booking, spawn_app};

async fn register(app: &TestApp, body: Value) -> String {
    let answer = app.post("/v1/resources", &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn with_headcount(mut body: Value, headcount: u32) -> Value {
    body["headcount"] = json!(headcount);
    body
}

#[tokio::test]
async fn seats_buffers_and_working_hours_are_enforced_with_the_planners_override() {
    let app = spawn_app().await;
    // A catering hall in Berlin: Saturdays 08:00-24:00, 120 seats, an hour
    // to set up and thirty minutes to clean.
    let hall = register(
        &app,
        json!({"name": "Hall A", "kind": "room", "timezone": "Europe/Berlin",
               "working_hours": [{"weekday": "sat", "start": "08:00", "end": "24:00"}],
               "seats": 120,
               "policy": {"buffer_before": "PT1H", "buffer_after": "PT30M"}}),
    )
    .await;

    // Saturday 2030-06-15, CEST: 14:00-18:00 local is 12:00-16:00Z.
    let first = app
        .post(
            "/v1/bookings",
            &with_headcount(
                booking(&hall, "2030-06-15T12:00:00Z", "2030-06-15T16:00:00Z"),
                120,
            ),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let position = first.body["position"].as_i64().unwrap();
    let shown = app
        .get(
            &format!("/v1/resources/{hall}?consistent_with={position}"),
            &app.analyst,
        )
        .await;
    assert_eq!(shown.body["seats"], 120, "{:?}", shown.body);
    assert_eq!(shown.body["policy"]["buffer_before"], "PT1H");
    assert_eq!(shown.body["policy"]["buffer_after"], "PT30M");

    let too_many = app
        .post(
            "/v1/bookings",
            &with_headcount(
                booking(&hall, "2030-06-22T12:00:00Z", "2030-06-22T16:00:00Z"),
                121,
            ),
        )
        .await;
    assert_problem(&too_many, 409, "seats-exceeded");

    // Back to back is not enough: the clean-up (until 16:30Z) and the next
    // set-up (an hour) must fit between. 17:29Z is too early, 17:30Z fits.
    let early = app
        .book(&hall, "2030-06-15T17:29:00Z", "2030-06-15T19:00:00Z")
        .await;
    assert_problem(&early, 409, "reservation-conflict");
    assert_eq!(early.body["conflicts"][0]["booking_id"], first.body["id"]);
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [hall], "starts_at": "2030-06-15T17:29:00Z",
                    "ends_at": "2030-06-15T19:00:00Z"}),
        )
        .await;
    assert_eq!(check.body["available"], false, "{:?}", check.body);
    let slots = app
        .get(
            &format!(
                "/v1/availability?resource_ids={hall}&from=2030-06-15T00:00:00Z&to=2030-06-16T00:00:00Z&duration=90"
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{:?}", slots.body);
    // Working hours 06:00Z-22:00Z; the booking with its buffers takes
    // 11:00Z-16:30Z, and a new one needs its own buffers clear of it.
    assert_eq!(
        slots.body["resources"][0]["slots"],
        json!([
            {"starts_at": "2030-06-15T06:00:00Z", "ends_at": "2030-06-15T10:30:00Z"},
            {"starts_at": "2030-06-15T17:30:00Z", "ends_at": "2030-06-15T22:00:00Z"}
        ])
    );
    let fits = app
        .book(&hall, "2030-06-15T17:30:00Z", "2030-06-15T19:00:00Z")
        .await;
    assert_eq!(fits.status, StatusCode::CREATED, "{:?}", fits.body);

    // A Sunday is outside working hours, unless a planner says so.
    let sunday = app
        .book(&hall, "2030-06-16T10:00:00Z", "2030-06-16T12:00:00Z")
        .await;
    assert_problem(&sunday, 409, "outside-working-hours");
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [hall], "starts_at": "2030-06-16T10:00:00Z",
                    "ends_at": "2030-06-16T12:00:00Z"}),
        )
        .await;
    assert_eq!(
        check.body["resources"][0]["reason"],
        "outside-working-hours"
    );
    let mut override_body = booking(&hall, "2030-06-16T10:00:00Z", "2030-06-16T12:00:00Z");
    override_body["reservations"][0]["outside_working_hours"] = json!(true);
    let overridden = app.post("/v1/bookings", &override_body).await;
    assert_eq!(
        overridden.status,
        StatusCode::CREATED,
        "{:?}",
        overridden.body
    );
    let events = app
        .get(
            &format!(
                "/v1/events?after={}&limit=10",
                overridden.body["position"].as_i64().unwrap() - 3
            ),
            &app.admin,
        )
        .await;
    let added = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "reservation.added" && e["stream_id"] == overridden.body["id"])
        .expect("the reservation.added event");
    assert_eq!(added["data"]["outside_working_hours"], true);

    // A reschedule is checked by the same rule: not onto the Sunday.
    let id = fits.body["id"].as_str().unwrap();
    let moved = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-06-16T17:30:00Z", "ends_at": "2030-06-16T19:00:00Z"}),
        )
        .await;
    assert_problem(&moved, 409, "outside-working-hours");

    // Raising the headcount past the seats is refused too.
    let first_id = first.body["id"].as_str().unwrap();
    let raised = app
        .send(
            Method::PATCH,
            &format!("/v1/bookings/{first_id}"),
            Some(&app.planner),
            Some(&json!({"headcount": 150})),
            &[],
        )
        .await;
    assert_problem(&raised, 409, "seats-exceeded");
}

#[tokio::test]
async fn notice_and_horizon_bound_the_start() {
    let app = spawn_app().await;
    let barber = register(
        &app,
        json!({"name": "Sam", "kind": "staff",
               "policy": {"min_notice": "PT2H", "max_advance": "P30D"}}),
    )
    .await;
    let now = Utc::now();
    let soon = app
        .book(
            &barber,
            &iso(now + Duration::hours(1)),
            &iso(now + Duration::hours(2)),
        )
        .await;
    assert_problem(&soon, 409, "too-soon");
    let far = app
        .book(
            &barber,
            &iso(now + Duration::days(31)),
            &iso(now + Duration::days(31) + Duration::hours(1)),
        )
        .await;
    assert_problem(&far, 409, "too-far-ahead");
    let fine = app
        .book(
            &barber,
            &iso(now + Duration::hours(3)),
            &iso(now + Duration::hours(4)),
        )
        .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{:?}", fine.body);

    // The policy can be changed, and bad durations are 422 naming the part.
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/resources/{barber}"),
            Some(&app.planner),
            Some(&json!({"policy": {}})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let soon = app
        .book(
            &barber,
            &iso(now + Duration::hours(1)),
            &iso(now + Duration::hours(2)),
        )
        .await;
    assert_eq!(soon.status, StatusCode::CREATED, "{:?}", soon.body);
    for bad in [
        json!({"policy": {"buffer_before": "P2D"}}),
        json!({"policy": {"min_notice": "P1M"}}),
        json!({"policy": {"min_notice": "P2D", "max_advance": "P1D"}}),
        json!({"policy": {"buffer_after": 30}}),
        json!({"seats": 0}),
    ] {
        let answer = app
            .send(
                Method::PATCH,
                &format!("/v1/resources/{barber}"),
                Some(&app.planner),
                Some(&bad),
                &[],
            )
            .await;
        assert!(
            answer.status == StatusCode::UNPROCESSABLE_ENTITY
                || answer.status == StatusCode::BAD_REQUEST,
            "{bad}: {:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn the_free_search_honours_seats_buffers_and_working_hours() {
    let app = spawn_app().await;
    let small = register(&app, json!({"name": "S", "kind": "room", "seats": 20})).await;
    let big = register(
        &app,
        json!({"name": "B", "kind": "room", "seats": 200,
               "policy": {"buffer_after": "PT1H"}}),
    )
    .await;
    let weekdays = register(
        &app,
        json!({"name": "W", "kind": "room", "seats": 200,
               "working_hours": [{"weekday": "mon", "start": "09:00", "end": "17:00"}]}),
    )
    .await;
    // 2030-06-03 is a Monday.
    let booked = app
        .book(&big, "2030-06-03T08:00:00Z", "2030-06-03T10:00:00Z")
        .await;
    let position = booked.body["position"].as_i64().unwrap();
    let search = |from: &str, to: &str, extra: &str| {
        format!(
            "/v1/resources/free?starts_at={from}&ends_at={to}&kind=room&consistent_with={position}{extra}"
        )
    };
    let ids = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // 10:30Z: inside the big room's clean-up hour.
    let found = app
        .get(
            &search(
                "2030-06-03T10:30:00Z",
                "2030-06-03T12:00:00Z",
                "&min_seats=100",
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(ids(&found), vec![weekdays.clone()], "{:?}", found.body);
    let found = app
        .get(
            &search(
                "2030-06-03T11:00:00Z",
                "2030-06-03T12:00:00Z",
                "&min_seats=100",
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(ids(&found), vec![big.clone(), weekdays.clone()]);
    // Sunday: the weekday room is closed; the small one has too few seats.
    let found = app
        .get(
            &search(
                "2030-06-02T11:00:00Z",
                "2030-06-02T12:00:00Z",
                "&min_seats=100",
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(ids(&found), vec![big.clone()]);
    let found = app
        .get(
            &search("2030-06-02T11:00:00Z", "2030-06-02T12:00:00Z", ""),
            &app.analyst,
        )
        .await;
    assert_eq!(ids(&found), vec![small.clone(), big.clone()]);
}

#[tokio::test]
async fn longer_buffers_are_refused_while_existing_bookings_would_not_fit() {
    let app = spawn_app().await;
    let room = register(&app, json!({"name": "R", "kind": "room"})).await;
    app.book(&room, "2030-06-03T09:00:00Z", "2030-06-03T10:00:00Z")
        .await;
    app.book(&room, "2030-06-03T10:00:00Z", "2030-06-03T11:00:00Z")
        .await;
    let patch = |policy: Value| {
        let app = &app;
        let room = room.clone();
        async move {
            app.send(
                Method::PATCH,
                &format!("/v1/resources/{room}"),
                Some(&app.planner),
                Some(&json!({"policy": policy})),
                &[],
            )
            .await
        }
    };
    // Back to back: any clean-up time would make them overlap.
    let refused = patch(json!({"buffer_after": "PT15M"})).await;
    assert_problem(&refused, 409, "capacity-in-use");
    let fine = app
        .send(
            Method::PATCH,
            &format!("/v1/resources/{room}"),
            Some(&app.planner),
            Some(&json!({"capacity": 2, "policy": {"buffer_after": "PT15M"}})),
            &[],
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK, "{:?}", fine.body);
}

/// The readers that take no locks (the conflict check, availability, the
/// free search) reach around a range by the reach the write side stores
/// with the rule; a stored reach that falls behind the rule (written by an
/// older version, or by hand) must cost a second read, never an answer.
#[tokio::test]
async fn a_stale_stored_reach_never_changes_an_answer() {
    let app = spawn_app().await;
    let room = register(
        &app,
        json!({"name": "R", "kind": "room",
               "policy": {"buffer_before": "PT1H", "buffer_after": "PT30M"}}),
    )
    .await;
    let reach = || async {
        sqlx::query_scalar::<_, i32>(
            "select reach_secs from reservable_resources where resource_id = $1::text::uuid",
        )
        .bind(&room)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    assert_eq!(reach().await, 5400, "registration stores both buffers");
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/resources/{room}"),
            Some(&app.planner),
            Some(&json!({"policy": {"buffer_before": "PT2H", "buffer_after": "PT30M"}})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(reach().await, 9000, "a rule change stores its reach");

    let booked = app
        .book(&room, "2030-06-03T08:00:00Z", "2030-06-03T10:00:00Z")
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let position = booked.body["position"].as_i64().unwrap();
    // Make the stored reach fall short: without the rule's own reach the
    // readers would no longer see the booking from 12:00Z (its clean-up
    // ends 10:30Z, the next set-up takes two hours).
    sqlx::query(
        "update reservable_resources set reach_secs = 0 where resource_id = $1::text::uuid",
    )
    .bind(&room)
    .execute(&app.db.pool)
    .await
    .unwrap();

    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [room], "starts_at": "2030-06-03T12:00:00Z",
                    "ends_at": "2030-06-03T13:00:00Z"}),
        )
        .await;
    assert_eq!(check.status, StatusCode::OK, "{:?}", check.body);
    assert_eq!(check.body["available"], false, "{:?}", check.body);
    assert_eq!(
        check.body["resources"][0]["conflicts"][0]["booking_id"],
        booked.body["id"]
    );
    let slots = app
        .get(
            &format!(
                "/v1/availability?resource_ids={room}&from=2030-06-03T00:00:00Z&to=2030-06-04T00:00:00Z&duration=60"
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{:?}", slots.body);
    assert_eq!(
        slots.body["resources"][0]["slots"],
        json!([
            {"starts_at": "2030-06-03T00:00:00Z", "ends_at": "2030-06-03T05:30:00Z"},
            {"starts_at": "2030-06-03T12:30:00Z", "ends_at": "2030-06-04T00:00:00Z"}
        ]),
        "{:?}",
        slots.body
    );
    let free = app
        .get(
            &format!(
                "/v1/resources/free?starts_at=2030-06-03T12:00:00Z&ends_at=2030-06-03T13:00:00Z&kind=room&consistent_with={position}"
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(free.status, StatusCode::OK, "{:?}", free.body);
    assert_eq!(free.body["items"], json!([]), "{:?}", free.body);
    // And a booking there is refused, as all three said.
    let refused = app
        .book(&room, "2030-06-03T12:00:00Z", "2030-06-03T13:00:00Z")
        .await;
    assert_problem(&refused, 409, "reservation-conflict");
}
