//! Calendar feeds: `POST /v1/resources/{id}/feeds` makes a secret URL of
//! the resource's schedule as iCalendar, `DELETE /v1/feeds/{id}` revokes
//! it, and `GET /calendar/{token}.ics` (no key: calendar applications
//! cannot send one) serves it with an ETag.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use muster_domain::ics::{FeedEntry, calendar};
use muster_domain::time::TimeRange;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, WRITERS};
use crate::extract::PathIds;
use crate::{ApiError, AppState};

/// The feed routes under `/v1` (documented).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_feed))
        .routes(routes!(revoke_feed))
}

/// The feed itself, outside `/v1` (no key).
pub fn public_router() -> axum::Router<AppState> {
    axum::Router::new().route("/calendar/{file}", axum::routing::get(serve_feed))
}

/// A feed just created.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedFeed {
    /// Its id (to revoke it).
    id: Uuid,
    /// The resource it shows.
    resource_id: Uuid,
    /// Its secret path: `/calendar/<token>.ics`. Shown once.
    path: String,
    /// The same as an absolute URL, as this request reached muster.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// Make a calendar feed of a resource's schedule: a secret URL that
/// calendar applications subscribe to without a key (30 days back, a
/// year ahead, in the resource's time zone).
#[utoipa::path(post, path = "/v1/resources/{id}/feeds", tag = "resources",
    params(("id" = Uuid, Path, description = "The resource")),
    responses((status = 201, description = "Created", body = CreatedFeed)))]
async fn create_feed(
    State(state): State<AppState>,
    auth: Auth,
    ids: PathIds,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<CreatedFeed>), ApiError> {
    let principal = auth.require(WRITERS)?;
    let resource_id = ids.id(0, "resource")?;
    let created = state
        .store
        .create_feed(&principal.tenant, resource_id)
        .await?;
    let path = format!("/calendar/{}.ics", created.token);
    let url = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .map(|host| {
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|p| p.to_str().ok())
                .filter(|p| *p == "https")
                .unwrap_or("http");
            format!("{scheme}://{host}{path}")
        });
    metrics::counter!("muster_calendar_feeds_total", "change" => "created").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(CreatedFeed {
            id: created.feed_id,
            resource_id,
            path,
            url,
        }),
    ))
}

/// Revoke a calendar feed: its URL answers 404 from now on.
#[utoipa::path(delete, path = "/v1/feeds/{id}", tag = "resources",
    params(("id" = Uuid, Path, description = "The feed")),
    responses((status = 204, description = "Revoked")))]
async fn revoke_feed(
    State(state): State<AppState>,
    auth: Auth,
    ids: PathIds,
) -> Result<StatusCode, ApiError> {
    let principal = auth.require(WRITERS)?;
    let id = ids.id(0, "feed")?;
    if state.store.revoke_feed(&principal.tenant, id).await? {
        metrics::counter!("muster_calendar_feeds_total", "change" => "revoked").increment(1);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("feed".into()))
    }
}

/// How far back and ahead a feed reaches.
const BACK: Duration = Duration::days(30);
const AHEAD: Duration = Duration::days(365);

/// `GET /calendar/{token}.ics`: the feed, or 404 for a token that opens
/// nothing (unknown, revoked, malformed: all the same to a guesser).
async fn serve_feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("calendar feed".into());
    let token = file.strip_suffix(".ics").ok_or_else(not_found)?;
    let feed = state.store.open_feed(token).await?.ok_or_else(not_found)?;
    let resource = state
        .reads
        .resource(&feed.tenant, feed.resource_id)
        .await?
        .ok_or_else(not_found)?;
    // Whole days, so that the feed (and its ETag) changes only when the
    // schedule does or a day passes, not with every request.
    let today = Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let window = TimeRange {
        starts_at: today - BACK,
        ends_at: today + AHEAD + Duration::days(1),
    };
    let entries: Vec<FeedEntry> = state
        .reads
        .schedule(&feed.tenant, feed.resource_id, window)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|e| FeedEntry {
            reservation_id: e.reservation_id,
            title: e.title,
            status: e.status,
            range: TimeRange {
                starts_at: e.starts_at,
                ends_at: e.ends_at,
            },
        })
        .collect();
    // The zone's definition covers the events' own range, whole days.
    let zone_window = TimeRange {
        starts_at: window.starts_at - Duration::days(1),
        ends_at: window.ends_at + Duration::days(2),
    };
    let body = calendar(
        &resource.name,
        &resource.timezone,
        &zone_window,
        &entries,
        feed.created_at,
    );
    metrics::counter!("muster_calendar_feed_reads_total").increment(1);
    Ok(
        crate::read::revalidated(body.into_bytes(), "text/calendar; charset=utf-8", &headers)
            .into_response(),
    )
}
