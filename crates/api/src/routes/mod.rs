//! The `/v1` routes, one module per area.

pub mod analytics;
pub mod availability;
pub mod booking_queries;
pub mod bookings;
pub mod calendars;
pub mod client_notifications;
pub mod clients;
pub mod dashboard;
pub mod deployments;
pub mod events;
pub mod feeds;
pub mod find_time;
pub mod holds;
pub mod jobs;
pub mod keys;
pub mod ops;
pub mod pools;
pub mod projections;
pub mod quotas;
pub mod reports;
pub mod resource_queries;
pub mod resources;
pub mod series;
pub mod subscribe;
pub mod waitlist;
pub mod webhooks;
pub mod whoami;

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The answer to a command: the entity, its version after the command, and
/// the position of its last event (pass it as `consistent_with` to read
/// your own write).
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAnswer {
    /// The entity's id.
    pub id: Uuid,
    /// Its version after the command; send it as `If-Match` to guard the
    /// next change.
    pub version: i64,
    /// Position of its last event in the global event order.
    pub position: i64,
}

impl From<&muster_store::CommandOutcome> for CommandAnswer {
    fn from(o: &muster_store::CommandOutcome) -> Self {
        Self {
            id: o.stream_id,
            version: o.version,
            position: o.position,
        }
    }
}

/// Headers every command accepts.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documents headers that the Command extractor reads"
)]
pub struct CommandHeaders {
    /// Makes the command safe to retry: the same key with the same body
    /// returns the first answer and changes nothing; with another body, 422.
    #[param(rename = "Idempotency-Key", value_type = Option<String>, max_length = 255)]
    idempotency_key: Option<String>,
    /// Guards against lost updates: the version the change is based on;
    /// 412 if the entity has moved on.
    #[param(rename = "If-Match", value_type = Option<String>)]
    if_match: Option<String>,
    /// Correlates this request's logs and events; generated if absent.
    #[param(rename = "X-Correlation-Id", value_type = Option<String>, max_length = 128)]
    correlation_id: Option<String>,
}

/// Serialises an answer; answers are plain data, so this cannot fail.
pub(crate) fn to_json<T: Serialize>(answer: &T) -> serde_json::Value {
    serde_json::to_value(answer).unwrap_or_default()
}
