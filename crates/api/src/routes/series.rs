//! Recurring series: `POST /v1/bookings` with a `recurrence` books one
//! booking per occurrence in one transaction (all or nothing, or skipping
//! the occurrences that cannot be booked); a series is read and cancelled
//! from an instant on here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::booking::{Booking, BookingCommand, BookingDetails, BookingStatus, Reservation};
use muster_domain::policy::Claim;
use muster_domain::series::{
    Occurrence, Recurrence, Series, SeriesCommand, SeriesCreated, SeriesEvent, SkippedOccurrence,
    shift_local,
};
use muster_domain::time::TimeRange;
use muster_domain::{FieldError, TenantId};
use muster_store::ledger::Availability;
use muster_store::{CommandContext, CommandOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bookings::BookingAnswer;
use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::extract::{Command, PathIds};
use crate::idempotency::{Answering, replay_recorded, run_linked};
use crate::routes::availability::refusal_type;
use crate::{ApiError, AppState};

/// Most reservations a whole series may hold (occurrences × reservations).
const MAX_SERIES_RESERVATIONS: usize = 5_000;

/// The series routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_series))
        .routes(routes!(cancel_series))
}

/// A recurrence: an RFC 5545 RRULE and the zone whose wall-clock times the
/// occurrences keep.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceBody {
    /// The rule's parts, without DTSTART (the booking's start is it); at
    /// most 500 occurrences within 2 years.
    #[schema(example = "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10")]
    rule: String,
    /// IANA zone.
    #[schema(example = "Europe/Berlin")]
    timezone: String,
}

impl From<RecurrenceBody> for Recurrence {
    fn from(b: RecurrenceBody) -> Self {
        Recurrence {
            rule: b.rule,
            timezone: b.timezone,
        }
    }
}

/// What a series does with occurrences that cannot be booked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Nothing is booked; 409 lists them.
    #[default]
    Fail,
    /// The others are booked; the answer lists them as `skipped`.
    Skip,
}

/// One booking of a series.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OccurrenceAnswer {
    /// The booking.
    id: Uuid,
    /// Its start.
    starts_at: DateTime<Utc>,
    /// Its end.
    ends_at: DateTime<Utc>,
}

impl From<&Occurrence> for OccurrenceAnswer {
    fn from(o: &Occurrence) -> Self {
        Self {
            id: o.booking_id,
            starts_at: o.starts_at,
            ends_at: o.ends_at,
        }
    }
}

/// Renders a series command's answer from its events, the same on replay.
fn answering()
-> Answering<impl Fn(&CommandOutcome, &[SeriesEvent]) -> serde_json::Value, impl Fn(Uuid) -> String>
{
    Answering {
        status: StatusCode::CREATED,
        render: |o: &CommandOutcome, events: &[SeriesEvent]| {
            let created = events.iter().find_map(|e| match e {
                SeriesEvent::Created(c) => Some(c),
                SeriesEvent::Cancelled { .. } => None,
            });
            to_json(&BookingAnswer::series(
                CommandAnswer::from(o),
                created.map_or_else(Vec::new, |c| {
                    c.bookings.iter().map(OccurrenceAnswer::from).collect()
                }),
                created.map_or_else(Vec::new, |c| c.skipped.clone()),
            ))
        },
        resource_field: |_| "reservations".to_owned(),
    }
}

/// One occurrence as it would be booked.
struct Planned {
    booking_id: Uuid,
    details: BookingDetails,
    reservations: Vec<Reservation>,
}

