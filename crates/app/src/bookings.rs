//! Bookings: request one (with its reservations, converting holds), the
//! status machine, changes, reschedules and moves, reservations and tasks.

use chrono::{DateTime, Utc};
use muster_domain::booking::{
    Booking, BookingChanges, BookingCommand, BookingDetails, Reservation, ReservationRange,
    ReservationTarget, Task,
};
use muster_domain::hold::{Hold, HoldCommand};
use muster_store::CommandContext;
use uuid::Uuid;

use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

/// What a reservation in a request holds: a resource for a range, or the
/// resource and range of a hold it converts.
#[derive(Debug, Clone)]
pub enum Claimed {
    /// A resource for `[starts_at, ends_at)`.
    Range {
        /// The resource.
        resource_id: Uuid,
        /// Inclusive start.
        starts_at: DateTime<Utc>,
        /// Exclusive end.
        ends_at: DateTime<Utc>,
    },
    /// A hold of the tenant, converted atomically into the reservation (an
    /// expired one converts only if its range is still free).
    Hold(Uuid),
}

/// A reservation as a request asks for it.
#[derive(Debug, Clone)]
pub struct ReservationRequest {
    /// What it holds.
    pub claimed: Claimed,
    /// What the resource is for in this booking.
    pub label: Option<String>,
    /// A planner books outside the resource's working hours on purpose.
    pub outside_working_hours: bool,
}

/// A booking's reservations being made: each with its id, chosen once so
/// that a retried decision makes the same ones.
#[derive(Debug, Clone)]
struct Reserving {
    requests: Vec<(Uuid, ReservationRequest)>,
    /// How the request names them: `reservations` (`reservations[i].…`),
    /// or empty for a request of one (`resource_id`, `hold_id`).
    field: &'static str,
}

impl Reserving {
    fn new(requests: Vec<ReservationRequest>, field: &'static str) -> Self {
        Self {
            requests: requests.into_iter().map(|r| (Uuid::now_v7(), r)).collect(),
            field,
        }
    }

    fn path(&self, i: usize, name: &str) -> String {
        if self.field.is_empty() {
            name.to_owned()
        } else {
            format!("{}[{i}].{name}", self.field)
        }
    }

    fn holds(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.requests.iter().filter_map(|(_, r)| match r.claimed {
            Claimed::Hold(id) => Some(id),
            Claimed::Range { .. } => None,
        })
    }

    /// The reservations, with each hold's resource and range as read.
    fn resolve(&self, read: &Read) -> Result<Vec<Reservation>, Refusal> {
        let mut errors = Vec::new();
        let mut reservations = Vec::with_capacity(self.requests.len());
        let mut converting = Vec::new();
        for (i, (reservation_id, request)) in self.requests.iter().enumerate() {
            let (resource_id, starts_at, ends_at, hold_id) = match request.claimed {
                Claimed::Range {
                    resource_id,
                    starts_at,
                    ends_at,
                } => (resource_id, starts_at, ends_at, None),
                Claimed::Hold(hold_id) => {
                    if converting.contains(&hold_id) {
                        errors.push(muster_domain::FieldError::new(
                            self.path(i, "hold_id"),
                            "the same hold twice",
                        ));
                        continue;
                    }
                    converting.push(hold_id);
                    let Some(spec) = read.state::<Hold>(hold_id).and_then(|h| h.spec.as_ref())
                    else {
                        errors.push(muster_domain::FieldError::new(
                            self.path(i, "hold_id"),
                            format!("no hold {hold_id}"),
                        ));
                        continue;
                    };
                    (
                        spec.resource_id,
                        spec.starts_at,
                        spec.ends_at,
                        Some(hold_id),
                    )
                }
            };
            reservations.push(Reservation {
                reservation_id: *reservation_id,
                resource_id,
                starts_at,
                ends_at,
                label: request.label.clone(),
                outside_working_hours: request.outside_working_hours,
                hold_id,
            });
        }
        if errors.is_empty() {
            Ok(reservations)
        } else {
            Err(Refusal::Invalid { errors })
        }
    }

    /// The request's field that named `resource_id` (a hold's resource
    /// was checked when the hold was placed).
    fn resource_field(&self, resource_id: Uuid) -> String {
        let at = self.requests.iter().position(|(_, r)| {
            matches!(r.claimed, Claimed::Range { resource_id: named, .. } if named == resource_id)
        });
        self.path(at.unwrap_or(0), "resource_id")
    }

    /// Each converted hold's `hold.converted`, linked to `plan`.
    fn convert_holds<A: muster_domain::Aggregate>(
        &self,
        booking_id: Uuid,
        plan: Plan<A>,
    ) -> Plan<A> {
        self.holds().fold(plan, |plan, hold| {
            plan.link::<Hold>(hold, HoldCommand::Convert { booking_id })
        })
    }
}

/// Requests a booking with its reservations, converting the holds they
/// name, all or nothing.
struct RequestBooking {
    booking_id: Uuid,
    details: BookingDetails,
    reserving: Reserving,
}

impl Decision for RequestBooking {
    type On = Booking;

    fn name(&self) -> &'static str {
        "booking.request"
    }

    fn stream_id(&self) -> Uuid {
        self.booking_id
    }

    fn query(&self, _: &Read) -> Query {
        Query::default().streams::<Hold>(self.reserving.holds())
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let reservations = self.reserving.resolve(read)?;
        let plan = Plan::new(BookingCommand::Request {
            details: self.details.clone(),
            reservations,
        });
        Ok(self.reserving.convert_holds(self.booking_id, plan))
    }

    fn resource_field(&self, resource_id: Uuid) -> String {
        self.reserving.resource_field(resource_id)
    }
}

