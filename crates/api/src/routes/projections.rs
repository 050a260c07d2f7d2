//! Where the projections are (admin).

use axum::Json;
use axum::extract::State;
use muster_projections::query::ProjectionStatus;
use muster_store::Role;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::{ApiError, AppState};

/// The projection status route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_projections))
}

/// Every projection's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    /// By name.
    projections: Vec<ProjectionStatus>,
}

/// Each projection's position, lag and state (running, or failed at a
/// poison event, with the error).
#[utoipa::path(get, path = "/v1/projections", tag = "operations",
    responses((status = 200, description = "Projections", body = ProjectionList)))]
async fn list_projections(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ProjectionList>, ApiError> {
    auth.require(&[Role::Admin])?;
    let projections = state.reads.projections().await?;
    Ok(Json(ProjectionList { projections }))
}
