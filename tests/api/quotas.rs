//! Quotas (SPEC §12): per client, resource, pool or key, per local day,
//! week or month, by count or hours; enforced in the command's
//! transaction, so that concurrent requests never pass the last unit
//! together; refusals say which quota, period and usage.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, event_count, fields, spawn_app};

async fn define(app: &TestApp, name: &str, body: &Value) -> Value {
    let answer = app
        .send(
            Method::PUT,
            &format!("/v1/quotas/{name}"),
            Some(&app.admin),
            Some(body),
            &[],
        )
        .await;
    assert!(
        answer.status == StatusCode::CREATED || answer.status == StatusCode::OK,
        "{:?}",
        answer.body
    );
    answer.body
}

fn booking_for(resource: &str, email: &str, from: &str, to: &str) -> Value {
    json!({
        "title": "Haircut", "client": {"name": "A client", "email": email},
        "starts_at": from, "ends_at": to, "headcount": 1,
        "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to}]
    })
}

async fn usage(app: &TestApp, quota: &str, subject: &str, at: &str) -> Value {
    let answer = app
        .get(
            &format!("/v1/quotas/{quota}/usage?subject={subject}&at={at}"),
            &app.analyst,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

#[tokio::test]
async fn thirty_two_concurrent_bookings_with_one_unit_left_admit_exactly_one() {
    let app = spawn_app().await;
    let room = app.resource(100).await;
    define(
        &app,
        "three-a-week",
        &json!({"scope": "client", "period": "week", "max_bookings": 3,
                "timezone": "Europe/Berlin"}),
    )
    .await;
    // Monday and Tuesday of one Berlin week; the email's case does not
    // matter.
    for (from, to) in [
        ("2030-05-06T08:00:00Z", "2030-05-06T09:00:00Z"),
        ("2030-05-07T08:00:00Z", "2030-05-07T09:00:00Z"),
    ] {
        let made = app
            .post(
                "/v1/bookings",
                &booking_for(&room, "Ann@Example.com", from, to),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    }
    // Each on a resource of its own: no resource lock puts them in line,
    // only the quota's.
    let mut rooms = Vec::new();
    for _ in 0..32 {
        rooms.push(app.resource(1).await);
    }
    let racing = rooms.iter().enumerate().map(|(i, room)| {
        let body = booking_for(
            room,
            "ann@example.com",
            &format!("2030-05-08T{:02}:00:00Z", 8 + i % 10),
            &format!("2030-05-08T{:02}:30:00Z", 8 + i % 10),
        );
        let app = &app;
        async move { app.post("/v1/bookings", &body).await }
    });
    let answers = join_all(racing).await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    assert_eq!(won, 1, "exactly one takes the last unit");
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status != StatusCode::CREATED)
        .collect();
    for answer in &refused {
        assert_problem(answer, 409, "quota-exceeded");
    }
    let quota = &refused[0].body["quota"];
    assert_eq!(quota["quota"], "three-a-week");
    assert_eq!(quota["subject"], "ann@example.com");
    assert_eq!(quota["max_bookings"], 3);
    assert_eq!(quota["used_bookings"], 3);
    assert_eq!(quota["period_starts_at"], "2030-05-05T22:00:00Z");
    assert_eq!(quota["period_ends_at"], "2030-05-12T22:00:00Z");
    let used = usage(
        &app,
        "three-a-week",
        "ANN@example.com",
        "2030-05-09T12:00:00Z",
    )
    .await;
    assert_eq!(used["bookings"], 3);
    assert_eq!(used["subject"], "ann@example.com");

    // Another client, and the next Berlin week, are untouched.
    let other = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "bo@example.com",
                "2030-05-08T08:00:00Z",
                "2030-05-08T09:00:00Z",
            ),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    let next_week = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-05-12T22:30:00Z",
                "2030-05-12T23:00:00Z",
            ),
        )
        .await;
    assert_eq!(
        next_week.status,
        StatusCode::CREATED,
        "{:?}",
        next_week.body
    );

    // A cancel gives the unit back at once.
    let id = answers
        .iter()
        .find(|a| a.status == StatusCode::CREATED)
        .unwrap()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = app
        .post(&format!("/v1/bookings/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(
        usage(
            &app,
            "three-a-week",
            "ann@example.com",
            "2030-05-09T12:00:00Z"
        )
        .await["bookings"],
        2
    );
}

