//! Change and move: details, reschedule, moving one reservation, each one
//! transaction checked with the booking's own reservations left out.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, booking, event_count, spawn_app};

async fn patch(
    app: &TestApp,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> crate::helpers::Answer {
    app.send(Method::PATCH, path, Some(&app.planner), Some(body), headers)
        .await
}

fn two_reservations(a: &str, b: &str) -> Value {
    json!({
        "title": "Gala", "client": {"name": "Ann"},
        "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z",
        "reservations": [
            {"resource_id": a, "starts_at": "2030-03-04T09:00:00Z", "ends_at": "2030-03-04T12:00:00Z", "label": "hall"},
            {"resource_id": b, "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T11:00:00Z"}
        ]
    })
}

#[tokio::test]
async fn a_booking_is_changed_rescheduled_and_a_reservation_moved() {
    let app = spawn_app().await;
    let (hall, chef) = (app.resource(1).await, app.resource(1).await);
    let created = app
        .post("/v1/bookings", &two_reservations(&hall, &chef))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let updated = patch(
        &app,
        &format!("/v1/bookings/{id}"),
        &json!({"title": "Gala dinner", "headcount": 80}),
        &[],
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.body["version"], 4);

    // One day later and an hour longer: each reservation follows the
    // booking edge by edge. The hall covered the booking with an hour of
    // set-up and covers the new range the same way; the chef's first
    // hour keeps its place from the start.
    let moved = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-05T10:00:00Z", "ends_at": "2030-03-05T13:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let reservations = moved.body["reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), 2);
    assert_eq!(reservations[0]["starts_at"], "2030-03-05T09:00:00Z");
    assert_eq!(reservations[0]["ends_at"], "2030-03-05T13:00:00Z");
    assert_eq!(reservations[0]["label"], "hall");
    assert_eq!(reservations[1]["starts_at"], "2030-03-05T10:00:00Z");
    assert_eq!(reservations[1]["ends_at"], "2030-03-05T11:00:00Z");
    assert_eq!(
        reservations[0]["reservation_id"], created.body["reservations"][0]["reservation_id"],
        "a move keeps the reservation's id"
    );

    // The chef's reservation alone moves to the hall's resource at 13:00.
    let rid = reservations[1]["reservation_id"].as_str().unwrap();
    let one = patch(
        &app,
        &format!("/v1/bookings/{id}/reservations/{rid}"),
        &json!({"starts_at": "2030-03-05T13:00:00Z", "ends_at": "2030-03-05T14:00:00Z", "resource_id": hall}),
        &[],
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);

    // The read side shows it all.
    let position = one.body["position"].as_i64().unwrap();
    let detail = app
        .get(
            &format!("/v1/bookings/{id}?consistent_with={position}"),
            &app.planner,
        )
        .await;
    assert_eq!(detail.body["title"], "Gala dinner");
    assert_eq!(detail.body["headcount"], 80);
    assert_eq!(detail.body["starts_at"], "2030-03-05T10:00:00Z");
    let held: Vec<(String, String)> = detail.body["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource_id"].as_str().unwrap().to_owned(),
                r["starts_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            (hall.clone(), "2030-03-05T09:00:00Z".to_owned()),
            (hall.clone(), "2030-03-05T13:00:00Z".to_owned())
        ]
    );
    let feed = app.get("/v1/events?after=0&limit=100", &app.planner).await;
    let types: Vec<&str> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for wanted in [
        "booking.updated",
        "booking.rescheduled",
        "reservation.moved",
    ] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }

    // The old places are free again; the new ones are not.
    let old = app
        .book(&chef, "2030-03-04T10:00:00Z", "2030-03-04T11:00:00Z")
        .await;
    assert_eq!(old.status, StatusCode::CREATED, "{:?}", old.body);
    let new = app
        .book(&hall, "2030-03-05T13:30:00Z", "2030-03-05T13:45:00Z")
        .await;
    assert_problem(&new, 409, "reservation-conflict");
}

#[tokio::test]
async fn a_shortened_booking_frees_what_its_reservations_no_longer_cover() {
    // SPEC §2: 14:00-18:00 moved to 09:00-11:00 holds the hall 09:00-11:00;
    // 11:00-18:00 is free at once, and 14:00-16:00 books.
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let created = app
        .book(&hall, "2030-03-04T14:00:00Z", "2030-03-04T18:00:00Z")
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let moved = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T09:00:00Z", "ends_at": "2030-03-04T11:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["reservations"][0]["starts_at"],
        "2030-03-04T09:00:00Z"
    );
    assert_eq!(
        moved.body["reservations"][0]["ends_at"],
        "2030-03-04T11:00:00Z"
    );
    for (from, to) in [
        ("2030-03-04T14:00:00Z", "2030-03-04T16:00:00Z"),
        ("2030-03-04T11:00:00Z", "2030-03-04T14:00:00Z"),
    ] {
        let freed = app.book(&hall, from, to).await;
        assert_eq!(
            freed.status,
            StatusCode::CREATED,
            "{from}: {:?}",
            freed.body
        );
    }
    let still = app
        .book(&hall, "2030-03-04T10:00:00Z", "2030-03-04T10:30:00Z")
        .await;
    assert_problem(&still, 409, "reservation-conflict");
}

