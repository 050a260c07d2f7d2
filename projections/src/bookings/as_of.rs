//! Time travel: bookings as muster knew them at a past instant, folded
//! from the events recorded up to it by the very fold the projection runs
//! (the domain's own `evolve`), so that the past answers in the same shape
//! as the present.

use muster_domain::DomainEvent;
use muster_domain::booking::BookingEvent;
use muster_store::RecordedEvent;
use uuid::Uuid;

use super::{BookingDocument, FoldedBooking};
use crate::ProjectionError;
use crate::fold::fold;

/// The documents of the bookings whose events `events` holds (several
/// streams, each in version order, as `Store::streams_until` reads them).
///
/// A stream counts up to its first missing version: a transaction that
/// started before an instant may commit an event stamped before it after a
/// later version of its stream was stamped past it, and a history with a
/// hole in it was never what anyone saw.
pub(crate) fn documents(events: &[RecordedEvent]) -> Result<Vec<BookingDocument>, ProjectionError> {
    let mut documents = Vec::new();
    let mut stream: Option<(Uuid, Option<FoldedBooking>, bool)> = None;
    for event in events {
        if stream
            .as_ref()
            .is_none_or(|(id, ..)| *id != event.stream_id)
        {
            if let Some((_, Some(folded), _)) = stream.take() {
                documents.extend(folded.document());
            }
            stream = Some((event.stream_id, None, false));
        }
        let Some((_, folded, cut)) = stream.as_mut() else {
            continue;
        };
        let next = folded.as_ref().map_or(1, |f| f.envelope.version + 1);
        if *cut || event.stream_version != next {
            *cut = true;
            continue;
        }
        let decoded = BookingEvent::from_payload(&event.event_type, &event.payload)
            .map_err(|e| ProjectionError::poison(event, e))?;
        *folded = Some(fold(folded.take(), event, &decoded)?);
    }
    if let Some((_, Some(folded), _)) = stream {
        documents.extend(folded.document());
    }
    Ok(documents)
}
