//! The write effects: which working-set changes (and implied jobs) a
//! command's events imply, per aggregate.

use chrono::{DateTime, Utc};
use muster_domain::Aggregate;
use muster_domain::booking::{Booking, BookingCommand, BookingEvent, BookingStatus, Reservation};
use muster_domain::calendar_link::{Block, CalendarCommand, CalendarEvent, CalendarLink, LinkSpec};
use muster_domain::deployment::{Deployment, DeploymentCommand, DeploymentEvent};
use muster_domain::hold::{Hold, HoldCommand, HoldEvent};
use muster_domain::policy::ResourceRules;
use muster_domain::pool::{Members, Pool, PoolCommand, PoolEvent, PoolSpec};
use muster_domain::quota::Charge;
use muster_domain::resource::{Resource, ResourceCommand, ResourceEvent};
use muster_domain::series::{Series, SeriesCommand, SeriesEvent};
use muster_domain::waitlist::{Target, WaitlistCommand, WaitlistEntry, WaitlistEvent};
use muster_domain::webhook::{HealthCommand, HealthEvent, WebhookHealth};
use uuid::Uuid;

use crate::implied_jobs::ImpliedJob;

/// A change to the working set implied by a command's events.
#[derive(Debug, Clone)]
pub enum WriteEffect {
    /// A resource became reservable.
    RegisterResource {
        /// The resource.
        resource_id: Uuid,
        /// Its booking rule.
        rules: ResourceRules,
        /// Its kind and tags, which pools' selectors match.
        labels: Labels,
    },
    /// A resource's tags changed (pools' selectors match them).
    Retag {
        /// The resource.
        resource_id: Uuid,
        /// Its tags now.
        tags: Vec<String>,
    },
    /// A calendar link was made: its row.
    SaveCalendar {
        /// The link.
        calendar_id: Uuid,
        /// Its definition.
        spec: Box<LinkSpec>,
    },
    /// A calendar link's blocks changed: `removed` leave its resource,
    /// then `added` take their place, whatever the resource holds (a
    /// calendar says when a person or room is away; it is not admitted).
    PlaceBlocks {
        /// The link.
        calendar_id: Uuid,
        /// Its resource.
        resource_id: Uuid,
        /// New and changed blocks.
        added: Vec<Block>,
        /// Gone and changed blocks.
        removed: Vec<Uuid>,
    },
    /// A calendar link was removed, with its blocks.
    DropCalendar {
        /// The link.
        calendar_id: Uuid,
    },
    /// A client is erased as the plan says (added by the erasure's use
    /// case: it is what the erasure does, not what its event implies).
    Erase {
        /// The erasure.
        erasure_id: Uuid,
        /// What it erases.
        plan: Box<crate::erasure::ErasurePlan>,
    },
    /// A resource's booking rule changed (capacity, seats, working hours,
    /// policy). A capacity decrease is refused when existing reservations
    /// would exceed it.
    ChangeRules {
        /// The resource.
        resource_id: Uuid,
        /// The rule as it is now.
        rules: ResourceRules,
    },
    /// A resource was retired.
    RetireResource {
        /// The resource.
        resource_id: Uuid,
    },
    /// The command refers to this resource (a task's assignee), which must
    /// exist in the tenant.
    RequireResource {
        /// The resource.
        resource_id: Uuid,
    },
    /// A booking reserves a resource.
    Reserve {
        /// The reserving booking.
        booking_id: Uuid,
        /// The reservation.
        reservation: Reservation,
        /// The booking's headcount, checked against the seats.
        headcount: Option<u32>,
        /// What the resource's check-in and approval deadlines count from.
        basis: DeadlineBasis,
    },
    /// A booking's reservation moves: it stops holding its old place and
    /// holds `reservation` (same id) instead, checked like a new one with
    /// the old place left out.
    Move {
        /// The booking.
        booking_id: Uuid,
        /// The reservation at its new place.
        reservation: Reservation,
        /// The booking's headcount, checked against the seats.
        headcount: Option<u32>,
        /// What the resource's check-in and approval deadlines count from.
        basis: DeadlineBasis,
    },
    /// The booking ended (cancelled, completed, a no-show, expired): no
    /// deadline applies to what is left of its reservations, so none of
    /// them is found overdue again.
    DropDeadlines {
        /// Every reservation it had.
        reservation_ids: Vec<Uuid>,
    },
    /// The booking was confirmed or checked in: its reservations'
    /// approval or check-in deadline no longer applies.
    ClearDeadline {
        /// The booking's reservations.
        reservation_ids: Vec<Uuid>,
        /// Which deadline.
        deadline: Deadline,
    },
    /// A booking's headcount changed: it must still fit the seats of every
    /// resource it holds.
    CheckSeats {
        /// The resources the booking holds.
        resource_ids: Vec<Uuid>,
        /// The new headcount.
        headcount: u32,
    },
    /// A hold claims a resource until `expires_at`: admitted like a
    /// reservation (whose id and booking id are the hold's id).
    Hold {
        /// The hold as the reservation it stands for.
        reservation: Reservation,
        /// When it stops counting.
        expires_at: DateTime<Utc>,
    },
    /// A hold ended (released, converted or expired): its row goes, and it
    /// stops counting for the rest of the command.
    DropHold {
        /// The hold.
        hold_id: Uuid,
    },
    /// A job to push in the command's transaction (not a reservation
    /// change; the command executor pushes it).
    Enqueue(crate::implied_jobs::ImpliedJob),
    /// A pool assigned a member (round_robin weighs when).
    Assign {
        /// The pool.
        pool_id: Uuid,
        /// The member.
        resource_id: Uuid,
    },
    /// A pool was created or changed: its row is written as `spec` now
    /// has it.
    SavePool {
        /// The pool.
        pool_id: Uuid,
        /// Its definition after the command.
        spec: PoolSpec,
    },
    /// A webhook endpoint is disabled (for `disabled`'s reason) or
    /// enabled again (`None`).
    WebhookHealth {
        /// The webhook.
        webhook_id: Uuid,
        /// Why it is disabled, or `None`: enabled.
        disabled: Option<String>,
    },
    /// A reservation stops holding time from `released_from` on.
    Release {
        /// The reservation.
        reservation_id: Uuid,
        /// From when it no longer holds time.
        released_from: DateTime<Utc>,
    },
    /// What a booking or hold counts for under quotas changed (it was
    /// made, moved, released or ended): its quota charges are written as
    /// they now are, each period it newly adds to checked against its
    /// quota's limit. Costs nothing in a tenant without quotas.
    Charge {
        /// The booking or hold.
        charge_id: Uuid,
        /// What it counts for now; `None`: it no longer counts.
        charge: Option<Box<Charge>>,
        /// Whether the command creates it (nothing was counted for it
        /// before).
        fresh: bool,
    },
    /// A waitlist entry joined or changed: its row is written as it now
    /// is.
    SaveEntry {
        /// The entry.
        entry_id: Uuid,
        /// Its state after the command.
        entry: Box<WaitlistEntry>,
    },
}

