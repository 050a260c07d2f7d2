//! Recurring series: local wall-clock times kept across DST in the series'
//! zone, all or nothing by default, skip mode, one idempotency key for the
//! whole series, cancellation from an instant on.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, event_count, fields, spawn_app};

fn weekly(resource: &str, from: &str, to: &str, rule: &str, zone: &str) -> Value {
    json!({
        "title": "Yoga", "client": {"name": "Studio"},
        "starts_at": from, "ends_at": to, "headcount": 12,
        "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to, "label": "room"}],
        "recurrence": {"rule": rule, "timezone": zone}
    })
}

fn starts(answer: &Value, field: &str) -> Vec<String> {
    answer[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["starts_at"].as_str().unwrap().to_owned())
        .collect()
}

async fn series_bookings(app: &TestApp, series: &str, position: i64) -> Vec<Value> {
    let page = app
        .get(
            &format!("/v1/bookings?series_id={series}&limit=500&consistent_with={position}"),
            &app.analyst,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_weekly_series_keeps_its_local_time_across_both_dst_changes_in_two_zones() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    // Monday 2030-03-25 09:00 CET; Berlin springs forward on 2030-03-31
    // and falls back on 2030-10-27.
    let created = app
        .post(
            "/v1/bookings",
            &weekly(
                &room,
                "2030-03-25T08:00:00Z",
                "2030-03-25T09:30:00Z",
                "FREQ=WEEKLY;COUNT=33",
                "Europe/Berlin",
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let series = created.body["series_id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["id"], series.as_str());
    let got = starts(&created.body, "bookings");
    assert_eq!(got.len(), 33);
    assert_eq!(got[0], "2030-03-25T08:00:00Z");
    assert_eq!(got[1], "2030-04-01T07:00:00Z");
    assert_eq!(got[30], "2030-10-21T07:00:00Z");
    assert_eq!(got[31], "2030-10-28T08:00:00Z");
    let position = created.body["position"].as_i64().unwrap();
    let listed = series_bookings(&app, &series, position).await;
    assert_eq!(listed.len(), 33);
    let summer = &listed[1];
    assert_eq!(summer["starts_at"], "2030-04-01T07:00:00Z");
    assert_eq!(summer["ends_at"], "2030-04-01T08:30:00Z");
    let detail = app
        .get(
            &format!(
                "/v1/bookings/{}?consistent_with={position}",
                summer["id"].as_str().unwrap()
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(detail.body["series_id"], series.as_str());
    assert_eq!(
        detail.body["reservations"][0]["starts_at"],
        "2030-04-01T07:00:00Z"
    );
    let view = app.get(&format!("/v1/series/{series}"), &app.analyst).await;
    assert_eq!(view.status, StatusCode::OK, "{:?}", view.body);
    assert_eq!(view.body["timezone"], "Europe/Berlin");
    assert_eq!(view.body["bookings"].as_array().unwrap().len(), 33);

    // New York, Thursdays 18:00: springs forward 2030-03-10, falls back
    // 2030-11-03.
    let gym = app.resource(1).await;
    let created = app
        .post(
            "/v1/bookings",
            &weekly(
                &gym,
                "2030-03-07T23:00:00Z",
                "2030-03-08T00:00:00Z",
                "FREQ=WEEKLY;BYDAY=TH;UNTIL=20301115T000000Z",
                "America/New_York",
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let got = starts(&created.body, "bookings");
    assert_eq!(got[0], "2030-03-07T23:00:00Z");
    assert_eq!(got[1], "2030-03-14T22:00:00Z");
    assert_eq!(got.last().unwrap(), "2030-11-14T23:00:00Z");
}

#[tokio::test]
async fn all_or_nothing_leaves_nothing_and_skip_books_the_rest() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    // The third Wednesday is taken.
    let taken = app
        .book(&room, "2030-06-19T09:30:00Z", "2030-06-19T10:30:00Z")
        .await;
    assert_eq!(taken.status, StatusCode::CREATED);
    let body = weekly(
        &room,
        "2030-06-05T09:00:00Z",
        "2030-06-05T10:00:00Z",
        "FREQ=WEEKLY;COUNT=5",
        "UTC",
    );
    let before = event_count(&app).await;
    let refused = app.post("/v1/bookings", &body).await;
    assert_problem(&refused, 409, "reservation-conflict");
    assert_eq!(
        starts(&refused.body, "occurrences"),
        ["2030-06-19T09:00:00Z"]
    );
    assert_eq!(
        refused.body["occurrences"][0]["conflicts"][0]["booking_id"],
        taken.body["id"]
    );
    assert_eq!(event_count(&app).await, before, "nothing was written");

    let mut skipping = body.clone();
    skipping["on_conflict"] = json!("skip");
    let key = "series-skip-1";
    let created = app.post_keyed("/v1/bookings", &skipping, key).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        starts(&created.body, "bookings"),
        [
            "2030-06-05T09:00:00Z",
            "2030-06-12T09:00:00Z",
            "2030-06-26T09:00:00Z",
            "2030-07-03T09:00:00Z"
        ]
    );
    assert_eq!(starts(&created.body, "skipped"), ["2030-06-19T09:00:00Z"]);
    assert_eq!(created.body["skipped"][0]["reason"], "reservation-conflict");

    // One key covers the whole series: the retry books nothing more.
    let after = event_count(&app).await;
    let replayed = app.post_keyed("/v1/bookings", &skipping, key).await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(replayed.body, created.body);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(event_count(&app).await, after);

    // Cancelled from 2030-06-20 on: the last two go, the first two stay.
    let series = created.body["series_id"].as_str().unwrap();
    let cancelled = app
        .post(
            &format!("/v1/series/{series}/cancel"),
            &json!({"from": "2030-06-20T00:00:00Z"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    let position = cancelled.body["position"].as_i64().unwrap();
    let statuses: Vec<String> = series_bookings(&app, series, position)
        .await
        .iter()
        .map(|b| b["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["requested", "requested", "cancelled", "cancelled"]
    );
    let view = app.get(&format!("/v1/series/{series}"), &app.analyst).await;
    assert_eq!(view.body["cancelled_from"], "2030-06-20T00:00:00Z");
    // The freed slot can be booked again.
    let again = app
        .book(&room, "2030-06-26T09:00:00Z", "2030-06-26T10:00:00Z")
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
}

#[tokio::test]
async fn series_refuse_unbounded_long_or_malformed_rules() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    for (rule, zone, field) in [
        ("FREQ=DAILY", "UTC", "recurrence.rule"),
        ("FREQ=DAILY;COUNT=501", "UTC", "recurrence.rule"),
        ("FREQ=MONTHLY;COUNT=30", "UTC", "recurrence.rule"),
        ("FREQ=FORTNIGHTLY;COUNT=2", "UTC", "recurrence.rule"),
        ("FREQ=DAILY;COUNT=2", "Mars/Olympus", "recurrence.timezone"),
    ] {
        let answer = app
            .post(
                "/v1/bookings",
                &weekly(
                    &room,
                    "2030-06-05T09:00:00Z",
                    "2030-06-05T10:00:00Z",
                    rule,
                    zone,
                ),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rule}: {:?}",
            answer.body
        );
        assert_eq!(fields(&answer), [field], "{rule}");
    }
    let missing = app.get(&format!("/v1/series/{room}"), &app.analyst).await;
    assert_problem(&missing, 404, "not-found");
}
