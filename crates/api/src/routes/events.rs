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
use crate::feed::FeedEvent;
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
    /// Only this entity's events (its history; answered from the stream's
    /// own index however many events the tenant has).
    stream_id: Option<Uuid>,
    /// Only these stream types, comma-separated (`booking,hold`).
    stream_type: Option<String>,
    /// Only these event types, comma-separated (`booking.cancelled`).
    event_type: Option<String>,
    /// Only events caused by this actor (an API key id, `worker`,
    /// `system:hold-sweeper`).
    actor: Option<String>,
    /// Only events recorded at or after this instant (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Only events recorded before this instant (RFC 3339).
    to: Option<DateTime<Utc>>,
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

/// Read the tenant's events after a position, optionally filtered for an
/// audit (one entity, types, an actor, a time range). The feed never skips
/// an event: an event that commits late appears before the feed moves past
/// it.
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
    if let (Some(from), Some(to)) = (query.from, query.to)
        && to <= from
    {
        return Err(invalid("to", "must be after from"));
    }
    if query
        .actor
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.chars().count() > 200)
    {
        return Err(invalid("actor", "must be 1 to 200 characters"));
    }
    let list = |raw: Option<&str>| -> Vec<String> {
        raw.into_iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let filter = muster_store::EventFilter {
        stream_types: list(query.stream_type.as_deref()),
        event_types: list(query.event_type.as_deref()),
        stream_id: query.stream_id,
        actor: query.actor,
        from: query.from,
        to: query.to,
    };
    let events = state
        .store
        .read_tenant_page(&principal.tenant, &filter, after, limit)
        .await?
        .events;
    let next_after = events.last().map_or(after, |e| e.position);
    Ok(Json(FeedPage {
        next_after,
        events: events.into_iter().map(FeedEvent::from).collect(),
    }))
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation(vec![muster_domain::FieldError::new(field, message)])
}
