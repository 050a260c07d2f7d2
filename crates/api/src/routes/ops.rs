//! Operations endpoints (no auth): liveness, readiness, metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

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

/// What `/readyz` found.
#[derive(Debug, Default, Serialize)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Each problem, in words (empty when ready).
    problems: Vec<String>,
    /// Projections stopped on a poison event.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parked_projections: Vec<String>,
}

/// Ready when the database answers, every migration this build knows is
/// applied, no projection is parked on a poison event, and the workers
/// that ran lately still heartbeat. The JSON body names what is wrong.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut readiness = Readiness::default();
    if state.health.is_down() {
        readiness
            .problems
            .push("the database does not answer".into());
    } else {
        match state.reads.schema_current().await {
            Ok(true) => {}
            Ok(false) => readiness
                .problems
                .push("migrations pending: run `muster migrate`".into()),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                readiness
                    .problems
                    .push("the database does not answer".into());
            }
        }
        if readiness.problems.is_empty() {
            match state.reads.projections().await {
                Ok(projections) => {
                    readiness.parked_projections = projections
                        .into_iter()
                        .filter(|p| p.state != "running")
                        .map(|p| p.name)
                        .collect();
                    if !readiness.parked_projections.is_empty() {
                        readiness.problems.push(format!(
                            "projections parked on a poison event: {}",
                            readiness.parked_projections.join(", ")
                        ));
                    }
                }
                Err(e) => readiness
                    .problems
                    .push(format!("projections unreadable: {e}")),
            }
            match state.jobs.worker_liveness().await {
                Ok(liveness) if liveness.all_dead() => readiness.problems.push(format!(
                    "no worker has heartbeated for 30 s ({} ran in the last hour)",
                    liveness.recent
                )),
                Ok(_) => {}
                Err(e) => readiness.problems.push(format!("workers unreadable: {e}")),
            }
        }
    }
    let ready = readiness.problems.is_empty();
    readiness.status = if ready { "ready" } else { "not_ready" };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
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