/// Adds one reservation to a booking, converting its hold if it names one.
struct AddReservation {
    booking_id: Uuid,
    reserving: Reserving,
}

impl Decision for AddReservation {
    type On = Booking;

    fn name(&self) -> &'static str {
        "booking.add_reservation"
    }

    fn stream_id(&self) -> Uuid {
        self.booking_id
    }

    fn query(&self, _: &Read) -> Query {
        Query::default()
            .stream::<Booking>(self.booking_id)
            .streams::<Hold>(self.reserving.holds())
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let reservation = self
            .reserving
            .resolve(read)?
            .pop()
            .ok_or_else(|| Refusal::invalid("resource_id", "is required"))?;
        let plan = Plan::new(BookingCommand::AddReservation(reservation));
        Ok(self.reserving.convert_holds(self.booking_id, plan))
    }
}

impl App {
    /// Requests a booking (`booking.requested`) with `reservations`, all or
    /// nothing; the holds they name are converted in the same commit.
    pub async fn request_booking(
        &self,
        ctx: &CommandContext,
        details: BookingDetails,
        reservations: Vec<ReservationRequest>,
    ) -> Answer<Booking> {
        let decision = RequestBooking {
            booking_id: Uuid::now_v7(),
            details,
            reserving: Reserving::new(reservations, "reservations"),
        };
        self.run(ctx, decision).await
    }

    /// Adds a reservation to booking `booking_id`, converting its hold if
    /// it names one.
    pub async fn add_reservation(
        &self,
        ctx: &CommandContext,
        booking_id: Uuid,
        reservation: ReservationRequest,
    ) -> Answer<Booking> {
        let decision = AddReservation {
            booking_id,
            reserving: Reserving::new(vec![reservation], ""),
        };
        self.run(ctx, decision).await
    }

    /// Confirms a requested booking.
    pub async fn confirm_booking(&self, ctx: &CommandContext, id: Uuid) -> Answer<Booking> {
        self.on_booking(ctx, "booking.confirm", id, BookingCommand::Confirm)
            .await
    }

    /// Starts a confirmed booking.
    pub async fn start_booking(&self, ctx: &CommandContext, id: Uuid) -> Answer<Booking> {
        self.on_booking(ctx, "booking.start", id, BookingCommand::Start)
            .await
    }

    /// Completes a booking in progress; what remains of its reservations
    /// is released.
    pub async fn complete_booking(&self, ctx: &CommandContext, id: Uuid) -> Answer<Booking> {
        let command = BookingCommand::Complete { now: Utc::now() };
        self.on_booking(ctx, "booking.complete", id, command).await
    }

    /// Cancels a requested or confirmed booking; its future reservations
    /// are released.
    pub async fn cancel_booking(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        reason: Option<String>,
    ) -> Answer<Booking> {
        let command = BookingCommand::Cancel {
            reason,
            now: Utc::now(),
        };
        self.on_booking(ctx, "booking.cancel", id, command).await
    }

    /// Changes a booking's title, client, headcount or notes.
    pub async fn update_booking(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        changes: BookingChanges,
    ) -> Answer<Booking> {
        let command = BookingCommand::Update(changes);
        self.on_booking(ctx, "booking.update", id, command).await
    }

    /// Moves a booking to `[starts_at, ends_at)`: its reservations follow
    /// edge by edge, or take the ranges `reservations` gives them; the old
    /// ranges stop counting in the same commit.
    pub async fn reschedule_booking(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        reservations: Vec<ReservationRange>,
    ) -> Answer<Booking> {
        let command = BookingCommand::Reschedule {
            starts_at,
            ends_at,
            reservations,
            now: Utc::now(),
        };
        self.on_booking(ctx, "booking.reschedule", id, command)
            .await
    }

    /// Moves one reservation to another time and/or resource.
    pub async fn move_reservation(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        reservation_id: Uuid,
        to: ReservationTarget,
    ) -> Answer<Booking> {
        let command = BookingCommand::MoveReservation {
            reservation_id,
            to,
            now: Utc::now(),
        };
        self.on_booking(ctx, "booking.move_reservation", id, command)
            .await
    }

    /// Releases a reservation: all of it if it has not begun, the rest if
    /// it is under way.
    pub async fn release_reservation(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        reservation_id: Uuid,
    ) -> Answer<Booking> {
        let command = BookingCommand::ReleaseReservation {
            reservation_id,
            now: Utc::now(),
        };
        self.on_booking(ctx, "booking.release_reservation", id, command)
            .await
    }

    /// Adds a task to a booking.
    pub async fn add_task(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        title: String,
        due_at: Option<DateTime<Utc>>,
        assignee_id: Option<Uuid>,
    ) -> Answer<Booking> {
        let task = Task {
            task_id: Uuid::now_v7(),
            title,
            due_at,
            assignee_id,
        };
        let command = BookingCommand::AddTask(task);
        self.on_stream::<Booking>(ctx, "booking.add_task", id, command, "assignee_id")
            .await
    }

    /// Marks a task of a booking done.
    pub async fn complete_task(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        task_id: Uuid,
    ) -> Answer<Booking> {
        let command = BookingCommand::CompleteTask { task_id };
        self.on_booking(ctx, "booking.complete_task", id, command)
            .await
    }

    async fn on_booking(
        &self,
        ctx: &CommandContext,
        name: &'static str,
        id: Uuid,
        command: BookingCommand,
    ) -> Answer<Booking> {
        self.on_stream::<Booking>(ctx, name, id, command, "resource_id")
            .await
    }
}
