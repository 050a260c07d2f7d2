//! Analytics: utilization per resource and day, bookings by status.

use axum::Json;
use axum::extract::State;
use muster_projections::ReadModel;
use muster_projections::query::{ResourceUtilization, StatusCount};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, READERS};
use crate::extract::QueryParams;
use crate::read::{consistent_with, id_cursor, limit, next_cursor, window};
use crate::{ApiError, AppState};

/// The analytics routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(utilization))
        .routes(routes!(bookings_by_status))
}

/// Longest window of an analytics question over HTTP (reports take more).
const MAX_DAYS: i64 = 93;

/// What to measure.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UtilizationQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 93 days after `from`.
    to: String,
    /// Only resources of this kind.
    kind: Option<String>,
    /// Resources per page (1 to 100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read models have applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// A page of resources with their daily utilization.
#[derive(Debug, Serialize, ToSchema)]
pub struct UtilizationPage {
    /// Resources in creation order.
    items: Vec<ResourceUtilization>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Available and booked hours per resource per local day (available =
/// working hours × capacity; 24 h a day without working hours).
#[utoipa::path(get, path = "/v1/analytics/utilization", tag = "analytics",
    params(UtilizationQuery),
    responses((status = 200, description = "Utilization", body = UtilizationPage)))]
async fn utilization(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<UtilizationQuery>,
) -> Result<Json<UtilizationPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let window = window(&q.from, &q.to, MAX_DAYS)?;
    let limit = limit(q.limit, 50, 100)?;
    let after = id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &ReadModel::ALL, q.consistent_with).await?;
    let items = state
        .reads
        .utilization(&principal.tenant, q.kind.as_deref(), window, after, limit)
        .await?;
    // One item per resource, in resource order: the cursor is the last id.
    let next_cursor = next_cursor(&items, limit, |u| crate::read::id_cursor_of(u.resource_id));
    Ok(Json(UtilizationPage { items, next_cursor }))
}

/// The window to count in.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 366 days after `from`.
    to: String,
    /// Wait until the read model has applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// Bookings starting in a window, counted by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCounts {
    /// Every status with at least one booking.
    statuses: Vec<StatusCount>,
    /// All of them.
    total: i64,
}

/// How many bookings starting in the window are in each status.
#[utoipa::path(get, path = "/v1/analytics/bookings-by-status", tag = "analytics",
    params(StatusQuery),
    responses((status = 200, description = "Counts by status", body = StatusCounts)))]
async fn bookings_by_status(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Json<StatusCounts>, ApiError> {
    let principal = auth.require(READERS)?;
    let window = window(&q.from, &q.to, 366)?;
    consistent_with(&state, &[ReadModel::Bookings], q.consistent_with).await?;
    let statuses = state
        .reads
        .bookings_by_status(&principal.tenant, window)
        .await?;
    Ok(Json(StatusCounts {
        total: statuses.iter().map(|s| s.count).sum(),
        statuses,
    }))
}
