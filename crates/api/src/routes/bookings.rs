//! Booking commands: request (with reservations), the status machine,
//! reservations and tasks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_app::bookings::{Claimed, Pick, PickFrom, ReservationRequest};
use muster_domain::FieldError;
use muster_domain::booking::{
    BookingChanges, BookingDetails, BookingEvent, BookingStatus, Client, Reservation,
    ReservationRange, ReservationTarget,
};
use muster_domain::series::{Occurrence, Recurrence, SeriesEvent};
use muster_domain::time::TimeRange;
use muster_store::Executed;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::command::respond;
use crate::extract::{Command, PathIds};
use crate::{ApiError, AppState};

/// The booking routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_booking))
        .routes(routes!(confirm_booking))
        .routes(routes!(check_in_booking))
        .routes(routes!(start_booking))
        .routes(routes!(complete_booking))
        .routes(routes!(cancel_booking))
        .routes(routes!(update_booking))
        .routes(routes!(reschedule_booking))
        .routes(routes!(add_reservation))
        .routes(routes!(release_reservation, move_reservation))
        .routes(routes!(add_task))
        .routes(routes!(complete_task))
}

/// An empty body (`{}` or nothing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

/// Who a booking is for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    /// Name.
    #[schema(example = "Ann Smith")]
    name: String,
    /// Email address.
    #[schema(example = "ann@example.com")]
    email: Option<String>,
    /// Phone number.
    phone: Option<String>,
}

/// A reservation to hold: a resource for `[starts_at, ends_at)`; `count`
/// free members of a pool (`pool_id`) or of an ad hoc set (`any_of`) for
/// it, picked by the write side (one reservation each); or a hold to
/// convert (`hold_id` alone: the reservation takes the hold's resource and
/// range).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationBody {
    /// The resource (one of `resource_id`, `pool_id`, `any_of`, `hold_id`).
    resource_id: Option<Uuid>,
    /// A pool whose free members to pick, by its strategy.
    pool_id: Option<Uuid>,
    /// Resources to pick free ones from, least booked first.
    any_of: Option<Vec<Uuid>>,
    /// How many distinct members to pick (with `pool_id` or `any_of`;
    /// default 1).
    count: Option<u32>,
    /// Inclusive start (RFC 3339 with offset; required unless `hold_id`).
    starts_at: Option<DateTime<Utc>>,
    /// Exclusive end, after the start (required unless `hold_id`).
    ends_at: Option<DateTime<Utc>>,
    /// What the resource is for in this booking.
    label: Option<String>,
    /// A planner books outside the resource's working hours on purpose
    /// (recorded in the event).
    #[serde(default)]
    outside_working_hours: bool,
    /// A hold of this tenant to convert, atomically, into this reservation
    /// (an expired one converts only if its range is still free).
    hold_id: Option<Uuid>,
}

