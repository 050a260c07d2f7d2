//! Bookings: request one (with its reservations, converting holds), the
//! status machine, changes, reschedules and moves, reservations and tasks.

use chrono::{DateTime, Utc};
use muster_domain::booking::{
    Booking, BookingChanges, BookingCommand, BookingDetails, Repicked, Reservation,
    ReservationRange, ReservationTarget, Task,
};
use muster_domain::hold::{Hold, HoldCommand};
use muster_domain::pool::{Members, Pool};
use muster_domain::time::TimeRange;
use muster_domain::waitlist::{WaitlistCommand, WaitlistEntry};
use muster_store::{CommandContext, LockRequest};
use uuid::Uuid;

use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

mod pick;

pub(crate) use pick::Picking;
use pick::Repicking;
pub use pick::{Pick, PickFrom};

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
    /// Distinct free members of a pool (or of an ad hoc set), one
    /// reservation each, picked under their locks.
    Pick(Pick),
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

/// A booking's reservations being made: each with its ids (one, or one per
/// member a pick takes), chosen once so that a retried decision makes the
/// same ones.
#[derive(Debug, Clone)]
struct Reserving {
    requests: Vec<(Vec<Uuid>, ReservationRequest)>,
    /// How the request names them: `reservations` (`reservations[i].…`),
    /// or empty for a request of one (`resource_id`, `hold_id`).
    field: &'static str,
}

