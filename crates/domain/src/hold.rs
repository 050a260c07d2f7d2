//! The Hold aggregate: a tentative claim on a resource for a range, with
//! an expiry, as checkout flows need. While it is placed and not expired it
//! counts against capacity exactly like a reservation (the store admits it
//! by the same rule); it ends released, converted into a booking's
//! reservation, or expired.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventDecodeError, decode, payload_of};
use crate::time::TimeRange;
use crate::{Aggregate, DomainError, DomainEvent, FieldError};

/// How long a hold lasts unless asked otherwise.
pub const DEFAULT_TTL: Duration = Duration::minutes(5);
/// The longest a hold may last.
pub const MAX_TTL: Duration = Duration::hours(1);

/// What a hold claims (payload of `hold.placed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldSpec {
    /// The held resource.
    pub resource_id: Uuid,
    /// Inclusive start of the held range.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end of the held range.
    pub ends_at: DateTime<Utc>,
    /// When it stops counting.
    pub expires_at: DateTime<Utc>,
    /// The waitlist entry it was placed for as an offer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_for: Option<Uuid>,
    /// The pool whose member it holds (an offer to a pool's entry): the
    /// reservation it converts into is that pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<Uuid>,
}

impl HoldSpec {
    /// What the hold counts for under quotas until it expires: its range
    /// on its resource (a hold has no client).
    pub fn charge(&self) -> crate::quota::Charge {
        crate::quota::Charge {
            client: None,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            reservations: vec![crate::quota::ChargedReservation {
                resource_id: self.resource_id,
                pool_id: self.pool_id,
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            }],
            expires_at: Some(self.expires_at),
        }
    }

    /// The held range.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Placed and not yet expired: it counts against capacity.
    Active,
    /// Past its expiry: it no longer counts (whether or not `hold.expired`
    /// was recorded yet).
    Expired,
    /// Given up before it expired.
    Released,
    /// Turned into a booking's reservation.
    Converted,
}

/// Commands on a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldCommand {
    /// Places the hold.
    Place {
        /// What it claims.
        resource_id: Uuid,
        /// The range.
        range: TimeRange,
        /// How long it lasts (at most [`MAX_TTL`]).
        ttl: Duration,
        /// The clock.
        now: DateTime<Utc>,
        /// The waitlist entry it offers the range to, if any.
        offer_for: Option<Uuid>,
        /// The pool whose member it holds, if any.
        pool_id: Option<Uuid>,
    },
    /// Gives it up.
    Release,
    /// Turns it into booking `booking_id`'s reservation (the store checks
    /// the range again; an expired hold converts only if the range is still
    /// free).
    Convert {
        /// The booking it becomes part of.
        booking_id: Uuid,
    },
    /// Records that it expired (after its expiry instant).
    Expire {
        /// The clock.
        now: DateTime<Utc>,
    },
}

/// Events of a hold's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldEvent {
    /// `hold.placed`
    Placed(HoldSpec),
    /// `hold.released`
    Released,
    /// `hold.converted`
    Converted {
        /// The booking it became part of.
        booking_id: Uuid,
    },
    /// `hold.expired`: recorded after the expiry instant for the feed; the
    /// hold stopped counting at that instant already.
    Expired,
}

/// How a hold ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Released.
    Released,
    /// Converted into this booking.
    Converted(Uuid),
    /// Recorded as expired.
    Expired,
}

/// A hold's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    /// `None` until placed.
    pub spec: Option<HoldSpec>,
    /// How it ended, if it did.
    pub end: Option<HoldEnd>,
}

impl Hold {
    /// Its status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> Option<HoldStatus> {
        let spec = self.spec.as_ref()?;
        Some(match self.end {
            Some(HoldEnd::Released) => HoldStatus::Released,
            Some(HoldEnd::Converted(_)) => HoldStatus::Converted,
            Some(HoldEnd::Expired) => HoldStatus::Expired,
            None if now >= spec.expires_at => HoldStatus::Expired,
            None => HoldStatus::Active,
        })
    }

    fn placed(&self) -> Result<&HoldSpec, DomainError> {
        self.spec.as_ref().ok_or(DomainError::NotFound("hold"))
    }
}

