//! Calendar links as the write side keeps them (SPEC §12): the
//! `calendar_links` rows written in the transactions of each link's events
//! (the events stay the record), the blocks their syncs place among the
//! resource's reservations, and the sync state the sync jobs keep (ETag,
//! sync token, last error), which is operational, not history.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::calendar_link::{Block, CalendarKind, LinkSpec};
use muster_domain::time::TimeRange;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Store, StoreError};

/// A calendar link as stored: its definition (never its URL or
/// credentials) and how its syncs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCalendar {
    /// Its id.
    pub calendar_id: Uuid,
    /// Its resource.
    pub resource_id: Uuid,
    /// ICS or CalDAV.
    pub kind: CalendarKind,
    /// The URL without credentials, query or fragment.
    pub location: String,
    /// Whether muster writes the resource's reservations to it.
    pub publish: bool,
    /// Whether its events' titles are kept and shown.
    pub show_titles: bool,
    /// Seconds between periodic syncs.
    pub sync_every_secs: i32,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
    /// When the next periodic sync is due.
    pub next_sync_at: DateTime<Utc>,
    /// When a sync last succeeded.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// When a sync last changed its blocks.
    pub last_changed_at: Option<DateTime<Utc>>,
    /// Why the last sync failed, if it did (cleared by a success).
    pub last_error: Option<String>,
    /// When a sync last failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Syncs failed in a row.
    pub failures: i32,
    /// Blocks it holds now.
    pub blocks: i64,
}

/// What a sync of a link needs: where to read (sealed), what it read last
/// time, and the resource's zone and horizon.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// The link.
    pub calendar_id: Uuid,
    /// Its resource.
    pub resource_id: Uuid,
    /// ICS or CalDAV.
    pub kind: CalendarKind,
    /// The URL and credentials, sealed with the server's key.
    pub sealed: Vec<u8>,
    /// Whether titles are kept.
    pub show_titles: bool,
    /// Whether the resource's reservations are written to the calendar.
    pub publish: bool,
    /// The ETag of the document read last (ICS).
    pub etag: Option<String>,
    /// The collection's sync token after the last sync (CalDAV).
    pub sync_token: Option<String>,
    /// The resource's IANA zone (all-day events and floating times).
    pub timezone: String,
    /// How far ahead the resource may be booked, if it limits that.
    pub max_advance_secs: Option<i32>,
}

/// A block as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// The link that holds it.
    pub calendar_id: Uuid,
    /// The block.
    pub block_id: Uuid,
    /// Its resource.
    pub resource_id: Uuid,
    /// When.
    pub range: TimeRange,
    /// Its title, where the link shows titles.
    pub title: Option<String>,
}

/// Which resources' blocks to read: all of the tenant's by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockFilter<'a> {
    /// Only these resources.
    pub resource_ids: Option<&'a [Uuid]>,
    /// Only resources of this kind.
    pub kind: Option<&'a str>,
    /// Only resources with this tag.
    pub tag: Option<&'a str>,
}

