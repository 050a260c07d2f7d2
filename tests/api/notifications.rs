//! Notifications end to end: the reactor enqueues one delivery per
//! (subscription, event); deliveries are signed, retried with the same
//! delivery id, logged, sent by email through SMTP; private targets are
//! refused.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::deployments::{retry_job, subscribe, wait_for};
use crate::helpers::{api_config, spawn_app_with, spawn_app_with_workers, worker_config};
use crate::receiver::{Receiver, SmtpServer};

const SECRET: &str = "dispatch-secret-0123456789";

#[tokio::test]
async fn deliveries_are_signed_and_retries_keep_their_delivery_id() {
    let app = spawn_app_with_workers(worker_config()).await;
    // Two failures, then success.
    let receiver = Receiver::start(
        Arc::new(|_, earlier| if earlier < 2 { 503 } else { 204 }),
        Duration::ZERO,
    )
    .await;
    let webhook = subscribe(&app, &receiver.url, &["booking.confirmed"]).await;
    let resource = app.resource(1).await;
    let booked = app
        .book(&resource, "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")
        .await;
    let id = booked.body["id"].as_str().unwrap();
    app.post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
        .await;

    let deliveries = wait_for(&app, &format!("/v1/webhooks/{webhook}/deliveries"), |b| {
        b["items"][0]["status"] == "delivered"
    })
    .await;
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "one delivery: only booking.confirmed matches"
    );
    let delivery = &items[0];
    assert_eq!(delivery["event_type"], "booking.confirmed");
    assert_eq!(delivery["attempts"], 3);
    let codes: Vec<i64> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 204]);
    assert!(
        delivery["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert!(delivery["attempt_log"][0]["latency_ms"].as_f64().unwrap() >= 0.0);
    // The success stopped the failure clock the two failures started.
    let (failing,): (bool,) = sqlx::query_as(
        "select failing_since is not null from webhooks where webhook_id = $1::text::uuid",
    )
    .bind(&webhook)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(!failing, "a success clears the endpoint's failure clock");

    let calls = receiver.requests();
    assert_eq!(calls.len(), 3);
    let delivery_id = delivery["id"].as_str().unwrap();
    for call in &calls {
        assert_eq!(
            call.header("x-muster-delivery"),
            delivery_id,
            "stable across retries"
        );
        assert_eq!(call.header("x-muster-event"), "booking.confirmed");
        assert!(call.signed_with(SECRET));
        assert!(!call.signed_with("another-secret-0123456789"));
        assert_eq!(call.json()["event"]["stream_id"], id);
    }
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_dead_lettered_and_can_be_redriven() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::start(
        Arc::new(|_, earlier| if earlier < 4 { 500 } else { 200 }),
        Duration::ZERO,
    )
    .await;
    let webhook = subscribe(&app, &receiver.url, &["resource.*"]).await;
    app.resource(1).await;
    let dead = wait_for(&app, &format!("/v1/webhooks/{webhook}/deliveries"), |b| {
        b["items"][0]["status"] == "dead"
    })
    .await;
    assert_eq!(dead["items"][0]["attempts"], 4, "the configured 4 attempts");
    let jobs = wait_for(&app, "/v1/jobs?status=failed", |b| {
        !b["items"].as_array().unwrap().is_empty()
    })
    .await;
    let job_id = jobs["items"][0]["id"].as_str().unwrap();
    assert_eq!(jobs["items"][0]["kind"], "notification");
    let retried = retry_job(&app, job_id).await;
    assert_eq!(retried.status, StatusCode::OK);
    let delivered = wait_for(&app, &format!("/v1/webhooks/{webhook}/deliveries"), |b| {
        b["items"][0]["status"] == "delivered"
    })
    .await;
    assert_eq!(delivered["items"][0]["attempts"], 5);
    let ids: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("x-muster-delivery"))
        .collect();
    assert_eq!(ids.len(), 1, "the re-driven delivery keeps its id");
}