#[tokio::test]
async fn a_reschedule_may_give_each_reservation_its_range_and_refuses_to_empty_one() {
    let app = spawn_app().await;
    let (hall, chef) = (app.resource(1).await, app.resource(1).await);
    // The chef serves the last hour of a 10:00-12:00 booking.
    let created = app
        .post(
            "/v1/bookings",
            &json!({
                "title": "Gala", "client": {"name": "Ann"},
                "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z",
                "reservations": [
                    {"resource_id": hall, "starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z"},
                    {"resource_id": chef, "starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T12:00:00Z"}
                ]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let chef_rid = created.body["reservations"][1]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = event_count(&app).await;

    // Shortened to one hour, the chef's hour would start at its end: 422
    // naming it, nothing written.
    let emptied = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T11:00:00Z"}),
        )
        .await;
    assert_problem(&emptied, 422, "validation");
    assert!(
        emptied.body["detail"].as_str().unwrap().contains(&chef_rid),
        "{:?}",
        emptied.body
    );
    assert_eq!(event_count(&app).await, before);

    // Given its range, it books; a range of another booking's reservation
    // or an empty one is refused by field.
    let given = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T11:00:00Z",
                    "reservations": [{"reservation_id": chef_rid,
                                      "starts_at": "2030-03-04T10:30:00Z", "ends_at": "2030-03-04T11:00:00Z"}]}),
        )
        .await;
    assert_eq!(given.status, StatusCode::OK, "{:?}", given.body);
    let ranges: Vec<(&str, &str)> = given.body["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["starts_at"].as_str().unwrap(),
                r["ends_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        [
            ("2030-03-04T10:00:00Z", "2030-03-04T11:00:00Z"),
            ("2030-03-04T10:30:00Z", "2030-03-04T11:00:00Z")
        ]
    );
    let stranger = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z",
                    "reservations": [{"reservation_id": uuid::Uuid::now_v7(),
                                      "starts_at": "2030-03-04T10:30:00Z", "ends_at": "2030-03-04T11:00:00Z"},
                                     {"reservation_id": chef_rid,
                                      "starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T11:00:00Z"}]}),
        )
        .await;
    assert_problem(&stranger, 422, "validation");
    let fields: Vec<&str> = stranger.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["reservations[1].ends_at"], "{:?}", stranger.body);
    let unknown = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T10:00:00Z", "ends_at": "2030-03-04T12:00:00Z",
                    "reservations": [{"reservation_id": uuid::Uuid::now_v7(),
                                      "starts_at": "2030-03-04T10:30:00Z", "ends_at": "2030-03-04T11:00:00Z"}]}),
        )
        .await;
    assert_problem(&unknown, 422, "validation");
    assert_eq!(
        unknown.body["errors"][0]["field"], "reservations[0].reservation_id",
        "{:?}",
        unknown.body
    );
}

#[tokio::test]
async fn a_move_that_would_conflict_changes_nothing_and_names_the_conflicts() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let a = app
        .book(&room, "2030-03-04T10:00:00Z", "2030-03-04T12:00:00Z")
        .await;
    let b = app
        .book(&room, "2030-03-04T14:00:00Z", "2030-03-04T16:00:00Z")
        .await;
    let a_id = a.body["id"].as_str().unwrap();
    let events = event_count(&app).await;
    let clash = app
        .post(
            &format!("/v1/bookings/{a_id}/reschedule"),
            &json!({"starts_at": "2030-03-04T15:00:00Z", "ends_at": "2030-03-04T17:00:00Z"}),
        )
        .await;
    assert_problem(&clash, 409, "reservation-conflict");
    assert_eq!(clash.body["conflicts"][0]["booking_id"], b.body["id"]);
    assert_eq!(event_count(&app).await, events, "nothing was written");
    // A still holds its slot.
    let again = app
        .book(&room, "2030-03-04T11:00:00Z", "2030-03-04T11:30:00Z")
        .await;
    assert_problem(&again, 409, "reservation-conflict");

    let rid = a.body["reservations"][0]["reservation_id"]
        .as_str()
        .unwrap();
    let one = patch(
        &app,
        &format!("/v1/bookings/{a_id}/reservations/{rid}"),
        &json!({"starts_at": "2030-03-04T13:00:00Z", "ends_at": "2030-03-04T14:30:00Z"}),
        &[],
    )
    .await;
    assert_problem(&one, 409, "reservation-conflict");
    assert_eq!(event_count(&app).await, events);
}

