//! Waitlist entries as the write side keeps them: the `waitlist_entries`
//! rows written in the transactions of each entry's events (the events
//! stay the record), what the waitlist routes read of them, and what the
//! offering loop asks: which entries wait, and which offers ended.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::booking::Client;
use muster_domain::duration::IsoDuration;
use muster_domain::time::TimeRange;
use muster_domain::waitlist::{EntryStatus, Offer, Target, WaitlistEntry};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::{Store, StoreError};

/// Entries per page of the offering loop's reads.
pub const PAGE: i64 = 500;

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its id.
    pub entry_id: Uuid,
    /// What it waits for.
    pub target: Target,
    /// The wanted range.
    pub range: TimeRange,
    /// Who waits.
    pub client: Client,
    /// How long an offer lasts.
    pub offer_ttl: IsoDuration,
    /// Higher is offered first.
    pub priority: i32,
    /// Where it is.
    pub status: EntryStatus,
    /// The current (while offered) or last offer.
    pub offer: Option<Offer>,
    /// The booking it became.
    pub booking_id: Option<Uuid>,
    /// When it joined.
    pub joined_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Which entries a listing shows; parts left out do not filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitlistFilter {
    /// Waiting for this resource.
    pub resource_id: Option<Uuid>,
    /// Waiting for this pool.
    pub pool_id: Option<Uuid>,
    /// In this status.
    pub status: Option<EntryStatus>,
}

/// Where a page of waiting entries ends: the last one's priority and id
/// (they are read by priority, higher first, then by id).
pub type WaitingCursor = (i32, Uuid);

