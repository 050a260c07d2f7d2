//! muster's HTTP API: axum routers, authentication and roles, problem+json
//! errors, and the OpenAPI document.

pub mod auth;
mod command;
pub mod error;
pub mod extract;
pub mod feed;
mod idempotency;
pub mod live;
pub mod observability;
pub mod openapi;
mod read;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use muster_jobs::JobQueue;
use muster_jobs::reports::Reports;
use muster_jobs::webhooks::Webhooks;
use muster_projections::{ReadModels, ReadSignals};
use muster_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Requests per second per API key (0: unlimited).
    pub rate_limit: u32,
    /// Burst size of the per-key rate limit.
    pub rate_burst: u32,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Longest a client may take to send its body before it is answered
    /// 408 (a body shorter than its `Content-Length` stalls).
    pub body_timeout: Duration,
    /// How long an Idempotency-Key's first answer is kept.
    pub idempotency_ttl: Duration,
    /// How long a query with `consistent_with` waits for the read models
    /// before answering 503.
    pub consistency_wait: Duration,
    /// Accept webhook targets on private and loopback addresses.
    pub allow_private_webhooks: bool,
    /// Live streams one API key may hold open at once.
    pub max_streams_per_key: usize,
    /// Live streams this process serves at once.
    pub max_streams: usize,
    /// Events the process's live tail keeps in memory while streams are
    /// open; a live stream that falls further behind is cut off (with a
    /// resumable position).
    pub live_buffer: usize,
    /// Bytes those events may take.
    pub live_buffer_bytes: usize,
    /// Origins whose browser pages may call the API (CORS); empty: none
    /// (same-origin only, as the dashboard is).
    pub cors_origins: Vec<HeaderValue>,
}

/// CORS for the configured origins only; without any, a layer that adds
/// nothing (browsers then refuse cross-origin calls).
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    use axum::http::{Method, header};
    if origins.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(origins.to_vec())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Shared state of every handler, behind one `Arc`: axum clones the state
/// for every request and every middleware, and cloning (then dropping) the
/// services one by one, a dozen reference counts with a `Store` among them
/// several times over, was about 5 % of `muster serve`'s CPU under
/// commands (`BENCHMARKS.md`). A clone is now one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] shares: the services the handlers use.
#[derive(Clone)]
pub struct Services {
    /// The use cases: every command goes through them.
    pub app: muster_app::App,
    /// The store: events and the write side's reads.
    pub store: Store,
    /// The job queue and its admin.
    pub jobs: JobQueue,
    /// Webhook subscriptions and deliveries.
    pub webhooks: Webhooks,
    /// Report requests and files.
    pub reports: Reports,
    /// Client-notification settings and messages.
    pub client_messages: muster_jobs::client_messages::ClientMessages,
    /// The read models: every query endpoint reads through this.
    pub reads: ReadModels,
    /// Limits.
    pub config: Arc<ApiConfig>,
    /// Verified-key cache.
    pub keys: Arc<auth::KeyCache>,
    /// Per-key rate limiter.
    pub limiter: Arc<auth::RateLimiter>,
    /// Per-address limiter of failed authentications (unknown keys).
    pub failed_auth_limiter: Arc<auth::RateLimiter<std::net::IpAddr>>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Read-side wake-ups and projection positions.
    pub signals: ReadSignals,
    /// Cancelled when the process shuts down; ends live streams.
    pub shutdown: CancellationToken,
    /// The process's one tail of the event store, serving every live stream.
    pub tail: live::LiveTail,
    /// Open live streams, capped per key and per process.
    pub streams: Arc<live::StreamCaps>,
    /// Whether the database answers (a probe of its own): while it does
    /// not, requests get 503 at once.
    pub health: muster_store::health::DbHealth,
}

impl AppState {
    /// State for `store` with `config`, queueing jobs on `jobs`;
    /// `shutdown` ends live streams. The read facade is built here from the
    /// same store and signals.
    pub fn new(
        store: Store,
        jobs: JobQueue,
        config: ApiConfig,
        signals: ReadSignals,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Services {
            reads: ReadModels::new(store.clone(), signals.clone()),
            tail: live::LiveTail::spawn(
                store.clone(),
                live::Retention {
                    events: config.live_buffer,
                    bytes: config.live_buffer_bytes,
                },
                signals.events(),
                shutdown.clone(),
            ),
            health: muster_store::health::DbHealth::spawn(store.pool()),
            streams: Arc::new(live::StreamCaps::new(
                config.max_streams_per_key,
                config.max_streams,
            )),
            signals,
            shutdown,
            limiter: Arc::new(auth::RateLimiter::new(config.rate_limit, config.rate_burst)),
            failed_auth_limiter: Arc::new(auth::RateLimiter::new(
                config.rate_limit,
                config.rate_burst,
            )),
            config: Arc::new(config),
            keys: Arc::default(),
            metrics: observability::prometheus(),
            webhooks: Webhooks::new(store.pool().clone()),
            reports: Reports::new(store.pool().clone(), jobs.clone()),
            client_messages: muster_jobs::client_messages::ClientMessages::new(
                store.pool().clone(),
            ),
            jobs,
            app: muster_app::App::new(store.clone()),
            store,
        }))
    }

    /// The same state with the query endpoints reading through `reads`
    /// (the read models on a hot standby: [`ReadModels::on_replica`]).
    pub fn with_reads(self, reads: ReadModels) -> Self {
        let mut services = Arc::unwrap_or_clone(self.0);
        services.reads = reads;
        Self(Arc::new(services))
    }
}

/// Every `/v1` route, with the document its annotations make.
fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::resources::router())
        .merge(routes::bookings::router())
        .merge(routes::holds::router())
        .merge(routes::pools::router())
        .merge(routes::calendars::router())
        .merge(routes::waitlist::router())
        .merge(routes::quotas::router())
        .merge(routes::series::router())
        .merge(routes::whoami::router())
        .merge(routes::keys::router())
        .merge(routes::client_notifications::router())
        .merge(routes::feeds::router())
        .merge(routes::events::router())
        .merge(routes::resource_queries::router())
        .merge(routes::booking_queries::router())
        .merge(routes::clients::router())
        .merge(routes::availability::router())
        .merge(routes::find_time::router())
        .merge(routes::analytics::router())
        .merge(routes::projections::router())
        .merge(routes::subscribe::router())
        .merge(routes::deployments::router())
        .merge(routes::webhooks::router())
        .merge(routes::reports::router())
        .merge(routes::jobs::router())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (v1, doc) = v1_routes().split_for_parts();
    let doc = openapi::finish(doc);
    Router::new()
        .merge(v1)
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", doc))
        .merge(routes::ops::router())
        .merge(routes::dashboard::router())
        .merge(routes::feeds::public_router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observability::observe,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        // Compressed when the client accepts it (never the live stream: the
        // default predicate leaves text/event-stream and small bodies alone).
        .layer(CompressionLayer::new())
        .layer(cors(&state.config.cors_origins))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> Response {
    let mut response =
        ApiError::BadRequest("method not allowed on this route".into()).into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
