//! Waitlist entries (SPEC §12): a client waiting for a range on a resource
//! or on any member of a pool. When capacity frees there, the first
//! waiting entry that fits is offered it as a hold of its own range for its
//! `offer_ttl`; the entry then ends fulfilled (the hold became a booking),
//! lapsed (the hold ran out or was given up), or left (the client no
//! longer waits).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::booking::{Client, validate_client};
use crate::duration::IsoDuration;
use crate::error::Validator;
use crate::event::{EventDecodeError, decode, payload_of};
use crate::hold::MAX_TTL;
use crate::time::TimeRange;
use crate::{Aggregate, DomainError, DomainEvent};

/// How long an offer lasts unless the entry says otherwise.
pub const DEFAULT_OFFER_TTL: Duration = Duration::minutes(30);
/// Priorities run from `-MAX_PRIORITY` to `MAX_PRIORITY`; higher is
/// offered first.
pub const MAX_PRIORITY: i32 = 1_000;

/// What an entry waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    /// This resource.
    Resource {
        /// The resource.
        resource_id: Uuid,
    },
    /// Any member of this pool (picked by the pool's strategy).
    Pool {
        /// The pool.
        pool_id: Uuid,
    },
}

/// An entry as joined (payload of `waitlist.joined`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySpec {
    /// What it waits for.
    #[serde(flatten)]
    pub target: Target,
    /// Inclusive start of the wanted range.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end of the wanted range.
    pub ends_at: DateTime<Utc>,
    /// Who waits.
    pub client: Client,
    /// How long an offer is held for the client.
    pub offer_ttl: IsoDuration,
    /// Higher is offered first; ties go to whoever joined first.
    pub priority: i32,
}

impl EntrySpec {
    /// The wanted range.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// The open offer of an entry (payload of `waitlist.offered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The hold placed for the entry.
    pub hold_id: Uuid,
    /// The resource held (a member, for a pool entry).
    pub resource_id: Uuid,
    /// When the hold stops counting.
    pub expires_at: DateTime<Utc>,
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Waiting for capacity to free.
    Waiting,
    /// Holding an offer.
    Offered,
    /// Its offer became a booking.
    Fulfilled,
    /// Its offer ran out or was given up.
    Lapsed,
    /// The client left the waitlist.
    Left,
}

impl EntryStatus {
    /// Its name in the API and the read table.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Waiting => "waiting",
            EntryStatus::Offered => "offered",
            EntryStatus::Fulfilled => "fulfilled",
            EntryStatus::Lapsed => "lapsed",
            EntryStatus::Left => "left",
        }
    }

    /// The status named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [
            EntryStatus::Waiting,
            EntryStatus::Offered,
            EntryStatus::Fulfilled,
            EntryStatus::Lapsed,
            EntryStatus::Left,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Commands on an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitlistCommand {
    /// Joins the waitlist.
    Join {
        /// What for.
        spec: EntrySpec,
        /// The clock: a range already over cannot be waited for.
        now: DateTime<Utc>,
    },
    /// Records the offer of a hold placed in the same transaction.
    Offer(Offer),
    /// Records that the offer's hold became booking `booking_id`.
    Fulfil {
        /// The converted hold.
        hold_id: Uuid,
        /// The booking it became.
        booking_id: Uuid,
    },
    /// Records that the offer's hold ran out or was given up.
    Lapse {
        /// The hold that ended.
        hold_id: Uuid,
    },
    /// The client stops waiting (an open offer's hold is released with it).
    Leave,
}

/// Events of an entry's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitlistEvent {
    /// `waitlist.joined`
    Joined(EntrySpec),
    /// `waitlist.offered`
    Offered(Offer),
    /// `waitlist.fulfilled`
    Fulfilled {
        /// The booking the offer became.
        booking_id: Uuid,
    },
    /// `waitlist.lapsed`
    Lapsed {
        /// The hold that ended unconverted.
        hold_id: Uuid,
    },
    /// `waitlist.left`
    Left,
}

/// An entry's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitlistEntry {
    /// `None` until joined.
    pub spec: Option<EntrySpec>,
    /// Where it is.
    pub status: Option<EntryStatus>,
    /// The current (or last) offer.
    pub offer: Option<Offer>,
    /// The booking it became, once fulfilled.
    pub booking_id: Option<Uuid>,
}

impl WaitlistEntry {
    /// The open offer, while there is one.
    pub fn open_offer(&self) -> Option<&Offer> {
        match self.status {
            Some(EntryStatus::Offered) => self.offer.as_ref(),
            _ => None,
        }
    }

    fn status(&self) -> Result<EntryStatus, DomainError> {
        self.status.ok_or(DomainError::NotFound("waitlist entry"))
    }
}

impl Aggregate for WaitlistEntry {
    type Command = WaitlistCommand;
    type Event = WaitlistEvent;
    const STREAM_TYPE: &'static str = "waitlist";