impl Reserving {
    fn new(requests: Vec<ReservationRequest>, field: &'static str) -> Self {
        Self {
            requests: requests
                .into_iter()
                .map(|r| {
                    let count = match &r.claimed {
                        Claimed::Pick(pick) => pick.count as usize,
                        Claimed::Range { .. } | Claimed::Hold(_) => 1,
                    };
                    ((0..count).map(|_| Uuid::now_v7()).collect(), r)
                })
                .collect(),
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
            Claimed::Range { .. } | Claimed::Pick(_) => None,
        })
    }

    /// The pools its picks name.
    fn pools(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.requests.iter().filter_map(|(_, r)| match &r.claimed {
            Claimed::Pick(pick) => pick.pool_id(),
            Claimed::Range { .. } | Claimed::Hold(_) => None,
        })
    }

    /// Its picks and the resources it names, once a headcount is known
    /// (`None` without picks: nothing to lock).
    fn picking(&self, read: &Read, headcount: u32) -> Option<Picking<'_>> {
        let mut picks = Vec::new();
        let mut named = Vec::new();
        for (i, (_, request)) in self.requests.iter().enumerate() {
            let outside = request.outside_working_hours;
            match &request.claimed {
                Claimed::Pick(pick) => {
                    let field = match pick.from {
                        PickFrom::Pool(_) => "pool_id",
                        PickFrom::AnyOf(_) => "any_of",
                    };
                    picks.push((i, pick, outside, self.path(i, field)));
                }
                Claimed::Range {
                    resource_id,
                    starts_at,
                    ends_at,
                } => {
                    let pick = Pick {
                        from: PickFrom::AnyOf(Vec::new()),
                        count: 1,
                        starts_at: *starts_at,
                        ends_at: *ends_at,
                    };
                    named.push((*resource_id, pick.claim(headcount, outside)));
                }
                Claimed::Hold(hold_id) => {
                    if let Some(spec) = read.state::<Hold>(*hold_id).and_then(|h| h.spec.as_ref()) {
                        let pick = Pick {
                            from: PickFrom::AnyOf(Vec::new()),
                            count: 1,
                            starts_at: spec.starts_at,
                            ends_at: spec.ends_at,
                        };
                        named.push((spec.resource_id, pick.claim(headcount, outside)));
                    }
                }
            }
        }
        (!picks.is_empty()).then_some(Picking {
            picks,
            named,
            headcount,
        })
    }

    /// What it reads: the holds it converts, the pools it picks from
    /// (and what their selectors take), and, with picks, the locks of
    /// every candidate.
    fn query(&self, query: Query, read: &Read, headcount: Option<u32>) -> Query {
        let mut query = query
            .streams::<Hold>(self.holds())
            .streams::<WaitlistEntry>(self.offers(read).map(|(_, entry)| entry))
            .streams::<Pool>(self.pools());
        for pool_id in self.pools() {
            if let Some(Members::Selector(selector)) = read
                .state::<Pool>(pool_id)
                .and_then(|p| p.spec.as_ref())
                .map(|spec| &spec.members)
            {
                query = query.matching(pool_id, selector.clone());
            }
        }
        // A pick decides under locks even before anything is read: the
        // executor asks an empty read whether the decision locks.
        match self.picking(read, headcount.unwrap_or_default()) {
            Some(picking) => query.lock(picking.lock_request(read)),
            None => query,
        }
    }

    /// The reservations, with each hold's resource and range as read and
    /// each pick's members as the locks allow (`headcount` is the
    /// booking's).
    fn resolve(&self, read: &Read, headcount: u32) -> Result<Vec<Reservation>, Refusal> {
        let mut picked = match (self.picking(read, headcount), read.locked()) {
            (Some(picking), Some(locked)) => picking.decide(read, locked)?,
            (Some(_), None) => return Err(Refusal::ConcurrencyConflict),
            (None, _) => Vec::new(),
        }
        .into_iter();
        let mut errors = Vec::new();
        let mut reservations = Vec::with_capacity(self.requests.len());
        let mut converting = Vec::new();
        for (i, (reservation_ids, request)) in self.requests.iter().enumerate() {
            let reservation_id = &reservation_ids[0];
            let (resource_id, starts_at, ends_at, hold_id, pool_id) = match &request.claimed {
                Claimed::Pick(pick) => {
                    let members = picked
                        .next()
                        .map(|(_, members)| members)
                        .unwrap_or_default();
                    for (&reservation_id, resource_id) in reservation_ids.iter().zip(members) {
                        reservations.push(Reservation {
                            reservation_id,
                            resource_id,
                            starts_at: pick.starts_at,
                            ends_at: pick.ends_at,
                            label: request.label.clone(),
                            outside_working_hours: request.outside_working_hours,
                            hold_id: None,
                            pool_id: pick.pool_id(),
                        });
                    }
                    continue;
                }
                &Claimed::Range {
                    resource_id,
                    starts_at,
                    ends_at,
                } => (resource_id, starts_at, ends_at, None, None),
                &Claimed::Hold(hold_id) => {
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
                    // An offer to a pool's entry converts into that
                    // pool's reservation (moves may re-pick it).
                    (
                        spec.resource_id,
                        spec.starts_at,
                        spec.ends_at,
                        Some(hold_id),
                        spec.pool_id,
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
                pool_id,
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

    /// The converted holds that are waitlist offers, as read: (hold,
    /// entry).
    fn offers<'r>(&'r self, read: &'r Read) -> impl Iterator<Item = (Uuid, Uuid)> + 'r {
        self.holds().filter_map(|hold| {
            let entry = read.state::<Hold>(hold)?.spec.as_ref()?.offer_for?;
            Some((hold, entry))
        })
    }

    /// Each converted hold's `hold.converted`, and each converted offer's
    /// `waitlist.fulfilled` (refused once the offer lapsed), linked to
    /// `plan`.
    fn convert_holds<A: muster_domain::Aggregate>(
        &self,
        booking_id: Uuid,
        read: &Read,
        plan: Plan<A>,
    ) -> Plan<A> {
        let plan = self.holds().fold(plan, |plan, hold| {
            plan.link::<Hold>(hold, HoldCommand::Convert { booking_id })
        });
        self.offers(read).fold(plan, |plan, (hold_id, entry)| {
            plan.link::<WaitlistEntry>(
                entry,
                WaitlistCommand::Fulfil {
                    hold_id,
                    booking_id,
                },
            )
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

    fn query(&self, read: &Read) -> Query {
        self.reserving
            .query(Query::default(), read, Some(self.details.headcount))
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let reservations = self.reserving.resolve(read, self.details.headcount)?;
        let plan = Plan::new(BookingCommand::Request {
            details: self.details.clone(),
            reservations,
        });
        Ok(self.reserving.convert_holds(self.booking_id, read, plan))
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

impl AddReservation {
    /// The booking's headcount, once read.
    fn headcount(&self, read: &Read) -> Option<u32> {
        read.state::<Booking>(self.booking_id)?
            .details
            .as_ref()
            .map(|d| d.headcount)
    }
}

impl Decision for AddReservation {
    type On = Booking;

    fn name(&self) -> &'static str {
        "booking.add_reservation"
    }

    fn stream_id(&self) -> Uuid {
        self.booking_id
    }

    fn query(&self, read: &Read) -> Query {
        let query = Query::default().stream::<Booking>(self.booking_id);
        self.reserving.query(query, read, self.headcount(read))
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let reservations = self
            .reserving
            .resolve(read, self.headcount(read).unwrap_or_default())?;
        if reservations.is_empty() {
            return Err(Refusal::invalid("resource_id", "is required"));
        }
        let plan = Plan::new(BookingCommand::AddReservations(reservations));
        Ok(self.reserving.convert_holds(self.booking_id, read, plan))
    }
}

/// Moves a booking to new times; its pool reservations keep their members
/// when free and otherwise take others, unless `keep_resource`.
struct RescheduleBooking {
    booking_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    given: Vec<ReservationRange>,
    keep_resource: bool,
    now: DateTime<Utc>,
}

impl RescheduleBooking {
    fn repicking(&self, read: &Read) -> Option<Repicking> {
        let booking = read.state::<Booking>(self.booking_id)?;
        let moved = booking
            .rescheduled(self.starts_at, self.ends_at, &self.given, self.now)
            .ok()?;
        Repicking::of(booking, moved)
    }
}

impl Decision for RescheduleBooking {
    type On = Booking;

    fn name(&self) -> &'static str {
        "booking.reschedule"
    }

    fn stream_id(&self) -> Uuid {
        self.booking_id
    }

    fn query(&self, read: &Read) -> Query {
        repick_query(
            self.booking_id,
            self.keep_resource,
            self.repicking(read),
            read,
        )
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let repicked = repicked(self.repicking(read), read, "starts_at")?;
        Ok(Plan::new(BookingCommand::Reschedule {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            reservations: self.given.clone(),
            repicked,
            now: self.now,
        }))
    }
}

/// Moves one reservation; a pool reservation moved in time without a
/// resource keeps its member when free and otherwise takes another,
/// unless `keep_resource`.
struct MoveReservation {
    booking_id: Uuid,
    reservation_id: Uuid,
    to: ReservationTarget,
    keep_resource: bool,
    now: DateTime<Utc>,
}

impl MoveReservation {
    fn repicking(&self, read: &Read) -> Option<Repicking> {
        if self.to.resource_id.is_some() {
            return None;
        }
        let booking = read.state::<Booking>(self.booking_id)?;
        let moved = booking.moved(self.reservation_id, &self.to, self.now)?;
        Repicking::of(booking, vec![moved])
    }
}

impl Decision for MoveReservation {
    type On = Booking;

    fn name(&self) -> &'static str {
        "booking.move_reservation"
    }

    fn stream_id(&self) -> Uuid {
        self.booking_id
    }

    fn query(&self, read: &Read) -> Query {
        repick_query(
            self.booking_id,
            self.keep_resource,
            self.repicking(read),
            read,
        )
    }

    fn decide(&self, read: &Read) -> Result<Plan<Booking>, Refusal> {
        let repicked = repicked(self.repicking(read), read, "starts_at")?;
        let mut to = self.to.clone();
        if let Some(member) = repicked.first() {
            to.resource_id = Some(member.resource_id);
        }
        Ok(Plan::new(BookingCommand::MoveReservation {
            reservation_id: self.reservation_id,
            to,
            now: self.now,
        }))
    }
}

/// What a move of booking `booking_id` reads: the booking, and unless the
/// request keeps its resources, its moving pool reservations' pools under
/// their members' locks. Deciding under locks is asked before the booking
/// is read (it may hold none), and costs nothing when nothing is locked.
fn repick_query(
    booking_id: Uuid,
    keep_resource: bool,
    repicking: Option<Repicking>,
    read: &Read,
) -> Query {
    let query = Query::default().stream::<Booking>(booking_id);
    match repicking {
        _ if keep_resource => query,
        Some(repicking) => repicking.query(query, read),
        None => query.lock(LockRequest::default()),
    }
}

/// The members re-picked, once decided under the locks.
fn repicked(
    repicking: Option<Repicking>,
    read: &Read,
    field: &str,
) -> Result<Vec<Repicked>, Refusal> {
    match (repicking, read.locked()) {
        (Some(repicking), Some(locked)) => repicking.decide(read, locked, field),
        _ => Ok(Vec::new()),
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
    /// ranges stop counting in the same commit. A pool reservation keeps
    /// its member when the member is free at the new time, and otherwise
    /// takes another free member of its pool, unless `keep_resource`.
    pub async fn reschedule_booking(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        to: TimeRange,
        reservations: Vec<ReservationRange>,
        keep_resource: bool,
    ) -> Answer<Booking> {
        let decision = RescheduleBooking {
            booking_id: id,
            starts_at: to.starts_at,
            ends_at: to.ends_at,
            given: reservations,
            keep_resource,
            now: Utc::now(),
        };
        self.run(ctx, decision).await
    }

    /// Moves one reservation to another time and/or resource. A pool
    /// reservation moved in time without a resource named keeps its member
    /// when free, and otherwise takes another, unless `keep_resource`.
    pub async fn move_reservation(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        reservation_id: Uuid,
        to: ReservationTarget,
        keep_resource: bool,
    ) -> Answer<Booking> {
        let decision = MoveReservation {
            booking_id: id,
            reservation_id,
            to,
            keep_resource,
            now: Utc::now(),
        };
        self.run(ctx, decision).await
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

    pub(crate) async fn on_booking(
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
