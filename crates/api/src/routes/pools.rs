//! Pools (SPEC §12): named sets of interchangeable resources, by explicit
//! members or a selector, with the strategy that picks among free ones.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::FieldError;
use muster_domain::pool::{Members, PoolChanges, PoolEvent, PoolSpec, Selector, Strategy};
use muster_store::Executed;
use muster_store::pools::StoredPool;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::command::respond;
use crate::extract::{Command, PathIds, QueryParams};
use crate::read::{
    MAX_DAYS, duration, id_cursor, id_cursor_of, invalid, limit, next_cursor, window,
};
use crate::{ApiError, AppState};

/// The pool routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, update_pool))
        .routes(routes!(pool_availability))
}

/// How a pool picks among its free members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    /// The member with the fewest reserved minutes on that local day first
    /// (ties in member order).
    LeastBooked,
    /// Member order.
    First,
    /// The member assigned longest ago first.
    RoundRobin,
}

impl From<StrategyName> for Strategy {
    fn from(s: StrategyName) -> Self {
        match s {
            StrategyName::LeastBooked => Strategy::LeastBooked,
            StrategyName::First => Strategy::First,
            StrategyName::RoundRobin => Strategy::RoundRobin,
        }
    }
}

impl From<Strategy> for StrategyName {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::LeastBooked => StrategyName::LeastBooked,
            Strategy::First => StrategyName::First,
            Strategy::RoundRobin => StrategyName::RoundRobin,
        }
    }
}

/// Which resources a selector takes, when a reservation is made; every
/// part given must match, and one at least must be given.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorBody {
    /// Of this kind.
    #[schema(example = "room")]
    kind: Option<String>,
    /// With every one of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Seating at least this many.
    min_seats: Option<u32>,
    /// Holding at least this many bookings at once (at least 1).
    min_capacity: Option<u32>,
}

impl From<SelectorBody> for Selector {
    fn from(b: SelectorBody) -> Self {
        Selector {
            kind: b.kind,
            tags: b.tags,
            min_seats: b.min_seats,
            min_capacity: b.min_capacity,
        }
    }
}

impl From<Selector> for SelectorBody {
    fn from(s: Selector) -> Self {
        SelectorBody {
            kind: s.kind,
            tags: s.tags,
            min_seats: s.min_seats,
            min_capacity: s.min_capacity,
        }
    }
}

/// A pool to create: `members` (resources, in the order `first` follows)
/// or a `selector`, one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolBody {
    /// Display name.
    #[schema(example = "Barbers")]
    name: String,
    /// Explicit members: 1 to 500 distinct resources of the tenant.
    members: Option<Vec<Uuid>>,
    /// Or the resources matching this when a reservation is made.
    selector: Option<SelectorBody>,
    /// How free members are picked (default `least_booked`).
    strategy: Option<StrategyName>,
}

/// Changes to a pool; fields left out keep their value. `members` or
/// `selector` (not both) replaces who belongs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePoolBody {
    /// A new name.
    name: Option<String>,
    /// New explicit members.
    members: Option<Vec<Uuid>>,
    /// Or a new selector.
    selector: Option<SelectorBody>,
    /// A new strategy.
    strategy: Option<StrategyName>,
}

/// `members` or `selector` as the domain takes them; both is refused.
fn members_of(
    members: Option<Vec<Uuid>>,
    selector: Option<SelectorBody>,
) -> Result<Option<Members>, ApiError> {
    match (members, selector) {
        (Some(_), Some(_)) => Err(ApiError::Validation(vec![FieldError::new(
            "selector",
            "give members or a selector, not both",
        )])),
        (Some(ids), None) => Ok(Some(Members::Explicit(ids))),
        (None, Some(selector)) => Ok(Some(Members::Selector(selector.into()))),
        (None, None) => Ok(None),
    }
}

/// A pool as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolView {
    /// Its id.
    id: Uuid,
    /// Display name.
    name: String,
    /// Its explicit members, in order (absent for a selector pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<Uuid>>,
    /// Its selector (absent for explicit members).
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<SelectorBody>,
    /// How free members are picked.
    strategy: StrategyName,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

impl From<StoredPool> for PoolView {
    fn from(p: StoredPool) -> Self {
        let (members, selector) = match p.spec.members {
            Members::Explicit(ids) => (Some(ids), None),
            Members::Selector(selector) => (None, Some(selector.into())),
        };
        Self {
            id: p.pool_id,
            name: p.spec.name,
            members,
            selector,
            strategy: p.spec.strategy.into(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Renders a pool command's answer.
fn pool_answer(executed: &Executed<PoolEvent>) -> serde_json::Value {
    to_json(&CommandAnswer::from(&executed.outcome))
}

/// Create a pool.
#[utoipa::path(post, path = "/v1/pools", tag = "pools",
    params(CommandHeaders), request_body = CreatePoolBody,
    responses((status = 201, description = "Created", body = CommandAnswer)))]
async fn create_pool(
    State(state): State<AppState>,
    command: Command<CreatePoolBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let Some(members) = members_of(body.members, body.selector)? else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "members",
            "give members or a selector",
        )]));
    };
    let spec = PoolSpec {
        name: body.name,
        members,
        strategy: body.strategy.map(Strategy::from).unwrap_or_default(),
    };
    let answer = state.app.create_pool(&command.context, spec).await;
    respond(answer, StatusCode::CREATED, pool_answer)
}

