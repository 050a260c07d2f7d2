//! Deployments: request one for a confirmed booking (202; a worker runs
//! it), follow it, cancel it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use muster_domain::booking::Booking;
use muster_domain::deployment::{DEFAULT_PRIORITY, Deployment, DeploymentCommand, DeploymentEvent};
use muster_projections::{DeploymentDocument, ReadModel};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bookings::NoBody;
use super::resource_queries::ConsistencyQuery;
use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::extract::{Command, PathIds, QueryParams};
use crate::idempotency::{Answering, run_command};
use crate::read::{consistent_with, stored_document};
use crate::{ApiError, AppState};

/// The deployment routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_deployment))
        .routes(routes!(get_deployment))
        .routes(routes!(cancel_deployment))
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

fn answer(
    status: StatusCode,
    after: &'static str,
) -> Answering<
    impl Fn(&muster_store::CommandOutcome, &[DeploymentEvent]) -> serde_json::Value,
    impl Fn(Uuid) -> String,
> {
    Answering {
        status,
        render: move |o: &muster_store::CommandOutcome, _: &[DeploymentEvent]| {
            to_json(&DeploymentAnswer {
                command: CommandAnswer::from(o),
                status: after,
            })
        },
        resource_field: |_| "booking_id".to_owned(),
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
    // The booking's state decides; a booking cancelled after this read
    // still deploys, as if the cancel had come a moment later.
    let (booking, _) = state
        .store
        .load::<Booking>(&command.context.tenant, body.booking_id)
        .await?;
    run_command::<Deployment, _, _>(
        &state,
        command.context,
        Uuid::now_v7(),
        DeploymentCommand::Request {
            booking_id: body.booking_id,
            booking_status: booking.status,
            reservations: booking.reservations,
            priority: body.priority.unwrap_or(DEFAULT_PRIORITY),
        },
        answer(StatusCode::ACCEPTED, "queued"),
    )
    .await
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
    run_command::<Deployment, _, _>(
        &state,
        command.context,
        id,
        DeploymentCommand::Cancel,
        answer(StatusCode::OK, "cancelled"),
    )
    .await
}
