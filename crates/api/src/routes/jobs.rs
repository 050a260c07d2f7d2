//! Jobs (admin): list them by status (`failed` = dead letters) and
//! re-drive a dead letter.

use axum::Json;
use axum::extract::State;
use muster_jobs::admin::{JobRecord, JobStatusFilter};
use muster_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::extract::{PathIds, QueryParams};
use crate::read::{job_cursor, limit, next_cursor};
use crate::{ApiError, AppState};

/// The job routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
}

/// Which jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Only jobs with this status.
    status: Option<JobStatusFilter>,
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Jobs by id (oldest first).
    items: Vec<JobRecord>,
    /// The next page's cursor, if any.
    next_cursor: Option<String>,
}

/// The tenant's jobs; `status=failed` lists the dead letters.
#[utoipa::path(get, path = "/v1/jobs", tag = "operations", params(JobQuery),
    responses((status = 200, description = "Jobs", body = JobPage)))]
async fn list_jobs(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<JobQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let limit = limit(q.limit, 50, 200)?;
    let after = job_cursor(q.cursor.as_deref())?;
    let items = state
        .jobs
        .list(&principal.tenant, q.status, after, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |j| j.id.clone());
    Ok(Json(JobPage { items, next_cursor }))
}

/// Re-drive a dead letter: it runs again with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "operations",
    params(("id" = String, Path, description = "The job")),
    responses((status = 200, description = "Queued again (409 if it is not a dead letter)", body = JobRecord)))]
async fn retry_job(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<JobRecord>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let id = path.0.first().map(String::as_str).unwrap_or_default();
    // Job ids are ULIDs; anything else names no job.
    if id.len() != 26 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::NotFound("job".into()));
    }
    Ok(Json(state.jobs.retry(&principal.tenant, id).await?))
}
