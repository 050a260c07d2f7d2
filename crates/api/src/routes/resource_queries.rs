//! Resource queries: list, detail, schedule.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use muster_domain::time::TimeRange;
use muster_projections::ReadModel;
use muster_projections::query::{
    ResourceFilter, ResourceScheduleEntry, ResourceView, ScheduleEntry, ScheduleFilter,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, READERS};
use crate::extract::{PathIds, QueryParams};
use crate::read::{consistent_with, id_cursor, id_cursor_of, limit, next_cursor, time, window};
use crate::{ApiError, AppState};

/// The resource query routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_resources))
        .routes(routes!(free_resources))
        .routes(routes!(get_resource))
        .routes(routes!(resource_schedule))
        .routes(routes!(schedules))
}

/// Filters and paging of the resource list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResourceListQuery {
    /// Only resources of this kind.
    kind: Option<String>,
    /// Only resources with this tag.
    tag: Option<String>,
    /// Include retired resources (default false).
    include_retired: Option<bool>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read model has applied this position (read your writes).
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// A page of resources.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcePage {
    /// Resources in creation order.
    items: Vec<ResourceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List resources, in creation order.
#[utoipa::path(get, path = "/v1/resources", tag = "resources", params(ResourceListQuery),
    responses((status = 200, description = "A page of resources", body = ResourcePage)))]
async fn list_resources(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ResourceListQuery>,
) -> Result<Json<ResourcePage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let after = id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &[ReadModel::Resources], q.consistent_with).await?;
    let filter = ResourceFilter {
        kind: q.kind,
        tag: q.tag,
        include_retired: q.include_retired.unwrap_or(false),
        min_capacity: None,
        min_seats: None,
    };
    let items = state
        .reads
        .resources(&principal.tenant, &filter, after, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |r| id_cursor_of(r.id));
    Ok(Json(ResourcePage { items, next_cursor }))
}

/// Only read-your-writes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// Wait until the read model has applied this position (read your writes).
    #[param(minimum = 0)]
    pub(crate) consistent_with: Option<i64>,
}

/// Read one resource.
#[utoipa::path(get, path = "/v1/resources/{id}", tag = "resources",
    params(("id" = Uuid, Path, description = "The resource"), ConsistencyQuery),
    responses((status = 200, description = "The resource", body = ResourceView)))]
async fn get_resource(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    headers: axum::http::HeaderMap,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<axum::response::Response, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "resource")?;
    consistent_with(&state, &[ReadModel::Resources], q.consistent_with).await?;
    let resource = state
        .reads
        .resource(&principal.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("resource".into()))?;
    let body = serde_json::to_vec(&resource).map_err(|_| ApiError::Internal)?;
    Ok(crate::read::revalidated(body, "application/json", &headers))
}

/// The window of a schedule.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScheduleQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 366 days after `from`.
    to: String,
    /// Wait until the read models have applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
    /// The schedule as muster knew it at this instant (RFC 3339), folded
    /// from the events of the bookings recorded up to it. Holds and
    /// external calendars' blocks are shown only now, never as of a past
    /// instant.
    as_of: Option<String>,
}

/// A resource's schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    /// The resource.
    resource_id: Uuid,
    /// Reservations and unexpired holds overlapping the window, in start
    /// order.
    entries: Vec<ScheduleEntry>,
}

/// The reservations holding a resource within a window.
#[utoipa::path(get, path = "/v1/resources/{id}/schedule", tag = "resources",
    params(("id" = Uuid, Path, description = "The resource"), ScheduleQuery),
    responses((status = 200, description = "The schedule", body = Schedule)))]
async fn resource_schedule(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(q): QueryParams<ScheduleQuery>,
) -> Result<Json<Schedule>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "resource")?;
    let window = window(&q.from, &q.to, 366)?;
    let as_of = q.as_of.as_deref().map(|t| time("as_of", t)).transpose()?;
    consistent_with(&state, &ReadModel::ALL, q.consistent_with).await?;
    if let Some(as_of) = as_of {
        let entries = state
            .reads
            .schedule_as_of(&principal.tenant, id, window, as_of)
            .await?
            .ok_or_else(|| ApiError::NotFound("resource".into()))?;
        return Ok(Json(Schedule {
            resource_id: id,
            entries,
        }));
    }
    let mut entries = state
        .reads
        .schedule(&principal.tenant, id, window)
        .await?
        .ok_or_else(|| ApiError::NotFound("resource".into()))?;
    // Holds come from the write side's working set: they count until
    // their expiry instant, and show until then.
    let holds = state
        .store
        .active_holds(&principal.tenant, id, window)
        .await?;
    entries.extend(holds.into_iter().map(hold_entry));
    // So do external calendars' blocks.
    entries.extend(
        state
            .store
            .calendar_blocks(&principal.tenant, id, window)
            .await?
            .into_iter()
            .map(block_entry),
    );
    entries.sort_by_key(|e| (e.starts_at, e.reservation_id));
    Ok(Json(Schedule {
        resource_id: id,
        entries,
    }))
}

