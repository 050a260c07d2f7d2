//! What a use case comes to, in the application's own terms: executed,
//! refused (with the domain's reason) or replayed; and the technical
//! failures that are none of these. Every transport renders them the same
//! way.

use muster_domain::series::SkippedOccurrence;
use muster_domain::{DomainError, FieldError, policy};
use muster_store::{QuotaExceeded, ReservationConflict, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a command came to.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It ran now and committed.
    Executed(T),
    /// A rule refused it; nothing was written.
    Refused(Refusal),
    /// Its idempotency key had an answer already: the first request's.
    Replayed(Replay<T>),
}

/// The first answer to a request with the same idempotency key.
#[derive(Debug)]
pub enum Replay<T> {
    /// It committed: what it did, read back as it was written.
    Executed(T),
    /// It was refused, for this reason.
    Refused(Refusal),
    /// An answer recorded by an earlier version of muster, before refusals
    /// were recorded in these terms: its status and document as sent then
    /// (such records expire within the idempotency TTL).
    Earlier {
        /// Its status code.
        status: u16,
        /// Its document.
        body: serde_json::Value,
    },
}

impl<T> Outcome<T> {
    /// What was executed now, if it was.
    pub fn executed(&self) -> Option<&T> {
        match self {
            Outcome::Executed(t) => Some(t),
            _ => None,
        }
    }
}

/// Why a command was refused: the client's to fix, or to retry. Recorded
/// under an idempotency key in this form (tagged by `refused`), so a replay
/// answers exactly as the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refused", rename_all = "snake_case")]
pub enum Refusal {
    /// The command's fields are invalid.
    #[error("{}", fields(.errors))]
    Invalid {
        /// Each offending field.
        errors: Vec<FieldError>,
    },
    /// What it names does not exist in the tenant.
    #[error("{what} not found")]
    NotFound {
        /// What, in words (`booking`, `no such hold`).
        what: String,
    },
    /// What it would create exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What, in words.
        what: String,
    },
    /// The entity's state does not allow it.
    #[error("{detail}")]
    InvalidTransition {
        /// Why, in words.
        detail: String,
    },
    /// Reservations in the way: a resource would be over its capacity.
    #[error("the resource is already reserved at that time")]
    ReservationConflict {
        /// The reservations (and holds) in the way.
        conflicts: Vec<ReservationConflict>,
    },
    /// Occurrences of a series that cannot be booked (nothing was).
    #[error("{} occurrence(s) of the series cannot be booked", .occurrences.len())]
    SeriesConflict {
        /// Each occurrence in the way, with why.
        occurrences: Vec<SkippedOccurrence>,
    },
    /// A pool (or an `any_of` set) has fewer free members than a pick
    /// wants; each member that is not free says why.
    #[error("only {} of the {} members wanted are free", .0.free, .0.count)]
    PoolExhausted(Exhausted),
    /// A quota would be passed: which, for whom, in which period, with
    /// what that period holds.
    #[error("quota {} allows no more for {} in that period", .0.quota, .0.subject)]
    QuotaExceeded(Box<QuotaExceeded>),
    /// A capacity decrease below what existing reservations need.
    #[error("existing reservations need a capacity of at least {needed}")]
    CapacityInUse {
        /// The capacity they need.
        needed: usize,
    },
    /// A retired resource cannot be reserved.
    #[error("resource {resource_id} is retired")]
    ResourceRetired {
        /// The resource.
        resource_id: Uuid,
    },
    /// A resource's booking rule refuses the claim itself (seats, notice,
    /// horizon, working hours).
    #[error("resource {resource_id} refuses the claim: {}", .refusal.reason())]
    Policy {
        /// The resource.
        resource_id: Uuid,
        /// Why.
        refusal: policy::Refusal,
    },
    /// `If-Match` named a version that is not the entity's.
    #[error("the entity is at version {current}, not {expected}")]
    StaleVersion {
        /// What the client sent.
        expected: i64,
        /// The entity's version.
        current: i64,
    },
    /// The idempotency key was used with another request.
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    /// Concurrent writers kept changing what the command decides on; a
    /// retry may succeed.
    #[error("the entity kept changing concurrently")]
    ConcurrencyConflict,
}