#[tokio::test]
async fn a_series_crossing_the_quota_books_nothing_or_skips_what_is_over() {
    let app = spawn_app().await;
    let room = app.resource(10).await;
    define(
        &app,
        "one-a-day",
        &json!({"scope": "client", "period": "day", "max_bookings": 1}),
    )
    .await;
    let taken = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-06-06T15:00:00Z",
                "2030-06-06T16:00:00Z",
            ),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CREATED);
    let mut series = booking_for(
        &room,
        "ann@example.com",
        "2030-06-05T09:00:00Z",
        "2030-06-05T10:00:00Z",
    );
    series["recurrence"] = json!({"rule": "FREQ=DAILY;COUNT=3", "timezone": "UTC"});
    let before = event_count(&app).await;
    let refused = app.post("/v1/bookings", &series).await;
    assert_problem(&refused, 409, "quota-exceeded");
    assert_eq!(
        refused.body["quota"]["period_starts_at"],
        "2030-06-06T00:00:00Z"
    );
    assert_eq!(event_count(&app).await, before, "nothing was written");

    series["on_conflict"] = json!("skip");
    let created = app.post("/v1/bookings", &series).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["bookings"].as_array().unwrap().len(), 2);
    assert_eq!(
        created.body["skipped"][0]["starts_at"],
        "2030-06-06T09:00:00Z"
    );
    assert_eq!(created.body["skipped"][0]["reason"], "quota-exceeded");
    assert_eq!(
        usage(&app, "one-a-day", "ann@example.com", "2030-06-07T12:00:00Z").await["bookings"],
        1
    );
}

#[tokio::test]
async fn holds_count_until_released_and_reschedules_are_checked_in_their_new_period() {
    let app = spawn_app().await;
    let room = app.resource(5).await;
    define(
        &app,
        "room-day",
        &json!({"scope": "resource", "period": "day", "max_bookings": 1,
                "subjects": [room]}),
    )
    .await;
    let hold = app
        .post(
            "/v1/holds",
            &json!({"resource_id": room, "starts_at": "2030-07-01T10:00:00Z",
                    "ends_at": "2030-07-01T11:00:00Z", "ttl": "PT10M"}),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{:?}", hold.body);
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    let refused = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "a@example.com",
                "2030-07-01T14:00:00Z",
                "2030-07-01T15:00:00Z",
            ),
        )
        .await;
    assert_problem(&refused, 409, "quota-exceeded");
    assert_eq!(refused.body["quota"]["subject"], room);

    // The hold converts within its own unit.
    let converted = app
        .post(
            "/v1/bookings",
            &json!({"title": "Checkout", "client": {"name": "Bo"},
                    "starts_at": "2030-07-01T10:00:00Z", "ends_at": "2030-07-01T11:00:00Z",
                    "reservations": [{"hold_id": hold_id}]}),
        )
        .await;
    assert_eq!(
        converted.status,
        StatusCode::CREATED,
        "{:?}",
        converted.body
    );
    let first = converted.body["id"].as_str().unwrap().to_owned();

    let next_day = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "a@example.com",
                "2030-07-02T14:00:00Z",
                "2030-07-02T15:00:00Z",
            ),
        )
        .await;
    assert_eq!(next_day.status, StatusCode::CREATED, "{:?}", next_day.body);

    // Within its own day a booking moves freely; into a full day it is
    // refused and stays where it was.
    let within = app
        .post(
            &format!("/v1/bookings/{first}/reschedule"),
            &json!({"starts_at": "2030-07-01T12:00:00Z", "ends_at": "2030-07-01T13:00:00Z"}),
        )
        .await;
    assert_eq!(within.status, StatusCode::OK, "{:?}", within.body);
    let into_full = app
        .post(
            &format!("/v1/bookings/{first}/reschedule"),
            &json!({"starts_at": "2030-07-02T08:00:00Z", "ends_at": "2030-07-02T09:00:00Z"}),
        )
        .await;
    assert_problem(&into_full, 409, "quota-exceeded");
    let into_free = app
        .post(
            &format!("/v1/bookings/{first}/reschedule"),
            &json!({"starts_at": "2030-07-03T08:00:00Z", "ends_at": "2030-07-03T09:00:00Z"}),
        )
        .await;
    assert_eq!(into_free.status, StatusCode::OK, "{:?}", into_free.body);
    // The day it left is free again.
    let refilled = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "c@example.com",
                "2030-07-01T16:00:00Z",
                "2030-07-01T17:00:00Z",
            ),
        )
        .await;
    assert_eq!(refilled.status, StatusCode::CREATED, "{:?}", refilled.body);
}

