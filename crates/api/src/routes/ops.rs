//! Operations endpoints (no auth): liveness, readiness, metrics.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and every migration this build knows is applied.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.reads.schema_current().await {
        Ok(true) => (StatusCode::OK, "ready".to_owned()),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "migrations pending: run `muster migrate`".to_owned(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable".to_owned(),
            )
        }
    }
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.store.pool();
    let idle = pool.num_idle() as f64;
    metrics::gauge!("muster_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("muster_db_pool_connections", "state" => "busy")
        .set(f64::from(pool.size()) - idle);
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
