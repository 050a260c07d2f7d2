//! The one error type of the store layer.

use chrono::{DateTime, Utc};
use muster_domain::DomainError;
use muster_domain::policy::Refusal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An existing reservation that stands in the way of a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationConflict {
    /// The contested resource.
    pub resource_id: Uuid,
    /// The booking holding it.
    pub booking_id: Uuid,
    /// The reservation holding it.
    pub reservation_id: Uuid,
    /// Start of the conflicting reservation.
    pub starts_at: DateTime<Utc>,
    /// End of the conflicting reservation.
    pub ends_at: DateTime<Utc>,
    /// Set when what stands in the way is a hold: when it stops counting.
    /// Its `reservation_id` and `booking_id` are then the hold's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// Set when what stands in the way is a block of an external calendar
    /// (SPEC §12): the calendar link. Its `reservation_id` is then the
    /// block's id and its `booking_id` the link's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<Uuid>,
}

impl ReservationConflict {
    /// Whether it is an external calendar's block, which fills its
    /// resource whatever the resource's capacity.
    pub fn is_external(&self) -> bool {
        self.calendar_id.is_some()
    }
}

/// A quota a command would pass: which, for whom, in which period, and
/// what that period holds already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaExceeded {
    /// The quota's name.
    pub quota: String,
    /// Whose bookings it counts together.
    pub scope: muster_domain::quota::QuotaScope,
    /// The subject that would pass it.
    pub subject: String,
    /// The period's first instant.
    pub period_starts_at: DateTime<Utc>,
    /// The instant after the period.
    pub period_ends_at: DateTime<Utc>,
    /// The most bookings a period may have, for a count quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bookings: Option<u32>,
    /// The most hours a period may have, for an hours quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hours: Option<f64>,
    /// Bookings (and unexpired holds) the period has.
    pub used_bookings: i64,
    /// Hours they book.
    pub used_hours: f64,
    /// The booking (or hold) that would pass it: with a series, the
    /// occurrence.
    pub charge_id: Uuid,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A business rule refused the command.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The work needs the server's secret key (`MUSTER_SECRET_KEY`), and
    /// this process has none.
    #[error("MUSTER_SECRET_KEY is not set")]
    NoSecretKey,
    /// The client's `If-Match` version is not the stream's current one.
    #[error("stale version: expected {expected}, stream is at {actual}")]
    PreconditionFailed {
        /// What the client expected.
        expected: i64,
        /// The stream's version.
        actual: i64,
    },
    /// Concurrent writers kept winning the race for the stream, past the
    /// retry budget.
    #[error("the stream kept changing concurrently; retry")]
    ConcurrencyConflict,
    /// The command would put a resource over its capacity.
    #[error("the resource is already reserved at that time")]
    ReservationConflict(Vec<ReservationConflict>),
    /// A resource decrease would leave existing reservations over capacity.
    #[error("existing reservations need capacity {needed}")]
    CapacityInUse {
        /// The peak of existing future reservations.
        needed: usize,
    },
    /// The resource's booking rule refuses the claim itself: seats,
    /// notice, horizon or working hours.
    #[error("resource {resource_id} refuses the reservation: {refusal:?}")]
    Refused {
        /// The resource.
        resource_id: Uuid,
        /// Why (never [`Refusal::Full`]: that is a reservation conflict).
        refusal: Refusal,
    },
    /// The command would take a subject past a quota's limit in a period.
    #[error("quota {} would be exceeded", .0.quota)]
    QuotaExceeded(Box<QuotaExceeded>),
    /// A referenced resource does not exist in the tenant.
    #[error("resource {0} does not exist")]
    UnknownResource(Uuid),
    /// A referenced resource is retired and cannot be reserved.
    #[error("resource {0} is retired")]
    RetiredResource(Uuid),
    /// A concurrent request with the same idempotency key committed its
    /// answer first; replay that answer.
    #[error("the idempotency key was used by a concurrent request")]
    IdempotencyKeyTaken,
    /// A stored event could not be read back.
    #[error("stored event {position} is unreadable: {source}")]
    CorruptEvent {
        /// Its position.
        position: i64,
        /// Why.
        #[source]
        source: muster_domain::event::EventDecodeError,
    },
    /// The named entity does not exist in the tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A stored row (an idempotency record, an event's tenant) could not
    /// be read back.
    #[error("stored data is unreadable: {0}")]
    CorruptRow(String),
    /// The command implies a job, and this store has no queue to put it
    /// in (see [`crate::Store::with_job_sink`]).
    #[error("no job queue is configured")]
    NoJobQueue,
    /// The database is unreachable, overloaded or timed out: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Database(error)
        }
    }
}
