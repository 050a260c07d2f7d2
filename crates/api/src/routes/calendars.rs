//! External calendars (SPEC §12): link a resource's own calendar (`POST
//! /v1/resources/{id}/calendars`), list and read links, remove one, ask
//! for a sync now, and read the blocks they hold on a resource. A link's
//! URL and credentials are sealed at rest and never shown again: answers
//! carry only its location (the URL without credentials or query).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use muster_app::calendars::CalendarInput;
use muster_domain::calendar_link::{CalendarEvent, CalendarKind};
use muster_domain::duration::IsoDuration;
use muster_store::calendars::{StoredBlock, StoredCalendar};
use muster_store::{Executed, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::auth::{Auth, READERS, WRITERS};
use crate::command::respond;
use crate::extract::{Command, PathIds, QueryParams};
use crate::read::{invalid, window};
use crate::{ApiError, AppState};

/// The calendar routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(link_calendar, list_calendars))
        .routes(routes!(get_calendar, unlink_calendar))
        .routes(routes!(sync_calendar))
        .routes(routes!(resource_blocks))
}

/// What a link reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarKindName {
    /// An iCalendar document at a URL (read only).
    Ics,
    /// A CalDAV collection.
    Caldav,
}

impl From<CalendarKindName> for CalendarKind {
    fn from(k: CalendarKindName) -> Self {
        match k {
            CalendarKindName::Ics => CalendarKind::Ics,
            CalendarKindName::Caldav => CalendarKind::Caldav,
        }
    }
}

impl From<CalendarKind> for CalendarKindName {
    fn from(k: CalendarKind) -> Self {
        match k {
            CalendarKind::Ics => CalendarKindName::Ics,
            CalendarKind::Caldav => CalendarKindName::Caldav,
        }
    }
}

/// A calendar to link. Its URL and credentials are kept encrypted and
/// never shown again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkCalendarBody {
    /// `ics`: an iCalendar document; `caldav`: a CalDAV collection.
    kind: CalendarKindName,
    /// `https://`, `http://` or `webcal://`; without credentials (give
    /// them as `username` and `password`). Private and loopback hosts are
    /// refused unless the server allows private webhook targets.
    #[schema(example = "https://calendar.example.com/ana.ics", max_length = 2000)]
    url: String,
    /// HTTP basic user name, if the calendar needs one.
    #[schema(max_length = 500)]
    username: Option<String>,
    /// HTTP basic password, with `username`.
    #[schema(max_length = 500)]
    password: Option<String>,
    /// Write the resource's reservations to the calendar (CalDAV only;
    /// default false).
    #[serde(default)]
    publish: bool,
    /// Keep and show the calendar's event titles (default false: blocks
    /// are shown as busy only).
    #[serde(default)]
    show_titles: bool,
    /// How often to sync, ISO 8601 from `PT1M` to `P7D` (default `PT5M`).
    #[schema(example = "PT5M")]
    sync_every: Option<String>,
}

impl std::fmt::Debug for LinkCalendarBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCalendarBody")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A calendar link as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarView {
    /// Its id.
    id: Uuid,
    /// The resource whose time it holds.
    resource_id: Uuid,
    /// `ics` or `caldav`.
    kind: CalendarKindName,
    /// Its URL without credentials, query or fragment.
    location: String,
    /// Whether muster writes the resource's reservations to it.
    publish: bool,
    /// Whether its event titles are shown.
    show_titles: bool,
    /// Seconds between periodic syncs.
    sync_every_secs: i32,
    /// When it was linked.
    created_at: DateTime<Utc>,
    /// When the next periodic sync is due.
    next_sync_at: DateTime<Utc>,
    /// When a sync last succeeded.
    last_synced_at: Option<DateTime<Utc>>,
    /// When a sync last changed its blocks.
    last_changed_at: Option<DateTime<Utc>>,
    /// Why the last sync failed (cleared by the next success).
    last_error: Option<String>,
    /// When a sync last failed.
    last_error_at: Option<DateTime<Utc>>,
    /// Syncs failed in a row.
    failures: i32,
    /// Busy blocks it holds now.
    blocks: i64,
}

impl From<StoredCalendar> for CalendarView {
    fn from(c: StoredCalendar) -> Self {
        Self {
            id: c.calendar_id,
            resource_id: c.resource_id,
            kind: c.kind.into(),
            location: c.location,
            publish: c.publish,
            show_titles: c.show_titles,
            sync_every_secs: c.sync_every_secs,
            created_at: c.created_at,
            next_sync_at: c.next_sync_at,
            last_synced_at: c.last_synced_at,
            last_changed_at: c.last_changed_at,
            last_error: c.last_error,
            last_error_at: c.last_error_at,
            failures: c.failures,
            blocks: c.blocks,
        }
    }
}

/// A resource's calendar links.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarList {
    /// Oldest first.
    items: Vec<CalendarView>,
}

fn calendar_answer(executed: &Executed<CalendarEvent>) -> serde_json::Value {
    to_json(&CommandAnswer::from(&executed.outcome))
}

fn admins_only(command: &Command<impl Sized>) -> Result<(), ApiError> {
    if command.principal.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(command.principal.role.as_str()))
    }
}

/// Link an external calendar to a resource (admin): its busy time blocks
/// the resource in every check (409 `external-busy`) once synced; the
/// first sync is queued at once.
#[utoipa::path(post, path = "/v1/resources/{id}/calendars", tag = "calendars",
    params(("id" = Uuid, Path, description = "Resource id"), CommandHeaders),
    request_body = LinkCalendarBody,
    responses((status = 201, description = "Linked", body = CommandAnswer)))]