/// A hold as a schedule shows it: status `held`, its id as reservation and
/// booking, and when it stops counting.
fn hold_entry(h: muster_store::holds::ActiveHold) -> ScheduleEntry {
    ScheduleEntry {
        reservation_id: h.hold_id,
        booking_id: h.hold_id,
        title: "Hold".into(),
        status: "held".into(),
        starts_at: h.starts_at,
        ends_at: h.ends_at,
        label: None,
        expires_at: Some(h.expires_at),
    }
}

/// An external calendar's block as a schedule shows it: status
/// `external`, the block as reservation, the calendar link as booking, and
/// its title only where the link shows titles.
fn block_entry(b: muster_store::calendars::StoredBlock) -> ScheduleEntry {
    ScheduleEntry {
        reservation_id: b.block_id,
        booking_id: b.calendar_id,
        title: b.title.unwrap_or_else(|| "Busy".into()),
        status: "external".into(),
        starts_at: b.range.starts_at,
        ends_at: b.range.ends_at,
        label: None,
        expires_at: None,
    }
}

/// The window and resources of a schedule of many resources.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SchedulesQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 62 days after `from`.
    to: String,
    /// Only these resources, comma-separated (at most 500).
    resource_ids: Option<String>,
    /// Only resources of this kind.
    kind: Option<String>,
    /// Only resources with this tag.
    tag: Option<String>,
    /// At most this many reservations (1 to 5000, default 1000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read models have applied this position.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// The schedules of many resources within a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedules {
    /// Reservations overlapping the window, in start order, each with its
    /// resource.
    items: Vec<ResourceScheduleEntry>,
    /// Unexpired holds overlapping the window (first page only), each with
    /// its resource; status `held`.
    holds: Vec<ResourceScheduleEntry>,
    /// External calendars' busy blocks overlapping the window (first page
    /// only), each with its resource; status `external`, the block as
    /// `reservation_id`, its calendar link as `booking_id`.
    blocks: Vec<ResourceScheduleEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The reservations of many resources within a window (all of the
/// tenant's, or those of the named resources, kind or tag), in start
/// order: a timeline's data in a few requests rather than one per
/// resource.
#[utoipa::path(get, path = "/v1/schedule", tag = "resources", params(SchedulesQuery),
    responses((status = 200, description = "A page of the schedules", body = Schedules)))]
async fn schedules(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<SchedulesQuery>,
) -> Result<Json<Schedules>, ApiError> {
    let principal = auth.require(READERS)?;
    let window = window(&q.from, &q.to, 62)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=5000).contains(&limit) {
        return Err(crate::read::invalid("limit", "must be between 1 and 5000"));
    }
    let resource_ids = q
        .resource_ids
        .as_deref()
        .map(|raw| {
            let ids: Result<Vec<Uuid>, _> = raw.split(',').map(|id| id.trim().parse()).collect();
            match ids {
                Ok(ids) if !ids.is_empty() && ids.len() <= 500 => Ok(ids),
                _ => Err(crate::read::invalid(
                    "resource_ids",
                    "must be 1 to 500 comma-separated resource ids",
                )),
            }
        })
        .transpose()?;
    let after = crate::read::time_id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &[ReadModel::Bookings], q.consistent_with).await?;
    let filter = ScheduleFilter {
        resource_ids,
        kind: q.kind,
        tag: q.tag,
    };
    let items = state
        .reads
        .schedules(&principal.tenant, &filter, window, after, limit)
        .await?;
    let blocks = if after.is_none() {
        let blocks = muster_store::calendars::BlockFilter {
            resource_ids: filter.resource_ids.as_deref(),
            kind: filter.kind.as_deref(),
            tag: filter.tag.as_deref(),
        };
        state
            .store
            .calendar_blocks_within(&principal.tenant, &blocks, window)
            .await?
            .into_iter()
            .map(|b| ResourceScheduleEntry {
                resource_id: b.resource_id,
                entry: block_entry(b),
            })
            .collect()
    } else {
        Vec::new()
    };
    let holds = if after.is_none() {
        state
            .store
            .active_holds_within(&principal.tenant, filter.resource_ids.as_deref(), window)
            .await?
            .into_iter()
            .map(|h| ResourceScheduleEntry {
                resource_id: h.resource_id,
                entry: hold_entry(h.hold),
            })
            .collect()
    } else {
        Vec::new()
    };
    let next_cursor = next_cursor(&items, limit, |e| {
        crate::read::time_id_cursor_of(e.entry.starts_at, e.entry.reservation_id)
    });
    Ok(Json(Schedules {
        items,
        holds,
        blocks,
        next_cursor,
    }))
}

