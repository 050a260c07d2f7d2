//! Waitlists (SPEC §12): a client waits for a range on a resource or on
//! any member of a pool, and is offered it (a hold) by itself when
//! capacity frees there.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_domain::FieldError;
use muster_domain::booking::Client;
use muster_domain::duration::IsoDuration;
use muster_domain::waitlist::{DEFAULT_OFFER_TTL, EntrySpec, EntryStatus, Target, WaitlistEvent};
use muster_store::Executed;
use muster_store::waitlist::{StoredEntry, WaitlistFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bookings::{ClientBody, NoBody};
use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS};
use crate::command::respond;
use crate::extract::{Command, PathIds, QueryParams};
use crate::read::{id_cursor, id_cursor_of, limit, next_cursor};
use crate::{ApiError, AppState};

/// The waitlist routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join_waitlist, list_waitlist))
        .routes(routes!(get_entry, leave_waitlist))
}

/// An entry to put on the waitlist: a resource or a pool (one of the two),
/// the range wanted, and who waits.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistBody {
    /// The resource waited for.
    resource_id: Option<Uuid>,
    /// Or a pool: any of its members (picked by its strategy).
    pool_id: Option<Uuid>,
    /// Start of the wanted range (RFC 3339 with offset).
    starts_at: DateTime<Utc>,
    /// End of the wanted range (exclusive), not yet past.
    ends_at: DateTime<Utc>,
    /// Who waits.
    client: ClientBody,
    /// How long an offer is held for the client (ISO 8601, default
    /// `PT30M`, from `PT1S` to `PT1H`: an offer is a hold).
    #[schema(value_type = Option<String>, example = "PT30M")]
    offer_ttl: Option<IsoDuration>,
    /// Higher is offered first (default 0, from -1000 to 1000); ties go
    /// to whoever joined first.
    #[schema(minimum = -1000, maximum = 1000)]
    priority: Option<i32>,
}

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatusName {
    /// Waiting for capacity to free.
    Waiting,
    /// Holding an offer (`hold_id`, until `expires_at`).
    Offered,
    /// The offer became a booking (`booking_id`).
    Fulfilled,
    /// The offer ran out or was given up.
    Lapsed,
    /// The client left the waitlist.
    Left,
}

impl From<EntryStatus> for EntryStatusName {
    fn from(s: EntryStatus) -> Self {
        match s {
            EntryStatus::Waiting => EntryStatusName::Waiting,
            EntryStatus::Offered => EntryStatusName::Offered,
            EntryStatus::Fulfilled => EntryStatusName::Fulfilled,
            EntryStatus::Lapsed => EntryStatusName::Lapsed,
            EntryStatus::Left => EntryStatusName::Left,
        }
    }
}

impl From<EntryStatusName> for EntryStatus {
    fn from(s: EntryStatusName) -> Self {
        match s {
            EntryStatusName::Waiting => EntryStatus::Waiting,
            EntryStatusName::Offered => EntryStatus::Offered,
            EntryStatusName::Fulfilled => EntryStatus::Fulfilled,
            EntryStatusName::Lapsed => EntryStatus::Lapsed,
            EntryStatusName::Left => EntryStatus::Left,
        }
    }
}

/// A waitlist entry as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// Its id.
    id: Uuid,
    /// The resource waited for (absent for a pool entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<Uuid>,
    /// The pool waited for (absent for a resource entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_id: Option<Uuid>,
    /// Start of the wanted range.
    starts_at: DateTime<Utc>,
    /// End of the wanted range.
    ends_at: DateTime<Utc>,
    /// Who waits.
    #[schema(value_type = Object)]
    client: Client,
    /// How long an offer is held.
    #[schema(value_type = String, example = "PT30M")]
    offer_ttl: IsoDuration,
    /// Higher is offered first.
    priority: i32,
    /// Where it is.
    status: EntryStatusName,
    /// The offer's hold (while offered, and after, the last one's).
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<Uuid>,
    /// The resource the offer holds (a member, for a pool entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    offered_resource_id: Option<Uuid>,
    /// When the offer's hold stops counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    /// The booking the offer became.
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_id: Option<Uuid>,
    /// When it joined.
    joined_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