/// Reservation bodies as the application takes them; errors name
/// `{prefix}[i].field` (or `field` alone when `prefix` is empty: a single
/// reservation).
fn reservation_requests(
    bodies: Vec<ReservationBody>,
    prefix: &str,
) -> Result<Vec<ReservationRequest>, ApiError> {
    let mut requests = Vec::with_capacity(bodies.len());
    let mut errors = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let at = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}[{i}].")
        };
        let Some(claimed) = claimed(&body, &at, &mut errors) else {
            continue;
        };
        requests.push(ReservationRequest {
            claimed,
            label: body.label,
            outside_working_hours: body.outside_working_hours,
        });
    }
    if errors.is_empty() {
        Ok(requests)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// What a reservation body claims, or `None` with `errors` saying why it
/// claims nothing (fields named `{at}field`).
fn claimed(body: &ReservationBody, at: &str, errors: &mut Vec<FieldError>) -> Option<Claimed> {
    let from = match (body.resource_id, body.pool_id, &body.any_of) {
        (None, Some(pool_id), None) => Some(PickFrom::Pool(pool_id)),
        (None, None, Some(ids)) => Some(PickFrom::AnyOf(ids.clone())),
        _ => None,
    };
    if let Some(hold_id) = body.hold_id {
        if body.resource_id.is_some()
            || body.pool_id.is_some()
            || body.any_of.is_some()
            || body.count.is_some()
            || body.starts_at.is_some()
            || body.ends_at.is_some()
        {
            errors.push(FieldError::new(
                format!("{at}hold_id"),
                "a hold brings its own resource and range: leave resource_id, pool_id, any_of, count, starts_at and ends_at out",
            ));
            return None;
        }
        return Some(Claimed::Hold(hold_id));
    }
    let named = [
        body.resource_id.is_some(),
        body.pool_id.is_some(),
        body.any_of.is_some(),
    ];
    if named.iter().filter(|n| **n).count() > 1 {
        errors.push(FieldError::new(
            format!("{at}resource_id"),
            "name one of resource_id, pool_id, any_of and hold_id",
        ));
        return None;
    }
    if body.count.is_some() && from.is_none() {
        errors.push(FieldError::new(
            format!("{at}count"),
            "only a pick (pool_id or any_of) takes a count",
        ));
        return None;
    }
    let (Some(starts_at), Some(ends_at)) = (body.starts_at, body.ends_at) else {
        for (missing, name) in [
            (body.starts_at.is_none(), "starts_at"),
            (body.ends_at.is_none(), "ends_at"),
        ] {
            if missing {
                errors.push(FieldError::new(
                    format!("{at}{name}"),
                    "is required unless hold_id is given",
                ));
            }
        }
        return None;
    };
    let Some(from) = from else {
        let Some(resource_id) = body.resource_id else {
            errors.push(FieldError::new(
                format!("{at}resource_id"),
                "is required unless pool_id, any_of or hold_id is given",
            ));
            return None;
        };
        return Some(Claimed::Range {
            resource_id,
            starts_at,
            ends_at,
        });
    };
    let before = errors.len();
    if let Err(e) = TimeRange::new(starts_at, ends_at, at) {
        errors.push(e);
    }
    let count = body.count.unwrap_or(1);
    if !(1..=muster_domain::booking::MAX_RESERVATIONS as u32).contains(&count) {
        errors.push(FieldError::new(
            format!("{at}count"),
            format!(
                "must be between 1 and {}",
                muster_domain::booking::MAX_RESERVATIONS
            ),
        ));
    }
    if let PickFrom::AnyOf(ids) = &from {
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        if ids.is_empty() || ids.len() > muster_domain::pool::MAX_MEMBERS {
            errors.push(FieldError::new(
                format!("{at}any_of"),
                format!(
                    "must name 1 to {} resources",
                    muster_domain::pool::MAX_MEMBERS
                ),
            ));
        } else if distinct.len() != ids.len() {
            errors.push(FieldError::new(
                format!("{at}any_of"),
                "names a resource twice",
            ));
        }
    }
    (errors.len() == before).then_some(Claimed::Pick(Pick {
        from,
        count,
        starts_at,
        ends_at,
    }))
}

/// A booking to request, with the reservations it needs (all or nothing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBookingBody {
    /// What it is.
    #[schema(example = "Smith wedding")]
    title: String,
    /// Who it is for.
    client: ClientBody,
    /// Start (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// End, after the start.
    ends_at: DateTime<Utc>,
    /// Expected number of people.
    #[serde(default)]
    headcount: u32,
    /// Free text.
    notes: Option<String>,
    /// Reservations to hold from the start.
    #[serde(default)]
    reservations: Vec<ReservationBody>,
    /// Book a recurring series: one booking per occurrence of the rule,
    /// each keeping this booking's local times in the rule's zone.
    recurrence: Option<RecurrenceBody>,
    /// What a series does with occurrences that cannot be booked: `fail`
    /// (default: nothing is booked, 409 lists them) or `skip` (the others
    /// are booked and these listed).
    #[serde(default)]
    on_conflict: OnConflict,
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

impl From<OnConflict> for muster_app::series::OnConflict {
    fn from(o: OnConflict) -> Self {
        match o {
            OnConflict::Fail => Self::Fail,
            OnConflict::Skip => Self::Skip,
        }
    }
}

/// Changes to a booking's details; fields left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBookingBody {
    /// A new title.
    title: Option<String>,
    /// A new client (replaces the whole client).
    client: Option<ClientBody>,
    /// A new headcount.
    headcount: Option<u32>,
    /// New notes (`""` clears them).
    notes: Option<String>,
}

/// New times for a booking. Its reservations go with it edge by edge: an
/// edge at or before the old start keeps its distance from the start, one
/// at or after the old end keeps its distance from the end, one inside
/// keeps its offset from the start; or each takes the range given here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBody {
    /// The new start (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// The new end, after the start.
    ends_at: DateTime<Utc>,
    /// New ranges for some of the booking's reservations (the others
    /// follow the booking edge by edge).
    #[serde(default)]
    reservations: Vec<ReservationRangeBody>,
    /// Keep every pool reservation on its member (409 if it is busy then)
    /// rather than take another free member of its pool.
    #[serde(default)]
    keep_resource: bool,
}

