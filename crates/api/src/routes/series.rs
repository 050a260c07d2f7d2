//! Recurring series, booked by `POST /v1/bookings` with a `recurrence`
//! (`routes::bookings`), are read and cancelled from an instant on here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::series::{Series, SkippedOccurrence};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bookings::OccurrenceAnswer;
use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::command::respond;
use crate::extract::{Command, PathIds};
use crate::{ApiError, AppState};

/// The series routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_series))
        .routes(routes!(cancel_series))
}

/// A series as its stream says now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    /// Its id.
    id: Uuid,
    /// The rule.
    rule: String,
    /// The zone whose wall-clock times the occurrences keep.
    timezone: String,
    /// The first booking's title.
    title: String,
    /// The bookings it created, in order (see `GET /v1/bookings?series_id`
    /// for their current state).
    bookings: Vec<OccurrenceAnswer>,
    /// The occurrences it left out.
    #[schema(value_type = Vec<Object>)]
    skipped: Vec<SkippedOccurrence>,
    /// From when it was cancelled, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_from: Option<DateTime<Utc>>,
    /// Its version.
    version: i64,
}

/// Read a series. Always current: answered from its own stream.
#[utoipa::path(get, path = "/v1/series/{id}", tag = "bookings",
    params(("id" = Uuid, Path, description = "Series id")),
    responses((status = 200, description = "The series", body = SeriesView)))]
async fn get_series(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<SeriesView>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "series")?;
    let (series, version) = state.store.load::<Series>(&principal.tenant, id).await?;
    let created = series
        .created
        .ok_or_else(|| ApiError::NotFound("series".into()))?;
    Ok(Json(SeriesView {
        id,
        rule: created.recurrence.rule,
        timezone: created.recurrence.timezone,
        title: created.title,
        bookings: created
            .bookings
            .iter()
            .map(OccurrenceAnswer::from)
            .collect(),
        skipped: created.skipped,
        cancelled_from: series.cancelled_from,
        version,
    }))
}

/// From when to cancel a series.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSeriesBody {
    /// Bookings of the series starting at or after this instant are
    /// cancelled (those still requested or confirmed).
    from: DateTime<Utc>,
}

/// Cancel a series from an instant on: its bookings starting then or
/// later that are still requested or confirmed are cancelled, with
/// `series.cancelled`, in one transaction.
#[utoipa::path(post, path = "/v1/series/{id}/cancel", tag = "bookings",
    params(("id" = Uuid, Path, description = "Series id"), CommandHeaders),
    request_body = CancelSeriesBody,
    responses((status = 200, description = "Cancelled", body = CommandAnswer)))]
async fn cancel_series(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<CancelSeriesBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "series")?;
    let answer = state
        .app
        .cancel_series(&command.context, id, command.body.from)
        .await;
    respond(answer, StatusCode::OK, |executed| {
        to_json(&CommandAnswer::from(&executed.outcome))
    })
}