/// Books a series: every occurrence of `recurrence` gets a booking like
/// `template` with its times (and its reservations') shifted to that
/// occurrence in the recurrence's zone. Occurrences that cannot be booked
/// now (checked by the write side's rule, as a booking would be) fail the
/// whole request or are skipped; the rest commit in one transaction with
/// the series' own `series.created`, or not at all (a race lost between
/// the check and the commit answers 409 and books nothing).
pub(crate) async fn request_series(
    state: &AppState,
    context: CommandContext,
    template: BookingDetails,
    reservations: Vec<Reservation>,
    recurrence: Recurrence,
    on_conflict: OnConflict,
) -> Result<Response, ApiError> {
    let answering = answering();
    if let Some(replayed) = replay_recorded::<Series, _, _>(state, &context, &answering).await? {
        return Ok(replayed);
    }
    TimeRange::new(template.starts_at, template.ends_at, "")
        .map_err(|e| ApiError::Validation(vec![e]))?;
    let starts = recurrence.occurrences(template.starts_at)?;
    if starts.len() * reservations.len().max(1) > MAX_SERIES_RESERVATIONS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "recurrence.rule",
            format!(
                "a series holds at most {MAX_SERIES_RESERVATIONS} reservations in all ({} occurrences × {} reservations)",
                starts.len(),
                reservations.len()
            ),
        )]));
    }
    let tz = recurrence.zone()?;
    let series_id = Uuid::now_v7();
    let first = template.starts_at;
    let planned: Vec<Planned> = starts
        .iter()
        .map(|&start| Planned {
            booking_id: Uuid::now_v7(),
            details: BookingDetails {
                starts_at: shift_local(tz, template.starts_at, first, start),
                ends_at: shift_local(tz, template.ends_at, first, start),
                series_id: Some(series_id),
                ..template.clone()
            },
            reservations: reservations
                .iter()
                .map(|r| Reservation {
                    reservation_id: Uuid::now_v7(),
                    starts_at: shift_local(tz, r.starts_at, first, start),
                    ends_at: shift_local(tz, r.ends_at, first, start),
                    ..r.clone()
                })
                .collect(),
        })
        .collect();

    let skipped = blocked(state, &context.tenant, &planned).await?;
    if (on_conflict == OnConflict::Fail && !skipped.is_empty()) || skipped.len() == planned.len() {
        metrics::counter!("muster_series_total", "outcome" => "refused").increment(1);
        return Err(ApiError::SeriesConflict(
            skipped.into_iter().map(|(_, s)| s).collect(),
        ));
    }
    let (skipped_at, skipped): (Vec<usize>, Vec<SkippedOccurrence>) = skipped.into_iter().unzip();
    let booked: Vec<Planned> = planned
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !skipped_at.contains(i))
        .map(|(_, p)| p)
        .collect();
    let created = SeriesCreated {
        recurrence,
        title: template.title.clone(),
        bookings: booked
            .iter()
            .map(|p| Occurrence {
                booking_id: p.booking_id,
                starts_at: p.details.starts_at,
                ends_at: p.details.ends_at,
            })
            .collect(),
        skipped,
    };
    let linked: Vec<(Uuid, BookingCommand)> = booked
        .into_iter()
        .map(|p| {
            (
                p.booking_id,
                BookingCommand::Request {
                    details: p.details,
                    reservations: p.reservations,
                },
            )
        })
        .collect();
    let response = run_linked::<Series, Booking, _, _>(
        state,
        context,
        series_id,
        SeriesCommand::Create(created),
        linked,
        answering,
    )
    .await?;
    metrics::counter!("muster_series_total", "outcome" => "created").increment(1);
    Ok(response)
}

/// The occurrences (by index) that the write side's rule would refuse now,
/// with why: each checked alone against what is held, in one read.
async fn blocked(
    state: &AppState,
    tenant: &TenantId,
    planned: &[Planned],
) -> Result<Vec<(usize, SkippedOccurrence)>, ApiError> {
    let mut claims = Vec::new();
    let mut owner = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        for r in &p.reservations {
            owner.push(i);
            claims.push((
                r.resource_id,
                Claim {
                    range: r.range(),
                    headcount: Some(p.details.headcount),
                    outside_working_hours: r.outside_working_hours,
                },
            ));
        }
    }
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let checked = state.store.check_claims(tenant, &claims, None).await?;
    let mut blocked: Vec<(usize, SkippedOccurrence)> = Vec::new();
    for (&i, (resource_id, availability)) in owner.iter().zip(checked) {
        let (reason, conflicts) = match availability {
            Availability::Free => continue,
            Availability::Conflicts(c) => ("reservation-conflict", c),
            Availability::Refused(refusal) => (refusal_type(&refusal), Vec::new()),
            Availability::Retired => ("resource-retired", Vec::new()),
            Availability::Unknown => {
                let at = planned[i]
                    .reservations
                    .iter()
                    .position(|r| r.resource_id == resource_id)
                    .unwrap_or(0);
                return Err(ApiError::Validation(vec![FieldError::new(
                    format!("reservations[{at}].resource_id"),
                    format!("no resource {resource_id}"),
                )]));
            }
        };
        let conflicts: Vec<serde_json::Value> = conflicts
            .iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect();
        match blocked.last_mut() {
            Some((last, skipped)) if *last == i => skipped.conflicts.extend(conflicts),
            _ => blocked.push((
                i,
                SkippedOccurrence {
                    starts_at: planned[i].details.starts_at,
                    ends_at: planned[i].details.ends_at,
                    reason: reason.to_owned(),
                    conflicts,
                },
            )),
        }
    }
    Ok(blocked)
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
    let from = command.body.from;
    let tenant = command.context.tenant.clone();
    let (series, _) = state.store.load::<Series>(&tenant, id).await?;
    let created = series
        .created
        .ok_or_else(|| ApiError::NotFound("series".into()))?;
    let now = Utc::now();
    let mut linked = Vec::new();
    for occurrence in created.bookings.iter().filter(|o| o.starts_at >= from) {
        let (booking, _) = state
            .store
            .load::<Booking>(&tenant, occurrence.booking_id)
            .await?;
        if matches!(
            booking.status,
            Some(BookingStatus::Requested | BookingStatus::Confirmed)
        ) {
            linked.push((
                occurrence.booking_id,
                BookingCommand::Cancel {
                    reason: Some("the series was cancelled".into()),
                    now,
                },
            ));
        }
    }
    run_linked::<Series, Booking, _, _>(
        &state,
        command.context,
        id,
        SeriesCommand::Cancel { from },
        linked,
        Answering {
            status: StatusCode::OK,
            render: |o: &CommandOutcome, _: &[SeriesEvent]| to_json(&CommandAnswer::from(o)),
            resource_field: |_| "from".to_owned(),
        },
    )
    .await
}