#[tokio::test]
async fn an_hours_quota_counts_what_was_booked_before_it_and_what_cancels_frees() {
    let app = spawn_app().await;
    let room = app.resource(5).await;
    let made = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-08-01T08:00:00Z",
                "2030-08-01T09:30:00Z",
            ),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let defined = define(
        &app,
        "two-hours",
        &json!({"scope": "client", "period": "day", "max_hours": 2, "timezone": "UTC"}),
    )
    .await;
    assert_eq!(defined["counted"], 1);
    assert_eq!(defined["max_hours"], 2.0);
    let over = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-08-01T10:00:00Z",
                "2030-08-01T11:00:00Z",
            ),
        )
        .await;
    assert_problem(&over, 409, "quota-exceeded");
    assert_eq!(over.body["quota"]["used_hours"], 1.5);
    let fits = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-08-01T10:00:00Z",
                "2030-08-01T10:30:00Z",
            ),
        )
        .await;
    assert_eq!(fits.status, StatusCode::CREATED, "{:?}", fits.body);
    let used = usage(&app, "two-hours", "ann@example.com", "2030-08-01T00:00:00Z").await;
    assert_eq!(used["hours"], 2.0);
    // Longer within its own day is more hours: checked like a new booking.
    let id = fits.body["id"].as_str().unwrap();
    let longer = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-08-01T10:00:00Z", "ends_at": "2030-08-01T11:00:00Z"}),
        )
        .await;
    assert_problem(&longer, 409, "quota-exceeded");
    let shorter = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-08-01T10:00:00Z", "ends_at": "2030-08-01T10:15:00Z"}),
        )
        .await;
    assert_eq!(shorter.status, StatusCode::OK, "{:?}", shorter.body);

    // Removing the quota lifts it.
    let removed = app
        .send(
            Method::DELETE,
            "/v1/quotas/two-hours",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let free = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "ann@example.com",
                "2030-08-01T12:00:00Z",
                "2030-08-01T15:00:00Z",
            ),
        )
        .await;
    assert_eq!(free.status, StatusCode::CREATED, "{:?}", free.body);
    let listed = app.get("/v1/quotas", &app.analyst).await;
    assert_eq!(listed.body["items"], json!([]));
}

#[tokio::test]
async fn a_key_quota_limits_the_key_that_books() {
    let app = spawn_app().await;
    let room = app.resource(5).await;
    define(
        &app,
        "per-key",
        &json!({"scope": "key", "period": "month", "max_bookings": 1}),
    )
    .await;
    let first = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "a@example.com",
                "2030-09-01T08:00:00Z",
                "2030-09-01T09:00:00Z",
            ),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app
        .post(
            "/v1/bookings",
            &booking_for(
                &room,
                "b@example.com",
                "2030-09-02T08:00:00Z",
                "2030-09-02T09:00:00Z",
            ),
        )
        .await;
    assert_problem(&second, 409, "quota-exceeded");
    // Another key has its own month.
    let by_admin = app
        .send(
            Method::POST,
            "/v1/bookings",
            Some(&app.admin),
            Some(&booking_for(
                &room,
                "b@example.com",
                "2030-09-02T08:00:00Z",
                "2030-09-02T09:00:00Z",
            )),
            &[],
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::CREATED, "{:?}", by_admin.body);
}