/// What a booking's reservation deadlines count from: the booking's start
/// (check-in) and whether it still awaits approval (the approval clock
/// runs from when the reservation is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineBasis {
    /// The booking's start.
    pub booking_start: DateTime<Utc>,
    /// Whether the booking is still `requested`.
    pub awaiting_approval: bool,
    /// Whether it was checked in (or started): no check-in deadline.
    pub checked_in: bool,
}

/// A deadline a booking's reservations may have on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Confirm by (`approval_timeout`).
    Approval,
    /// Check in by (`check_in_within`).
    CheckIn,
}

/// What pools' selectors match of a resource besides its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// Its kind.
    pub kind: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// An aggregate the store knows how to write: which working-set changes its
/// events imply.
pub trait WriteSide: Aggregate {
    /// Whether `command` creates the stream; such commands skip loading,
    /// since their stream id is freshly generated.
    fn creates(command: &Self::Command) -> bool;

    /// The working-set changes `events` imply, decided on `state`.
    fn effects(state: &Self, stream_id: Uuid, events: &[Self::Event]) -> Vec<WriteEffect>;
}

impl WriteSide for Resource {
    fn creates(command: &ResourceCommand) -> bool {
        matches!(command, ResourceCommand::Register(_))
    }

    fn effects(state: &Resource, stream_id: Uuid, events: &[ResourceEvent]) -> Vec<WriteEffect> {
        let mut after = state.clone();
        events
            .iter()
            .filter_map(|event| {
                after.evolve(event);
                let rules = || after.profile.as_ref().map(|p| p.rules());
                match event {
                    ResourceEvent::Registered(profile) => {
                        rules().map(|rules| WriteEffect::RegisterResource {
                            resource_id: stream_id,
                            rules,
                            labels: Labels {
                                kind: profile.kind.clone(),
                                tags: profile.tags.clone(),
                            },
                        })
                    }
                    ResourceEvent::Updated(c) if c.changes_rules() => {
                        rules().map(|rules| WriteEffect::ChangeRules {
                            resource_id: stream_id,
                            rules,
                        })
                    }
                    ResourceEvent::Updated(c) => c.tags.clone().map(|tags| WriteEffect::Retag {
                        resource_id: stream_id,
                        tags,
                    }),
                    ResourceEvent::Retired => Some(WriteEffect::RetireResource {
                        resource_id: stream_id,
                    }),
                }
            })
            .collect()
    }
}

