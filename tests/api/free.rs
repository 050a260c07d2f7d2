//! The free-resource search answers by the write side's rule: every
//! resource it lists accepts a booking of that range, and every one it
//! leaves out refuses it.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn resource(app: &TestApp, kind: &str, capacity: u32, tags: &[&str]) -> String {
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name": "R", "kind": kind, "capacity": capacity, "tags": tags}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

fn at(hour: u32) -> String {
    format!("2030-05-{:02}T{:02}:00:00Z", 1 + hour / 24, hour % 24)
}

async fn free(app: &TestApp, query: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/resources/free?{query}&limit=2&cursor={c}"),
            None => format!("/v1/resources/free?{query}&limit=2"),
        };
        let page = app.get(&path, &app.analyst).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            found.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return found,
        }
    }
}

#[tokio::test]
async fn the_free_resource_search_agrees_with_the_write_side() {
    let app = spawn_app().await;
    let mut rooms = Vec::new();
    for capacity in [1, 1, 2, 2, 1] {
        rooms.push(resource(&app, "room", capacity, &["ground-floor"]).await);
    }
    // The booking rule's other parts: buffers, and working hours (a
    // Wednesday's day shift running into a whole Thursday).
    for body in [
        json!({"name": "Buffered", "kind": "room", "capacity": 1,
               "policy": {"buffer_before": "PT1H", "buffer_after": "PT2H"}}),
        json!({"name": "Shifts", "kind": "room", "capacity": 2,
               "working_hours": [{"weekday": "wed", "start": "06:00", "end": "24:00"},
                                 {"weekday": "thu", "start": "00:00", "end": "24:00"}],
               "policy": {"buffer_after": "PT1H"}}),
    ] {
        let answer = app.post("/v1/resources", &body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        rooms.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    let van = resource(&app, "vehicle", 1, &[]).await;
    // Some history: overlapping bookings of various lengths.
    let mut last_position = 0;
    for (i, (from, to)) in [
        (2, 6),
        (4, 9),
        (5, 7),
        (10, 14),
        (12, 20),
        (3, 4),
        (15, 16),
        (7, 8),
        (9, 10),
    ]
    .into_iter()
    .enumerate()
    {
        let room = &rooms[i % rooms.len()];
        let booked = app.book(room, &at(from), &at(to)).await;
        if booked.status == StatusCode::CREATED {
            last_position = booked.body["position"].as_i64().unwrap();
        }
    }
    let retired = &rooms[4];
    let answer = app
        .post(&format!("/v1/resources/{retired}/retire"), &json!({}))
        .await;
    last_position = last_position.max(answer.body["position"].as_i64().unwrap());

    for (from, to) in [
        (1, 3),
        (4, 6),
        (5, 6),
        (8, 11),
        (13, 15),
        (19, 22),
        (0, 30),
        (10, 12),
        (16, 18),
        (22, 26),
    ] {
        let query = format!(
            "starts_at={}&ends_at={}&kind=room&consistent_with={last_position}",
            at(from),
            at(to)
        );
        let listed = free(&app, &query).await;
        assert!(
            !listed.contains(retired),
            "a retired resource is never free"
        );
        assert!(!listed.contains(&van), "kind filters");
        for room in &rooms {
            let booked = app.book(room, &at(from), &at(to)).await;
            if listed.contains(room) {
                assert_eq!(
                    booked.status,
                    StatusCode::CREATED,
                    "listed free for {from}-{to}, so the write side accepts it: {:?}",
                    booked.body
                );
                // Put the world back for the next range.
                let id = booked.body["id"].as_str().unwrap();
                let cancelled = app
                    .post(&format!("/v1/bookings/{id}/cancel"), &json!({}))
                    .await;
                assert_eq!(cancelled.status, StatusCode::OK);
            } else {
                assert_eq!(
                    booked.status,
                    StatusCode::CONFLICT,
                    "left out for {from}-{to}, so the write side refuses it: {:?}",
                    booked.body
                );
            }
        }
    }
}

#[tokio::test]
async fn the_free_resource_search_filters_and_refuses_bad_input() {
    let app = spawn_app().await;
    let small = resource(&app, "room", 1, &["garden"]).await;
    let big = resource(&app, "room", 3, &["ground-floor"]).await;
    let position = app.book(&small, &at(30), &at(31)).await.body["position"]
        .as_i64()
        .unwrap();
    let found = free(
        &app,
        &format!(
            "starts_at={}&ends_at={}&min_capacity=2&consistent_with={position}",
            at(1),
            at(2)
        ),
    )
    .await;
    assert_eq!(found, vec![big]);
    let tagged = free(
        &app,
        &format!("starts_at={}&ends_at={}&tag=garden", at(1), at(2)),
    )
    .await;
    assert_eq!(tagged, [small]);

    for bad in [
        format!("starts_at={}&ends_at={}", at(2), at(1)),
        format!("starts_at={}&ends_at={}&min_capacity=0", at(1), at(2)),
        format!("starts_at={}", at(1)),
        format!("starts_at={}&ends_at={}&colour=red", at(1), at(2)),
    ] {
        let answer = app
            .get(&format!("/v1/resources/free?{bad}"), &app.analyst)
            .await;
        assert!(answer.status.is_client_error(), "{bad}: {:?}", answer.body);
    }
    // Two reservations overlap 10-12 on a capacity-2 room, one after the
    // other: never two at once, so it is free (the count alone would say
    // busy; the ledger's rule decides).
    let pair = resource(&app, "studio", 2, &[]).await;
    app.book(&pair, &at(10), &at(11)).await;
    let last = app.book(&pair, &at(11), &at(12)).await;
    let position = last.body["position"].as_i64().unwrap();
    let query = format!(
        "starts_at={}&ends_at={}&kind=studio&consistent_with={position}",
        at(10),
        at(12)
    );
    assert_eq!(free(&app, &query).await, vec![pair.clone()]);
    let third = app.book(&pair, &at(10), &at(12)).await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);
    assert!(free(&app, &query).await.is_empty(), "now two at once");

    let unauthorised = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/resources/free?starts_at={}&ends_at={}", at(1), at(2)),
            None,
            None,
            &[],
        )
        .await;
    assert_problem(&unauthorised, 401, "unauthorized");
}