#[tokio::test]
async fn a_booking_never_conflicts_with_itself_and_if_match_applies() {
    let app = spawn_app().await;
    let room = app.resource(1).await;
    let a = app
        .book(&room, "2030-03-04T10:00:00Z", "2030-03-04T12:00:00Z")
        .await;
    let id = a.body["id"].as_str().unwrap();

    // Would 11:00-13:00 fit? Not beside itself, yes instead of itself.
    let check = |exclude: Option<&str>| {
        let mut body = json!({"resource_ids": [room], "starts_at": "2030-03-04T11:00:00Z",
                              "ends_at": "2030-03-04T13:00:00Z"});
        if let Some(id) = exclude {
            body["exclude_booking_id"] = json!(id);
        }
        body
    };
    let beside = app.post("/v1/conflicts/check", &check(None)).await;
    assert_eq!(beside.body["available"], false, "{:?}", beside.body);
    let instead = app.post("/v1/conflicts/check", &check(Some(id))).await;
    assert_eq!(instead.body["available"], true, "{:?}", instead.body);

    // An hour later overlaps its own old place: allowed.
    let stale = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/reschedule"),
            Some(&app.planner),
            Some(&json!({"starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T13:00:00Z"})),
            &[("if-match", "1")],
        )
        .await;
    assert_problem(&stale, 412, "stale-version");
    let moved = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/reschedule"),
            Some(&app.planner),
            Some(&json!({"starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T13:00:00Z"})),
            &[("if-match", "2")],
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["reservations"][0]["starts_at"],
        "2030-03-04T11:00:00Z"
    );

    // Bad input writes nothing and names its fields.
    let events = event_count(&app).await;
    let bad = app
        .post(
            &format!("/v1/bookings/{id}/reschedule"),
            &json!({"starts_at": "2030-03-04T11:00:00Z", "ends_at": "2030-03-04T10:00:00Z"}),
        )
        .await;
    assert_problem(&bad, 422, "validation");
    let unknown = patch(
        &app,
        &format!("/v1/bookings/{id}"),
        &json!({"colour": "red"}),
        &[],
    )
    .await;
    assert_problem(&unknown, 422, "validation");
    assert_eq!(event_count(&app).await, events);
}

/// A move racing a competing booking for the same slot: exactly one wins,
/// round after round, and the resource is never over capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_racing_a_booking_for_its_target_slot_lets_exactly_one_win() {
    let app = Arc::new(spawn_app().await);
    let room = app.resource(1).await;
    for day in 1..=12 {
        let from = format!("2030-04-{day:02}T10:00:00Z");
        let to = format!("2030-04-{day:02}T12:00:00Z");
        let a = app.book(&room, &from, &to).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        let (target_from, target_to) = (
            format!("2030-04-{day:02}T14:00:00Z"),
            format!("2030-04-{day:02}T16:00:00Z"),
        );
        let mover = {
            let app = app.clone();
            let body = json!({"starts_at": target_from, "ends_at": target_to});
            tokio::spawn(async move {
                app.post(&format!("/v1/bookings/{id}/reschedule"), &body)
                    .await
            })
        };
        let rival = {
            let app = app.clone();
            let body = booking(&room, &target_from, &target_to);
            tokio::spawn(async move { app.post("/v1/bookings", &body).await })
        };
        let (moved, booked) = (mover.await.unwrap(), rival.await.unwrap());
        let wins = [moved.status.is_success(), booked.status.is_success()];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "day {day}: {:?} / {:?}",
            moved.body,
            booked.body
        );
        for loser in [&moved, &booked] {
            if !loser.status.is_success() {
                assert_problem(loser, 409, "reservation-conflict");
            }
        }
    }
    let overlaps: i64 = sqlx::query_scalar(
        "select count(*) from reservations a join reservations b
           on a.tenant_id = b.tenant_id and a.resource_id = b.resource_id
          and a.reservation_id < b.reservation_id
          and tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "never over capacity");
}

#[tokio::test]
async fn if_match_on_an_entity_that_does_not_exist_is_404_not_412() {
    let app = spawn_app().await;
    let nobody = uuid::Uuid::now_v7();
    for version in ["0", "1", "7"] {
        let booking = patch(
            &app,
            &format!("/v1/bookings/{nobody}"),
            &json!({"title": "Ghost"}),
            &[("If-Match", version)],
        )
        .await;
        assert_problem(&booking, 404, "not-found");
        let resource = patch(
            &app,
            &format!("/v1/resources/{nobody}"),
            &json!({"name": "Ghost"}),
            &[("If-Match", version)],
        )
        .await;
        assert_problem(&resource, 404, "not-found");
        let confirm = app
            .send(
                Method::POST,
                &format!("/v1/bookings/{nobody}/confirm"),
                Some(&app.planner),
                None,
                &[("If-Match", version)],
            )
            .await;
        assert_problem(&confirm, 404, "not-found");
    }
    assert_eq!(event_count(&app).await, 0);
}
