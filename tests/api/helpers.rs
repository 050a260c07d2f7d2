//! Spawning the app on port 0 with its own database, and a small client.

use std::time::Duration;

use muster::Application;
use muster_api::ApiConfig;
use muster_jobs::{JobPolicies, RetryPolicy};
use muster_store::Role;
use muster_store::db::PoolSettings;
use muster_store::testing::TestDatabase;
use muster_workers::WorkerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A running app with keys for tenant `acme` (every role) and `other`.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub admin: String,
    pub planner: String,
    pub analyst: String,
    pub other_tenant: String,
}

/// The answer to a request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub fn api_config() -> ApiConfig {
    ApiConfig {
        body_limit: 65_536,
        rate_limit: 0,
        rate_burst: 1,
        request_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(1),
        idempotency_ttl: Duration::from_secs(86_400),
        consistency_wait: Duration::from_secs(2),
        // Test receivers listen on loopback.
        allow_private_webhooks: true,
        max_streams_per_key: 100,
        max_streams: 2_000,
        live_buffer: 65_536,
        live_buffer_bytes: 32 << 20,
        cors_origins: vec![reqwest::header::HeaderValue::from_static(
            "https://planner.example.com",
        )],
    }
}

/// Workers tuned for tests: loopback receivers allowed, prompt polls,
/// short retries and a rescue within about 1.5 s.
pub fn worker_config() -> WorkerConfig {
    let policy = |attempts| RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
    };
    WorkerConfig {
        policies: JobPolicies {
            deployment: policy(3),
            notification: policy(4),
            report: policy(2),
            calendar: policy(3),
        },
        poll_interval: Duration::from_millis(100),
        heartbeat: Duration::from_millis(500),
        missed_heartbeats: 2,
        outbound_timeout: Duration::from_secs(5),
        allow_private_targets: true,
        ..WorkerConfig::default()
    }
}

pub fn pool_settings() -> PoolSettings {
    PoolSettings {
        max_connections: 20,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
    }
}

/// Taken by the tests that run several muster processes with pools of
/// their own, one at a time: together, beside the rest of the suite, they
/// would ask for more than Postgres' 100 connections and meet 503s.
pub async fn one_multi_process_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The secret key of every test's app, as the embedded default makes one;
/// processes a test starts get it as `MUSTER_SECRET_KEY`, so that they
/// open the personal data the in-process app sealed.
pub const TEST_SECRET_KEY: &str = "bXVzdGVyLXRlc3RzLXNlY3JldC1rZXktMzItYnl0ZXM=";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(api_config()).await
}

pub async fn spawn_app_with(config: ApiConfig) -> TestApp {
    spawn(config, true, None).await
}

/// The whole of `muster serve`: API, projections, workers and reactor.
pub async fn spawn_app_with_workers(workers: WorkerConfig) -> TestApp {
    spawn(api_config(), true, Some(workers)).await
}

/// The API without projections in the process (they run elsewhere).
pub async fn spawn_api_only() -> TestApp {
    spawn_api_only_with(api_config()).await
}

/// The API alone, with `config`.
pub async fn spawn_api_only_with(config: ApiConfig) -> TestApp {
    spawn(config, false, None).await
}

async fn spawn(
    config: ApiConfig,
    with_projections: bool,
    workers: Option<WorkerConfig>,
) -> TestApp {
    let db = TestDatabase::new().await;
    muster_jobs::migrate(&db.pool)
        .await
        .expect("the queue's schema");
    let policies = workers.as_ref().map(|w| w.policies).unwrap_or_default();
    // A key of the test's own, as the embedded default makes one.
    let primary = muster_store::db::Endpoints {
        statements: db.options.clone(),
        direct: None,
        secret_key: Some(muster_store::secret::SecretKey::from_base64(TEST_SECRET_KEY).unwrap()),
    };
    let mut app = Application::build(
        "127.0.0.1:0".parse().unwrap(),
        muster::Databases {
            primary,
            replica: None,
        },
        &pool_settings(),
        config,
        policies,
    )
    .await
    .expect("the app builds");
    if with_projections {
        app = app.with_projections();
    }
    if let Some(workers) = workers {
        app = app.with_workers(workers).expect("the workers start");
    }
    let port = app.port();
    let store = app.store().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        admin: store.create_key(&acme(), Role::Admin).await.unwrap(),
        planner: store.create_key(&acme(), Role::Planner).await.unwrap(),
        analyst: store.create_key(&acme(), Role::Analyst).await.unwrap(),
        other_tenant: store
            .create_key(&"other".parse().unwrap(), Role::Admin)
            .await
            .unwrap(),
        db,
    }
}

impl TestApp {
    /// A client of a server running elsewhere (a child process) on `db`,
    /// with one key for every role.
    pub fn remote(address: String, key: String, db: TestDatabase) -> Self {
        TestApp {
            address,
            client: reqwest::Client::new(),
            admin: key.clone(),
            planner: key.clone(),
            analyst: key.clone(),
            other_tenant: key,
            db,
        }
    }

    /// Sends `body` (as JSON, if any) with `key` and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(&self.planner), Some(body), &[])
            .await
    }

    /// Posts `body` as the planner with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, body: &Value, idempotency_key: &str) -> Answer {
        self.send(
            Method::POST,
            path,
            Some(&self.planner),
            Some(body),
            &[("idempotency-key", idempotency_key)],
        )
        .await
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.send(Method::GET, path, Some(key), None, &[]).await
    }

    /// Registers a resource and returns its id.
    pub async fn resource(&self, capacity: u32) -> String {
        let answer = self
            .post(
                "/v1/resources",
                &json!({"name": "Hall", "kind": "room", "capacity": capacity, "timezone": "Europe/Berlin"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Requests a booking holding `resource` from `from` to `to`.
    pub async fn book(&self, resource: &str, from: &str, to: &str) -> Answer {
        self.post("/v1/bookings", &booking(resource, from, to))
            .await
    }
}

/// A booking body with one reservation.
pub fn booking(resource: &str, from: &str, to: &str) -> Value {
    json!({
        "title": "Smith wedding",
        "client": {"name": "Ann Smith", "email": "ann@example.com"},
        "starts_at": from, "ends_at": to, "headcount": 120,
        "reservations": [{"resource_id": resource, "starts_at": from, "ends_at": to, "label": "hall"}]
    })
}

/// The field names of a validation problem.
pub fn fields(answer: &Answer) -> Vec<String> {
    answer.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a problem+json answer of `status` and `type` suffix.
#[track_caller]
pub fn assert_problem(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.body);
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{:?}",
        answer.body
    );
    assert_eq!(
        answer.body["type"],
        format!("urn:muster:problem:{kind}"),
        "{:?}",
        answer.body
    );
    assert_eq!(answer.body["status"], status);
}

/// Events stored in the test database.
pub async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// The tenant of the test app's keys.
pub fn acme() -> muster_domain::TenantId {
    "acme".parse().unwrap()
}

/// The types of stream `stream_id`'s events in the feed, in order.
pub async fn feed_types(app: &TestApp, stream_id: &str) -> Vec<String> {
    let page = app.get("/v1/events?after=0&limit=1000", &app.admin).await;
    page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream_id"] == stream_id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}