/// Writes entry `entry_id` as `entry` now is.
pub(crate) async fn save(
    conn: &mut PgConnection,
    tenant: &str,
    entry_id: Uuid,
    entry: &WaitlistEntry,
) -> Result<(), StoreError> {
    let (Some(spec), Some(status)) = (&entry.spec, entry.status) else {
        return Ok(());
    };
    let (resource_id, pool_id) = match spec.target {
        Target::Resource { resource_id } => (Some(resource_id), None),
        Target::Pool { pool_id } => (None, Some(pool_id)),
    };
    let offer = entry.offer.as_ref();
    sqlx::query!(
        r#"insert into waitlist_entries
              (tenant_id, entry_id, resource_id, pool_id, starts_at, ends_at, client,
               offer_ttl_seconds, priority, status, hold_id, offered_resource_id,
               offer_expires_at, booking_id)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           on conflict (tenant_id, entry_id) do update
              set status = excluded.status, hold_id = excluded.hold_id,
                  offered_resource_id = excluded.offered_resource_id,
                  offer_expires_at = excluded.offer_expires_at,
                  booking_id = excluded.booking_id, updated_at = now()"#,
        tenant,
        entry_id,
        resource_id,
        pool_id,
        spec.starts_at,
        spec.ends_at,
        Json(&spec.client) as Json<&Client>,
        spec.offer_ttl.seconds(),
        spec.priority,
        status.as_str(),
        offer.map(|o| o.hold_id),
        offer.map(|o| o.resource_id),
        offer.map(|o| o.expires_at),
        entry.booking_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

struct EntryRow {
    entry_id: Uuid,
    resource_id: Option<Uuid>,
    pool_id: Option<Uuid>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    client: Json<Client>,
    offer_ttl_seconds: i64,
    priority: i32,
    status: String,
    hold_id: Option<Uuid>,
    offered_resource_id: Option<Uuid>,
    offer_expires_at: Option<DateTime<Utc>>,
    booking_id: Option<Uuid>,
    joined_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EntryRow {
    fn stored(self) -> Result<StoredEntry, StoreError> {
        let corrupt = |what: &str| {
            StoreError::CorruptRow(format!("waitlist entry {}: {what}", self.entry_id))
        };
        let target = match (self.resource_id, self.pool_id) {
            (Some(resource_id), None) => Target::Resource { resource_id },
            (None, Some(pool_id)) => Target::Pool { pool_id },
            _ => return Err(corrupt("neither one resource nor one pool")),
        };
        let status = EntryStatus::parse(&self.status).ok_or_else(|| corrupt("its status"))?;
        let offer = match (
            self.hold_id,
            self.offered_resource_id,
            self.offer_expires_at,
        ) {
            (Some(hold_id), Some(resource_id), Some(expires_at)) => Some(Offer {
                hold_id,
                resource_id,
                expires_at,
            }),
            _ => None,
        };
        Ok(StoredEntry {
            entry_id: self.entry_id,
            target,
            range: TimeRange {
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            },
            client: self.client.0,
            offer_ttl: IsoDuration::from_seconds(self.offer_ttl_seconds),
            priority: self.priority,
            status,
            offer,
            booking_id: self.booking_id,
            joined_at: self.joined_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    /// Entry `entry_id` of `tenant`, if there is one.
    pub async fn find_waitlist_entry(
        &self,
        tenant: &TenantId,
        entry_id: Uuid,
    ) -> Result<Option<StoredEntry>, StoreError> {
        sqlx::query_as!(
            EntryRow,
            r#"select entry_id, resource_id, pool_id, starts_at, ends_at,
                      client as "client: Json<Client>", offer_ttl_seconds, priority, status,
                      hold_id, offered_resource_id, offer_expires_at, booking_id,
                      joined_at, updated_at
                 from waitlist_entries where tenant_id = $1 and entry_id = $2"#,
            tenant.as_str(),
            entry_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .map(EntryRow::stored)
        .transpose()
    }

    /// The entries of `tenant` that `filter` lets through, after `after`
    /// (by id, which orders them by when they joined), at most `limit`.
    pub async fn list_waitlist(
        &self,
        tenant: &TenantId,
        filter: WaitlistFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        sqlx::query_as!(
            EntryRow,
            r#"select entry_id, resource_id, pool_id, starts_at, ends_at,
                      client as "client: Json<Client>", offer_ttl_seconds, priority, status,
                      hold_id, offered_resource_id, offer_expires_at, booking_id,
                      joined_at, updated_at
                 from waitlist_entries
                where tenant_id = $1
                  and ($2::uuid is null or resource_id = $2)
                  and ($3::uuid is null or pool_id = $3)
                  and ($4::text is null or status = $4)
                  and ($5::uuid is null or entry_id > $5)
                order by entry_id
                limit $6"#,
            tenant.as_str(),
            filter.resource_id,
            filter.pool_id,
            filter.status.map(EntryStatus::as_str),
            after,
            limit,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(EntryRow::stored)
        .collect()
    }

    /// The tenants with an entry waiting or offered, each with the
    /// position of its newest event (what the offering loop compares with
    /// the last round's to see whether anything happened there).
    pub async fn open_waitlists(&self) -> Result<Vec<(TenantId, i64)>, StoreError> {
        let rows = sqlx::query!(
            r#"select t.tenant_id as "tenant_id!",
                      coalesce((select max(e.position) from events e
                                 where e.tenant_id = t.tenant_id), 0) as "position!"
                 from (select distinct tenant_id from waitlist_entries
                        where status = 'offered'
                           or (status = 'waiting' and ends_at > now())) t"#,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let tenant = TenantId::try_from(row.tenant_id)
                    .map_err(|e| StoreError::CorruptRow(format!("a waitlist's tenant: {e}")))?;
                Ok((tenant, row.position))
            })
            .collect()
    }

    /// Offers of `tenant` whose hold has ended unconverted (ran out or was
    /// released), as (entry, hold), soonest expired first, at most a
    /// round's worth.
    pub async fn ended_offers(&self, tenant: &TenantId) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let rows = sqlx::query!(
            r#"select w.entry_id, w.hold_id as "hold_id!"
                 from waitlist_entries w
                where w.tenant_id = $1 and w.status = 'offered' and w.hold_id is not null
                  and (w.offer_expires_at <= now()
                       or not exists (select 1 from reservations r
                                       where r.tenant_id = w.tenant_id
                                         and r.reservation_id = w.hold_id))
                order by w.offer_expires_at
                limit $2"#,
            tenant.as_str(),
            PAGE,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.entry_id, r.hold_id)).collect())
    }

    /// A page of `tenant`'s entries waiting for a range not yet over, in
    /// the order they are offered (priority, higher first, then who joined
    /// first), after `after`; a page shorter than [`PAGE`] is the last.
    pub async fn waiting_entries(
        &self,
        tenant: &TenantId,
        after: Option<WaitingCursor>,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let (priority, entry_id) = after.unzip();
        sqlx::query_as!(
            EntryRow,
            r#"select entry_id, resource_id, pool_id, starts_at, ends_at,
                      client as "client: Json<Client>", offer_ttl_seconds, priority, status,
                      hold_id, offered_resource_id, offer_expires_at, booking_id,
                      joined_at, updated_at
                 from waitlist_entries
                where tenant_id = $1 and status = 'waiting' and ends_at > now()
                  and ($2::int is null or priority < $2 or (priority = $2 and entry_id > $3))
                order by priority desc, entry_id
                limit $4"#,
            tenant.as_str(),
            priority,
            entry_id,
            PAGE,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(EntryRow::stored)
        .collect()
    }
}
