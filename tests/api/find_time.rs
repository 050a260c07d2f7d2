//! Finding a time for several resources and a pool's availability (SPEC
//! §12): answered by the write side's rule, so every candidate books as it
//! is and a start left out is refused; reasons say why nothing fits; bad
//! questions are 422 and write nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, event_count, fields, spawn_app};

/// A Berlin resource open Monday to Friday nine to five local time, with
/// `extra` on top.
async fn office(app: &TestApp, extra: Value) -> String {
    let days = ["mon", "tue", "wed", "thu", "fri"]
        .map(|d| json!({"weekday": d, "start": "09:00", "end": "17:00"}));
    let mut body = json!({"name": "Office", "kind": "room", "timezone": "Europe/Berlin",
                          "working_hours": days});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let answer = app.post("/v1/resources", &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn pool(app: &TestApp, members: &[&String], strategy: &str) -> String {
    let answer = app
        .post(
            "/v1/pools",
            &json!({"name": "Pool", "members": members, "strategy": strategy}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// A booking of `resources` for `[from, to)`.
fn booking(resources: &[String], from: &str, to: &str) -> Value {
    let reservations: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource_id": r, "starts_at": from, "ends_at": to}))
        .collect();
    json!({"title": "Meeting", "client": {"name": "c"}, "starts_at": from, "ends_at": to,
           "headcount": 1, "reservations": reservations})
}

/// Each candidate's (start, resources).
fn candidates(answer: &Value) -> Vec<(String, Vec<String>)> {
    answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["reservations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["resource_id"].as_str().unwrap().to_owned())
                .collect();
            (c["starts_at"].as_str().unwrap().to_owned(), ids)
        })
        .collect()
}

#[tokio::test]
async fn every_candidate_books_and_every_start_left_out_is_refused() {
    let app = spawn_app().await;
    let hall = office(&app, json!({})).await;
    let mut waiters = Vec::new();
    for _ in 0..3 {
        waiters.push(office(&app, json!({})).await);
    }
    let vans = [office(&app, json!({})).await, office(&app, json!({})).await];
    let staff = pool(&app, &waiters.iter().collect::<Vec<_>>(), "first").await;
    // Monday 2030-03-04, Berlin is UTC+1: the hall is busy 09-11 local,
    // two of the three waiters 11-13, both vans 13-14.
    app.book(&hall, "2030-03-04T08:00:00Z", "2030-03-04T10:00:00Z")
        .await;
    for w in &waiters[..2] {
        app.book(w, "2030-03-04T10:00:00Z", "2030-03-04T12:00:00Z")
            .await;
    }
    for v in &vans {
        app.book(v, "2030-03-04T12:00:00Z", "2030-03-04T13:00:00Z")
            .await;
    }
    let question = json!({
        "duration": "PT1H", "from": "2030-03-04T00:00:00Z", "to": "2030-03-05T00:00:00Z",
        "granularity": "PT30M", "limit": 100,
        "requirements": [{"resource_id": hall}, {"pool_id": staff, "count": 2},
                         {"any_of": vans}]});
    let found = app.post("/v1/find-time", &question).await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let offered = candidates(&found.body);
    // The hall is free from 10:00Z, two waiters from 12:00Z, a van from
    // 13:00Z: the first start is 13:00Z (14:00 local).
    let starts: Vec<&str> = offered.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(starts.first(), Some(&"2030-03-04T13:00:00Z"), "{starts:?}");
    assert_eq!(
        starts.last(),
        Some(&"2030-03-04T15:00:00Z"),
        "office hours end 16:00Z"
    );
    assert_eq!(offered[0].1.len(), 4, "the hall, two waiters, a van");
    assert!(found.body["reasons"].as_array().unwrap().is_empty());

    // Every candidate books as it is (then it is cancelled for the next);
    // every start of the grid left out is refused and writes nothing.
    let mut start = chrono::DateTime::parse_from_rfc3339("2030-03-04T00:00:00Z").unwrap();
    let end = chrono::DateTime::parse_from_rfc3339("2030-03-05T00:00:00Z").unwrap();
    while start + chrono::Duration::hours(1) <= end {
        let from = start.to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let to = (start + chrono::Duration::hours(1))
            .to_utc()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        match offered.iter().find(|(s, _)| *s == from) {
            Some((_, resources)) => {
                let booked = app
                    .post("/v1/bookings", &booking(resources, &from, &to))
                    .await;
                assert_eq!(
                    booked.status,
                    StatusCode::CREATED,
                    "{from}: {:?}",
                    booked.body
                );
                let id = booked.body["id"].as_str().unwrap();
                let cancelled = app
                    .post(&format!("/v1/bookings/{id}/cancel"), &json!({}))
                    .await;
                assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
            }
            None => {
                // Left out: no choice of two waiters and a van books then.
                let before = event_count(&app).await;
                let mut any = false;
                for pair in [(0, 1), (0, 2), (1, 2)] {
                    for van in &vans {
                        let resources = [
                            hall.clone(),
                            waiters[pair.0].clone(),
                            waiters[pair.1].clone(),
                            van.clone(),
                        ];
                        let tried = app
                            .post("/v1/bookings", &booking(&resources, &from, &to))
                            .await;
                        any |= tried.status == StatusCode::CREATED;
                    }
                }
                assert!(!any, "{from} was left out but books");
                assert_eq!(event_count(&app).await, before, "{from}");
            }
        }
        start += chrono::Duration::minutes(30);
    }
}

#[tokio::test]
async fn reasons_name_hours_bookings_seats_and_notice_across_a_dst_change() {
    let app = spawn_app().await;
    // Sunday 2030-03-31 is Berlin's DST change; Monday 2030-04-01 opens
    // at 09:00 CEST, 07:00Z (the week before, 08:00Z).
    let room = office(&app, json!({"seats": 10})).await;
    let found = app
        .post(
            "/v1/find-time",
            &json!({"duration": "PT2H", "from": "2030-03-30T00:00:00Z",
                    "to": "2030-04-02T00:00:00Z", "limit": 1,
                    "requirements": [{"resource_id": room}]}),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    assert_eq!(
        found.body["candidates"][0]["starts_at"],
        "2030-04-01T07:00:00Z"
    );

    // The weekend only: outside working hours.
    let weekend = json!({"duration": "PT2H", "from": "2030-03-30T00:00:00Z",
                         "to": "2030-04-01T00:00:00Z", "requirements": [{"resource_id": room}]});
    let answer = app.post("/v1/find-time", &weekend).await;
    assert_eq!(answer.body["candidates"], json!([]));
    assert_eq!(answer.body["reasons"][0]["requirement"], 0);
    assert_eq!(answer.body["reasons"][0]["reason"], "outside-working-hours");

    // Forty people in a room for ten: seats.
    let mut crowd = weekend.clone();
    crowd["to"] = json!("2030-04-02T00:00:00Z");
    crowd["headcount"] = json!(40);
    let answer = app.post("/v1/find-time", &crowd).await;
    assert_eq!(answer.body["reasons"][0]["reason"], "seats-exceeded");

    // Booked all Monday: reservation-conflict.
    let busy = app
        .post(
            "/v1/bookings",
            &booking(
                std::slice::from_ref(&room),
                "2030-04-01T07:00:00Z",
                "2030-04-01T15:00:00Z",
            ),
        )
        .await;
    assert_eq!(busy.status, StatusCode::CREATED, "{:?}", busy.body);
    let mut monday = weekend.clone();
    monday["from"] = json!("2030-04-01T00:00:00Z");
    monday["to"] = json!("2030-04-02T00:00:00Z");
    let answer = app.post("/v1/find-time", &monday).await;
    assert_eq!(answer.body["reasons"][0]["reason"], "reservation-conflict");

    // A month's notice, asked about this week: too soon.
    let noticed = office(&app, json!({"policy": {"min_notice": "P30D"}})).await;
    let now = chrono::Utc::now();
    let answer = app
        .post(
            "/v1/find-time",
            &json!({"duration": "PT1H", "from": now.to_rfc3339(),
                    "to": (now + chrono::Duration::days(7)).to_rfc3339(),
                    "requirements": [{"resource_id": room}, {"resource_id": noticed}]}),
        )
        .await;
    let reasons = answer.body["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["requirement"] == 1 && r["reason"] == "too-soon"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_pool_is_available_where_enough_members_are_free_at_once() {
    let app = spawn_app().await;
    let (a, b) = (office(&app, json!({})).await, office(&app, json!({})).await);
    let pair = pool(&app, &[&a, &b], "least_booked").await;
    // Monday: a busy 10-12 local (09-11Z).
    app.book(&a, "2030-03-04T09:00:00Z", "2030-03-04T11:00:00Z")
        .await;
    let path = format!(
        "/v1/pools/{pair}/availability?from=2030-03-04T00:00:00Z&to=2030-03-05T00:00:00Z&duration=PT1H"
    );
    let any = app.get(&path, &app.analyst).await;
    assert_eq!(any.status, StatusCode::OK, "{:?}", any.body);
    assert_eq!(
        any.body["slots"],
        json!([{"starts_at": "2030-03-04T08:00:00Z", "ends_at": "2030-03-04T16:00:00Z"}])
    );
    let both = app.get(&format!("{path}&count=2"), &app.analyst).await;
    assert_eq!(
        both.body["slots"],
        json!([{"starts_at": "2030-03-04T08:00:00Z", "ends_at": "2030-03-04T09:00:00Z"},
               {"starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T16:00:00Z"}])
    );
    let three = app.get(&format!("{path}&count=3"), &app.analyst).await;
    assert_problem(&three, 422, "validation");
    assert_eq!(fields(&three), ["count"]);
    let nobody = uuid::Uuid::now_v7();
    let missing = app
        .get(
            &format!("/v1/pools/{nobody}/availability?from=2030-03-04T00:00:00Z&to=2030-03-05T00:00:00Z&duration=60"),
            &app.analyst,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
}

#[tokio::test]
async fn bad_questions_are_refused_by_field_and_write_nothing() {
    let app = spawn_app().await;
    let room = office(&app, json!({})).await;
    let small = pool(&app, &[&room], "first").await;
    let nobody = uuid::Uuid::now_v7();
    let many: Vec<String> = (0..300).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let more: Vec<String> = (0..300).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let base = json!({"duration": "PT1H", "from": "2030-03-04T00:00:00Z",
                      "to": "2030-03-05T00:00:00Z", "requirements": [{"resource_id": room}]});
    let with = |changes: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(changes.as_object().unwrap().clone());
        body
    };
    let before = event_count(&app).await;
    for (body, field) in [
        (
            with(json!({"requirements": [{"pool_id": nobody}]})),
            "requirements[0].pool_id",
        ),
        (
            with(json!({"requirements": [{"pool_id": small, "count": 2}]})),
            "requirements[0].count",
        ),
        (
            with(json!({"requirements": [{"resource_id": nobody}]})),
            "requirements[0].resource_id",
        ),
        (
            with(json!({"requirements": [{"any_of": many}, {"any_of": more}]})),
            "requirements",
        ),
        (with(json!({"requirements": []})), "requirements"),
        (
            with(json!({"requirements": [{"resource_id": room, "pool_id": small}]})),
            "requirements[0]",
        ),
        (
            with(json!({"requirements": [{"resource_id": room, "count": 2}]})),
            "requirements[0].count",
        ),
        (
            with(json!({"requirements": [{"any_of": [room, room]}]})),
            "requirements[0].any_of[1]",
        ),
        (with(json!({"to": "2030-06-04T00:00:00Z"})), "to"),
        (with(json!({"to": "2030-03-03T00:00:00Z"})), "to"),
        (with(json!({"duration": "0"})), "duration"),
        (with(json!({"duration": "PT0M"})), "duration"),
        (with(json!({"duration": "-PT1H"})), "duration"),
        (with(json!({"duration": "P3D"})), "duration"),
        (with(json!({"granularity": "P2D"})), "granularity"),
        (with(json!({"limit": 0})), "limit"),
        (with(json!({"min_optional": 1})), "min_optional"),
    ] {
        let answer = app.post("/v1/find-time", &body).await;
        assert_problem(&answer, 422, "validation");
        assert_eq!(fields(&answer), [field], "{body}");
    }
    assert_eq!(event_count(&app).await, before, "nothing written");
}
