//! Deployments end to end: a worker runs the steps against a real
//! dispatch receiver; retries, permanent failure, cancel, dead letters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with_workers, worker_config};
use crate::receiver::Receiver;

const SECRET: &str = "dispatch-secret-0123456789";

/// Polls `path` until `done(body)` or the timeout.
pub async fn wait_for(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let answer = app.get(path, &app.admin).await;
        if answer.status == StatusCode::OK && done(&answer.body) {
            return answer.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path} never got there: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A confirmed booking holding two resources; returns its id.
pub async fn confirmed_booking(app: &TestApp) -> String {
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let (from, to) = ("2027-06-12T14:00:00Z", "2027-06-12T23:00:00Z");
    let booked = app
        .post(
            "/v1/bookings",
            &json!({
                "title": "Smith wedding", "client": {"name": "Ann Smith"},
                "starts_at": from, "ends_at": to,
                "reservations": [
                    {"resource_id": a, "starts_at": from, "ends_at": to, "label": "hall"},
                    {"resource_id": b, "starts_at": from, "ends_at": to, "label": "chef"}
                ]
            }),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let id = booked.body["id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK);
    id
}

pub async fn subscribe(app: &TestApp, url: &str, event_types: &[&str]) -> String {
    let answer = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(&json!({"url": url, "event_types": event_types, "secret": SECRET})),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn deploy(app: &TestApp, booking: &str) -> String {
    let answer = app
        .post(
            "/v1/deployments",
            &json!({"booking_id": booking, "priority": 5}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "queued");
    answer.body["id"].as_str().unwrap().to_owned()
}

/// Re-drives job `id` as the admin.
pub async fn retry_job(app: &TestApp, id: &str) -> crate::helpers::Answer {
    app.send(
        Method::POST,
        &format!("/v1/jobs/{id}/retry"),
        Some(&app.admin),
        None,
        &[],
    )
    .await
}

fn finished(body: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&body["status"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_deployment_runs_every_step_once_with_signed_idempotent_calls() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::ok().await;
    subscribe(&app, &receiver.url, &["deployment.step"]).await;
    let booking = confirmed_booking(&app).await;

    let id = deploy(&app, &booking).await;
    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), finished).await;

    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["progress"], 1.0);
    assert_eq!(doc["steps_total"], 3);
    let names: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names[0].starts_with("dispatch:") && names[1].starts_with("dispatch:"));
    assert_eq!(names[2], "notify");
    let calls = receiver.requests();
    assert_eq!(calls.len(), 3, "one call per step");
    for (call, name) in calls.iter().zip(&names) {
        assert!(call.signed_with(SECRET), "signature must verify");
        assert_eq!(call.header("idempotency-key"), format!("{id}:{name}"));
        assert_eq!(call.header("x-muster-event"), "deployment.step");
        assert_eq!(call.json()["step"]["name"], *name);
    }
    // Every status change is an event on the deployment's stream.
    let events = app.get("/v1/events?limit=1000", &app.admin).await;
    let types: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream_id"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "deployment.requested",
            "deployment.started",
            "deployment.step_succeeded",
            "deployment.step_succeeded",
            "deployment.step_succeeded",
            "deployment.succeeded"
        ]
    );
}

#[tokio::test]
async fn a_failing_step_is_retried_and_a_step_failing_for_good_fails_the_deployment() {
    let app = spawn_app_with_workers(worker_config()).await;
    // The first dispatch call of every step fails; `notify` always fails
    // for the second deployment (marked by priority 9).
    let receiver = Receiver::start(
        Arc::new(|r, earlier| {
            let notify = r.json()["step"]["name"] == "notify";
            if notify && FAIL_NOTIFY.load(std::sync::atomic::Ordering::SeqCst) {
                503
            } else if earlier == 0 {
                500
            } else {
                200
            }
        }),
        Duration::ZERO,
    )
    .await;
    subscribe(&app, &receiver.url, &["deployment.*"]).await;

    let booking = confirmed_booking(&app).await;
    let id = deploy(&app, &booking).await;
    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), finished).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    for step in doc["steps"].as_array().unwrap() {
        let attempts: Vec<bool> = step["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["succeeded"].as_bool().unwrap())
            .collect();
        assert_eq!(
            attempts,
            [false, true],
            "each step failed once, then succeeded: {step}"
        );
        assert!(
            step["attempts"][0]["error"]
                .as_str()
                .unwrap()
                .contains("500")
        );
    }

    FAIL_NOTIFY.store(true, std::sync::atomic::Ordering::SeqCst);
    let booking = confirmed_booking(&app).await;
    let id = deploy(&app, &booking).await;
    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), finished).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("notify"), "{doc}");
    assert_eq!(
        doc["steps"][2]["attempts"].as_array().unwrap().len(),
        3,
        "3 attempts by default"
    );
    assert_eq!(doc["steps_done"], 2);

    // The job is a dead letter: visible, and re-drivable (the deployment
    // stays failed; the job finds nothing left to do).
    let dead = wait_for(&app, "/v1/jobs?status=failed", |b| {
        !b["items"].as_array().unwrap().is_empty()
    })
    .await;
    let job = &dead["items"][0];
    assert_eq!(job["kind"], "deployment");
    assert_eq!(job["args"]["deployment_id"], id.as_str());
    let job_id = job["id"].as_str().unwrap();
    let retried = retry_job(&app, job_id).await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    // Queued again; a worker may already have taken it by the answer.
    assert!(
        ["pending", "running", "done"].contains(&retried.body["status"].as_str().unwrap_or("")),
        "{:?}",
        retried.body
    );
    wait_for(&app, "/v1/jobs?status=done", |b| {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job_id)
    })
    .await;
    let again = retry_job(&app, job_id).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "only dead letters are re-driven"
    );
    let planner = app
        .send(
            Method::GET,
            "/v1/jobs?status=failed",
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(planner.status, StatusCode::FORBIDDEN);
}

