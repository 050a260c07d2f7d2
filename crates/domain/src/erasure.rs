//! A client's erasure (SPEC §12), recorded as a stream of its own: one
//! `client.erased` event that says which bookings and waitlist entries
//! lost their client and how much was erased, and nothing about whom.
//! The read models that copied the client's data scrub the bookings and
//! entries it names when they reach it, so that a copy made from events
//! read just before the erasure does not outlive it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventDecodeError, decode, payload_of};
use crate::{Aggregate, DomainError, DomainEvent};

/// What an erasure reached (payload of `client.erased`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erased {
    /// The bookings whose client it was.
    pub bookings: Vec<Uuid>,
    /// The waitlist entries whose client it was.
    pub waitlist_entries: Vec<Uuid>,
    /// How many data keys were deleted (each erases the personal fields
    /// of every event it sealed).
    pub keys_deleted: u32,
    /// How many events written before personal data was sealed were
    /// redacted in place (the one exception to append-only).
    pub events_redacted: u32,
}

/// What an erasure is asked to do.
#[derive(Debug, Clone)]
pub enum ErasureCommand {
    /// Record that the client was erased, as `erased` says.
    Record(Erased),
}

/// What an erasure records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureEvent {
    /// The client was erased.
    Erased(Erased),
}

/// One erasure.
#[derive(Debug, Clone, Default)]
pub struct Erasure {
    /// What it reached, once recorded.
    pub erased: Option<Erased>,
}

impl Aggregate for Erasure {
    type Command = ErasureCommand;
    type Event = ErasureEvent;
    const STREAM_TYPE: &'static str = "client";

    fn evolve(&mut self, event: &ErasureEvent) {
        let ErasureEvent::Erased(erased) = event;
        self.erased = Some(erased.clone());
    }

    fn decide(&self, command: ErasureCommand) -> Result<Vec<ErasureEvent>, DomainError> {
        let ErasureCommand::Record(erased) = command;
        if self.erased.is_some() {
            return Err(DomainError::AlreadyExists("erasure"));
        }
        Ok(vec![ErasureEvent::Erased(erased)])
    }
}

impl DomainEvent for ErasureEvent {
    fn event_type(&self) -> &'static str {
        "client.erased"
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        let ErasureEvent::Erased(erased) = self;
        payload_of(erased)
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        match event_type {
            "client.erased" => Ok(ErasureEvent::Erased(decode(event_type, payload)?)),
            other => Err(EventDecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::harness::given;

    #[test]
    fn an_erasure_is_recorded_once_and_names_no_one() {
        let erased = Erased {
            bookings: vec![Uuid::from_u128(1)],
            waitlist_entries: vec![],
            keys_deleted: 2,
            events_redacted: 1,
        };
        let state = given::<Erasure>([])
            .when(ErasureCommand::Record(erased.clone()))
            .then([ErasureEvent::Erased(erased.clone())]);
        assert!(matches!(
            state.decide(ErasureCommand::Record(erased.clone())),
            Err(DomainError::AlreadyExists(_))
        ));
        let payload = ErasureEvent::Erased(erased.clone()).to_payload();
        assert_eq!(
            ErasureEvent::from_payload("client.erased", &payload).unwrap(),
            ErasureEvent::Erased(erased)
        );
        assert_eq!(
            payload.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "bookings",
                "events_redacted",
                "keys_deleted",
                "waitlist_entries"
            ]
        );
    }
}
