//! The write effects: which working-set changes (and implied jobs) a
//! command's events imply, per aggregate.

use chrono::{DateTime, Utc};
use muster_domain::Aggregate;
use muster_domain::booking::{Booking, BookingCommand, BookingEvent, Reservation};
use muster_domain::deployment::{Deployment, DeploymentCommand, DeploymentEvent};
use muster_domain::resource::{Resource, ResourceCommand, ResourceEvent};
use uuid::Uuid;

use crate::implied_jobs::ImpliedJob;

/// A change to the working set implied by a command's events.
#[derive(Debug, Clone)]
pub enum WriteEffect {
    /// A resource became reservable.
    RegisterResource {
        /// The resource.
        resource_id: Uuid,
        /// Its capacity.
        capacity: u32,
    },
    /// A resource's capacity changed.
    ChangeCapacity {
        /// The resource.
        resource_id: Uuid,
        /// The new capacity.
        capacity: u32,
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
    },
    /// A booking's reservation moves: it stops holding its old place and
    /// holds `reservation` (same id) instead, checked like a new one with
    /// the old place left out.
    Move {
        /// The booking.
        booking_id: Uuid,
        /// The reservation at its new place.
        reservation: Reservation,
    },
    /// A job to push in the command's transaction (not a reservation
    /// change; the command executor pushes it).
    Enqueue(crate::implied_jobs::ImpliedJob),
    /// A reservation stops holding time from `released_from` on.
    Release {
        /// The reservation.
        reservation_id: Uuid,
        /// From when it no longer holds time.
        released_from: DateTime<Utc>,
    },
}

/// An aggregate the store knows how to write: which working-set changes its
/// events imply.
pub trait WriteSide: Aggregate {
    /// Whether `command` creates the stream; such commands skip loading,
    /// since their stream id is freshly generated.
    fn creates(command: &Self::Command) -> bool;

    /// The working-set changes `events` imply.
    fn effects(stream_id: Uuid, events: &[Self::Event]) -> Vec<WriteEffect>;
}

impl WriteSide for Resource {
    fn creates(command: &ResourceCommand) -> bool {
        matches!(command, ResourceCommand::Register(_))
    }

    fn effects(stream_id: Uuid, events: &[ResourceEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                ResourceEvent::Registered(p) => Some(WriteEffect::RegisterResource {
                    resource_id: stream_id,
                    capacity: p.capacity,
                }),
                ResourceEvent::Updated(c) => {
                    c.capacity.map(|capacity| WriteEffect::ChangeCapacity {
                        resource_id: stream_id,
                        capacity,
                    })
                }
                ResourceEvent::Retired => Some(WriteEffect::RetireResource {
                    resource_id: stream_id,
                }),
            })
            .collect()
    }
}

impl WriteSide for Booking {
    fn creates(command: &BookingCommand) -> bool {
        matches!(command, BookingCommand::Request { .. })
    }

    fn effects(stream_id: Uuid, events: &[BookingEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                BookingEvent::ReservationAdded(r) => Some(WriteEffect::Reserve {
                    booking_id: stream_id,
                    reservation: r.clone(),
                }),
                BookingEvent::ReservationReleased {
                    reservation_id,
                    released_from,
                } => Some(WriteEffect::Release {
                    reservation_id: *reservation_id,
                    released_from: *released_from,
                }),
                BookingEvent::ReservationMoved(r) => Some(WriteEffect::Move {
                    booking_id: stream_id,
                    reservation: r.clone(),
                }),
                BookingEvent::TaskAdded(task) => task
                    .assignee_id
                    .map(|resource_id| WriteEffect::RequireResource { resource_id }),
                _ => None,
            })
            .collect()
    }
}

impl WriteSide for Deployment {
    fn creates(command: &DeploymentCommand) -> bool {
        matches!(command, DeploymentCommand::Request { .. })
    }

    /// A requested deployment is queued for a worker in the same
    /// transaction: exactly one job per deployment, or none if the command
    /// does not commit.
    fn effects(stream_id: Uuid, events: &[DeploymentEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                DeploymentEvent::Requested(plan) => {
                    Some(WriteEffect::Enqueue(ImpliedJob::RunDeployment {
                        deployment_id: stream_id,
                        priority: plan.priority,
                        steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
                    }))
                }
                _ => None,
            })
            .collect()
    }
}
