//! The one way every read model folds an entity: the domain aggregate's own
//! state, moved on by the domain's own `evolve`, plus what only the event
//! envelopes know (stream version, position, when things happened).
//!
//! A batch turns each stored row into a [`Folded`] once, folds its events
//! with [`fold`] (pure: no database, tested on its own), and writes the row
//! the folded state shows once; so no projection keeps a second copy of the
//! domain's rules.

use std::collections::HashMap;

use muster_domain::{Aggregate, DomainEvent, TenantId};
use muster_store::RecordedEvent;
use uuid::Uuid;

use crate::{ProjectionError, expect_next};

/// An entity's key: its tenant and stream id.
pub(crate) type Key = (TenantId, Uuid);

/// One entity as a projection folds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Folded<A, E> {
    /// The aggregate's state, as the domain folds it.
    pub(crate) state: A,
    /// What the envelopes of its events said.
    pub(crate) envelope: E,
}

/// What a projection keeps of the event envelopes beside an aggregate's
/// state: never a fact the domain state already holds.
pub(crate) trait Envelope<A: Aggregate>: Sized {
    /// Why a stream's first event that creates nothing is refused.
    const NOT_CREATED: &'static str;

    /// Whether `state` exists (its creating event was folded).
    fn created(state: &A) -> bool;

    /// The envelope of the entity `event` (its stream's first) creates,
    /// before the event itself is noted.
    fn first(event: &RecordedEvent) -> Self;

    /// The stream version folded so far.
    fn version(&self) -> i32;

    /// Takes note of `event`, which the domain has just folded into `state`.
    fn note(&mut self, event: &RecordedEvent, decoded: &A::Event, state: &A);
}

/// `folded` (`None`: not seen yet) after `event`, or a poison stop when the
/// event repeats or skips a version, or comes before the entity exists.
pub(crate) fn fold<A: Aggregate, E: Envelope<A>>(
    folded: Option<Folded<A, E>>,
    event: &RecordedEvent,
    decoded: &A::Event,
) -> Result<Folded<A, E>, ProjectionError> {
    let mut folded = match folded {
        Some(folded) => {
            expect_next(event, folded.envelope.version())?;
            folded
        }
        None => {
            expect_next(event, 0)?;
            Folded {
                state: A::default(),
                envelope: E::first(event),
            }
        }
    };
    folded.state.evolve(decoded);
    if !E::created(&folded.state) {
        return Err(ProjectionError::poison(event, E::NOT_CREATED));
    }
    folded.envelope.note(event, decoded, &folded.state);
    Ok(folded)
}

/// The events of `A`'s streams among `events`, in order.
pub(crate) fn events_of<A: Aggregate>(events: &[RecordedEvent]) -> Vec<&RecordedEvent> {
    events
        .iter()
        .filter(|e| e.stream_type == A::STREAM_TYPE)
        .collect()
}

/// Folds `events` (all of `A`'s streams) into `folded`, which holds the
/// stored entities they touch, and returns the keys they changed, sorted.
pub(crate) fn fold_batch<A: Aggregate, E: Envelope<A>>(
    folded: &mut HashMap<Key, Folded<A, E>>,
    events: &[&RecordedEvent],
) -> Result<Vec<Key>, ProjectionError> {
    let mut changed = Vec::with_capacity(events.len());
    for event in events {
        let decoded = A::Event::from_payload(&event.event_type, &event.payload)
            .map_err(|e| ProjectionError::poison(event, e))?;
        let key = (event.tenant.clone(), event.stream_id);
        let next = fold(folded.remove(&key), event, &decoded)?;
        folded.insert(key.clone(), next);
        changed.push(key);
    }
    changed.sort_unstable();
    changed.dedup();
    Ok(changed)
}

/// Test events: envelopes around domain events, one stream at a time.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use muster_domain::{DomainEvent, TenantId};
    use muster_store::RecordedEvent;
    use uuid::Uuid;

    /// When the `version`th event of a test stream was recorded.
    pub(crate) fn at(version: i32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 6, 1, 9, 0, 0).unwrap() + Duration::minutes(version.into())
    }

    /// `event` recorded as version `version` of stream `id`, at [`at`].
    pub(crate) fn recorded(
        stream_type: &str,
        id: Uuid,
        version: i32,
        event: &impl DomainEvent,
    ) -> RecordedEvent {
        RecordedEvent {
            tenant: TenantId::try_from("acme".to_owned()).unwrap(),
            position: 100 + i64::from(version),
            stream_type: stream_type.to_owned(),
            stream_id: id,
            stream_version: version,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
            metadata: serde_json::json!({"actor": "planner-key"}),
            recorded_at: at(version),
        }
    }
}