/// A reservation's new range in a reschedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRangeBody {
    /// One of the booking's reservations.
    reservation_id: Uuid,
    /// Its new start.
    starts_at: DateTime<Utc>,
    /// Its new end, after the start.
    ends_at: DateTime<Utc>,
}

/// Where a reservation moves; fields left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveReservationBody {
    /// Another resource.
    resource_id: Option<Uuid>,
    /// Another start.
    starts_at: Option<DateTime<Utc>>,
    /// Another end.
    ends_at: Option<DateTime<Utc>>,
    /// Sets or clears the planner's working-hours override.
    outside_working_hours: Option<bool>,
    /// A pool reservation moved in time keeps its member (409 if it is
    /// busy then) rather than take another free member of its pool.
    #[serde(default)]
    keep_resource: bool,
}

impl From<ClientBody> for Client {
    fn from(c: ClientBody) -> Self {
        Client {
            name: c.name,
            email: c.email,
            phone: c.phone,
            erased: false,
        }
    }
}

/// Why a booking is cancelled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Free text.
    reason: Option<String>,
}

/// A task to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// What to do.
    title: String,
    /// When it is due.
    due_at: Option<DateTime<Utc>>,
    /// The resource it is assigned to.
    assignee_id: Option<Uuid>,
}

/// A reservation as held.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReservationAnswer {
    /// Its id (for `DELETE .../reservations/{rid}`).
    reservation_id: Uuid,
    /// The resource.
    resource_id: Uuid,
    /// Start.
    starts_at: DateTime<Utc>,
    /// End.
    ends_at: DateTime<Utc>,
    /// Label.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    /// The pool the resource was picked from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_id: Option<Uuid>,
}

impl From<&Reservation> for ReservationAnswer {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.reservation_id,
            resource_id: r.resource_id,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            label: r.label.clone(),
            pool_id: r.pool_id,
        }
    }
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

/// The answer to a booking command.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingAnswer {
    #[serde(flatten)]
    command: CommandAnswer,
    /// Status after the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<BookingStatus>,
    /// Reservations the command created or moved, where they are now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reservations: Vec<ReservationAnswer>,
    /// The task created by the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<Uuid>,
    /// For a series: its id (also the answer's `id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    series_id: Option<Uuid>,
    /// For a series: the bookings created, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    bookings: Option<Vec<OccurrenceAnswer>>,
    /// For a series: the occurrences left out, with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    skipped: Option<Vec<muster_domain::series::SkippedOccurrence>>,
}

impl BookingAnswer {
    /// The answer to a booking command, from the events it appended (the
    /// same the first time and on replay).
    fn of(executed: &Executed<BookingEvent>, status: Option<BookingStatus>) -> Self {
        let events = &executed.events;
        Self {
            command: CommandAnswer::from(&executed.outcome),
            status,
            reservations: events
                .iter()
                .filter_map(|e| match e {
                    BookingEvent::ReservationAdded(r) | BookingEvent::ReservationMoved(r) => {
                        Some(ReservationAnswer::from(r))
                    }
                    _ => None,
                })
                .collect(),
            task_id: events.iter().find_map(|e| match e {
                BookingEvent::TaskAdded(t) => Some(t.task_id),
                _ => None,
            }),
            series_id: None,
            bookings: None,
            skipped: None,
        }
    }

    /// The answer to a series request, from its `series.created`.
    fn series(executed: &Executed<SeriesEvent>) -> Self {
        let created = executed.events.iter().find_map(|e| match e {
            SeriesEvent::Created(c) => Some(c),
            SeriesEvent::Cancelled { .. } => None,
        });
        let command = CommandAnswer::from(&executed.outcome);
        Self {
            series_id: Some(command.id),
            command,
            status: None,
            reservations: Vec::new(),
            task_id: None,
            bookings: Some(created.map_or_else(Vec::new, |c| {
                c.bookings.iter().map(OccurrenceAnswer::from).collect()
            })),
            skipped: Some(created.map_or_else(Vec::new, |c| c.skipped.clone())),
        }
    }
}

/// Renders a booking command's answer with `status` after it.
fn booking_answer(
    status: Option<BookingStatus>,
) -> impl Fn(&Executed<BookingEvent>) -> serde_json::Value {
    move |executed| to_json(&BookingAnswer::of(executed, status))
}

