//! Pools (SPEC §12): created by explicit members or a selector, read,
//! listed and changed; bad bodies are refused by field and write nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, assert_problem, event_count, fields, spawn_app};

#[tokio::test]
async fn a_pool_is_created_read_listed_and_changed() {
    let app = spawn_app().await;
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let created = app
        .post(
            "/v1/pools",
            &json!({"name": " Barbers ", "members": [a, b]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["version"], 1);

    let read = app.get(&format!("/v1/pools/{id}"), &app.analyst).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["name"], "Barbers");
    assert_eq!(read.body["members"], json!([a, b]));
    assert_eq!(read.body["strategy"], "least_booked");
    assert!(read.body.get("selector").is_none());

    // A selector pool, then the list of both.
    let rooms = app
        .post(
            "/v1/pools",
            &json!({"name": "Rooms for 40", "selector": {"kind": "room", "min_seats": 40},
                    "strategy": "first"}),
        )
        .await;
    assert_eq!(rooms.status, StatusCode::CREATED, "{:?}", rooms.body);
    let listed = app.get("/v1/pools?limit=1", &app.analyst).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let cursor = listed.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(&format!("/v1/pools?limit=1&cursor={cursor}"), &app.analyst)
        .await;
    assert_eq!(
        next.body["items"][0]["selector"],
        json!({"kind": "room", "tags": [], "min_seats": 40, "min_capacity": null})
    );

    // Changed under If-Match; the same change again is a no-op; a stale
    // version is 412.
    let changed = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"strategy": "round_robin", "members": [b, a]})),
            &[("If-Match", "1")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["version"], 2);
    let again = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"strategy": "round_robin"})),
            &[],
        )
        .await;
    assert_eq!(again.body["version"], 2, "nothing changed");
    let stale = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{id}"),
            Some(&app.planner),
            Some(&json!({"name": "Late"})),
            &[("If-Match", "1")],
        )
        .await;
    assert_problem(&stale, 412, "stale-version");
    let read = app.get(&format!("/v1/pools/{id}"), &app.analyst).await;
    assert_eq!(read.body["members"], json!([b, a]));
    assert_eq!(read.body["strategy"], "round_robin");

    let feed = app.get("/v1/events?stream_type=pool", &app.analyst).await;
    let types: Vec<&str> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pool.created", "pool.created", "pool.updated"]);
}

#[tokio::test]
async fn bad_pools_are_refused_by_field_and_write_nothing() {
    let app = spawn_app().await;
    let a = app.resource(1).await;
    let nobody = uuid::Uuid::now_v7();
    let before = event_count(&app).await;
    for (body, field) in [
        (json!({"name": "P", "members": [a, nobody]}), "members[1]"),
        (json!({"name": "P", "members": [a, a]}), "members[1]"),
        (json!({"name": "P", "members": []}), "members"),
        (json!({"name": "", "members": [a]}), "name"),
        (json!({"name": "P"}), "members"),
        (
            json!({"name": "P", "members": [a], "selector": {"kind": "room"}}),
            "selector",
        ),
        (json!({"name": "P", "selector": {}}), "selector"),
        (
            json!({"name": "P", "selector": {"kind": "room", "min_capacity": 0}}),
            "selector.min_capacity",
        ),
        (
            json!({"name": "P", "members": [a], "strategy": "random"}),
            "strategy",
        ),
    ] {
        let answer = app.post("/v1/pools", &body).await;
        assert_problem(&answer, 422, "validation");
        assert!(
            fields(&answer).contains(&field.to_owned()),
            "{body}: {:?}",
            answer.body
        );
    }
    assert_eq!(event_count(&app).await, before);
    let missing = app.get(&format!("/v1/pools/{nobody}"), &app.analyst).await;
    assert_problem(&missing, 404, "not-found");
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/pools/{nobody}"),
            Some(&app.planner),
            Some(&json!({"name": "Ghost"})),
            &[("If-Match", "1")],
        )
        .await;
    assert_problem(&patched, 404, "not-found");
    let analyst = app
        .send(
            Method::POST,
            "/v1/pools",
            Some(&app.analyst),
            Some(&json!({"name": "P", "members": [a]})),
            &[],
        )
        .await;
    assert_eq!(analyst.status, StatusCode::FORBIDDEN);
}

