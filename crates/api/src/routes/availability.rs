//! Free slots and the conflict check.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use muster_domain::policy::Claim;
use muster_domain::time::TimeRange;
use muster_store::ledger::Availability;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::resource_queries::ConsistencyQuery;
use crate::auth::{Auth, READERS};
use crate::error::ConflictingReservation;
use crate::extract::{QueryBody, QueryParams};
use crate::read::{MAX_DAYS, duration, invalid, window};
use crate::{ApiError, AppState};

/// The availability routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(availability))
        .routes(routes!(check_conflicts))
}

/// Most resources one availability or conflict question may name.
const MAX_RESOURCES: usize = 50;

/// What to find free slots for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// Resource ids, comma-separated (at most 50).
    resource_ids: String,
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 62 days after `from`.
    to: String,
    /// Shortest useful slot: minutes (`90`) or ISO 8601 (`PT1H30M`).
    duration: String,
    /// Wait until the read models have applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// Free time on one resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceSlots {
    /// The resource.
    resource_id: Uuid,
    /// Its time zone (working hours are in it).
    timezone: String,
    /// Whether it is retired (then it has no slots).
    retired: bool,
    /// Maximal free ranges at least `duration` long: a booking of
    /// `duration` fits anywhere inside one.
    slots: Vec<Slot>,
}

/// A free range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Slot {
    /// Start.
    starts_at: DateTime<Utc>,
    /// End (exclusive).
    ends_at: DateTime<Utc>,
}

/// Free slots per resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityAnswer {
    /// In the order asked.
    resources: Vec<ResourceSlots>,
}

/// Free slots that honour each resource's working hours (in its own time
/// zone, DST included) and its capacity.
#[utoipa::path(get, path = "/v1/availability", tag = "availability", params(AvailabilityQuery),
    responses((status = 200, description = "Free slots", body = AvailabilityAnswer)))]
async fn availability(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<AvailabilityQuery>,
) -> Result<Json<AvailabilityAnswer>, ApiError> {
    let principal = auth.require(READERS)?;
    let ids = resource_ids(&q.resource_ids)?;
    let window = window(&q.from, &q.to, MAX_DAYS)?;
    let duration = duration("duration", &q.duration)?;
    if duration > window.ends_at - window.starts_at {
        return Err(invalid("duration", "must not be longer than the window"));
    }
    // Answered from the write side's working set, which is always
    // current: any position the client has seen is already reflected.
    let _ = q.consistent_with;
    let answer = state
        .store
        .free_slots(&principal.tenant, &ids, window, duration)
        .await?
        .into_iter()
        .map(|r| ResourceSlots {
            resource_id: r.resource_id,
            timezone: r.timezone,
            retired: r.retired,
            slots: r
                .slots
                .into_iter()
                .map(|s| Slot {
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                })
                .collect(),
        })
        .collect();
    Ok(Json(AvailabilityAnswer { resources: answer }))
}

fn resource_ids(raw: &str) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::new();
    for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let id = part
            .trim()
            .parse::<Uuid>()
            .map_err(|_| invalid("resource_ids", &format!("{part:?} is not a resource id")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    check_count(&ids)?;
    Ok(ids)
}

fn check_count(ids: &[Uuid]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(invalid("resource_ids", "name at least one resource"));
    }
    if ids.len() > MAX_RESOURCES {
        return Err(invalid(
            "resource_ids",
            &format!("name at most {MAX_RESOURCES} resources"),
        ));
    }
    Ok(())
}

/// A conflict check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictCheckBody {
    /// Resources to check (at most 50).
    resource_ids: Vec<Uuid>,
    /// Start of the range.
    starts_at: DateTime<Utc>,
    /// End of the range (exclusive).
    ends_at: DateTime<Utc>,
    /// Leave this booking's own reservations out (would it fit if it moved
    /// there?).
    exclude_booking_id: Option<Uuid>,
    /// The booking's headcount, checked against each resource's seats.
    #[schema(minimum = 0)]
    headcount: Option<u32>,
    /// Check as a planner's reservation outside working hours would be.
    #[serde(default)]
    outside_working_hours: bool,
}

/// Whether a range is free on each resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictCheckAnswer {
    /// Whether every resource could take the range.
    available: bool,
    /// Per resource, in the order asked.
    resources: Vec<ResourceCheck>,
}

/// The check of one resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceCheck {
    /// The resource.
    resource_id: Uuid,
    /// Whether a reservation of the range would be admitted now.
    available: bool,
    /// Why the resource refuses the range whatever it holds: `retired`,
    /// `seats-exceeded`, `too-soon`, `too-far-ahead` or
    /// `outside-working-hours` (the problem types a booking would get).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The reservations in the way (at full capacity).
    #[schema(value_type = Vec<ConflictingReservation>)]
    conflicts: Vec<muster_store::ReservationConflict>,
}

/// Whether a range could be reserved on these resources right now. It is
/// answered from the write side's own working set by the same rule that
/// admits reservations, so it never disagrees with a booking made at the
/// same instant. (`consistent_with` is accepted like everywhere, and is
/// always already satisfied here.)
#[utoipa::path(post, path = "/v1/conflicts/check", tag = "availability",
    request_body = ConflictCheckBody,
    responses((status = 200, description = "The check", body = ConflictCheckAnswer)))]
async fn check_conflicts(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ConsistencyQuery>,
    QueryBody { principal, body }: QueryBody<ConflictCheckBody>,
) -> Result<Json<ConflictCheckAnswer>, ApiError> {
    check_count(&body.resource_ids)?;
    let range = TimeRange::new(body.starts_at, body.ends_at, "")
        .map_err(|e| ApiError::Validation(vec![e]))?;
    // The write side's working set is always current: any position the
    // client has seen is already reflected, so there is nothing to wait for.
    let _ = q.consistent_with;
    let claim = Claim {
        range,
        headcount: body.headcount,
        outside_working_hours: body.outside_working_hours,
    };
    let checked = state
        .store
        .check_reservations(
            &principal.tenant,
            &body.resource_ids,
            claim,
            body.exclude_booking_id,
        )
        .await?;
    let mut resources = Vec::with_capacity(checked.len());
    for (i, (resource_id, availability)) in checked.into_iter().enumerate() {
        let (available, reason, conflicts) = match availability {
            Availability::Free => (true, None, Vec::new()),
            Availability::Conflicts(c) => (false, None, c),
            Availability::Refused(refusal) => {
                (false, Some(refusal.reason().to_owned()), Vec::new())
            }
            Availability::Retired => (false, Some("retired".to_owned()), Vec::new()),
            Availability::Unknown => {
                return Err(invalid(&format!("resource_ids[{i}]"), "no such resource"));
            }
        };
        resources.push(ResourceCheck {
            resource_id,
            available,
            reason,
            conflicts,
        });
    }
    Ok(Json(ConflictCheckAnswer {
        available: resources.iter().all(|r| r.available),
        resources,
    }))
}
