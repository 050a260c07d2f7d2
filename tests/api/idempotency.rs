use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, booking, event_count, spawn_app};

#[tokio::test]
async fn the_same_key_and_body_return_the_first_answer_and_append_nothing() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let body = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    let key = "book-1";
    let first = app.post_keyed("/v1/bookings", &body, key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let events = event_count(&app).await;
    let again = app.post_keyed("/v1/bookings", &body, key).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(event_count(&app).await, events);

    let mut other = body.clone();
    other["title"] = json!("Another");
    let reused = app.post_keyed("/v1/bookings", &other, key).await;
    assert_problem(&reused, 422, "idempotency-key-reused");
    assert_eq!(event_count(&app).await, events);
}

#[tokio::test]
async fn a_refusal_is_replayed_too() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let body = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    app.post("/v1/bookings", &body).await;
    let key = "clash";
    let refused = app.post_keyed("/v1/bookings", &body, key).await;
    assert_problem(&refused, 409, "reservation-conflict");
    let again = app.post_keyed("/v1/bookings", &body, key).await;
    assert_problem(&again, 409, "reservation-conflict");
    assert_eq!(again.body, refused.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_create_one_booking() {
    let app = std::sync::Arc::new(spawn_app().await);
    let hall = app.resource(1).await;
    let body = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    let before = event_count(&app).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            let body = body.clone();
            tokio::spawn(async move { app.post_keyed("/v1/bookings", &body, "race").await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a.status == StatusCode::CREATED),
        "{answers:?}"
    );
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    // booking.requested + reservation.added, once.
    assert_eq!(event_count(&app).await, before + 2);
}

#[tokio::test]
async fn a_malformed_key_is_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(300);
    let answer = app
        .send(
            Method::POST,
            "/v1/resources",
            Some(&app.planner),
            Some(&json!({"name":"A","kind":"room"})),
            &[("idempotency-key", long.as_str())],
        )
        .await;
    assert_problem(&answer, 400, "bad-request");
}

#[tokio::test]
async fn expired_answers_are_purged_and_fresh_ones_kept() {
    let app = spawn_app().await;
    let key = "old";
    let body = json!({"name": "A", "kind": "room"});
    app.post_keyed("/v1/resources", &body, key).await;
    app.post_keyed("/v1/resources", &body, "new").await;
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours' where idempotency_key = 'old'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let store = muster_store::Store::new(app.db.pool.clone());
    let purged = store
        .purge_idempotency_records(std::time::Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(
        store
            .find_record(&crate::helpers::acme(), "new")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .find_record(&crate::helpers::acme(), "old")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_racers_for_one_slot_get_one_201_and_their_own_answers_on_replay() {
    let app = std::sync::Arc::new(spawn_app().await);
    let hall = app.resource(1).await;
    let body = booking(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z");
    let before = event_count(&app).await;
    let race = |round: u8| {
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let (app, body) = (app.clone(), body.clone());
                tokio::spawn(async move {
                    let key = format!("racer-{n}");
                    let answer = app.post_keyed("/v1/bookings", &body, &key).await;
                    (n, round, answer)
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await.unwrap());
            }
            answers
        }
    };
    let first = race(1).await;
    let winners: Vec<_> = first
        .iter()
        .filter(|(_, _, a)| a.status == StatusCode::CREATED)
        .collect();
    assert_eq!(winners.len(), 1, "{first:?}");
    assert!(
        first
            .iter()
            .all(|(_, _, a)| a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT)
    );
    // Replaying every key gives each racer its own first answer.
    let second = race(2).await;
    for ((n1, _, a1), (n2, _, a2)) in first.iter().zip(&second) {
        assert_eq!(n1, n2);
        assert_eq!(a1.status, a2.status);
        assert_eq!(a1.body, a2.body);
        assert_eq!(a2.headers["idempotent-replayed"], "true");
    }
    assert_eq!(event_count(&app).await, before + 2);
}

#[tokio::test]
async fn a_keyed_change_replays_the_answer_rendered_from_its_events() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let booked = app
        .book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let id = booked.body["id"].as_str().unwrap();
    let path = format!("/v1/bookings/{id}/reservations");
    let body = json!({"resource_id": hall, "starts_at": "2030-01-02T10:00:00Z",
                      "ends_at": "2030-01-02T12:00:00Z", "label": "day two"});
    let first = app.post_keyed(&path, &body, "add-day-two").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["reservations"][0]["label"], "day two");
    let events = event_count(&app).await;
    let again = app.post_keyed(&path, &body, "add-day-two").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        again.body, first.body,
        "the same reservation id, read back from the events"
    );
    assert_eq!(event_count(&app).await, events);
}

#[tokio::test]
async fn records_written_before_outcomes_are_replayed_as_rendered() {
    use sha2::{Digest, Sha256};
    let app = spawn_app().await;
    let body = json!({"name": "A", "kind": "room"});
    // The API's fingerprint: method, path and the canonical body.
    let mut hasher = Sha256::new();
    hasher.update(format!("POST /v1/resources\n{body}"));
    let fingerprint: [u8; 32] = hasher.finalize().into();
    let rendered =
        json!({"id": "0190b2a0-0000-7000-8000-000000000000", "version": 1, "position": 7});
    sqlx::query(
        "insert into idempotency_keys
             (tenant_id, idempotency_key, request_fingerprint, status_code, response)
         values ('acme', 'legacy', $1, 201, $2)",
    )
    .bind(&fingerprint[..])
    .bind(&rendered)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let events = event_count(&app).await;
    let replayed = app.post_keyed("/v1/resources", &body, "legacy").await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(replayed.body, rendered);
    assert_eq!(event_count(&app).await, events);
}