/// Request a booking, with its reservations (all or nothing).
#[utoipa::path(post, path = "/v1/bookings", tag = "bookings",
    params(CommandHeaders), request_body = RequestBookingBody,
    responses((status = 201, description = "Requested", body = BookingAnswer)))]
async fn request_booking(
    State(state): State<AppState>,
    command: Command<RequestBookingBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let reservations = reservation_requests(body.reservations, "reservations")?;
    let details = BookingDetails {
        title: body.title,
        client: body.client.into(),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        headcount: body.headcount,
        notes: body.notes,
        series_id: None,
    };
    let ctx = &command.context;
    if let Some(recurrence) = body.recurrence {
        let answer = state
            .app
            .request_series(
                ctx,
                details,
                reservations,
                recurrence.into(),
                body.on_conflict.into(),
            )
            .await;
        return respond(answer, StatusCode::CREATED, |executed| {
            to_json(&BookingAnswer::series(executed))
        });
    }
    let answer = state.app.request_booking(ctx, details, reservations).await;
    respond(
        answer,
        StatusCode::CREATED,
        booking_answer(Some(BookingStatus::Requested)),
    )
}

/// Confirm a requested booking.
#[utoipa::path(post, path = "/v1/bookings/{id}/confirm", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    responses((status = 200, description = "Confirmed", body = BookingAnswer)))]
async fn confirm_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let answer = state.app.confirm_booking(&command.context, id).await;
    respond(
        answer,
        StatusCode::OK,
        booking_answer(Some(BookingStatus::Confirmed)),
    )
}

/// Check a booking in: the client turned up. Open from an hour before
/// the booking starts until it ends, while it is requested or confirmed;
/// a resource's `check_in_within` closes it at the booking's start plus
/// that time, after which the booking no longer holds the resource and is
/// recorded as a no-show (409).
#[utoipa::path(post, path = "/v1/bookings/{id}/check-in", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    responses((status = 200, description = "Checked in", body = BookingAnswer)))]
async fn check_in_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let answer = state.app.check_in_booking(&command.context, id).await;
    respond(answer, StatusCode::OK, booking_answer(None))
}

/// Start a confirmed booking.
#[utoipa::path(post, path = "/v1/bookings/{id}/start", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    responses((status = 200, description = "Started", body = BookingAnswer)))]
async fn start_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let answer = state.app.start_booking(&command.context, id).await;
    respond(
        answer,
        StatusCode::OK,
        booking_answer(Some(BookingStatus::InProgress)),
    )
}

/// Complete a booking in progress; releases what remains of its reservations.
#[utoipa::path(post, path = "/v1/bookings/{id}/complete", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    responses((status = 200, description = "Completed", body = BookingAnswer)))]
async fn complete_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let answer = state.app.complete_booking(&command.context, id).await;
    respond(
        answer,
        StatusCode::OK,
        booking_answer(Some(BookingStatus::Completed)),
    )
}

/// Cancel a requested or confirmed booking; releases its future reservations.
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body(content = Option<CancelBody>),
    responses((status = 200, description = "Cancelled", body = BookingAnswer)))]
async fn cancel_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<Option<CancelBody>>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    // No body, `{}` and `null` all cancel without a reason.
    let reason = command.body.and_then(|b| b.reason);
    let answer = state.app.cancel_booking(&command.context, id, reason).await;
    respond(
        answer,
        StatusCode::OK,
        booking_answer(Some(BookingStatus::Cancelled)),
    )
}

/// Add a reservation to a booking; 409 with the conflicts if the resource is full.
#[utoipa::path(post, path = "/v1/bookings/{id}/reservations", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body = ReservationBody,
    responses((status = 201, description = "Reserved", body = BookingAnswer)))]
async fn add_reservation(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<ReservationBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let mut requests = reservation_requests(vec![command.body], "")?;
    let Some(reservation) = requests.pop() else {
        return Err(ApiError::BadRequest("a reservation is required".into()));
    };
    let answer = state
        .app
        .add_reservation(&command.context, id, reservation)
        .await;
    respond(answer, StatusCode::CREATED, booking_answer(None))
}

/// Release a reservation: all of it if it has not begun, the rest if under way.
#[utoipa::path(delete, path = "/v1/bookings/{id}/reservations/{rid}", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"),
           ("rid" = Uuid, Path, description = "Reservation id"), CommandHeaders),
    responses((status = 200, description = "Released", body = BookingAnswer)))]