/// A room in Berlin with `extra` on top (tags, seats, working hours).
async fn room(app: &TestApp, extra: Value) -> String {
    let mut body = json!({"name": "Room", "kind": "room", "timezone": "Europe/Berlin"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let answer = app.post("/v1/resources", &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn pool(app: &TestApp, body: Value) -> String {
    let answer = app.post("/v1/pools", &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// A booking of `headcount` on 2030-03-04 (a Monday) from `from` to `to`
/// o'clock UTC with `reservation` (its range filled in).
fn booking_from(reservation: Value, from: u32, to: u32, headcount: u32) -> Value {
    let (starts_at, ends_at) = (
        format!("2030-03-04T{from:02}:00:00Z"),
        format!("2030-03-04T{to:02}:00:00Z"),
    );
    let mut reservation = reservation;
    reservation["starts_at"] = json!(starts_at);
    reservation["ends_at"] = json!(ends_at);
    json!({"title": "Pick", "client": {"name": "c"}, "starts_at": starts_at,
           "ends_at": ends_at, "headcount": headcount, "reservations": [reservation]})
}

/// The resources a created booking holds, in its order.
fn picked(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_strategy_picks_its_member_and_the_event_names_the_pool() {
    let app = spawn_app().await;
    let rooms = [
        room(&app, json!({})).await,
        room(&app, json!({})).await,
        room(&app, json!({})).await,
    ];

    // `first`: member order, skipping the busy one.
    let first = pool(
        &app,
        json!({"name": "First", "members": [rooms[1], rooms[0], rooms[2]], "strategy": "first"}),
    )
    .await;
    app.book(&rooms[1], "2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z")
        .await;
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": first}), 9, 10, 1),
        )
        .await;
    assert_eq!(picked(&answer), [rooms[0].clone()]);
    assert_eq!(answer.body["reservations"][0]["pool_id"], json!(first));
    let feed = app
        .get("/v1/events?event_type=reservation.added", &app.analyst)
        .await;
    let added = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["stream_id"] == answer.body["id"])
        .expect("the reservation.added event");
    assert_eq!(added["data"]["pool_id"], json!(first));
    assert_eq!(added["data"]["resource_id"], json!(rooms[0]));

    // `least_booked`: rooms[0] and rooms[1] hold an hour that day (local
    // day in Berlin), rooms[2] nothing; two at once take rooms[2] first,
    // then the tie in member order.
    let least = pool(&app, json!({"name": "Least", "members": rooms})).await;
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": least, "count": 2}), 12, 13, 1),
        )
        .await;
    assert_eq!(picked(&answer), [rooms[2].clone(), rooms[0].clone()]);

    // `round_robin`: never assigned first, then the one assigned longest ago.
    let robin = pool(
        &app,
        json!({"name": "Robin", "members": rooms, "strategy": "round_robin"}),
    )
    .await;
    let mut order = Vec::new();
    for hour in 14..18 {
        let answer = app
            .post(
                "/v1/bookings",
                &booking_from(json!({"pool_id": robin}), hour, hour + 1, 1),
            )
            .await;
        order.extend(picked(&answer));
    }
    assert_eq!(
        order,
        [&rooms[0], &rooms[1], &rooms[2], &rooms[0]].map(String::clone)
    );

    // `any_of`: least booked of the set.
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"any_of": [rooms[0], rooms[1]]}), 20, 21, 1),
        )
        .await;
    assert_eq!(picked(&answer), [rooms[1].clone()]);
    assert!(answer.body["reservations"][0].get("pool_id").is_none());
}

#[tokio::test]
async fn a_selector_pool_takes_what_matches_when_the_reservation_is_made() {
    let app = spawn_app().await;
    let small = room(&app, json!({"tags": ["projector"], "seats": 10})).await;
    let pool_id = pool(
        &app,
        json!({"name": "Projector rooms", "selector": {"kind": "room", "tags": ["projector"], "min_seats": 20}}),
    )
    .await;
    let none = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": pool_id}), 9, 10, 1),
        )
        .await;
    assert_problem(&none, 409, "pool-exhausted");
    assert_eq!(none.body["pick"]["members"], json!([]), "nothing matches");

    // A room registered later matches; the small one never does.
    let big = room(
        &app,
        json!({"tags": ["projector", "whiteboard"], "seats": 40}),
    )
    .await;
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": pool_id}), 9, 10, 30),
        )
        .await;
    assert_eq!(picked(&answer), [big]);
    assert_ne!(small, picked(&answer)[0]);
}

