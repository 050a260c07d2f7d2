//! Bookings, their reservations and resource schedules as the `bookings`
//! projection holds them.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::time::TimeRange;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// One booking in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BookingSummary {
    /// Its id.
    pub id: Uuid,
    /// What it is for.
    pub title: String,
    /// Client name.
    pub client_name: String,
    /// Client email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_email: Option<String>,
    /// When the booked event starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Expected number of people.
    pub headcount: i32,
    /// Its status.
    pub status: String,
    /// Its version.
    pub version: i32,
    /// Position of its last event.
    pub position: i64,
}

/// Which bookings a list shows.
#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<String>,
    /// Client name or email containing this text, case-insensitively.
    pub client: Option<String>,
    /// Only bookings ending after this.
    pub from: Option<DateTime<Utc>>,
    /// Only bookings starting before this.
    pub to: Option<DateTime<Utc>>,
    /// Only bookings of this recurring series.
    pub series_id: Option<Uuid>,
}

/// The answer of `GET /v1/bookings/{id}`, as stored (JSON text).
pub async fn document(
    pool: &PgPool,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select document::text as "document!" from read.bookings
            where tenant_id = $1 and booking_id = $2"#,
        tenant.as_str(),
        id,
    )
    .fetch_optional(pool)
    .await
}

/// One page of bookings in (start, id) order after the cursor `after`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &BookingFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<BookingSummary>, sqlx::Error> {
    let client = filter.client.as_deref().map(like_pattern);
    sqlx::query_as!(
        BookingSummary,
        r#"select booking_id as id, title, client_name, client_email, starts_at, ends_at,
                  headcount, status, version, position
             from read.bookings
            where tenant_id = $1
              and ($2::timestamptz is null or (starts_at, booking_id) > ($2, $3))
              and (cardinality($4::text[]) = 0 or status = any($4))
              and ($5::text is null or client_name ilike $5 or client_email ilike $5)
              and ($6::timestamptz is null or ends_at > $6)
              and ($7::timestamptz is null or starts_at < $7)
              and ($9::uuid is null or series_id = $9)
            order by starts_at, booking_id
            limit $8"#,
        tenant.as_str(),
        after.map(|a| a.0),
        after.map(|a| a.1),
        &filter.statuses,
        client,
        filter.from,
        filter.to,
        limit,
        filter.series_id,
    )
    .fetch_all(pool)
    .await
}

/// A client's record: how many bookings they made, and how those ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientHistory {
    /// Every booking with their email.
    pub bookings: i64,
    /// Still requested, confirmed or in progress.
    pub open: i64,
    /// Completed.
    pub completed: i64,
    /// Cancelled (by a planner, or left unconfirmed past an approval
    /// deadline), no-shows not included.
    pub cancellations: i64,
    /// Not checked in by a resource's deadline.
    pub no_shows: i64,
    /// Their latest bookings, latest start first (at most 50).
    pub recent: Vec<BookingSummary>,
}

/// The history of the client with `email` (case-insensitive).
pub async fn client_history(
    pool: &PgPool,
    tenant: &TenantId,
    email: &str,
) -> Result<ClientHistory, sqlx::Error> {
    let counts = sqlx::query!(
        r#"select count(*) as "bookings!",
                  count(*) filter (where status in ('requested', 'confirmed', 'in_progress'))
                      as "open!",
                  count(*) filter (where status = 'completed') as "completed!",
                  count(*) filter (where status = 'cancelled'
                                     and not coalesce((document->>'no_show')::bool, false))
                      as "cancellations!",
                  count(*) filter (where coalesce((document->>'no_show')::bool, false))
                      as "no_shows!"
             from read.bookings
            where tenant_id = $1 and lower(client_email) = lower($2)"#,
        tenant.as_str(),
        email,
    )
    .fetch_one(pool)
    .await?;
    let recent = sqlx::query_as!(
        BookingSummary,
        r#"select booking_id as id, title, client_name, client_email, starts_at, ends_at,
                  headcount, status, version, position
             from read.bookings
            where tenant_id = $1 and lower(client_email) = lower($2)
            order by starts_at desc, booking_id desc
            limit 50"#,
        tenant.as_str(),
        email,
    )
    .fetch_all(pool)
    .await?;
    Ok(ClientHistory {
        bookings: counts.bookings,
        open: counts.open,
        completed: counts.completed,
        cancellations: counts.cancellations,
        no_shows: counts.no_shows,
        recent,
    })
}