/// Writes a new link's row (once: a replayed commit changes nothing).
pub(crate) async fn save(
    conn: &mut PgConnection,
    tenant: &str,
    calendar_id: Uuid,
    spec: &LinkSpec,
) -> Result<(), StoreError> {
    let sealed = STANDARD
        .decode(&spec.sealed)
        .map_err(|_| StoreError::CorruptRow("a calendar link's sealed URL".to_owned()))?;
    let every = i32::try_from(spec.sync_every_secs).unwrap_or(i32::MAX);
    sqlx::query!(
        r#"insert into calendar_links
               (tenant_id, calendar_id, resource_id, kind, location, sealed, publish,
                show_titles, sync_every_secs, next_sync_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9::int4,
                   now() + make_interval(secs => $9::int4))
           on conflict (tenant_id, calendar_id) do nothing"#,
        tenant,
        calendar_id,
        spec.resource_id,
        spec.kind.as_str(),
        spec.location,
        sealed,
        spec.publish,
        spec.show_titles,
        every,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes `removed` off the link's resource and places `added` on it,
/// under the resource's lock (the one every booking of it takes), so that
/// a booking waiting for the lock sees the blocks, and one that got it
/// first is there for the sync's conflicts to find.
pub(crate) async fn place_blocks(
    conn: &mut PgConnection,
    tenant: &str,
    (calendar_id, resource_id): (Uuid, Uuid),
    added: &[Block],
    removed: &[Uuid],
) -> Result<(), StoreError> {
    sqlx::query!(
        "select 1 as locked from reservable_resources
          where tenant_id = $1 and resource_id = $2 for no key update",
        tenant,
        resource_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if !removed.is_empty() {
        sqlx::query!(
            "delete from reservations
              where tenant_id = $1 and calendar_id = $2 and reservation_id = any($3)",
            tenant,
            calendar_id,
            removed,
        )
        .execute(&mut *conn)
        .await?;
    }
    if added.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = added.iter().map(|b| b.block_id).collect();
    let starts: Vec<DateTime<Utc>> = added.iter().map(|b| b.starts_at).collect();
    let ends: Vec<DateTime<Utc>> = added.iter().map(|b| b.ends_at).collect();
    let titles: Vec<Option<String>> = added.iter().map(|b| b.title.clone()).collect();
    let longest = added
        .iter()
        .map(|b| (b.ends_at - b.starts_at).as_seconds_f64())
        .fold(0.0, f64::max);
    sqlx::query!(
        r#"insert into reservations
               (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at, label,
                calendar_id)
           select $1, b.id, $2, $3, b.starts_at, b.ends_at, b.title, $2
             from unnest($4::uuid[], $5::timestamptz[], $6::timestamptz[], $7::text[])
                  as b(id, starts_at, ends_at, title)
           on conflict (tenant_id, reservation_id) do update
              set starts_at = excluded.starts_at, ends_at = excluded.ends_at,
                  label = excluded.label"#,
        tenant,
        calendar_id,
        resource_id,
        &ids,
        &starts,
        &ends,
        &titles as &[Option<String>],
    )
    .execute(&mut *conn)
    .await?;
    // How far back an overlapping row can start grows with the longest
    // block, as with any reservation.
    sqlx::query!(
        "update reservable_resources
            set longest_reservation_secs = greatest(longest_reservation_secs, $3)
          where tenant_id = $1 and resource_id = $2 and longest_reservation_secs < $3",
        tenant,
        resource_id,
        longest,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes a link's row and its blocks, under its resource's lock.
pub(crate) async fn drop(
    conn: &mut PgConnection,
    tenant: &str,
    calendar_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        "select 1 as locked from reservable_resources rr
          where rr.tenant_id = $1
            and rr.resource_id = (select resource_id from calendar_links
                                   where tenant_id = $1 and calendar_id = $2)
            for no key update",
        tenant,
        calendar_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query!(
        "delete from reservations where tenant_id = $1 and calendar_id = $2",
        tenant,
        calendar_id,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "delete from calendar_links where tenant_id = $1 and calendar_id = $2",
        tenant,
        calendar_id,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a sync went, for the link's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncReport {
    /// It read the calendar; `changed`: its blocks changed.
    Read {
        /// The document's ETag now (ICS).
        etag: Option<String>,
        /// The collection's sync token now (CalDAV).
        sync_token: Option<String>,
        /// Whether the blocks changed.
        changed: bool,
    },
    /// It failed: why, in words fit to show (never a credential).
    Failed(String),
}

struct CalendarRow {
    calendar_id: Uuid,
    resource_id: Uuid,
    kind: String,
    location: String,
    publish: bool,
    show_titles: bool,
    sync_every_secs: i32,
    created_at: DateTime<Utc>,
    next_sync_at: DateTime<Utc>,
    last_synced_at: Option<DateTime<Utc>>,
    last_changed_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    failures: i32,
    blocks: i64,
}

impl CalendarRow {
    fn stored(self) -> Result<StoredCalendar, StoreError> {
        Ok(StoredCalendar {
            calendar_id: self.calendar_id,
            resource_id: self.resource_id,
            kind: kind_of(&self.kind)?,
            location: self.location,
            publish: self.publish,
            show_titles: self.show_titles,
            sync_every_secs: self.sync_every_secs,
            created_at: self.created_at,
            next_sync_at: self.next_sync_at,
            last_synced_at: self.last_synced_at,
            last_changed_at: self.last_changed_at,
            last_error: self.last_error,
            last_error_at: self.last_error_at,
            failures: self.failures,
            blocks: self.blocks,
        })
    }
}

fn kind_of(name: &str) -> Result<CalendarKind, StoreError> {
    CalendarKind::parse(name)
        .ok_or_else(|| StoreError::CorruptRow(format!("a calendar link's kind {name:?}")))
}

impl Store {
    /// The links of `resource_id` (all of the tenant's with `None`), oldest
    /// first.
    pub async fn list_calendars(
        &self,
        tenant: &TenantId,
        resource_id: Option<Uuid>,
    ) -> Result<Vec<StoredCalendar>, StoreError> {
        let rows = sqlx::query_as!(
            CalendarRow,
            r#"select c.calendar_id, c.resource_id, c.kind, c.location, c.publish, c.show_titles,
                      c.sync_every_secs, c.created_at, c.next_sync_at, c.last_synced_at,
                      c.last_changed_at, c.last_error, c.last_error_at, c.failures,
                      (select count(*) from reservations r
                        where r.tenant_id = c.tenant_id and r.calendar_id = c.calendar_id)
                      as "blocks!"
                 from calendar_links c
                where c.tenant_id = $1 and ($2::uuid is null or c.resource_id = $2)
                order by c.created_at, c.calendar_id"#,
            tenant.as_str(),
            resource_id,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(CalendarRow::stored).collect()
    }

    /// Link `calendar_id`, if the tenant has it.
    pub async fn find_calendar(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
    ) -> Result<Option<StoredCalendar>, StoreError> {
        let row = sqlx::query_as!(
            CalendarRow,
            r#"select c.calendar_id, c.resource_id, c.kind, c.location, c.publish, c.show_titles,
                      c.sync_every_secs, c.created_at, c.next_sync_at, c.last_synced_at,
                      c.last_changed_at, c.last_error, c.last_error_at, c.failures,
                      (select count(*) from reservations r
                        where r.tenant_id = c.tenant_id and r.calendar_id = c.calendar_id)
                      as "blocks!"
                 from calendar_links c
                where c.tenant_id = $1 and c.calendar_id = $2"#,
            tenant.as_str(),
            calendar_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(CalendarRow::stored).transpose()
    }

    /// What a sync of link `calendar_id` needs; `None`: no such link.
    pub async fn sync_target(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
    ) -> Result<Option<SyncTarget>, StoreError> {
        let row = sqlx::query!(
            r#"select c.calendar_id, c.resource_id, c.kind, c.sealed, c.show_titles, c.publish, c.etag,
                      c.sync_token, rr.timezone, rr.max_advance_secs
                 from calendar_links c
                 join reservable_resources rr
                   on rr.tenant_id = c.tenant_id and rr.resource_id = c.resource_id
                where c.tenant_id = $1 and c.calendar_id = $2"#,
            tenant.as_str(),
            calendar_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SyncTarget {
                calendar_id: r.calendar_id,
                resource_id: r.resource_id,
                kind: kind_of(&r.kind)?,
                sealed: r.sealed,
                show_titles: r.show_titles,
                publish: r.publish,
                etag: r.etag,
                sync_token: r.sync_token,
                timezone: r.timezone,
                max_advance_secs: r.max_advance_secs,
            })
        })
        .transpose()
    }

    /// Records how a sync of `calendar_id` went.
    pub async fn record_sync(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
        report: &SyncReport,
    ) -> Result<(), StoreError> {
        match report {
            SyncReport::Read {
                etag,
                sync_token,
                changed,
            } => {
                sqlx::query!(
                    "update calendar_links
                        set etag = $3, sync_token = $4, last_synced_at = now(),
                            last_changed_at = case when $5 then now() else last_changed_at end,
                            last_error = null, failures = 0
                      where tenant_id = $1 and calendar_id = $2",
                    tenant.as_str(),
                    calendar_id,
                    etag.as_deref(),
                    sync_token.as_deref(),
                    changed,
                )
                .execute(&self.pool)
                .await?;
            }
            SyncReport::Failed(error) => {
                sqlx::query!(
                    "update calendar_links
                        set last_error = $3, last_error_at = now(), failures = failures + 1
                      where tenant_id = $1 and calendar_id = $2",
                    tenant.as_str(),
                    calendar_id,
                    error,
                )
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Claims up to `limit` links whose periodic sync is due, moving each
    /// one's next sync a period on, in `conn`'s transaction (the caller
    /// queues their jobs in it): a link is claimed by one process only.
    pub async fn claim_due_calendars(
        conn: &mut PgConnection,
        limit: i64,
    ) -> Result<Vec<(TenantId, Uuid)>, StoreError> {
        let rows = sqlx::query!(
            r#"update calendar_links c
                  set next_sync_at = now() + make_interval(secs => c.sync_every_secs)
                 from (select tenant_id, calendar_id from calendar_links
                        where next_sync_at <= now()
                        order by next_sync_at
                        limit $1
                          for update skip locked) due
                where c.tenant_id = due.tenant_id and c.calendar_id = due.calendar_id
            returning c.tenant_id, c.calendar_id"#,
            limit,
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((TenantId::parse(&r.tenant_id).ok()?, r.calendar_id)))
            .collect())
    }

    /// The blocks external calendars hold on `resource_id` that overlap
    /// `window`, by start.
    pub async fn calendar_blocks(
        &self,
        tenant: &TenantId,
        resource_id: Uuid,
        window: TimeRange,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        let filter = BlockFilter {
            resource_ids: Some(std::slice::from_ref(&resource_id)),
            ..BlockFilter::default()
        };
        self.calendar_blocks_within(tenant, &filter, window).await
    }

    /// The blocks external calendars hold that overlap `window` on the
    /// resources `filter` takes, by start.
    pub async fn calendar_blocks_within(
        &self,
        tenant: &TenantId,
        filter: &BlockFilter<'_>,
        window: TimeRange,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        let rows = sqlx::query!(
            r#"select r.calendar_id as "calendar_id!", r.reservation_id, r.resource_id,
                      r.starts_at, r.ends_at, r.label
                 from reservations r
                 join reservable_resources rr
                   on rr.tenant_id = r.tenant_id and rr.resource_id = r.resource_id
                where r.tenant_id = $1 and r.calendar_id is not null
                  and ($2::uuid[] is null or r.resource_id = any($2))
                  and ($5::text is null or rr.kind = $5)
                  and ($6::text is null or rr.tags ? $6)
                  and r.starts_at < $4 and r.ends_at > $3
                order by r.starts_at, r.reservation_id"#,
            tenant.as_str(),
            filter.resource_ids,
            window.starts_at,
            window.ends_at,
            filter.kind,
            filter.tag,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredBlock {
                calendar_id: r.calendar_id,
                block_id: r.reservation_id,
                resource_id: r.resource_id,
                range: TimeRange {
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                },
                title: r.label,
            })
            .collect())
    }
}

/// A calendar object a CalDAV collection held at the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Where.
    pub href: String,
    /// Its ETag then.
    pub etag: Option<String>,
    /// Its iCalendar text.
    pub ics: String,
}

/// A reservation a publishing link wrote to its calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The reservation (the event's `UID`).
    pub reservation_id: Uuid,
    /// Where it was written.
    pub href: String,
    /// Its ETag after the write, if the server said.
    pub etag: Option<String>,
    /// Its `SEQUENCE`.
    pub sequence: i32,
    /// The range written.
    pub range: TimeRange,
}

/// A booking's reservation a publishing link should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishable {
    /// The reservation.
    pub reservation_id: Uuid,
    /// Its range.
    pub range: TimeRange,
    /// Its label, if any (the event's title; never the client).
    pub label: Option<String>,
}

impl Store {
    /// The objects link `calendar_id` read from its collection, by href.
    pub async fn calendar_objects(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query!(
            "select href, etag, ics from calendar_objects
              where tenant_id = $1 and calendar_id = $2 order by href",
            tenant.as_str(),
            calendar_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredObject {
                href: r.href,
                etag: r.etag,
                ics: r.ics,
            })
            .collect())
    }

    /// Keeps what a sync read of the collection: `fetched` objects new or
    /// changed, `deleted` hrefs gone; with `full`, also drops every object
    /// not in `listed` (a listing from scratch).
    pub async fn save_calendar_objects(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
        fetched: &[StoredObject],
        deleted: &[String],
        listed: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(listed) = listed {
            sqlx::query!(
                "delete from calendar_objects
                  where tenant_id = $1 and calendar_id = $2 and not (href = any($3))",
                tenant.as_str(),
                calendar_id,
                listed,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !deleted.is_empty() {
            sqlx::query!(
                "delete from calendar_objects
                  where tenant_id = $1 and calendar_id = $2 and href = any($3)",
                tenant.as_str(),
                calendar_id,
                deleted,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !fetched.is_empty() {
            let hrefs: Vec<&str> = fetched.iter().map(|o| o.href.as_str()).collect();
            let etags: Vec<Option<&str>> = fetched.iter().map(|o| o.etag.as_deref()).collect();
            let texts: Vec<&str> = fetched.iter().map(|o| o.ics.as_str()).collect();
            sqlx::query!(
                r#"insert into calendar_objects (tenant_id, calendar_id, href, etag, ics)
                   select $1, $2, o.href, o.etag, o.ics
                     from unnest($3::text[], $4::text[], $5::text[]) as o(href, etag, ics)
                   on conflict (tenant_id, calendar_id, href) do update
                      set etag = excluded.etag, ics = excluded.ics"#,
                tenant.as_str(),
                calendar_id,
                &hrefs as &[&str],
                &etags as &[Option<&str>],
                &texts as &[&str],
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What link `calendar_id` has written to its calendar.
    pub async fn published(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
    ) -> Result<Vec<Published>, StoreError> {
        let rows = sqlx::query!(
            "select reservation_id, href, etag, sequence, starts_at, ends_at
               from calendar_published where tenant_id = $1 and calendar_id = $2
              order by reservation_id",
            tenant.as_str(),
            calendar_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Published {
                reservation_id: r.reservation_id,
                href: r.href,
                etag: r.etag,
                sequence: r.sequence,
                range: TimeRange {
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                },
            })
            .collect())
    }

    /// The bookings' reservations on `resource_id` a publishing link shows
    /// (ending after a day ago), and their digest, read together.
    pub async fn publishable(
        &self,
        tenant: &TenantId,
        resource_id: Uuid,
    ) -> Result<(Vec<Publishable>, String), StoreError> {
        // One statement, so one snapshot for the rows and their digest:
        // the digest row, with each reservation joined to it (none: one
        // row without a reservation).
        let found = sqlx::query!(
            r#"select d.digest as "digest!", r.reservation_id as "reservation_id?",
                      r.starts_at as "starts_at?", r.ends_at as "ends_at?", r.label
                 from (select publish_digest($1, $2) as digest) d
                 left join lateral (
                      select x.reservation_id, x.starts_at, x.ends_at, x.label
                        from reservations x
                       where x.tenant_id = $1 and x.resource_id = $2
                         and x.calendar_id is null and x.reservation_id <> x.booking_id
                         and (x.expires_at is null or x.expires_at > now())
                         and x.ends_at > now() - interval '1 day') r on true
                order by r.reservation_id"#,
            tenant.as_str(),
            resource_id,
        )
        .fetch_all(&self.pool)
        .await?;
        let digest = found.first().map(|r| r.digest.clone()).unwrap_or_default();
        let rows = found
            .into_iter()
            .filter_map(|r| {
                Some(Publishable {
                    reservation_id: r.reservation_id?,
                    range: TimeRange {
                        starts_at: r.starts_at?,
                        ends_at: r.ends_at?,
                    },
                    label: r.label,
                })
            })
            .collect();
        Ok((rows, digest))
    }

    /// Records that `reservation_id` was written to link `calendar_id`.
    pub async fn record_published(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
        published: &Published,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "insert into calendar_published
                 (tenant_id, calendar_id, reservation_id, href, etag, sequence, starts_at, ends_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (tenant_id, calendar_id, reservation_id) do update
                set href = excluded.href, etag = excluded.etag, sequence = excluded.sequence,
                    starts_at = excluded.starts_at, ends_at = excluded.ends_at",
            tenant.as_str(),
            calendar_id,
            published.reservation_id,
            published.href,
            published.etag,
            published.sequence,
            published.range.starts_at,
            published.range.ends_at,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `reservation_id` was deleted from link `calendar_id`.
    pub async fn forget_published(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
        reservation_id: Uuid,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "delete from calendar_published
              where tenant_id = $1 and calendar_id = $2 and reservation_id = $3",
            tenant.as_str(),
            calendar_id,
            reservation_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that link `calendar_id` shows the reservations of `digest`.
    pub async fn set_published_digest(
        &self,
        tenant: &TenantId,
        calendar_id: Uuid,
        digest: &str,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "update calendar_links set published_digest = $3, published_at = now()
              where tenant_id = $1 and calendar_id = $2",
            tenant.as_str(),
            calendar_id,
            digest,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Publishing links whose resource holds other reservations than they
    /// last published, each with a key unique to that change (when it
    /// last published, and what it holds now).
    pub async fn stale_publications(&self) -> Result<Vec<(TenantId, Uuid, String)>, StoreError> {
        let rows = sqlx::query!(
            r#"select c.tenant_id, c.calendar_id,
                      coalesce(c.published_at::text, '-') || ':' || d.digest as "key!"
                 from calendar_links c
                cross join lateral (select publish_digest(c.tenant_id, c.resource_id) as digest) d
                where c.publish and c.published_digest is distinct from d.digest"#,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((TenantId::parse(&r.tenant_id).ok()?, r.calendar_id, r.key)))
            .collect())
    }
}
