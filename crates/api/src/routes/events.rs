//! The event feed: a tenant's events in position order, gap-free.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, READERS};
use crate::extract::QueryParams;
use crate::{ApiError, AppState};

/// The event feed route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

const MAX_LIMIT: i64 = 1000;

/// Where to read from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Return events after this position (default 0: from the start).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many events (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

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

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    /// Events in position order.
    events: Vec<FeedEvent>,
    /// Pass as `after` to continue; the same as the request's when there is
    /// nothing new yet.
    next_after: i64,
}

/// Read the tenant's events after a position. The feed never skips an
/// event: an event that commits late appears before the feed moves past it.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(FeedQuery),
    responses((status = 200, description = "Events in position order", body = FeedPage)))]
async fn list_events(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100);
    if after < 0 {
        return Err(invalid("after", "must be at least 0"));
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 1000"));
    }
    let events = state
        .store
        .read_tenant(&principal.tenant, after, limit)
        .await?;
    let next_after = events.last().map_or(after, |e| e.position);
    Ok(Json(FeedPage {
        next_after,
        events: events.into_iter().map(FeedEvent::from).collect(),
    }))
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

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation(vec![muster_domain::FieldError::new(field, message)])
}