/// Most candidates one free-resource search looks at before it answers
/// with what it found and a cursor to go on from: a search over a busy
/// tenant stays bounded (two candidate pages) whatever it asks.
const MAX_SCANNED: usize = 500;

/// Candidates checked at once after the first page: one read of the
/// resource list and one check on the write side's working set per page.
/// The first page is twice `limit`, which is enough when most are free.
const CANDIDATE_PAGE: i64 = 250;

/// Which resources could take a range.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FreeResourcesQuery {
    /// Start of the range (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// End of the range (exclusive), after the start.
    ends_at: DateTime<Utc>,
    /// Only resources of this kind.
    kind: Option<String>,
    /// Only resources with this tag.
    tag: Option<String>,
    /// Only resources that hold at least this many bookings at once.
    #[param(minimum = 1)]
    min_capacity: Option<u32>,
    /// Only resources that seat at least this many people (resources that
    /// declare no seats are left out).
    #[param(minimum = 1)]
    min_seats: Option<u32>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the resource list has applied this position (read your
    /// writes); the availability itself is always current.
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// Find the resources that could take a reservation of exactly this range
/// right now, by the write side's own rule and data (the same as the
/// conflict check and as a booking made at the same instant), in creation
/// order. A page may hold fewer than `limit` items when the search stopped
/// after looking at many busy candidates: follow `next_cursor` until it is
/// absent.
#[utoipa::path(get, path = "/v1/resources/free", tag = "resources", params(FreeResourcesQuery),
    responses((status = 200, description = "A page of free resources", body = ResourcePage)))]
async fn free_resources(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<FreeResourcesQuery>,
) -> Result<Json<ResourcePage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let range =
        TimeRange::new(q.starts_at, q.ends_at, "").map_err(|e| ApiError::Validation(vec![e]))?;
    if q.min_capacity == Some(0) {
        return Err(crate::read::invalid("min_capacity", "must be at least 1"));
    }
    if q.min_seats == Some(0) {
        return Err(crate::read::invalid("min_seats", "must be at least 1"));
    }
    let mut after = id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &[ReadModel::Resources], q.consistent_with).await?;
    let filter = ResourceFilter {
        kind: q.kind,
        tag: q.tag,
        include_retired: false,
        min_capacity: q.min_capacity,
        min_seats: q.min_seats,
    };
    let wanted = usize::try_from(limit).unwrap_or(100);
    let mut items = Vec::with_capacity(wanted);
    let mut scanned = 0;
    let mut page_size = (limit * 2).min(CANDIDATE_PAGE);
    let next_cursor = loop {
        let page = state
            .reads
            .resources(&principal.tenant, &filter, after, page_size)
            .await?;
        let Some(last) = page.last() else {
            break None;
        };
        after = Some(last.id);
        scanned += page.len();
        let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
        let free = state
            .store
            .free_among(&principal.tenant, &ids, range, q.min_seats)
            .await?;
        for resource in page.iter().filter(|r| free.contains(&r.id)) {
            if items.len() == wanted {
                // The page is full: go on from the last one answered.
                break;
            }
            items.push(resource.clone());
        }
        if items.len() == wanted {
            break items.last().map(|r: &ResourceView| id_cursor_of(r.id));
        }
        if (page.len() as i64) < page_size {
            break None;
        }
        page_size = CANDIDATE_PAGE;
        if scanned >= MAX_SCANNED {
            break after.map(id_cursor_of);
        }
    };
    metrics::histogram!("muster_free_search_scanned").record(scanned as f64);
    Ok(Json(ResourcePage { items, next_cursor }))
}
