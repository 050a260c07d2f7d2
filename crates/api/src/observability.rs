//! Per-request observability: correlation id, one span per request, HTTP
//! metrics, and a timeout that answers in problem+json.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use uuid::Uuid;

use crate::extract::CorrelationId;
use crate::{ApiError, AppState};

/// The process-wide Prometheus recorder, installed on first use (several
/// apps in one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency_buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case
            // metrics go there; the handle then renders an empty page.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A correlation id from the client is kept if it is short, visible ASCII;
/// anything else is replaced, so logs and metadata stay clean.
fn correlation_id(request: &Request) -> String {
    request
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// Wraps every request: correlation id in, span around, metrics and the
/// correlation id header out, and the request timeout.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation = correlation_id(&request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    request
        .extensions_mut()
        .insert(CorrelationId(correlation.clone()));
    let quota = crate::auth::QuotaSlot::default();
    request.extensions_mut().insert(quota.clone());
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        correlation_id = %correlation,
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let timeout = state.config.request_timeout;
    let too_large = declared_length(&request).is_some_and(|n| n > state.config.body_limit as u64);
    // Known down: answer at once rather than wait out the pool's timeout.
    let database_down = state.health.is_down() && route.starts_with("/v1/");
    let mut response = async move {
        if database_down {
            return ApiError::Unavailable("the database does not answer; retry shortly".into())
                .into_response();
        }
        if too_large {
            // Refused before a byte of the body is read: waiting for it
            // would hold the connection for nothing.
            return ApiError::PayloadTooLarge(state.config.body_limit).into_response();
        }
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => timed_out(timeout),
        }
    }
    .instrument(span.clone())
    .await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    if let Some(crate::auth::Quota::Left {
        remaining,
        limit,
        reset,
    }) = quota.0.get()
    {
        // IETF draft-ietf-httpapi-ratelimit-headers: the policy (a burst
        // of `q` requests, refilled over `w` seconds) and what is left.
        let headers = response.headers_mut();
        if let Ok(policy) = HeaderValue::from_str(&format!("\"per-key\";q={limit};w={reset}")) {
            headers.insert("ratelimit-policy", policy);
        }
        if let Ok(left) = HeaderValue::from_str(&format!("\"per-key\";r={remaining};t={reset}")) {
            headers.insert("ratelimit", left);
        }
    }
    response
}

/// The body length the client declares, if it does.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn timed_out(timeout: Duration) -> Response {
    ApiError::Unavailable(format!(
        "the request took longer than {} ms",
        timeout.as_millis()
    ))
    .into_response()
}