    fn evolve(&mut self, event: &WaitlistEvent) {
        match event {
            WaitlistEvent::Joined(spec) => {
                self.spec = Some(spec.clone());
                self.status = Some(EntryStatus::Waiting);
            }
            WaitlistEvent::Offered(offer) => {
                self.offer = Some(*offer);
                self.status = Some(EntryStatus::Offered);
            }
            WaitlistEvent::Fulfilled { booking_id } => {
                self.booking_id = Some(*booking_id);
                self.status = Some(EntryStatus::Fulfilled);
            }
            WaitlistEvent::Lapsed { .. } => self.status = Some(EntryStatus::Lapsed),
            WaitlistEvent::Left => self.status = Some(EntryStatus::Left),
        }
    }

    fn decide(&self, command: WaitlistCommand) -> Result<Vec<WaitlistEvent>, DomainError> {
        match command {
            WaitlistCommand::Join { spec, now } => {
                if self.spec.is_some() {
                    return Err(DomainError::AlreadyExists("waitlist entry"));
                }
                validate(&spec, now)?;
                Ok(vec![WaitlistEvent::Joined(spec)])
            }
            WaitlistCommand::Offer(offer) => match self.status()? {
                EntryStatus::Waiting => Ok(vec![WaitlistEvent::Offered(offer)]),
                other => Err(not(other, "offered a slot")),
            },
            WaitlistCommand::Fulfil {
                hold_id,
                booking_id,
            } => match self.open_offer() {
                Some(offer) if offer.hold_id == hold_id => {
                    Ok(vec![WaitlistEvent::Fulfilled { booking_id }])
                }
                _ => Err(DomainError::InvalidTransition(format!(
                    "the waitlist offer of hold {hold_id} is no longer open (the entry is {})",
                    self.status()?.as_str()
                ))),
            },
            WaitlistCommand::Lapse { hold_id } => Ok(match self.open_offer() {
                Some(offer) if offer.hold_id == hold_id => vec![WaitlistEvent::Lapsed { hold_id }],
                _ => Vec::new(),
            }),
            WaitlistCommand::Leave => match self.status()? {
                EntryStatus::Waiting | EntryStatus::Offered => Ok(vec![WaitlistEvent::Left]),
                EntryStatus::Left => Ok(Vec::new()),
                other => Err(not(other, "left")),
            },
        }
    }
}

fn not(status: EntryStatus, what: &str) -> DomainError {
    DomainError::InvalidTransition(format!(
        "a waitlist entry that is {} cannot be {what}",
        status.as_str()
    ))
}

fn validate(spec: &EntrySpec, now: DateTime<Utc>) -> Result<(), DomainError> {
    let mut v = Validator::default();
    match TimeRange::new(spec.starts_at, spec.ends_at, "") {
        Err(e) => v.push(e),
        Ok(range) => v.check(range.ends_at > now, "ends_at", "the range is already over"),
    }
    validate_client(&mut v, &spec.client);
    let ttl = spec.offer_ttl.to_duration();
    v.check(
        ttl >= Duration::seconds(1) && ttl <= MAX_TTL,
        "offer_ttl",
        "must be between PT1S and PT1H (an offer is a hold)",
    );
    v.check(
        (-MAX_PRIORITY..=MAX_PRIORITY).contains(&spec.priority),
        "priority",
        format!("must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"),
    );
    v.finish()
}

impl DomainEvent for WaitlistEvent {
    fn event_type(&self) -> &'static str {
        match self {
            WaitlistEvent::Joined(_) => "waitlist.joined",
            WaitlistEvent::Offered(_) => "waitlist.offered",
            WaitlistEvent::Fulfilled { .. } => "waitlist.fulfilled",
            WaitlistEvent::Lapsed { .. } => "waitlist.lapsed",
            WaitlistEvent::Left => "waitlist.left",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            WaitlistEvent::Joined(spec) => payload_of(spec),
            WaitlistEvent::Offered(offer) => payload_of(offer),
            WaitlistEvent::Fulfilled { booking_id } => {
                serde_json::json!({ "booking_id": booking_id })
            }
            WaitlistEvent::Lapsed { hold_id } => serde_json::json!({ "hold_id": hold_id }),
            WaitlistEvent::Left => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Fulfilled {
            booking_id: Uuid,
        }
        #[derive(Deserialize)]
        struct Lapsed {
            hold_id: Uuid,
        }
        Ok(match event_type {
            "waitlist.joined" => WaitlistEvent::Joined(decode(event_type, payload)?),
            "waitlist.offered" => WaitlistEvent::Offered(decode(event_type, payload)?),
            "waitlist.fulfilled" => {
                let f: Fulfilled = decode(event_type, payload)?;
                WaitlistEvent::Fulfilled {
                    booking_id: f.booking_id,
                }
            }
            "waitlist.lapsed" => {
                let l: Lapsed = decode(event_type, payload)?;
                WaitlistEvent::Lapsed { hold_id: l.hold_id }
            }
            "waitlist.left" => WaitlistEvent::Left,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests;
