//! Booking queries: list and detail.

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use muster_projections::query::{BookingFilter, BookingSummary, ClientHistory};
use muster_projections::{BookingDocument, ReadModel};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::resource_queries::ConsistencyQuery;
use crate::auth::{Auth, READERS};
use crate::extract::{PathIds, QueryParams};
use crate::read::{consistent_with, invalid, limit, next_cursor, stored_document, time};
use crate::{ApiError, AppState};

/// The booking query routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bookings))
        .routes(routes!(get_booking))
        .routes(routes!(client_history))
}

const STATUSES: [&str; 5] = [
    "requested",
    "confirmed",
    "in_progress",
    "completed",
    "cancelled",
];

/// Filters and paging of the booking list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BookingListQuery {
    /// Only these statuses, comma-separated (`requested,confirmed`).
    status: Option<String>,
    /// Client name or email containing this text (case-insensitive).
    client: Option<String>,
    /// Only bookings ending after this time (RFC 3339).
    from: Option<String>,
    /// Only bookings starting before this time (RFC 3339).
    to: Option<String>,
    /// Only bookings of this recurring series.
    series_id: Option<Uuid>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read model has applied this position (read your writes).
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
}

/// A page of bookings.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingPage {
    /// Bookings in start order.
    items: Vec<BookingSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List bookings in start order, filtered by status, client and time.
#[utoipa::path(get, path = "/v1/bookings", tag = "bookings", params(BookingListQuery),
    responses((status = 200, description = "A page of bookings", body = BookingPage)))]
async fn list_bookings(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<BookingListQuery>,
) -> Result<Json<BookingPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = limit(q.limit, 100, 500)?;
    let statuses = crate::read::statuses(q.status.as_deref(), &STATUSES)?;
    let from = q.from.as_deref().map(|t| time("from", t)).transpose()?;
    let to = q.to.as_deref().map(|t| time("to", t)).transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        return Err(invalid("to", "must be after from"));
    }
    let after = crate::read::time_id_cursor(q.cursor.as_deref())?;
    consistent_with(&state, &[ReadModel::Bookings], q.consistent_with).await?;
    let filter = BookingFilter {
        statuses,
        client: q.client,
        from,
        to,
        series_id: q.series_id,
    };
    let items = state
        .reads
        .bookings(&principal.tenant, &filter, after, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |b| {
        crate::read::time_id_cursor_of(b.starts_at, b.id)
    });
    Ok(Json(BookingPage { items, next_cursor }))
}

/// How to read one booking: now, or as it was.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BookingQuery {
    /// Wait until the read model has applied this position (read your writes).
    #[param(minimum = 0)]
    consistent_with: Option<i64>,
    /// The booking as muster knew it at this instant (RFC 3339), folded
    /// from the events recorded up to it; 404 when it did not exist yet.
    as_of: Option<String>,
}

/// Read one booking with its reservations, tasks and status history, now
/// or as it was at an instant.
#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings",
    params(("id" = Uuid, Path, description = "The booking"), BookingQuery),
    responses((status = 200, description = "The booking", body = BookingDocument)))]
async fn get_booking(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    headers: axum::http::HeaderMap,
    QueryParams(q): QueryParams<BookingQuery>,
) -> Result<Response, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "booking")?;
    let as_of = q.as_of.as_deref().map(|t| time("as_of", t)).transpose()?;
    consistent_with(&state, &[ReadModel::Bookings], q.consistent_with).await?;
    let document = match as_of {
        None => state.reads.booking_document(&principal.tenant, id).await?,
        Some(as_of) => state
            .reads
            .booking_as_of(&principal.tenant, id, as_of)
            .await?
            .map(|d| serde_json::to_string(&d).map_err(|_| ApiError::Internal))
            .transpose()?,
    };
    stored_document(document, "booking", &headers)
}

/// A client's history: how many bookings they made with this email
/// (case-insensitive), how many were cancelled and how many were
/// no-shows, and their latest bookings.
#[utoipa::path(get, path = "/v1/clients/{email}", tag = "bookings",
    params(("email" = String, Path, description = "The client's email address"), ConsistencyQuery),
    responses((status = 200, description = "The client's history", body = ClientHistoryView)))]
async fn client_history(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Json<ClientHistoryView>, ApiError> {
    let principal = auth.require(READERS)?;
    let raw = path.0.first().map_or("", String::as_str);
    let email = muster_domain::quota::normal_subject(muster_domain::quota::QuotaScope::Client, raw)
        .ok_or_else(|| invalid("email", "must be an email address"))?;
    consistent_with(&state, &[ReadModel::Bookings], q.consistent_with).await?;
    let history = state
        .reads
        .client_history(&principal.tenant, &email)
        .await?;
    let erased_at = state
        .app
        .client_erased_at(&principal.tenant, &email)
        .await?;
    Ok(Json(ClientHistoryView {
        email,
        erased_at,
        history,
    }))
}

/// A client's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientHistoryView {
    /// The email, in lower case.
    email: String,
    /// When the client's personal data was last erased (their bookings
    /// since then, if any, are listed; those before show no client).
    #[serde(skip_serializing_if = "Option::is_none")]
    erased_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What their bookings came to.
    #[serde(flatten)]
    history: ClientHistory,
}