impl Aggregate for Hold {
    type Command = HoldCommand;
    type Event = HoldEvent;
    const STREAM_TYPE: &'static str = "hold";

    fn evolve(&mut self, event: &HoldEvent) {
        match event {
            HoldEvent::Placed(spec) => self.spec = Some(spec.clone()),
            HoldEvent::Released => self.end = Some(HoldEnd::Released),
            HoldEvent::Converted { booking_id } => self.end = Some(HoldEnd::Converted(*booking_id)),
            HoldEvent::Expired => self.end = Some(HoldEnd::Expired),
        }
    }

    fn decide(&self, command: HoldCommand) -> Result<Vec<HoldEvent>, DomainError> {
        match command {
            HoldCommand::Place {
                resource_id,
                range,
                ttl,
                now,
                offer_for,
                pool_id,
            } => {
                if self.spec.is_some() {
                    return Err(DomainError::AlreadyExists("hold"));
                }
                if ttl < Duration::seconds(1) || ttl > MAX_TTL {
                    return Err(DomainError::Invalid(vec![FieldError::new(
                        "ttl",
                        "must be between PT1S and PT1H",
                    )]));
                }
                Ok(vec![HoldEvent::Placed(HoldSpec {
                    resource_id,
                    starts_at: range.starts_at,
                    ends_at: range.ends_at,
                    expires_at: now + ttl,
                    offer_for,
                    pool_id,
                })])
            }
            HoldCommand::Release => {
                self.placed()?;
                match self.end {
                    None => Ok(vec![HoldEvent::Released]),
                    Some(HoldEnd::Released) => Ok(Vec::new()),
                    Some(end) => Err(ended(end)),
                }
            }
            HoldCommand::Convert { booking_id } => {
                self.placed()?;
                match self.end {
                    // An expired hold converts if its range is still free:
                    // the store checks that like any new reservation.
                    None | Some(HoldEnd::Expired) => Ok(vec![HoldEvent::Converted { booking_id }]),
                    Some(end) => Err(ended(end)),
                }
            }
            HoldCommand::Expire { now } => {
                let spec = self.placed()?;
                if self.end.is_some() || now < spec.expires_at {
                    return Ok(Vec::new());
                }
                Ok(vec![HoldEvent::Expired])
            }
        }
    }
}

fn ended(end: HoldEnd) -> DomainError {
    DomainError::InvalidTransition(match end {
        HoldEnd::Released => "the hold was released".into(),
        HoldEnd::Converted(booking) => format!("the hold was converted into booking {booking}"),
        HoldEnd::Expired => "the hold expired".into(),
    })
}