/// `%text%` with LIKE's wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One reservation on a resource's schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleEntry {
    /// The reservation.
    pub reservation_id: Uuid,
    /// The booking holding it.
    pub booking_id: Uuid,
    /// The booking's title.
    pub title: String,
    /// The booking's status.
    pub status: String,
    /// Inclusive start.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end.
    pub ends_at: DateTime<Utc>,
    /// What the resource is for in the booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Present for a hold (then `status` is `held`, and `reservation_id`
    /// and `booking_id` are the hold's id): when it stops counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The reservations holding `resource` within `window`, in start order.
pub async fn schedule(
    pool: &PgPool,
    tenant: &TenantId,
    resource: Uuid,
    window: TimeRange,
) -> Result<Vec<ScheduleEntry>, sqlx::Error> {
    sqlx::query_as!(
        ScheduleEntry,
        r#"select r.reservation_id, r.booking_id, b.title, b.status, r.starts_at, r.ends_at,
                  r.label, null::timestamptz as expires_at
             from read.booking_reservations r
             join read.bookings b on b.tenant_id = r.tenant_id and b.booking_id = r.booking_id
            where r.tenant_id = $1 and r.resource_id = $2
              and r.starts_at < $4 and r.ends_at > $3
            order by r.starts_at, r.reservation_id"#,
        tenant.as_str(),
        resource,
        window.starts_at,
        window.ends_at,
    )
    .fetch_all(pool)
    .await
}

/// Every booking that ever held `resource` (time travel's candidates).
pub async fn ever_held(
    pool: &PgPool,
    tenant: &TenantId,
    resource: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select booking_id from read.resource_bookings where tenant_id = $1 and resource_id = $2",
        tenant.as_str(),
        resource,
    )
    .fetch_all(pool)
    .await
}

/// A reservation in a schedule of many resources.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceScheduleEntry {
    /// The reserved resource.
    pub resource_id: Uuid,
    /// The reservation and its booking.
    #[serde(flatten)]
    pub entry: ScheduleEntry,
}

/// Which resources a schedule of many covers.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    /// Only these resources (`None`: all).
    pub resource_ids: Option<Vec<Uuid>>,
    /// Only resources of this kind.
    pub kind: Option<String>,
    /// Only resources with this tag.
    pub tag: Option<String>,
}

/// One page of the reservations of many resources overlapping `window`, in
/// (start, reservation id) order after `after`.
pub async fn schedules(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ScheduleFilter,
    window: TimeRange,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ResourceScheduleEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select r.resource_id, r.reservation_id, r.booking_id, b.title, b.status,
                  r.starts_at, r.ends_at, r.label
             from read.booking_reservations r
             join read.bookings b on b.tenant_id = r.tenant_id and b.booking_id = r.booking_id
            where r.tenant_id = $1
              and r.starts_at > $2::timestamptz - interval '366 days'
              and r.starts_at < $3 and r.ends_at > $2
              and ($4::uuid[] is null or r.resource_id = any($4))
              and ($5::text is null and $6::text is null
                   or exists (select 1 from read.resources x
                               where x.tenant_id = r.tenant_id and x.resource_id = r.resource_id
                                 and ($5::text is null or x.kind = $5)
                                 and ($6::text is null or $6 = any(x.tags))))
              and ($7::timestamptz is null or (r.starts_at, r.reservation_id) > ($7, $8))
            order by r.starts_at, r.reservation_id
            limit $9"#,
        tenant.as_str(),
        window.starts_at,
        window.ends_at,
        filter.resource_ids.as_deref(),
        filter.kind,
        filter.tag,
        after.map(|a| a.0),
        after.map(|a| a.1),
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ResourceScheduleEntry {
            resource_id: r.resource_id,
            entry: ScheduleEntry {
                reservation_id: r.reservation_id,
                booking_id: r.booking_id,
                title: r.title,
                status: r.status,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                label: r.label,
                expires_at: None,
            },
        })
        .collect())
}

/// The ranges reserved on each of `resources` that overlap `window`.
pub async fn reserved_ranges(
    pool: &PgPool,
    tenant: &TenantId,
    resources: &[Uuid],
    window: TimeRange,
) -> Result<Vec<(Uuid, TimeRange)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select resource_id, starts_at, ends_at
             from read.booking_reservations
            where tenant_id = $1 and resource_id = any($2)
              and starts_at < $4 and ends_at > $3"#,
        tenant.as_str(),
        resources,
        window.starts_at,
        window.ends_at,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let range = TimeRange {
                starts_at: r.starts_at,
                ends_at: r.ends_at,
            };
            (r.resource_id, range)
        })
        .collect())
}