#[tokio::test]
async fn bad_quota_definitions_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let put = |name: &str, body: Value, key: String| {
        let app = &app;
        let path = format!("/v1/quotas/{name}");
        async move {
            app.send(Method::PUT, &path, Some(&key), Some(&body), &[])
                .await
        }
    };
    let cases = [
        (
            json!({"scope": "client", "period": "week", "max_bookings": -3}),
            "max_bookings",
        ),
        (
            json!({"scope": "client", "period": "week", "max_bookings": 10_000_000}),
            "max_bookings",
        ),
        (
            json!({"scope": "client", "period": "week", "max_hours": 0}),
            "max_hours",
        ),
        (
            json!({"scope": "client", "period": "week", "max_hours": 1e12}),
            "max_hours",
        ),
        (json!({"scope": "client", "period": "week"}), "max_bookings"),
        (
            json!({"scope": "planet", "period": "week", "max_bookings": 1}),
            "scope",
        ),
        (
            json!({"scope": "client", "period": "year", "max_bookings": 1}),
            "period",
        ),
        (
            json!({"scope": "client", "period": "day", "max_bookings": 1, "timezone": "Mars/Base"}),
            "timezone",
        ),
        (
            json!({"scope": "client", "period": "day", "max_bookings": 1, "subjects": ["nobody"]}),
            "subjects[0]",
        ),
        (
            json!({"scope": "resource", "period": "day", "max_bookings": 1,
                "subjects": ["018f2a8e-0000-7000-8000-000000000000"]}),
            "subjects[0]",
        ),
        (
            json!({"scope": "pool", "period": "day", "max_bookings": 1, "subjects": ["x"]}),
            "subjects[0]",
        ),
    ];
    for (body, field) in cases {
        let answer = put("q", body.clone(), app.admin.clone()).await;
        assert_problem(&answer, 422, "validation");
        assert!(
            fields(&answer).contains(&field.to_owned()),
            "{body}: {:?}",
            answer.body
        );
    }
    let bad_name = put(
        "a/b",
        json!({"scope": "client", "period": "day", "max_bookings": 1}),
        app.admin.clone(),
    )
    .await;
    assert_eq!(bad_name.status.as_u16() / 100, 4, "{:?}", bad_name.body);
    let long_name = put(
        &"x".repeat(65),
        json!({"scope": "client", "period": "day", "max_bookings": 1}),
        app.admin.clone(),
    )
    .await;
    assert_problem(&long_name, 422, "validation");
    let planner = put(
        "q",
        json!({"scope": "client", "period": "day", "max_bookings": 1}),
        app.planner.clone(),
    )
    .await;
    assert_problem(&planner, 403, "forbidden");
    let unknown = put(
        "q",
        json!({"scope": "client", "period": "day", "max_bookings": 1, "extra": 1}),
        app.admin.clone(),
    )
    .await;
    assert_eq!(unknown.status.as_u16() / 100, 4);
    let listed = app.get("/v1/quotas", &app.analyst).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was written");
    let flags: i64 = sqlx::query_scalar("select count(*) from reservable_resources where quotas")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(flags, 0);

    define(
        &app,
        "q",
        &json!({"scope": "client", "period": "day", "max_bookings": 1}),
    )
    .await;
    let missing = app
        .get("/v1/quotas/none/usage?subject=a@example.com", &app.analyst)
        .await;
    assert_problem(&missing, 404, "not-found");
    let bad_subject = app
        .get("/v1/quotas/q/usage?subject=nobody", &app.analyst)
        .await;
    assert_problem(&bad_subject, 422, "validation");
    let no_subject = app.get("/v1/quotas/q/usage", &app.analyst).await;
    assert_eq!(no_subject.status.as_u16() / 100, 4);
    let other_tenant = app.get("/v1/quotas/q", &app.other_tenant).await;
    assert_problem(&other_tenant, 404, "not-found");
}

#[tokio::test]
async fn a_pool_quota_limits_what_is_picked_from_the_pool_and_a_client_quota_applies_to_picks() {
    let app = spawn_app().await;
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let pool = app
        .post(
            "/v1/pools",
            &json!({"name": "Halls", "members": [a, b], "strategy": "first"}),
        )
        .await;
    assert_eq!(pool.status, StatusCode::CREATED, "{:?}", pool.body);
    let pool = pool.body["id"].as_str().unwrap().to_owned();
    define(
        &app,
        "pool-hours",
        &json!({"scope": "pool", "period": "day", "max_hours": 3, "subjects": [pool]}),
    )
    .await;
    let pick = |from: &str, to: &str, email: &str| {
        json!({"title": "Pick", "client": {"name": "c", "email": email},
               "starts_at": from, "ends_at": to, "headcount": 1,
               "reservations": [{"pool_id": pool, "starts_at": from, "ends_at": to}]})
    };
    let first = app
        .post(
            "/v1/bookings",
            &pick(
                "2030-10-01T08:00:00Z",
                "2030-10-01T10:00:00Z",
                "a@example.com",
            ),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    // Two more hours from the pool pass its three; the same hours booked
    // on a member by name are not the pool's.
    let over = app
        .post(
            "/v1/bookings",
            &pick(
                "2030-10-01T08:00:00Z",
                "2030-10-01T10:00:00Z",
                "b@example.com",
            ),
        )
        .await;
    assert_problem(&over, 409, "quota-exceeded");
    assert_eq!(over.body["quota"]["used_hours"], 2.0);
    let named = app
        .post(
            "/v1/bookings",
            &booking_for(
                &b,
                "b@example.com",
                "2030-10-01T08:00:00Z",
                "2030-10-01T10:00:00Z",
            ),
        )
        .await;
    assert_eq!(named.status, StatusCode::CREATED, "{:?}", named.body);

    // A client quota counts a pick like any booking.
    define(
        &app,
        "one-a-day",
        &json!({"scope": "client", "period": "day", "max_bookings": 1}),
    )
    .await;
    let again = app
        .post(
            "/v1/bookings",
            &pick(
                "2030-10-01T12:00:00Z",
                "2030-10-01T13:00:00Z",
                "a@example.com",
            ),
        )
        .await;
    assert_problem(&again, 409, "quota-exceeded");
    assert_eq!(again.body["quota"]["quota"], "one-a-day");
}