impl From<StoredEntry> for EntryView {
    fn from(e: StoredEntry) -> Self {
        let (resource_id, pool_id) = match e.target {
            Target::Resource { resource_id } => (Some(resource_id), None),
            Target::Pool { pool_id } => (None, Some(pool_id)),
        };
        Self {
            id: e.entry_id,
            resource_id,
            pool_id,
            starts_at: e.range.starts_at,
            ends_at: e.range.ends_at,
            client: e.client,
            offer_ttl: e.offer_ttl,
            priority: e.priority,
            status: e.status.into(),
            hold_id: e.offer.map(|o| o.hold_id),
            offered_resource_id: e.offer.map(|o| o.resource_id),
            expires_at: e.offer.map(|o| o.expires_at),
            booking_id: e.booking_id,
            joined_at: e.joined_at,
            updated_at: e.updated_at,
        }
    }
}

/// Renders a waitlist command's answer.
fn entry_answer(executed: &Executed<WaitlistEvent>) -> serde_json::Value {
    to_json(&CommandAnswer::from(&executed.outcome))
}

/// Put a client on the waitlist of a resource or a pool for a range.
#[utoipa::path(post, path = "/v1/waitlist", tag = "waitlist",
    params(CommandHeaders), request_body = JoinWaitlistBody,
    responses((status = 201, description = "Waiting", body = CommandAnswer)))]
async fn join_waitlist(
    State(state): State<AppState>,
    command: Command<JoinWaitlistBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let target = match (body.resource_id, body.pool_id) {
        (Some(resource_id), None) => Target::Resource { resource_id },
        (None, Some(pool_id)) => Target::Pool { pool_id },
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "pool_id",
                "give a resource_id or a pool_id, not both",
            )]));
        }
        (None, None) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "resource_id",
                "give a resource_id or a pool_id",
            )]));
        }
    };
    let spec = EntrySpec {
        target,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        client: body.client.into(),
        offer_ttl: body
            .offer_ttl
            .unwrap_or(IsoDuration::from_seconds(DEFAULT_OFFER_TTL.num_seconds())),
        priority: body.priority.unwrap_or(0),
    };
    let answer = state.app.join_waitlist(&command.context, spec).await;
    respond(answer, StatusCode::CREATED, entry_answer)
}

/// Take an entry off the waitlist; an open offer's hold is released with
/// it (leaving again changes nothing; a fulfilled or lapsed entry: 409).
#[utoipa::path(delete, path = "/v1/waitlist/{id}", tag = "waitlist",
    params(("id" = Uuid, Path, description = "Entry id"), CommandHeaders),
    responses((status = 200, description = "Left", body = CommandAnswer)))]
async fn leave_waitlist(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "waitlist entry")?;
    let answer = state.app.leave_waitlist(&command.context, id).await;
    respond(answer, StatusCode::OK, entry_answer)
}

/// Read a waitlist entry. Always current: answered from the write side.
#[utoipa::path(get, path = "/v1/waitlist/{id}", tag = "waitlist",
    params(("id" = Uuid, Path, description = "Entry id")),
    responses((status = 200, description = "The entry", body = EntryView)))]
async fn get_entry(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<EntryView>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "waitlist entry")?;
    let entry = state
        .store
        .find_waitlist_entry(&principal.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("waitlist entry".into()))?;
    Ok(Json(entry.into()))
}

/// Which entries to list, and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitlistQuery {
    /// Only entries for this resource.
    resource_id: Option<Uuid>,
    /// Only entries for this pool.
    pool_id: Option<Uuid>,
    /// Only entries in this status.
    status: Option<EntryStatusName>,
    /// Page size (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of waitlist entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPage {
    /// Entries in the order they joined.
    items: Vec<EntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List waitlist entries, in the order they joined.
#[utoipa::path(get, path = "/v1/waitlist", tag = "waitlist", params(WaitlistQuery),
    responses((status = 200, description = "A page of entries", body = EntryPage)))]
async fn list_waitlist(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<WaitlistQuery>,
) -> Result<Json<EntryPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let after = id_cursor(q.cursor.as_deref())?;
    let filter = WaitlistFilter {
        resource_id: q.resource_id,
        pool_id: q.pool_id,
        status: q.status.map(EntryStatus::from),
    };
    let items: Vec<EntryView> = state
        .store
        .list_waitlist(&principal.tenant, filter, after, limit)
        .await?
        .into_iter()
        .map(EntryView::from)
        .collect();
    let next_cursor = next_cursor(&items, limit, |e| id_cursor_of(e.id));
    Ok(Json(EntryPage { items, next_cursor }))
}