impl DomainEvent for HoldEvent {
    fn event_type(&self) -> &'static str {
        match self {
            HoldEvent::Placed(_) => "hold.placed",
            HoldEvent::Released => "hold.released",
            HoldEvent::Converted { .. } => "hold.converted",
            HoldEvent::Expired => "hold.expired",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            HoldEvent::Placed(spec) => payload_of(spec),
            HoldEvent::Converted { booking_id } => serde_json::json!({ "booking_id": booking_id }),
            HoldEvent::Released | HoldEvent::Expired => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Converted {
            booking_id: Uuid,
        }
        Ok(match event_type {
            "hold.placed" => HoldEvent::Placed(decode(event_type, payload)?),
            "hold.released" => HoldEvent::Released,
            "hold.converted" => {
                let c: Converted = decode(event_type, payload)?;
                HoldEvent::Converted {
                    booking_id: c.booking_id,
                }
            }
            "hold.expired" => HoldEvent::Expired,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::harness::given;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 6, 1, 10, 0, 0).unwrap()
    }

    fn place(ttl: Duration) -> HoldCommand {
        HoldCommand::Place {
            resource_id: Uuid::from_u128(1),
            range: TimeRange {
                starts_at: now() + Duration::days(1),
                ends_at: now() + Duration::days(1) + Duration::hours(2),
            },
            ttl,
            now: now(),
            offer_for: None,
            pool_id: None,
        }
    }

    fn placed() -> HoldEvent {
        HoldEvent::Placed(HoldSpec {
            resource_id: Uuid::from_u128(1),
            starts_at: now() + Duration::days(1),
            ends_at: now() + Duration::days(1) + Duration::hours(2),
            expires_at: now() + DEFAULT_TTL,
            offer_for: None,
            pool_id: None,
        })
    }

    #[test]
    fn a_hold_expires_ttl_after_it_is_placed() {
        given::<Hold>([]).when(place(DEFAULT_TTL)).then([placed()]);
        given::<Hold>([])
            .when(place(Duration::minutes(61)))
            .then_invalid(&["ttl"]);
    }

    #[test]
    fn its_status_turns_expired_at_the_expiry_instant_without_any_event() {
        let hold = Hold::from_events([placed()].iter());
        let expiry = now() + DEFAULT_TTL;
        assert_eq!(
            hold.status(expiry - Duration::milliseconds(1)),
            Some(HoldStatus::Active)
        );
        assert_eq!(hold.status(expiry), Some(HoldStatus::Expired));
    }

    #[test]
    fn it_converts_once_even_after_expiry_but_not_after_release() {
        let booking = Uuid::from_u128(9);
        given::<Hold>([placed()])
            .when(HoldCommand::Convert {
                booking_id: booking,
            })
            .then([HoldEvent::Converted {
                booking_id: booking,
            }]);
        given::<Hold>([placed(), HoldEvent::Expired])
            .when(HoldCommand::Convert {
                booking_id: booking,
            })
            .then([HoldEvent::Converted {
                booking_id: booking,
            }]);
        given::<Hold>([
            placed(),
            HoldEvent::Converted {
                booking_id: booking,
            },
        ])
        .when(HoldCommand::Convert {
            booking_id: Uuid::from_u128(10),
        })
        .then_refused();
        given::<Hold>([placed(), HoldEvent::Released])
            .when(HoldCommand::Convert {
                booking_id: booking,
            })
            .then_refused();
    }

    #[test]
    fn expiry_is_recorded_only_after_the_instant_and_once() {
        let expiry = now() + DEFAULT_TTL;
        given::<Hold>([placed()])
            .when(HoldCommand::Expire {
                now: expiry - Duration::seconds(1),
            })
            .then([]);
        given::<Hold>([placed()])
            .when(HoldCommand::Expire { now: expiry })
            .then([HoldEvent::Expired]);
        given::<Hold>([placed(), HoldEvent::Released])
            .when(HoldCommand::Expire { now: expiry })
            .then([]);
    }

    #[test]
    fn release_is_idempotent_but_not_after_conversion() {
        given::<Hold>([placed()])
            .when(HoldCommand::Release)
            .then([HoldEvent::Released]);
        given::<Hold>([placed(), HoldEvent::Released])
            .when(HoldCommand::Release)
            .then([]);
        given::<Hold>([
            placed(),
            HoldEvent::Converted {
                booking_id: Uuid::from_u128(9),
            },
        ])
        .when(HoldCommand::Release)
        .then_refused();
    }

    #[test]
    fn payloads_round_trip() {
        for event in [
            placed(),
            HoldEvent::Released,
            HoldEvent::Converted {
                booking_id: Uuid::from_u128(3),
            },
            HoldEvent::Expired,
        ] {
            let back = HoldEvent::from_payload(event.event_type(), &event.to_payload()).unwrap();
            assert_eq!(back, event);
        }
    }
}