#[tokio::test]
async fn an_exhausted_pool_says_why_each_member_is_not_free_and_books_nothing() {
    let app = spawn_app().await;
    let busy = room(&app, json!({})).await;
    // Mondays closed: 2030-03-04 is one.
    let closed = room(
        &app,
        json!({"working_hours": [{"weekday": "sat", "start": "08:00", "end": "18:00"}]}),
    )
    .await;
    let small = room(&app, json!({"seats": 4})).await;
    let free = room(&app, json!({})).await;
    app.book(&busy, "2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z")
        .await;
    let pool_id = pool(
        &app,
        json!({"name": "All", "members": [busy, closed, small, free], "strategy": "first"}),
    )
    .await;
    let before = event_count(&app).await;
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": pool_id, "count": 2}), 9, 10, 10),
        )
        .await;
    assert_problem(&answer, 409, "pool-exhausted");
    assert_eq!(
        answer.body["pick"],
        json!({"field": "reservations[0].pool_id", "pool_id": pool_id, "count": 2, "free": 1,
        "members": [
            {"resource_id": busy, "reason": "busy"},
            {"resource_id": closed, "reason": "outside-working-hours"},
            {"resource_id": small, "reason": "seats-exceeded"},
        ]})
    );
    assert_eq!(event_count(&app).await, before, "nothing was booked");

    // A resource the request names itself is not picked again for it.
    let mut both = booking_from(json!({"pool_id": pool_id}), 9, 10, 1);
    both["reservations"].as_array_mut().unwrap().insert(
        0,
        json!({"resource_id": free, "starts_at": "2030-03-04T09:00:00Z",
                          "ends_at": "2030-03-04T10:00:00Z"}),
    );
    let answer = app.post("/v1/bookings", &both).await;
    assert_eq!(picked(&answer), [free.clone(), small.clone()]);

    // Adding a pick to a booking takes the booking's headcount.
    let booking = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"resource_id": busy}), 11, 12, 10),
        )
        .await;
    let id = booking.body["id"].as_str().unwrap();
    let added = app
        .post(
            &format!("/v1/bookings/{id}/reservations"),
            &json!({"any_of": [small, free], "starts_at": "2030-03-04T11:00:00Z",
                    "ends_at": "2030-03-04T12:00:00Z"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let last = added.body["reservations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["resource_id"], json!(free), "{:?}", added.body);
}

#[tokio::test]
async fn bad_picks_are_refused_by_field_and_write_nothing() {
    let app = spawn_app().await;
    let a = app.resource(1).await;
    let pool_id = pool(&app, json!({"name": "P", "members": [a]})).await;
    let nobody = uuid::Uuid::now_v7();
    let before = event_count(&app).await;
    for (reservation, field) in [
        (json!({"pool_id": nobody}), "reservations[0].pool_id"),
        (json!({"any_of": [a, nobody]}), "reservations[0].any_of[1]"),
        (json!({"any_of": [a, a]}), "reservations[0].any_of"),
        (json!({"any_of": []}), "reservations[0].any_of"),
        (
            json!({"pool_id": pool_id, "count": 0}),
            "reservations[0].count",
        ),
        (
            json!({"pool_id": pool_id, "count": 101}),
            "reservations[0].count",
        ),
        (
            json!({"resource_id": a, "count": 2}),
            "reservations[0].count",
        ),
        (
            json!({"pool_id": pool_id, "resource_id": a}),
            "reservations[0].resource_id",
        ),
    ] {
        let answer = app
            .post("/v1/bookings", &booking_from(reservation.clone(), 9, 10, 1))
            .await;
        assert_problem(&answer, 422, "validation");
        assert!(
            fields(&answer).contains(&field.to_owned()),
            "{reservation}: {:?}",
            answer.body
        );
    }
    let mut series = booking_from(json!({"pool_id": pool_id}), 9, 10, 1);
    series["recurrence"] = json!({"rule": "FREQ=DAILY;COUNT=2", "timezone": "UTC"});
    let answer = app.post("/v1/bookings", &series).await;
    assert_problem(&answer, 422, "validation");
    assert_eq!(event_count(&app).await, before);
}

/// SPEC §9: 64 clients race for one slot of a 10-member pool through two
/// real `muster api` processes; exactly 10 win, each a different member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_racing_for_a_ten_member_pool_get_ten_members() {
    let _turn = crate::helpers::one_multi_process_test_at_a_time().await;
    let app = spawn_app().await;
    let mut members = Vec::new();
    for _ in 0..10 {
        members.push(app.resource(1).await);
    }
    let pool_id = pool(&app, json!({"name": "Ten", "members": members})).await;
    let url = app.db.url();
    let (_first, a) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let (_second, b) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let body = booking_from(json!({"pool_id": pool_id}), 9, 10, 1);
    let racers = (0..64).map(|n| {
        let address = if n % 2 == 0 { a.clone() } else { b.clone() };
        let (key, body) = (app.planner.clone(), body.clone());
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{address}/v1/bookings"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        })
    });
    let mut won = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        let (status, answer) = racer.await.unwrap();
        match status {
            StatusCode::CREATED => won.push(
                answer["reservations"][0]["resource_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            StatusCode::CONFLICT => {
                assert_eq!(
                    answer["type"], "urn:muster:problem:pool-exhausted",
                    "{answer}"
                );
                assert_eq!(answer["pick"]["free"], 0, "{answer}");
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    won.sort();
    let mut expected = members.clone();
    expected.sort();
    assert_eq!(won, expected, "exactly ten win, each a different member");
    let stored: i64 = sqlx::query_scalar("select count(*) from reservations")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 10);
}

#[tokio::test]
async fn a_moved_pool_reservation_keeps_its_member_when_free_and_else_takes_another() {
    let app = spawn_app().await;
    let rooms = [room(&app, json!({})).await, room(&app, json!({})).await];
    let first = pool(
        &app,
        json!({"name": "Pair", "members": rooms, "strategy": "first"}),
    )
    .await;
    let answer = app
        .post(
            "/v1/bookings",
            &booking_from(json!({"pool_id": first}), 9, 10, 1),
        )
        .await;
    assert_eq!(picked(&answer), [rooms[0].clone()]);
    let id = answer.body["id"].as_str().unwrap().to_owned();
    let reservation = answer.body["reservations"][0]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // rooms[0] is free at 11: the member stays.
    let moved = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T12:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["reservations"][0]["resource_id"],
        json!(rooms[0])
    );

    // rooms[0] is busy at 14: with keep_resource the reschedule is
    // refused and changes nothing; without, rooms[1] takes it.
    app.book(&rooms[0], "2030-03-04T14:00:00Z", "2030-03-04T15:00:00Z")
        .await;
    let to_14 = json!({"starts_at": "2030-03-04T14:00:00Z", "ends_at": "2030-03-04T15:00:00Z",
                       "keep_resource": true});
    let kept = app
        .post(&format!("/v1/bookings/{id}/reschedule"), &to_14)
        .await;
    assert_problem(&kept, 409, "reservation-conflict");
    let mut to_14 = to_14;
    to_14["keep_resource"] = json!(false);
    let moved = app
        .post(&format!("/v1/bookings/{id}/reschedule"), &to_14)
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["reservations"][0]["resource_id"],
        json!(rooms[1])
    );
    assert_eq!(moved.body["reservations"][0]["pool_id"], json!(first));
    let feed = app
        .get("/v1/events?event_type=reservation.moved", &app.analyst)
        .await;
    let last = feed.body["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["data"]["resource_id"], json!(rooms[1]));
    assert_eq!(last["data"]["pool_id"], json!(first));

    // Moving the reservation alone to 16, where rooms[1] is busy and
    // rooms[0] free, goes back to rooms[0]; with both busy it is
    // pool-exhausted, naming why each member is not free.
    app.book(&rooms[1], "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
        .await;
    let path = format!("/v1/bookings/{id}/reservations/{reservation}");
    let to_16 = json!({"starts_at": "2030-03-04T16:00:00Z", "ends_at": "2030-03-04T17:00:00Z"});
    let kept = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.planner),
            Some(&json!({"starts_at": "2030-03-04T16:00:00Z",
                         "ends_at": "2030-03-04T17:00:00Z", "keep_resource": true})),
            &[],
        )
        .await;
    assert_problem(&kept, 409, "reservation-conflict");
    let moved = app
        .send(Method::PATCH, &path, Some(&app.planner), Some(&to_16), &[])
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["reservations"][0]["resource_id"],
        json!(rooms[0])
    );
    app.book(&rooms[1], "2030-03-04T18:00:00Z", "2030-03-04T19:00:00Z")
        .await;
    app.book(&rooms[0], "2030-03-04T18:00:00Z", "2030-03-04T19:00:00Z")
        .await;
    let before = event_count(&app).await;
    let exhausted = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T18:00:00Z", "ends_at": "2030-03-04T19:00:00Z",
                    "reservations": [{"reservation_id": reservation,
                                      "starts_at": "2030-03-04T18:00:00Z",
                                      "ends_at": "2030-03-04T19:00:00Z"}]}),
        )
        .await;
    assert_problem(&exhausted, 409, "pool-exhausted");
    let members = exhausted.body["pick"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{:?}", exhausted.body);
    assert!(members.iter().all(|m| m["reason"] == "busy"));
    assert_eq!(event_count(&app).await, before, "nothing written");

    // The pool's members never hold more than their capacity.
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": rooms, "starts_at": "2030-03-04T16:00:00Z",
                    "ends_at": "2030-03-04T17:00:00Z"}),
        )
        .await;
    assert_eq!(check.body["available"], false);
}
