//! Booking commands: request (with reservations), the status machine,
//! reservations and tasks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::FieldError;
use muster_domain::booking::{
    Booking, BookingChanges, BookingCommand, BookingDetails, BookingEvent, BookingStatus, Client,
    Reservation, ReservationTarget, Task,
};
use muster_domain::hold::{Hold, HoldCommand};
use muster_store::CommandOutcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::extract::{Command, PathIds};
use crate::idempotency::{Answering, run_command, run_linked};
use crate::{ApiError, AppState};

/// The booking routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_booking))
        .routes(routes!(confirm_booking))
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

/// A reservation to hold: a resource for `[starts_at, ends_at)`, or a
/// hold to convert (`hold_id` alone: the reservation takes the hold's
/// resource and range).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationBody {
    /// The resource (required unless `hold_id` is given).
    resource_id: Option<Uuid>,
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

/// Reservations as a request asks for them, with the holds they convert
/// (loaded from their streams: a hold brings its resource and range).
struct Resolved {
    reservations: Vec<Reservation>,
    holds: Vec<Uuid>,
}

impl Resolved {
    /// The hold conversions to commit with the booking `booking_id`.
    fn conversions(&self, booking_id: Uuid) -> Vec<(Uuid, HoldCommand)> {
        self.holds
            .iter()
            .map(|&hold| (hold, HoldCommand::Convert { booking_id }))
            .collect()
    }
}

/// Resolves reservation bodies; errors name `{prefix}[i].field` (or
/// `field` alone when `prefix` is empty: a single reservation).
async fn resolve(
    state: &AppState,
    tenant: &muster_domain::TenantId,
    bodies: Vec<ReservationBody>,
    prefix: &str,
) -> Result<Resolved, ApiError> {
    let mut resolved = Resolved {
        reservations: Vec::with_capacity(bodies.len()),
        holds: Vec::new(),
    };
    let mut errors = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let at = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}[{i}].")
        };
        let (resource_id, starts_at, ends_at) = match body.hold_id {
            Some(hold_id) => {
                if body.resource_id.is_some() || body.starts_at.is_some() || body.ends_at.is_some()
                {
                    errors.push(FieldError::new(
                        format!("{at}hold_id"),
                        "a hold brings its own resource and range: leave resource_id, starts_at and ends_at out",
                    ));
                    continue;
                }
                if resolved.holds.contains(&hold_id) {
                    errors.push(FieldError::new(
                        format!("{at}hold_id"),
                        "the same hold twice",
                    ));
                    continue;
                }
                let (hold, _) = state.store.load::<Hold>(tenant, hold_id).await?;
                let Some(spec) = hold.spec else {
                    errors.push(FieldError::new(
                        format!("{at}hold_id"),
                        format!("no hold {hold_id}"),
                    ));
                    continue;
                };
                resolved.holds.push(hold_id);
                (spec.resource_id, spec.starts_at, spec.ends_at)
            }
            None => match (body.resource_id, body.starts_at, body.ends_at) {
                (Some(r), Some(s), Some(e)) => (r, s, e),
                (r, s, e) => {
                    for (missing, name) in [
                        (r.is_none(), "resource_id"),
                        (s.is_none(), "starts_at"),
                        (e.is_none(), "ends_at"),
                    ] {
                        if missing {
                            errors.push(FieldError::new(
                                format!("{at}{name}"),
                                "is required unless hold_id is given",
                            ));
                        }
                    }
                    continue;
                }
            },
        };
        resolved.reservations.push(Reservation {
            reservation_id: Uuid::now_v7(),
            resource_id,
            starts_at,
            ends_at,
            label: body.label,
            outside_working_hours: body.outside_working_hours,
            hold_id: body.hold_id,
        });
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(ApiError::Validation(errors))
    }
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
    recurrence: Option<super::series::RecurrenceBody>,
    /// What a series does with occurrences that cannot be booked: `fail`
    /// (default: nothing is booked, 409 lists them) or `skip` (the others
    /// are booked and these listed).
    #[serde(default)]
    on_conflict: super::series::OnConflict,
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

/// New times for a booking; its reservations move by the same offset as
/// the start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBody {
    /// The new start (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// The new end, after the start.
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
}

