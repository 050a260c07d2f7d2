//! Resources as `read.resources` holds them.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::policy::BookingPolicy;
use muster_domain::working_hours::WorkingWindow;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// A resource as the read side shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceView {
    /// Its id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// `staff`, `room`, `equipment`, `vehicle`, or free text.
    pub kind: String,
    /// Parallel bookings it can hold.
    pub capacity: i32,
    /// IANA time zone of its working hours.
    pub timezone: String,
    /// Weekly windows in its time zone; empty means always available.
    #[schema(value_type = Vec<Object>)]
    pub working_hours: Vec<WorkingWindow>,
    /// Labels.
    pub tags: Vec<String>,
    /// How many people it holds, if it says.
    pub seats: Option<i32>,
    /// Its booking policy: buffers, notice and horizon (ISO 8601
    /// durations; parts not set are left out).
    #[schema(value_type = Object)]
    pub policy: BookingPolicy,
    /// Whether it was retired (it takes no new reservations).
    pub retired: bool,
    /// Its version (send as `If-Match`).
    pub version: i32,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Position of its last event.
    pub position: i64,
}

/// Which resources a list shows.
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only resources with this tag.
    pub tag: Option<String>,
    /// Retired ones too.
    pub include_retired: bool,
    /// Only resources that hold at least this many bookings at once.
    pub min_capacity: Option<u32>,
    /// Only resources that seat at least this many people.
    pub min_seats: Option<u32>,
}

struct Row {
    resource_id: Uuid,
    name: String,
    kind: String,
    capacity: i32,
    timezone: String,
    working_hours: serde_json::Value,
    tags: Vec<String>,
    retired: bool,
    version: i32,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
    seats: Option<i32>,
    policy: serde_json::Value,
}

impl From<Row> for ResourceView {
    fn from(r: Row) -> Self {
        Self {
            id: r.resource_id,
            name: r.name,
            kind: r.kind,
            capacity: r.capacity,
            timezone: r.timezone,
            // Written by the projection from validated events.
            working_hours: serde_json::from_value(r.working_hours).unwrap_or_default(),
            tags: r.tags,
            seats: r.seats,
            policy: serde_json::from_value(r.policy).unwrap_or_default(),
            retired: r.retired,
            version: r.version,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            position: r.position,
        }
    }
}

/// The tenant's resources with these ids (unknown ones are left out).
pub async fn by_ids(
    pool: &PgPool,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<Vec<ResourceView>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"select resource_id, name, kind, capacity, timezone, working_hours, tags, retired,
                  version, registered_at, updated_at, position, seats, policy
             from read.resources
            where tenant_id = $1 and resource_id = any($2)
            order by resource_id"#,
        tenant.as_str(),
        ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ResourceView::from).collect())
}

/// One page of the tenant's resources in id (creation) order, after the
/// cursor `after`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ResourceFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ResourceView>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"select resource_id, name, kind, capacity, timezone, working_hours, tags, retired,
                  version, registered_at, updated_at, position, seats, policy
             from read.resources
            where tenant_id = $1
              and ($2::uuid is null or resource_id > $2)
              and ($3::text is null or kind = $3)
              and ($4::text is null or $4 = any(tags))
              and ($5 or not retired)
              and ($7::int4 is null or capacity >= $7)
              and ($8::int4 is null or seats >= $8)
            order by resource_id
            limit $6"#,
        tenant.as_str(),
        after,
        filter.kind,
        filter.tag,
        filter.include_retired,
        limit,
        filter
            .min_capacity
            .map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
        filter
            .min_seats
            .map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ResourceView::from).collect())
}