impl WriteSide for Booking {
    fn creates(command: &BookingCommand) -> bool {
        matches!(command, BookingCommand::Request { .. })
    }

    fn effects(state: &Booking, stream_id: Uuid, events: &[BookingEvent]) -> Vec<WriteEffect> {
        let headcount = state.headcount_after(events);
        let mut after = state.clone();
        for event in events {
            after.evolve(event);
        }
        let basis = DeadlineBasis {
            booking_start: after
                .details
                .as_ref()
                .map_or(DateTime::<Utc>::MIN_UTC, |d| d.starts_at),
            awaiting_approval: after.status == Some(BookingStatus::Requested),
            checked_in: after.checked_in_at.is_some()
                || after.status == Some(BookingStatus::InProgress),
        };
        let reservation_ids = || {
            after
                .reservations
                .iter()
                .map(|r| r.reservation_id)
                .collect()
        };
        let mut effects = Vec::with_capacity(events.len());
        for event in events {
            let effect = match event {
                BookingEvent::ReservationAdded(r) => {
                    if let Some(pool_id) = r.pool_id {
                        effects.push(WriteEffect::Assign {
                            pool_id,
                            resource_id: r.resource_id,
                        });
                    }
                    Some(WriteEffect::Reserve {
                        booking_id: stream_id,
                        reservation: r.clone(),
                        headcount,
                        basis,
                    })
                }
                BookingEvent::Updated(changes) => {
                    changes.headcount.map(|headcount| WriteEffect::CheckSeats {
                        resource_ids: state.reservations.iter().map(|r| r.resource_id).collect(),
                        headcount,
                    })
                }
                BookingEvent::ReservationReleased {
                    reservation_id,
                    released_from,
                } => Some(WriteEffect::Release {
                    reservation_id: *reservation_id,
                    released_from: *released_from,
                }),
                BookingEvent::ReservationMoved(r) => {
                    let was = state
                        .reservations
                        .iter()
                        .find(|old| old.reservation_id == r.reservation_id);
                    if let Some(pool_id) = r.pool_id
                        && was.is_some_and(|old| old.resource_id != r.resource_id)
                    {
                        // The pool took another member for it.
                        effects.push(WriteEffect::Assign {
                            pool_id,
                            resource_id: r.resource_id,
                        });
                    }
                    Some(WriteEffect::Move {
                        booking_id: stream_id,
                        reservation: r.clone(),
                        headcount,
                        basis,
                    })
                }
                BookingEvent::Confirmed => Some(WriteEffect::ClearDeadline {
                    reservation_ids: reservation_ids(),
                    deadline: Deadline::Approval,
                }),
                // Started means turned up: a start counts as the check-in.
                BookingEvent::CheckedIn { .. } | BookingEvent::Started => {
                    Some(WriteEffect::ClearDeadline {
                        reservation_ids: reservation_ids(),
                        deadline: Deadline::CheckIn,
                    })
                }
                BookingEvent::TaskAdded(task) => task
                    .assignee_id
                    .map(|resource_id| WriteEffect::RequireResource { resource_id }),
                _ => None,
            };
            effects.extend(effect);
        }
        let ended = |status: Option<BookingStatus>| {
            matches!(
                status,
                Some(BookingStatus::Cancelled | BookingStatus::Completed)
            )
        };
        if ended(after.status) && !ended(state.status) {
            effects.push(WriteEffect::DropDeadlines {
                reservation_ids: state
                    .reservations
                    .iter()
                    .map(|r| r.reservation_id)
                    .collect(),
            });
        }
        if events.iter().any(changes_charge) {
            let charge = after.charge();
            if charge != state.charge() {
                effects.push(WriteEffect::Charge {
                    charge_id: stream_id,
                    charge: charge.map(Box::new),
                    fresh: state.details.is_none(),
                });
            }
        }
        effects
    }
}