#[tokio::test]
async fn email_subscriptions_are_sent_through_smtp() {
    let smtp = SmtpServer::start().await;
    let mut config = worker_config();
    config.smtp_url = Some(smtp.url.clone().into());
    config.smtp_from = "muster@example.com".into();
    let app = spawn_app_with_workers(config).await;
    let webhook = subscribe(&app, "mailto:ops@example.com", &["resource.registered"]).await;
    app.resource(1).await;
    wait_for(&app, &format!("/v1/webhooks/{webhook}/deliveries"), |b| {
        b["items"][0]["status"] == "delivered"
    })
    .await;
    let messages = smtp.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("Subject: [muster] resource.registered"),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("To: ops@example.com"),
        "{}",
        messages[0]
    );
}

#[tokio::test]
async fn private_and_loopback_targets_are_refused_unless_allowed() {
    let mut config = api_config();
    config.allow_private_webhooks = false;
    let app = spawn_app_with(config).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/x",
    ] {
        let answer = app
            .send(
                Method::POST,
                "/v1/webhooks",
                Some(&app.admin),
                Some(&json!({"url": url, "event_types": ["*"], "secret": SECRET})),
                &[],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {:?}",
            answer.body
        );
        assert_eq!(
            answer.body["errors"][0]["field"], "url",
            "{:?}",
            answer.body
        );
    }
    let planner = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.planner),
            Some(&json!({"url": "https://hooks.example.com/x", "event_types": ["*"], "secret": SECRET})),
            &[],
        )
        .await;
    assert_eq!(
        planner.status,
        StatusCode::FORBIDDEN,
        "webhooks are admin-only"
    );
    let listed = app.get("/v1/webhooks", &app.admin).await;
    assert!(
        listed.body["items"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_job_push_with_a_duplicate_key_is_a_no_op() {
    let app = spawn_app_with(api_config()).await;
    let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
    let job = muster_jobs::ReportJob {
        tenant: "acme".parse().unwrap(),
        report_id: uuid::Uuid::now_v7(),
        enqueued_at: None,
    };
    let queue = muster_jobs::JobQueue::new(pool.clone(), muster_jobs::JobPolicies::default());
    let mut tx = pool.begin().await.unwrap();
    assert!(queue.enqueue(&mut tx, &job).await.unwrap());
    assert!(
        !queue.enqueue(&mut tx, &job).await.unwrap(),
        "the duplicate is skipped"
    );
    // The transaction survived the refused push and commits.
    sqlx::query("select 1").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("select count(*) from apalis.jobs where idempotency_key = $1")
            .bind(muster_jobs::Job::idempotency_key(&job))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn nul_characters_are_refused_in_bodies_and_query_strings() {
    let app = spawn_app_with(api_config()).await;
    let answer = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(
                &json!({"url": "https://hooks.example.com/x", "event_types": ["*"],
                         "secret": "0123456789abcdef\u{0}"}),
            ),
            &[],
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        answer.body
    );
    assert_eq!(crate::helpers::fields(&answer), ["secret"]);
    let listed = app.get("/v1/resources?tag=a%00b", &app.admin).await;
    assert_eq!(
        listed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        listed.body
    );
    assert_eq!(crate::helpers::fields(&listed), ["tag"]);
    let job = app
        .send(
            Method::POST,
            "/v1/jobs/a%00b/retry",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(job.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_webhook_receiver_gets_the_upcast_payload_the_feed_serves() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::start(Arc::new(|_, _| 204), Duration::ZERO).await;
    subscribe(&app, &receiver.url, &["booking.requested"]).await;
    // A booking.requested as schema version 1 wrote it (a flat client),
    // stored straight in the table the way an older muster left it.
    let stream_id = uuid::Uuid::now_v7();
    let mut tx = app.db.pool.begin().await.unwrap();
    muster_store::event_store::append_as_stored(
        &mut tx,
        &"acme".parse().unwrap(),
        "booking",
        stream_id,
        0,
        "booking.requested",
        1,
        json!({"title": "Gala", "client_name": "Ann", "client_email": "ann@example.com",
               "starts_at": "2027-01-01T10:00:00Z", "ends_at": "2027-01-01T12:00:00Z",
               "headcount": 3}),
        &muster_store::EventMetadata {
            command_id: uuid::Uuid::now_v7(),
            correlation_id: "old".into(),
            causation_id: uuid::Uuid::now_v7(),
            actor: "old-muster".into(),
            tenant: "acme".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let started = std::time::Instant::now();
    while receiver.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = receiver.requests()[0].json();
    let feed = app.get("/v1/events?after=0&limit=10", &app.admin).await;
    let served = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["stream_id"] == stream_id.to_string())
        .expect("the feed serves the event")
        .clone();
    assert_eq!(served["schema_version"], 2);
    assert_eq!(delivered["event"]["schema_version"], 2);
    assert_eq!(
        delivered["event"]["payload"], served["data"],
        "what the feed serves"
    );
    assert_eq!(delivered["event"]["payload"]["client"]["name"], "Ann");
    assert!(delivered["event"]["payload"].get("client_name").is_none());
}

/// The spec's verification, written here independently of muster's
/// signer: base64(HMAC-SHA256(base64-decoded secret, "id.timestamp.body")).
fn standard_webhooks_verify(secret: &str, r: &crate::receiver::Received) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let (id, timestamp) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    if !(-300..=300).contains(&age) {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test]
async fn standard_webhooks_are_signed_and_a_gone_endpoint_is_disabled_until_enabled() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::start(Arc::new(|_, _| 204), Duration::ZERO).await;
    // No secret given: muster generates a whsec_ one and shows it once.
    let created = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(&json!({"url": receiver.url, "event_types": ["booking.requested"]})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let resource = app.resource(1).await;
    app.book(&resource, "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Answered and recorded, not only arrived: `requests()` is read next.
    while receiver.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no delivery arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = &receiver.requests()[0];
    assert!(
        standard_webhooks_verify(&secret, delivered),
        "the spec's check passes"
    );
    assert_eq!(
        delivered.header("webhook-id"),
        delivered.header("x-muster-delivery")
    );
    assert!(delivered.signed_with(&secret), "X-Muster-Signature is kept");

    // An endpoint that answers 410 Gone is disabled at once.
    let gone = Receiver::start(Arc::new(|_, _| 410), Duration::ZERO).await;
    let hook = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(
                &json!({"url": gone.url, "event_types": ["booking.requested"],
                         "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
            ),
            &[],
        )
        .await;
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();
    app.book(&resource, "2027-03-02T10:00:00Z", "2027-03-02T12:00:00Z")
        .await;
    let listed = wait_for(&app, "/v1/webhooks", |b| {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == hook_id.as_str() && w["disabled_at"].is_string())
    })
    .await;
    let disabled = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == hook_id.as_str())
        .unwrap()
        .clone();
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    assert_eq!(gone.arrivals(), 1, "one attempt, not a retry series");
    // The disable is an event of the subscription's stream, with its reason.
    let feed = app
        .get(&format!("/v1/events?stream_id={hook_id}"), &app.analyst)
        .await;
    let events = feed.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{:?}", feed.body);
    assert_eq!(events[0]["type"], "webhook.disabled");
    assert_eq!(events[0]["stream_type"], "webhook");
    assert!(
        events[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    // Disabled: the next event is not sent to it.
    app.book(&resource, "2027-03-03T10:00:00Z", "2027-03-03T12:00:00Z")
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(gone.arrivals(), 1);
    let enable = |id: String, key: String| {
        let app = &app;
        async move {
            let path = format!("/v1/webhooks/{id}/enable");
            app.send(Method::POST, &path, Some(&key), None, &[])
                .await
                .status
        }
    };
    let hook = hook_id.to_string();
    assert_eq!(
        enable(hook.clone(), app.admin.clone()).await,
        StatusCode::NO_CONTENT
    );
    // Enabling is an event of the stream too; enabling again changes
    // nothing, a planner may not, and an unknown webhook is 404.
    assert_eq!(
        enable(hook.clone(), app.admin.clone()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        enable(hook, app.planner.clone()).await,
        StatusCode::FORBIDDEN
    );
    let nobody = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        enable(nobody, app.admin.clone()).await,
        StatusCode::NOT_FOUND
    );
    let feed = app
        .get(&format!("/v1/events?stream_id={hook_id}"), &app.analyst)
        .await;
    let types: Vec<&str> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["webhook.disabled", "webhook.enabled"]);
    app.book(&resource, "2027-03-04T10:00:00Z", "2027-03-04T12:00:00Z")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gone.arrivals() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "enabled again, it gets deliveries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(&json!({"url": receiver.url, "event_types": ["*"], "secret": "whsec_!!"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_endpoint_failing_every_attempt_long_enough_is_disabled() {
    let app = spawn_app_with_workers(muster_workers::WorkerConfig {
        webhook_disable_after: Duration::from_millis(500),
        ..worker_config()
    })
    .await;
    let failing = Receiver::start(Arc::new(|_, _| 500), Duration::ZERO).await;
    let hook = subscribe(&app, &failing.url, &["booking.requested"]).await;
    let resource = app.resource(1).await;
    app.book(&resource, "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")
        .await;
    let listed = wait_for(&app, "/v1/webhooks", |b| {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == hook.as_str() && w["disabled_at"].is_string())
    })
    .await;
    let reason = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == hook.as_str())
        .unwrap()["disabled_reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("failed since"), "{reason}");
}

#[tokio::test]
async fn a_replay_resends_past_events_as_new_marked_deliveries() {
    let app = spawn_app_with_workers(worker_config()).await;
    let receiver = Receiver::start(Arc::new(|_, _| 204), Duration::ZERO).await;
    let since = chrono::Utc::now();
    let hook = subscribe(&app, &receiver.url, &["booking.requested"]).await;
    let resource = app.resource(1).await;
    app.book(&resource, "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")
        .await;
    app.book(&resource, "2027-03-02T10:00:00Z", "2027-03-02T12:00:00Z")
        .await;
    let wait = |n: usize| {
        let receiver = receiver.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            // Recorded, not only arrived: `requests()` is read after.
            while receiver.requests().len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "only {} of {n} arrived",
                    receiver.requests().len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait(2).await;
    let replay = app
        .send(
            Method::POST,
            &format!("/v1/webhooks/{hook}/replay"),
            Some(&app.admin),
            Some(&json!({"since": since})),
            &[],
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    assert_eq!(replay.body["deliveries"], 2);
    let replay_id = replay.body["replay_id"].as_str().unwrap().to_owned();
    wait(4).await;
    let requests = receiver.requests();
    let replayed: Vec<_> = requests
        .iter()
        .filter(|r| r.header("x-muster-replay") == replay_id)
        .collect();
    assert_eq!(replayed.len(), 2);
    let originals: Vec<String> = requests[..2]
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    for r in &replayed {
        assert!(
            !originals.contains(&r.header("webhook-id")),
            "a replay is a new delivery"
        );
        assert_eq!(r.json()["replay_of"], replay_id.as_str());
    }
    let deliveries = app
        .get(&format!("/v1/webhooks/{hook}/deliveries"), &app.admin)
        .await;
    let marked = deliveries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["replay_of"] == replay_id.as_str())
        .count();
    assert_eq!(marked, 2);
    let missing = app
        .send(
            Method::POST,
            &format!("/v1/webhooks/{resource}/replay"),
            Some(&app.admin),
            Some(&json!({"since": since})),
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_a_subscription_ends_its_pending_retries() {
    let app = spawn_app_with_workers(worker_config()).await;
    let failing = Receiver::start(Arc::new(|_, _| 500), Duration::ZERO).await;
    let webhook = subscribe(&app, &failing.url, &["resource.*"]).await;
    app.resource(1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while failing.arrivals() == 0 {
        assert!(std::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = app
        .send(
            Method::DELETE,
            &format!("/v1/webhooks/{webhook}"),
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert!(deleted.status.is_success(), "{:?}", deleted.body);
    // At most the attempt already under way reaches the receiver; the
    // delivery then ends as a dead letter saying why.
    let after_delete = failing.arrivals();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, error) = loop {
        let row: (String, Option<String>) = sqlx::query_as(
            "select status, last_error from webhook_deliveries where webhook_id = $1::text::uuid",
        )
        .bind(&webhook)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if row.0 != "pending" {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, "dead");
    assert_eq!(error.as_deref(), Some("the subscription was deleted"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        failing.arrivals() <= after_delete + 1,
        "retries went on after the delete"
    );
}