async fn link_calendar(
    State(state): State<AppState>,
    path: PathIds,
    command: Command<LinkCalendarBody>,
) -> Result<Response, ApiError> {
    admins_only(&command)?;
    let resource_id = path.id(0, "resource")?;
    let body = command.body;
    let sync_every_secs = body
        .sync_every
        .as_deref()
        .map(|raw| {
            raw.parse::<IsoDuration>()
                // Beyond u32 is beyond the bound the domain states.
                .map(|d| u32::try_from(d.seconds()).unwrap_or(u32::MAX))
                .map_err(|_| invalid("sync_every", "must be an ISO 8601 duration such as PT5M"))
        })
        .transpose()?;
    let input = CalendarInput {
        kind: body.kind.into(),
        url: body.url,
        username: body.username,
        password: body.password,
        publish: body.publish,
        show_titles: body.show_titles,
        sync_every_secs,
    };
    let answer = state
        .app
        .link_calendar(
            &command.context,
            resource_id,
            input,
            state.config.allow_private_webhooks,
        )
        .await;
    respond(answer, StatusCode::CREATED, calendar_answer)
}

/// A resource's calendar links, with how their syncs go.
#[utoipa::path(get, path = "/v1/resources/{id}/calendars", tag = "calendars",
    params(("id" = Uuid, Path, description = "Resource id")),
    responses((status = 200, description = "The links", body = CalendarList)))]
async fn list_calendars(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<CalendarList>, ApiError> {
    let principal = auth.require(READERS)?;
    let resource_id = path.id(0, "resource")?;
    let items = state
        .store
        .list_calendars(&principal.tenant, Some(resource_id))
        .await?
        .into_iter()
        .map(CalendarView::from)
        .collect();
    Ok(Json(CalendarList { items }))
}

/// Read a calendar link: where it reads (without credentials) and how
/// its syncs go.
#[utoipa::path(get, path = "/v1/calendars/{id}", tag = "calendars",
    params(("id" = Uuid, Path, description = "Calendar link id")),
    responses((status = 200, description = "The link", body = CalendarView)))]
async fn get_calendar(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<CalendarView>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "calendar")?;
    let calendar = state
        .store
        .find_calendar(&principal.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("calendar".into()))?;
    Ok(Json(calendar.into()))
}

/// Remove a calendar link (admin): its blocks leave the resource at once.
#[utoipa::path(delete, path = "/v1/calendars/{id}", tag = "calendars",
    params(("id" = Uuid, Path, description = "Calendar link id"), CommandHeaders),
    responses((status = 200, description = "Removed", body = CommandAnswer)))]
async fn unlink_calendar(
    State(state): State<AppState>,
    path: PathIds,
    command: Command<super::bookings::NoBody>,
) -> Result<Response, ApiError> {
    admins_only(&command)?;
    let id = path.id(0, "calendar")?;
    let answer = state.app.unlink_calendar(&command.context, id).await;
    respond(answer, StatusCode::OK, calendar_answer)
}

/// A sync asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncQueued {
    /// The link.
    calendar_id: Uuid,
    /// The sync job's queue.
    queued: bool,
}

/// Sync a calendar link now (as a job; `GET /v1/calendars/{id}` shows
/// when it ran and how it went).
#[utoipa::path(post, path = "/v1/calendars/{id}/sync", tag = "calendars",
    params(("id" = Uuid, Path, description = "Calendar link id")),
    responses((status = 202, description = "Queued", body = SyncQueued)))]
async fn sync_calendar(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<(StatusCode, Json<SyncQueued>), ApiError> {
    let principal = auth.require(WRITERS)?;
    let id = path.id(0, "calendar")?;
    let queued = state
        .app
        .request_calendar_sync(&state.jobs, &principal.tenant, id)
        .await?;
    if !queued {
        return Err(ApiError::NotFound("calendar".into()));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncQueued {
            calendar_id: id,
            queued,
        }),
    ))
}

/// Which blocks to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BlocksQuery {
    /// Start of the window (RFC 3339).
    from: String,
    /// End of the window (RFC 3339), at most 62 days after `from`.
    to: String,
}

/// A busy block of an external calendar.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    /// The block (the id a 409 `external-busy` names as `reservation_id`).
    id: Uuid,
    /// The calendar link that holds it.
    calendar_id: Uuid,
    /// From.
    starts_at: DateTime<Utc>,
    /// Until (exclusive).
    ends_at: DateTime<Utc>,
    /// The event's title, where the link shows titles.
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

impl From<StoredBlock> for BlockView {
    fn from(b: StoredBlock) -> Self {
        Self {
            id: b.block_id,
            calendar_id: b.calendar_id,
            starts_at: b.range.starts_at,
            ends_at: b.range.ends_at,
            title: b.title,
        }
    }
}

/// A resource's external blocks in a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    /// The resource.
    resource_id: Uuid,
    /// By start.
    items: Vec<BlockView>,
}

/// The busy blocks external calendars hold on a resource in a window.
/// Always current: answered from the write side.
#[utoipa::path(get, path = "/v1/resources/{id}/blocks", tag = "calendars",
    params(("id" = Uuid, Path, description = "Resource id"), BlocksQuery),
    responses((status = 200, description = "The blocks", body = BlockList)))]
async fn resource_blocks(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(q): QueryParams<BlocksQuery>,
) -> Result<Json<BlockList>, ApiError> {
    let principal = auth.require(READERS)?;
    let resource_id = path.id(0, "resource")?;
    let range = window(&q.from, &q.to, crate::read::MAX_DAYS)?;
    let items = state
        .store
        .calendar_blocks(&principal.tenant, resource_id, range)
        .await?
        .into_iter()
        .map(BlockView::from)
        .collect();
    Ok(Json(BlockList { resource_id, items }))
}