/// Whether `event` can change what a booking counts for under quotas.
fn changes_charge(event: &BookingEvent) -> bool {
    !matches!(
        event,
        BookingEvent::TaskAdded(_)
            | BookingEvent::TaskCompleted { .. }
            | BookingEvent::Confirmed
            | BookingEvent::Started
            | BookingEvent::CheckedIn { .. }
    )
}

impl WriteSide for Hold {
    fn creates(command: &HoldCommand) -> bool {
        matches!(command, HoldCommand::Place { .. })
    }

    fn effects(_: &Hold, stream_id: Uuid, events: &[HoldEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .flat_map(|event| match event {
                HoldEvent::Placed(spec) => [
                    WriteEffect::Hold {
                        reservation: Reservation {
                            reservation_id: stream_id,
                            resource_id: spec.resource_id,
                            starts_at: spec.starts_at,
                            ends_at: spec.ends_at,
                            label: None,
                            outside_working_hours: false,
                            hold_id: Some(stream_id),
                            pool_id: spec.pool_id,
                        },
                        expires_at: spec.expires_at,
                    },
                    WriteEffect::Charge {
                        charge_id: stream_id,
                        charge: Some(Box::new(spec.charge())),
                        fresh: true,
                    },
                ],
                HoldEvent::Released | HoldEvent::Converted { .. } | HoldEvent::Expired => [
                    WriteEffect::DropHold { hold_id: stream_id },
                    WriteEffect::Charge {
                        charge_id: stream_id,
                        charge: None,
                        fresh: false,
                    },
                ],
            })
            .collect()
    }
}

/// A series writes nothing but its events: its bookings are linked
/// commands with their own effects.
impl WriteSide for Series {
    fn creates(command: &SeriesCommand) -> bool {
        matches!(command, SeriesCommand::Create(_))
    }

    fn effects(_: &Series, _: Uuid, _: &[SeriesEvent]) -> Vec<WriteEffect> {
        Vec::new()
    }
}

impl WriteSide for Deployment {
    fn creates(command: &DeploymentCommand) -> bool {
        matches!(command, DeploymentCommand::Request { .. })
    }

    /// A requested deployment is queued for a worker in the same
    /// transaction: exactly one job per deployment, or none if the command
    /// does not commit.
    ///
    /// A retried one is queued again the same way, for the steps still to
    /// do.
    fn effects(
        state: &Deployment,
        stream_id: Uuid,
        events: &[DeploymentEvent],
    ) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                DeploymentEvent::Requested(plan) => {
                    Some(WriteEffect::Enqueue(ImpliedJob::RunDeployment {
                        run: 0,
                        deployment_id: stream_id,
                        priority: plan.priority,
                        steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
                    }))
                }
                DeploymentEvent::Retried => Some(WriteEffect::Enqueue(ImpliedJob::RunDeployment {
                    run: state.retries + 1,
                    deployment_id: stream_id,
                    priority: state.priority,
                    steps: u32::try_from(state.steps.iter().filter(|s| !s.done).count())
                        .unwrap_or(u32::MAX),
                })),
                _ => None,
            })
            .collect()
    }
}

/// A webhook's health writes its columns of the webhook's row.
impl WriteSide for WebhookHealth {
    /// A webhook's stream begins with its first health event; the webhook
    /// itself exists before it (configuration), so no command makes it.
    fn creates(_: &HealthCommand) -> bool {
        false
    }