async fn release_reservation(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let reservation_id = ids.id(1, "reservation")?;
    let answer = state
        .app
        .release_reservation(&command.context, id, reservation_id)
        .await;
    respond(answer, StatusCode::OK, booking_answer(None))
}

/// Add a task to a booking.
#[utoipa::path(post, path = "/v1/bookings/{id}/tasks", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body = TaskBody,
    responses((status = 201, description = "Added", body = BookingAnswer)))]
async fn add_task(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<TaskBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let body = command.body;
    let answer = state
        .app
        .add_task(
            &command.context,
            id,
            body.title,
            body.due_at,
            body.assignee_id,
        )
        .await;
    respond(answer, StatusCode::CREATED, booking_answer(None))
}

/// Mark a task done.
#[utoipa::path(post, path = "/v1/bookings/{id}/tasks/{tid}/complete", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"),
           ("tid" = Uuid, Path, description = "Task id"), CommandHeaders),
    responses((status = 200, description = "Completed", body = BookingAnswer)))]
async fn complete_task(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let task_id = ids.id(1, "task")?;
    let answer = state.app.complete_task(&command.context, id, task_id).await;
    respond(answer, StatusCode::OK, booking_answer(None))
}

/// Change a booking's title, client, headcount or notes.
#[utoipa::path(patch, path = "/v1/bookings/{id}", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body = UpdateBookingBody,
    responses((status = 200, description = "Updated (or already so)", body = BookingAnswer)))]
async fn update_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<UpdateBookingBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let body = command.body;
    let changes = BookingChanges {
        title: body.title,
        client: body.client.map(Client::from),
        headcount: body.headcount,
        notes: body.notes,
    };
    let answer = state
        .app
        .update_booking(&command.context, id, changes)
        .await;
    respond(answer, StatusCode::OK, booking_answer(None))
}

/// Move a requested or confirmed booking to new times, in one transaction:
/// its reservations follow edge by edge (or take the ranges given), checked
/// with the booking's own reservations left out, and their old ranges stop
/// counting at once; 409 with the conflicts changes nothing. A pool
/// reservation keeps its member when it is free at the new time, and
/// otherwise takes another free member of its pool (409 `pool-exhausted`
/// when none is), unless `keep_resource`.
#[utoipa::path(post, path = "/v1/bookings/{id}/reschedule", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body = RescheduleBody,
    responses((status = 200, description = "Rescheduled (or already so)", body = BookingAnswer)))]
async fn reschedule_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<RescheduleBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let body = command.body;
    let mut errors = Vec::new();
    let mut given = Vec::with_capacity(body.reservations.len());
    for (i, r) in body.reservations.into_iter().enumerate() {
        match TimeRange::new(r.starts_at, r.ends_at, &format!("reservations[{i}].")) {
            Ok(range) => given.push(ReservationRange {
                reservation_id: r.reservation_id,
                range,
            }),
            Err(e) => errors.push(e),
        }
    }
    let to = TimeRange::new(body.starts_at, body.ends_at, "");
    let to = match to {
        Ok(to) if errors.is_empty() => to,
        Ok(_) => return Err(ApiError::Validation(errors)),
        Err(e) => {
            errors.insert(0, e);
            return Err(ApiError::Validation(errors));
        }
    };
    let answer = state
        .app
        .reschedule_booking(&command.context, id, to, given, body.keep_resource)
        .await;
    respond(answer, StatusCode::OK, booking_answer(None))
}

/// Move one reservation to another time and/or resource, checked with its
/// old place left out; 409 with the conflicts changes nothing. A pool
/// reservation moved in time without a `resource_id` keeps its member when
/// free, and otherwise takes another free member of its pool, unless
/// `keep_resource`.
#[utoipa::path(patch, path = "/v1/bookings/{id}/reservations/{rid}", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"),
           ("rid" = Uuid, Path, description = "Reservation id"), CommandHeaders),
    request_body = MoveReservationBody,
    responses((status = 200, description = "Moved (or already there)", body = BookingAnswer)))]
async fn move_reservation(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<MoveReservationBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    let reservation_id = ids.id(1, "reservation")?;
    let body = command.body;
    let to = ReservationTarget {
        resource_id: body.resource_id,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        outside_working_hours: body.outside_working_hours,
    };
    let answer = state
        .app
        .move_reservation(&command.context, id, reservation_id, to, body.keep_resource)
        .await;
    respond(answer, StatusCode::OK, booking_answer(None))
}
