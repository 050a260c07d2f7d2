//! Deployments: request one for a confirmed booking (202; a worker runs
//! it), follow it, cancel it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use muster_domain::deployment::DeploymentEvent;
use muster_projections::query::deployments::{DeploymentFilter, DeploymentSummary};
use muster_projections::{DeploymentDocument, ReadModel};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bookings::NoBody;
use super::resource_queries::ConsistencyQuery;
use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::command::respond;
use crate::extract::{Command, PathIds, QueryParams};
use crate::read::{consistent_with, limit, next_cursor, statuses, stored_document, time_id_cursor};
use crate::{ApiError, AppState};

/// The deployment routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_deployment, list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(cancel_deployment))
        .routes(routes!(retry_deployment))
}

/// A deployment to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDeploymentBody {
    /// The confirmed booking whose resources to dispatch.
    booking_id: Uuid,
    /// 0 to 10, higher runs first (default 5).
    #[schema(minimum = 0, maximum = 10)]
    priority: Option<u8>,
}

/// The answer to a deployment command.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentAnswer {
    #[serde(flatten)]
    command: CommandAnswer,
    /// Status after the command.
    status: &'static str,
}

/// Renders a deployment command's answer with the status `after` it.
fn answer_as(
    after: &'static str,
) -> impl Fn(&muster_store::Executed<DeploymentEvent>) -> serde_json::Value {
    move |executed| {
        to_json(&DeploymentAnswer {
            command: CommandAnswer::from(&executed.outcome),
            status: after,
        })
    }
}

/// Request a deployment of a confirmed booking: answers 202 at once; a
/// worker runs one dispatch step per reserved resource, then `notify`.
#[utoipa::path(post, path = "/v1/deployments", tag = "deployments",
    params(CommandHeaders), request_body = RequestDeploymentBody,
    responses((status = 202, description = "Queued", body = DeploymentAnswer)))]
async fn request_deployment(
    State(state): State<AppState>,
    command: Command<RequestDeploymentBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let answer = state
        .app
        .request_deployment(&command.context, body.booking_id, body.priority)
        .await;
    respond(answer, StatusCode::ACCEPTED, answer_as("queued"))
}

/// Read a deployment: status, progress, and every step with its attempts.
#[utoipa::path(get, path = "/v1/deployments/{id}", tag = "deployments",
    params(("id" = Uuid, Path, description = "The deployment"), ConsistencyQuery),
    responses((status = 200, description = "The deployment", body = DeploymentDocument)))]
async fn get_deployment(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    headers: axum::http::HeaderMap,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "deployment")?;
    consistent_with(&state, &[ReadModel::Deployments], q.consistent_with).await?;
    let document = state
        .reads
        .deployment_document(&principal.tenant, id)
        .await?;
    stored_document(document, "deployment", &headers)
}

/// Cancel a queued or running deployment: it stops before its next step.
#[utoipa::path(post, path = "/v1/deployments/{id}/cancel", tag = "deployments",
    params(("id" = Uuid, Path, description = "The deployment"), CommandHeaders),
    responses((status = 200, description = "Cancelled", body = DeploymentAnswer)))]
async fn cancel_deployment(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "deployment")?;
    let answer = state.app.cancel_deployment(&command.context, id).await;
    respond(answer, StatusCode::OK, answer_as("cancelled"))
}

/// Resume a failed deployment at its first unfinished step: it is queued
/// again (`deployment.retried`, a job of its own) with a fresh attempt
/// budget for the steps still to do; a step that succeeded is never redone.
#[utoipa::path(post, path = "/v1/deployments/{id}/retry", tag = "deployments",
    params(("id" = Uuid, Path, description = "The deployment"), CommandHeaders),
    responses((status = 202, description = "Queued again", body = DeploymentAnswer)))]
async fn retry_deployment(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "deployment")?;
    let answer = state.app.retry_deployment(&command.context, id).await;
    respond(answer, StatusCode::ACCEPTED, answer_as("queued"))
}

/// Filters and paging of the deployment list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeploymentListQuery {
    /// Only these statuses, comma-separated (`failed,running`).
    status: Option<String>,
    /// Only the deployments of this booking.
    booking_id: Option<Uuid>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read model has applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// A page of deployments.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentPage {
    /// Deployments in the order they were requested.
    items: Vec<DeploymentSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

const STATUSES: &[&str] = &["queued", "running", "succeeded", "failed", "cancelled"];

/// List the tenant's deployments in the order they were requested,
/// filtered by status and booking.
#[utoipa::path(get, path = "/v1/deployments", tag = "deployments", params(DeploymentListQuery),
    responses((status = 200, description = "A page of deployments", body = DeploymentPage)))]
async fn list_deployments(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<DeploymentListQuery>,
) -> Result<Json<DeploymentPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let statuses = statuses(q.status.as_deref(), STATUSES)?;
    let after = time_id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &[ReadModel::Deployments], q.consistent_with).await?;
    let filter = DeploymentFilter {
        statuses,
        booking_id: q.booking_id,
    };
    let items = state
        .reads
        .deployments(&principal.tenant, &filter, after, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |d| {
        crate::read::time_id_cursor_of(d.requested_at, d.id)
    });
    Ok(Json(DeploymentPage { items, next_cursor }))
}