/// Each invalid field and why, in words: `name: must be …; ttl: …`.
fn fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Refusal {
    /// Whether this is the command's final answer, recorded under its
    /// idempotency key so a retry gets it too. A lost race is not: a retry
    /// may win. Nor is a reused key: that answer belongs to another request.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Refusal::ConcurrencyConflict | Refusal::IdempotencyKeyReused
        )
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::Invalid {
            errors: vec![FieldError::new(field, message)],
        }
    }

    /// Sorts what the store answered into a refusal of the command, or a
    /// technical failure. `resource_field` names the request's field that
    /// holds a resource id, for "no such resource".
    pub fn from_store(
        error: StoreError,
        resource_field: impl Fn(Uuid) -> String,
    ) -> Result<Refusal, AppError> {
        Ok(match error {
            StoreError::Rejected(e) => e.into(),
            StoreError::PreconditionFailed { expected, actual } => Refusal::StaleVersion {
                expected,
                current: actual,
            },
            // With a key, the caller replays the first request's answer;
            // this shows only if that answer has since expired.
            StoreError::ConcurrencyConflict | StoreError::IdempotencyKeyTaken => {
                Refusal::ConcurrencyConflict
            }
            StoreError::ReservationConflict(conflicts) => {
                Refusal::ReservationConflict { conflicts }
            }
            StoreError::CapacityInUse { needed } => Refusal::CapacityInUse { needed },
            StoreError::QuotaExceeded(exceeded) => Refusal::QuotaExceeded(exceeded),
            StoreError::UnknownResource(id) => {
                Refusal::invalid(resource_field(id), format!("no resource {id}"))
            }
            StoreError::RetiredResource(resource_id) => Refusal::ResourceRetired { resource_id },
            StoreError::Refused {
                resource_id,
                refusal,
            } => Refusal::Policy {
                resource_id,
                refusal,
            },
            StoreError::NotFound(what) => Refusal::NotFound {
                what: format!("no such {what}"),
            },
            e @ (StoreError::Unavailable(_)
            | StoreError::Database(_)
            | StoreError::CorruptEvent { .. }
            | StoreError::CorruptRow(_)
            | StoreError::NoJobQueue) => return Err(AppError::Store(e)),
            StoreError::NoSecretKey => {
                return Err(AppError::Misconfigured(
                    "MUSTER_SECRET_KEY is not set: personal data can be neither sealed nor erased"
                        .into(),
                ));
            }
        })
    }
}

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid(errors) => Refusal::Invalid { errors },
            DomainError::NotFound(what) | DomainError::UnknownChild(what) => Refusal::NotFound {
                what: what.to_owned(),
            },
            DomainError::AlreadyExists(what) => Refusal::AlreadyExists {
                what: what.to_owned(),
            },
            DomainError::InvalidTransition(detail) => Refusal::InvalidTransition { detail },
        }
    }
}

/// A technical failure of a use case: neither the command's fault nor its
/// answer. Transports answer it as unavailable or internal.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed (the database unavailable, or worse).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The async side's tables failed.
    #[error(transparent)]
    Jobs(#[from] muster_jobs::JobsError),
    /// The server's settings do not let it do this (no or the wrong
    /// `MUSTER_SECRET_KEY`).
    #[error("{0}")]
    Misconfigured(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_survives_its_record() {
        let refusals = [
            Refusal::invalid("reservations[0].hold_id", "no hold"),
            Refusal::Policy {
                resource_id: Uuid::nil(),
                refusal: policy::Refusal::SeatsExceeded {
                    seats: 4,
                    headcount: 5,
                },
            },
            Refusal::StaleVersion {
                expected: 1,
                current: 2,
            },
            Refusal::CapacityInUse { needed: 3 },
        ];
        for refusal in refusals {
            let recorded = serde_json::to_value(&refusal).unwrap();
            assert!(recorded.get("refused").is_some(), "{recorded}");
            assert_eq!(
                serde_json::from_value::<Refusal>(recorded).unwrap(),
                refusal
            );
        }
    }

    #[test]
    fn lost_races_and_reused_keys_are_not_recorded() {
        assert!(!Refusal::ConcurrencyConflict.is_final());
        assert!(!Refusal::IdempotencyKeyReused.is_final());
        assert!(Refusal::CapacityInUse { needed: 1 }.is_final());
    }
}

/// Why one member of a pool could not be picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRefusal {
    /// The member.
    pub resource_id: Uuid,
    /// `busy`, `outside-working-hours`, `seats-exceeded`, `too-soon`,
    /// `too-far-ahead`, `retired`, or `picked` (this request took it for
    /// another of its reservations).
    pub reason: String,
}

/// A pick the pool could not fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exhausted {
    /// The request's field that asked for it (`reservations[1].pool_id`).
    pub field: String,
    /// The pool, when the pick named one (not for `any_of`).
    pub pool_id: Option<Uuid>,
    /// How many members it wanted.
    pub count: u32,
    /// How many were free.
    pub free: u32,
    /// Every member that was not free, with why.
    pub members: Vec<MemberRefusal>,
}