    fn effects(_: &WebhookHealth, stream_id: Uuid, events: &[HealthEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .map(|event| WriteEffect::WebhookHealth {
                webhook_id: stream_id,
                disabled: match event {
                    HealthEvent::Disabled(d) => Some(d.reason.clone()),
                    HealthEvent::Enabled => None,
                },
            })
            .collect()
    }
}

/// A pool writes its row, and requires the resources it names to exist.
impl WriteSide for Pool {
    fn creates(command: &PoolCommand) -> bool {
        matches!(command, PoolCommand::Create(_))
    }

    fn effects(state: &Pool, stream_id: Uuid, events: &[PoolEvent]) -> Vec<WriteEffect> {
        let mut after = state.clone();
        let mut effects = Vec::new();
        for event in events {
            after.evolve(event);
            let named = match event {
                PoolEvent::Created(spec) => Some(&spec.members),
                PoolEvent::Updated(changes) => changes.members.as_ref(),
            };
            if let Some(Members::Explicit(ids)) = named {
                effects.extend(
                    ids.iter()
                        .map(|&resource_id| WriteEffect::RequireResource { resource_id }),
                );
            }
            if let Some(spec) = &after.spec {
                effects.push(WriteEffect::SavePool {
                    pool_id: stream_id,
                    spec: spec.clone(),
                });
            }
        }
        effects
    }
}

/// A waitlist entry writes its row; a resource entry requires its
/// resource (an offer's hold is its own stream's effect).
impl WriteSide for WaitlistEntry {
    fn creates(command: &WaitlistCommand) -> bool {
        matches!(command, WaitlistCommand::Join { .. })
    }

    fn effects(
        state: &WaitlistEntry,
        stream_id: Uuid,
        events: &[WaitlistEvent],
    ) -> Vec<WriteEffect> {
        let mut after = state.clone();
        let mut effects = Vec::new();
        for event in events {
            after.evolve(event);
            if let WaitlistEvent::Joined(spec) = event
                && let Target::Resource { resource_id } = spec.target
            {
                effects.push(WriteEffect::RequireResource { resource_id });
            }
        }
        if !events.is_empty() {
            effects.push(WriteEffect::SaveEntry {
                entry_id: stream_id,
                entry: Box::new(after),
            });
        }
        effects
    }
}

/// A calendar link writes its row, places its blocks on its resource, and
/// takes both away when it is removed.
impl WriteSide for CalendarLink {
    fn creates(command: &CalendarCommand) -> bool {
        matches!(command, CalendarCommand::Link(_))
    }

    fn effects(
        state: &CalendarLink,
        stream_id: Uuid,
        events: &[CalendarEvent],
    ) -> Vec<WriteEffect> {
        let mut after = state.clone();
        let mut effects = Vec::new();
        for event in events {
            after.evolve(event);
            match event {
                CalendarEvent::Linked(spec) => effects.extend([
                    WriteEffect::RequireResource {
                        resource_id: spec.resource_id,
                    },
                    WriteEffect::SaveCalendar {
                        calendar_id: stream_id,
                        spec: Box::new(spec.clone()),
                    },
                    WriteEffect::Enqueue(ImpliedJob::SyncCalendar {
                        calendar_id: stream_id,
                    }),
                ]),
                CalendarEvent::Synced(synced) => {
                    if let Some(spec) = &after.spec {
                        effects.push(WriteEffect::PlaceBlocks {
                            calendar_id: stream_id,
                            resource_id: spec.resource_id,
                            added: synced.added.clone(),
                            removed: synced.removed.clone(),
                        });
                    }
                }
                CalendarEvent::Conflict(_) => {}
                CalendarEvent::Unlinked => effects.push(WriteEffect::DropCalendar {
                    calendar_id: stream_id,
                }),
            }
        }
        effects
    }
}

/// An erasure's event implies nothing: what it erases is its use case's
/// (see [`WriteEffect::Erase`]).
impl WriteSide for muster_domain::erasure::Erasure {
    fn creates(_: &muster_domain::erasure::ErasureCommand) -> bool {
        true
    }

    fn effects(_: &Self, _: Uuid, _: &[muster_domain::erasure::ErasureEvent]) -> Vec<WriteEffect> {
        Vec::new()
    }
}