impl From<ClientBody> for Client {
    fn from(c: ClientBody) -> Self {
        Client {
            name: c.name,
            email: c.email,
            phone: c.phone,
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
}

impl From<&Reservation> for ReservationAnswer {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.reservation_id,
            resource_id: r.resource_id,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            label: r.label.clone(),
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
    bookings: Option<Vec<super::series::OccurrenceAnswer>>,
    /// For a series: the occurrences left out, with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    skipped: Option<Vec<muster_domain::series::SkippedOccurrence>>,
}

impl BookingAnswer {
    /// The answer to a series request.
    pub(crate) fn series(
        command: CommandAnswer,
        bookings: Vec<super::series::OccurrenceAnswer>,
        skipped: Vec<muster_domain::series::SkippedOccurrence>,
    ) -> Self {
        Self {
            series_id: Some(command.id),
            command,
            status: None,
            reservations: Vec::new(),
            task_id: None,
            bookings: Some(bookings),
            skipped: Some(skipped),
        }
    }
}

/// Where a command's body names resources, for "no such resource" errors.
enum ResourceField {
    /// `reservations[i].resource_id`, by the order of these resource ids.
    Reservations(Vec<Uuid>),
    /// One named field.
    Named(&'static str),
}

fn answer(
    status: StatusCode,
    booking_status: Option<BookingStatus>,
    resource_field: ResourceField,
) -> Answering<
    impl Fn(&CommandOutcome, &[BookingEvent]) -> serde_json::Value,
    impl Fn(Uuid) -> String,
> {
    Answering {
        status,
        // From the events the command appended, so that a replay (which
        // reads them back) answers exactly as the first time.
        render: move |o: &CommandOutcome, events: &[BookingEvent]| {
            to_json(&BookingAnswer {
                command: CommandAnswer::from(o),
                status: booking_status,
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
            })
        },
        resource_field: move |id| match &resource_field {
            ResourceField::Reservations(ids) => {
                let i = ids.iter().position(|r| *r == id).unwrap_or(0);
                format!("reservations[{i}].resource_id")
            }
            ResourceField::Named(name) => (*name).to_owned(),
        },
    }
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
    let resolved = resolve(
        &state,
        &command.context.tenant,
        body.reservations,
        "reservations",
    )
    .await?;
    let booking_id = Uuid::now_v7();
    let conversions = resolved.conversions(booking_id);
    let reservations = resolved.reservations;
    let field = ResourceField::Reservations(reservations.iter().map(|r| r.resource_id).collect());
    let details = BookingDetails {
        title: body.title,
        client: body.client.into(),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        headcount: body.headcount,
        notes: body.notes,
        series_id: None,
    };
    if let Some(recurrence) = body.recurrence {
        if !conversions.is_empty() {
            return Err(ApiError::Validation(vec![FieldError::new(
                "recurrence",
                "a series cannot convert holds",
            )]));
        }
        return super::series::request_series(
            &state,
            command.context,
            details,
            reservations,
            recurrence.into(),
            body.on_conflict,
        )
        .await;
    }
    run_linked::<Booking, Hold, _, _>(
        &state,
        command.context,
        booking_id,
        BookingCommand::Request {
            details,
            reservations,
        },
        conversions,
        answer(StatusCode::CREATED, Some(BookingStatus::Requested), field),
    )
    .await
}

/// Runs a status-machine command on the booking in the path.
async fn transition(
    state: &AppState,
    ids: &PathIds,
    context: muster_store::CommandContext,
    command: BookingCommand,
    after: BookingStatus,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "booking")?;
    run_command::<Booking, _, _>(
        state,
        context,
        id,
        command,
        answer(
            StatusCode::OK,
            Some(after),
            ResourceField::Named("resource_id"),
        ),
    )
    .await
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
    transition(
        &state,
        &ids,
        command.context,
        BookingCommand::Confirm,
        BookingStatus::Confirmed,
    )
    .await
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
    transition(
        &state,
        &ids,
        command.context,
        BookingCommand::Start,
        BookingStatus::InProgress,
    )
    .await
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
    let now = Utc::now();
    transition(
        &state,
        &ids,
        command.context,
        BookingCommand::Complete { now },
        BookingStatus::Completed,
    )
    .await
}

/// Cancel a requested or confirmed booking; releases its future reservations.
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings",
    params(("id" = Uuid, Path, description = "Booking id"), CommandHeaders),
    request_body(content = Option<CancelBody>),
    responses((status = 200, description = "Cancelled", body = BookingAnswer)))]
async fn cancel_booking(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<CancelBody>,
) -> Result<Response, ApiError> {
    let cancel = BookingCommand::Cancel {
        reason: command.body.reason,
        now: Utc::now(),
    };
    transition(
        &state,
        &ids,
        command.context,
        cancel,
        BookingStatus::Cancelled,
    )
    .await
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
    let mut resolved = resolve(&state, &command.context.tenant, vec![command.body], "").await?;
    let conversions = resolved.conversions(id);
    let reservation = resolved.reservations.remove(0);
    run_linked::<Booking, Hold, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::AddReservation(reservation),
        conversions,
        answer(
            StatusCode::CREATED,
            None,
            ResourceField::Named("resource_id"),
        ),
    )
    .await
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
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::ReleaseReservation {
            reservation_id,
            now: Utc::now(),
        },
        answer(StatusCode::OK, None, ResourceField::Named("resource_id")),
    )
    .await
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
    let task = Task {
        task_id: Uuid::now_v7(),
        title: body.title,
        due_at: body.due_at,
        assignee_id: body.assignee_id,
    };
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::AddTask(task),
        answer(
            StatusCode::CREATED,
            None,
            ResourceField::Named("assignee_id"),
        ),
    )
    .await
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
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::CompleteTask { task_id },
        answer(StatusCode::OK, None, ResourceField::Named("resource_id")),
    )
    .await
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
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::Update(changes),
        answer(StatusCode::OK, None, ResourceField::Named("resource_id")),
    )
    .await
}

/// Move a requested or confirmed booking to new times: every reservation
/// still ahead moves by the same offset, in one transaction, checked with
/// the booking's own reservations left out; 409 with the conflicts changes
/// nothing.
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
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::Reschedule {
            starts_at: body.starts_at,
            ends_at: body.ends_at,
            now: Utc::now(),
        },
        answer(StatusCode::OK, None, ResourceField::Named("resource_id")),
    )
    .await
}

/// Move one reservation to another time and/or resource, checked with its
/// old place left out; 409 with the conflicts changes nothing.
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
    run_command::<Booking, _, _>(
        &state,
        command.context,
        id,
        BookingCommand::MoveReservation {
            reservation_id,
            to: ReservationTarget {
                resource_id: body.resource_id,
                starts_at: body.starts_at,
                ends_at: body.ends_at,
                outside_working_hours: body.outside_working_hours,
            },
            now: Utc::now(),
        },
        answer(StatusCode::OK, None, ResourceField::Named("resource_id")),
    )
    .await
}
