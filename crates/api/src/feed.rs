//! An event as the feed, the live stream and webhooks show it: one shape,
//! built in one place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One recorded event.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedEvent {
    /// Global position: strictly increasing along the feed.
    position: i64,
    /// Kind of stream (`booking`, `resource`).
    stream_type: String,
    /// The entity.
    stream_id: Uuid,
    /// Version of the entity after this event.
    version: i32,
    /// Dotted type name, e.g. `booking.confirmed`.
    #[serde(rename = "type")]
    event_type: String,
    /// Schema version of `data`.
    schema_version: i32,
    /// Payload.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// Command id, correlation id, causation id, actor, tenant.
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// When it was recorded.
    recorded_at: DateTime<Utc>,
}

impl From<muster_store::RecordedEvent> for FeedEvent {
    fn from(e: muster_store::RecordedEvent) -> Self {
        Self {
            position: e.position,
            stream_type: e.stream_type,
            stream_id: e.stream_id,
            version: e.stream_version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            data: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}