static FAIL_NOTIFY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[tokio::test]
async fn a_cancel_stops_a_deployment_before_its_next_step() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::start(Arc::new(|_, _| 200), Duration::from_millis(700)).await;
    subscribe(&app, &receiver.url, &["deployment.step"]).await;
    let booking = confirmed_booking(&app).await;
    let id = deploy(&app, &booking).await;
    // Cancel while the first step's call is in flight.
    let started = Instant::now();
    while receiver.arrivals() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = app
        .post(&format!("/v1/deployments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), finished).await;
    assert_eq!(doc["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.arrivals(), 1, "no step after the cancel");
    let doc = app
        .get(&format!("/v1/deployments/{id}"), &app.admin)
        .await
        .body;
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(
        doc["steps_done"], 1,
        "the step in flight at the cancel still counts"
    );
    let again = app
        .post(&format!("/v1/deployments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn only_confirmed_bookings_deploy_and_bad_input_writes_nothing() {
    let app = spawn_app_with_workers(worker_config()).await;
    let resource = app.resource(1).await;
    let requested = app
        .book(&resource, "2027-01-01T10:00:00Z", "2027-01-01T11:00:00Z")
        .await;
    let booking = requested.body["id"].as_str().unwrap();
    let refused = app
        .post("/v1/deployments", &json!({"booking_id": booking}))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);
    let unknown = app
        .post(
            "/v1/deployments",
            &json!({"booking_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = app
        .post(
            "/v1/deployments",
            &json!({"booking_id": booking, "priority": 11}),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    let jobs = app.get("/v1/jobs", &app.admin).await;
    assert!(
        jobs.body["items"].as_array().unwrap().is_empty(),
        "no job was queued"
    );
}

static FAIL_NOTIFY_UNTIL_RETRY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

#[tokio::test]
async fn a_failed_deployment_resumes_at_its_first_unfinished_step_and_is_listed() {
    let app = spawn_app_with_workers(worker_config()).await;
    // Dispatch calls succeed; `notify` fails until the test says otherwise.
    let receiver = Receiver::start(
        Arc::new(|r, _| {
            let notify = r.json()["step"]["name"] == "notify";
            if notify && FAIL_NOTIFY_UNTIL_RETRY.load(std::sync::atomic::Ordering::SeqCst) {
                503
            } else {
                200
            }
        }),
        Duration::ZERO,
    )
    .await;
    subscribe(&app, &receiver.url, &["deployment.*"]).await;
    let booking = confirmed_booking(&app).await;
    let id = deploy(&app, &booking).await;
    let doc = wait_for(&app, &format!("/v1/deployments/{id}"), finished).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    let calls = |name_prefix: &str| {
        receiver
            .requests()
            .iter()
            .filter(|r| {
                r.json()["step"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
            })
            .count()
    };
    let dispatched = calls("dispatch:");
    assert_eq!(dispatched, 2, "two resources, one dispatch call each");

    let listed = app
        .get(
            &format!("/v1/deployments?booking_id={booking}&status=failed"),
            &app.analyst,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert_eq!(listed.body["items"][0]["steps_done"], 2);

    FAIL_NOTIFY_UNTIL_RETRY.store(false, std::sync::atomic::Ordering::SeqCst);
    let retried = app
        .post(&format!("/v1/deployments/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    let position = retried.body["position"].as_i64().unwrap();
    let doc = wait_for(
        &app,
        &format!("/v1/deployments/{id}?consistent_with={position}"),
        finished,
    )
    .await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(
        calls("dispatch:"),
        dispatched,
        "a step that succeeded is never redone"
    );
    assert_eq!(
        calls("notify"),
        4,
        "3 failed attempts, then one after the retry"
    );
    assert!(doc.get("error").is_none(), "{doc}");

    let again = app
        .post(&format!("/v1/deployments/{id}/retry"), &json!({}))
        .await;
    crate::helpers::assert_problem(&again, 409, "invalid-transition");
    let bad = app
        .get("/v1/deployments?status=sleeping", &app.analyst)
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = app.get("/v1/deployments?limit=1", &app.analyst).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
}