/// Change a pool's name, members (or selector) or strategy.
#[utoipa::path(patch, path = "/v1/pools/{id}", tag = "pools",
    params(("id" = Uuid, Path, description = "Pool id"), CommandHeaders),
    request_body = UpdatePoolBody,
    responses((status = 200, description = "Updated (or already so)", body = CommandAnswer)))]
async fn update_pool(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<UpdatePoolBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "pool")?;
    let body = command.body;
    let changes = PoolChanges {
        name: body.name,
        members: members_of(body.members, body.selector)?,
        strategy: body.strategy.map(Strategy::from),
    };
    let answer = state.app.update_pool(&command.context, id, changes).await;
    respond(answer, StatusCode::OK, pool_answer)
}

/// Read a pool. Always current: answered from the write side.
#[utoipa::path(get, path = "/v1/pools/{id}", tag = "pools",
    params(("id" = Uuid, Path, description = "Pool id")),
    responses((status = 200, description = "The pool", body = PoolView)))]
async fn get_pool(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<PoolView>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "pool")?;
    let pool = state
        .store
        .find_pool(&principal.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("pool".into()))?;
    Ok(Json(pool.into()))
}

/// Paging of the pool list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PoolListQuery {
    /// Page size (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of pools.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolPage {
    /// Pools by id.
    items: Vec<PoolView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List the tenant's pools.
#[utoipa::path(get, path = "/v1/pools", tag = "pools", params(PoolListQuery),
    responses((status = 200, description = "A page of pools", body = PoolPage)))]
async fn list_pools(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<PoolListQuery>,
) -> Result<Json<PoolPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let after = id_cursor(q.cursor.as_deref())?;
    let items: Vec<PoolView> = state
        .store
        .list_pools(&principal.tenant, after, limit)
        .await?
        .into_iter()
        .map(PoolView::from)
        .collect();
    let next_cursor = next_cursor(&items, limit, |p| id_cursor_of(p.id));
    Ok(Json(PoolPage { items, next_cursor }))
}

/// When a pool has members free.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PoolAvailabilityQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 62 days after `from`.
    to: String,
    /// How long a booking: minutes (`90`) or ISO 8601 (`PT1H30M`).
    duration: String,
    /// How many members must be free at once (default 1).
    #[param(minimum = 1, maximum = 500)]
    count: Option<u32>,
}

/// A pool's free time.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolAvailability {
    /// The pool.
    pool_id: Uuid,
    /// How many members each slot has free at once, at least.
    count: u32,
    /// Maximal ranges in which a booking of `duration` may start anywhere
    /// (up to `ends_at - duration`) with at least `count` members free;
    /// two slots may overlap, their starts never do.
    slots: Vec<PoolSlot>,
}

/// A range of a pool's free time.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolSlot {
    /// Start.
    starts_at: DateTime<Utc>,
    /// End (exclusive).
    ends_at: DateTime<Utc>,
}

/// Slots where at least `count` members of the pool are free at once, by
/// the write side's rule for each member (a selector pool: the resources
/// it takes now). Always current: answered from the write side.
#[utoipa::path(get, path = "/v1/pools/{id}/availability", tag = "pools",
    params(("id" = Uuid, Path, description = "Pool id"), PoolAvailabilityQuery),
    responses((status = 200, description = "The pool's free slots", body = PoolAvailability)))]
async fn pool_availability(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(q): QueryParams<PoolAvailabilityQuery>,
) -> Result<Json<PoolAvailability>, ApiError> {
    let principal = auth.require(READERS)?;
    let pool_id = path.id(0, "pool")?;
    let window = window(&q.from, &q.to, MAX_DAYS)?;
    let length = duration("duration", &q.duration)?;
    if length > window.ends_at - window.starts_at {
        return Err(invalid("duration", "must not be longer than the window"));
    }
    let count = q.count.unwrap_or(1);
    let slots = state
        .app
        .pool_availability(&principal.tenant, pool_id, window, length, count)
        .await??;
    Ok(Json(PoolAvailability {
        pool_id,
        count,
        slots: slots
            .into_iter()
            .map(|s| PoolSlot {
                starts_at: s.starts_at,
                ends_at: s.ends_at,
            })
            .collect(),
    }))
}
