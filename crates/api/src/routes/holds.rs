//! Holds: place, read and release a tentative claim on a resource. A hold
//! is converted by `POST /v1/bookings` with `{"hold_id": …}` as a
//! reservation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::duration::IsoDuration;
use muster_domain::hold::{DEFAULT_TTL, Hold, HoldEnd, HoldEvent, HoldStatus};
use muster_domain::time::TimeRange;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::command::respond;
use crate::extract::{Command, PathIds};
use crate::{ApiError, AppState};

/// The hold routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_hold))
        .routes(routes!(get_hold, release_hold))
}

/// A hold to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceHoldBody {
    /// The resource to hold.
    resource_id: Uuid,
    /// Start of the held range (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// End of the held range (exclusive).
    ends_at: DateTime<Utc>,
    /// How long the hold lasts (ISO 8601, default `PT5M`, at most `PT1H`).
    #[schema(value_type = Option<String>, example = "PT10M")]
    ttl: Option<IsoDuration>,
}

/// A hold, as its stream says now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// Its id.
    id: Uuid,
    /// The held resource.
    resource_id: Uuid,
    /// Start of the held range.
    starts_at: DateTime<Utc>,
    /// End of the held range.
    ends_at: DateTime<Utc>,
    /// When it stops counting against capacity.
    expires_at: DateTime<Utc>,
    /// `active` until `expires_at`, then `expired`; or `released`,
    /// `converted`.
    status: HoldStatus,
    /// The booking it was converted into.
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_id: Option<Uuid>,
    /// Its version.
    version: i64,
}

/// The answer to placing or releasing a hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldAnswer {
    #[serde(flatten)]
    command: CommandAnswer,
    /// When the hold stops counting (placing only).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

/// Renders a hold command's answer from its events.
fn hold_answer(executed: &muster_store::Executed<HoldEvent>) -> serde_json::Value {
    to_json(&HoldAnswer {
        command: CommandAnswer::from(&executed.outcome),
        expires_at: executed.events.iter().find_map(|e| match e {
            HoldEvent::Placed(spec) => Some(spec.expires_at),
            _ => None,
        }),
    })
}

/// Place a hold: the range counts against the resource's capacity like a
/// reservation until `expires_at` (checked by the same rule as bookings:
/// capacity with buffers, working hours, notice, horizon). Convert it with
/// `POST /v1/bookings` and `{"hold_id": …}` as a reservation.
#[utoipa::path(post, path = "/v1/holds", tag = "holds",
    params(CommandHeaders), request_body = PlaceHoldBody,
    responses((status = 201, description = "Placed", body = HoldAnswer)))]
async fn place_hold(
    State(state): State<AppState>,
    command: Command<PlaceHoldBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let range = TimeRange::new(body.starts_at, body.ends_at, "")
        .map_err(|e| ApiError::Validation(vec![e]))?;
    let ttl = body.ttl.map_or(DEFAULT_TTL, IsoDuration::to_duration);
    let answer = state
        .app
        .place_hold(&command.context, body.resource_id, range, ttl)
        .await;
    respond(answer, StatusCode::CREATED, hold_answer)
}

/// Read a hold. Always current: answered from its own stream.
#[utoipa::path(get, path = "/v1/holds/{id}", tag = "holds",
    params(("id" = Uuid, Path, description = "Hold id")),
    responses((status = 200, description = "The hold", body = HoldView)))]
async fn get_hold(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<HoldView>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "hold")?;
    let (hold, version) = state.store.load::<Hold>(&principal.tenant, id).await?;
    let status = hold
        .status(Utc::now())
        .ok_or_else(|| ApiError::NotFound("hold".into()))?;
    let spec = hold
        .spec
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("hold".into()))?;
    Ok(Json(HoldView {
        id,
        resource_id: spec.resource_id,
        starts_at: spec.starts_at,
        ends_at: spec.ends_at,
        expires_at: spec.expires_at,
        status,
        booking_id: match hold.end {
            Some(HoldEnd::Converted(booking)) => Some(booking),
            _ => None,
        },
        version,
    }))
}

/// Release a hold before it expires (releasing it again changes nothing;
/// a converted hold cannot be released: 409).
#[utoipa::path(delete, path = "/v1/holds/{id}", tag = "holds",
    params(("id" = Uuid, Path, description = "Hold id"), CommandHeaders),
    responses((status = 200, description = "Released", body = HoldAnswer)))]
async fn release_hold(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<super::bookings::NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "hold")?;
    let answer = state.app.release_hold(&command.context, id).await;
    respond(answer, StatusCode::OK, hold_answer)
}
