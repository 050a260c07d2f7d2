//! How domain events are named, versioned and (de)serialised.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A domain event as the store sees it: a dotted lower-case type name, the
/// current payload schema version, and a JSON payload.
pub trait DomainEvent: Sized + Clone {
    /// Dotted lower-case type name, e.g. `booking.confirmed`. Webhooks filter
    /// on the same names.
    fn event_type(&self) -> &'static str;

    /// The schema version this code writes for the event's type.
    fn schema_version(&self) -> i32;

    /// The payload to store.
    fn to_payload(&self) -> serde_json::Value;

    /// Rebuilds an event from a stored payload that is already upcast to the
    /// current schema version (see [`crate::upcast`]). The payload is
    /// borrowed: readers keep it (a page of the log is shared by every
    /// follower), and a copy per decode was a tree of allocations.
    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError>;
}

/// A stored event could not be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The type name is not one this aggregate knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The payload does not match the schema of its (upcast) version.
    #[error("payload of {event_type} does not match its schema: {source}")]
    Payload {
        /// The event type whose payload failed.
        event_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored schema version is newer than this code understands.
    #[error("{event_type} has schema version {version}, newer than this build knows ({known})")]
    FutureVersion {
        /// The event type.
        event_type: String,
        /// Its stored version.
        version: i32,
        /// The newest version this build knows.
        known: i32,
    },
}

/// Serialises a payload struct; payload types are plain data, so this cannot fail.
pub(crate) fn payload_of<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("event payloads are plain serialisable data")
}

/// Deserialises a payload struct for `event_type`.
pub(crate) fn decode<T: DeserializeOwned>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<T, EventDecodeError> {
    T::deserialize(payload).map_err(|source| EventDecodeError::Payload {
        event_type: event_type.to_owned(),
        source,
    })
}
