//! The event store: atomic multi-event appends with an expected version, and
//! gap-free reads in position order.

use chrono::{DateTime, Utc};
use muster_domain::upcast::upcast;
use muster_domain::{DomainEvent, TenantId};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::personal::{self, NewKey, StreamKey};
use crate::secret::SecretKey;
use crate::{Store, StoreError};

/// Who and what caused an append; stored with every event.
#[derive(Debug, Clone, Serialize)]
pub struct EventMetadata {
    /// Id of the command (one per HTTP command request).
    pub command_id: Uuid,
    /// Correlation id of the request (`X-Correlation-Id`, or generated).
    pub correlation_id: String,
    /// What caused these events: the command's id for commands.
    pub causation_id: Uuid,
    /// Who: the API key id.
    pub actor: String,
    /// The tenant.
    pub tenant: TenantId,
}

/// An event as stored, payload already upcast to the current schema.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedEvent {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// Global position, increasing in commit-safe read order.
    pub position: i64,
    /// The stream's kind (`booking`, `resource`).
    pub stream_type: String,
    /// The stream (aggregate) id.
    pub stream_id: Uuid,
    /// Version within the stream, from 1.
    pub stream_version: i32,
    /// Dotted type name.
    pub event_type: String,
    /// Schema version of `payload` (the current one, after upcasting).
    pub schema_version: i32,
    /// Payload.
    pub payload: serde_json::Value,
    /// Metadata (command, correlation, causation, actor, tenant).
    pub metadata: serde_json::Value,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// The events of one stream, decoded, with the stream's version and the
/// position of its last event.
pub(crate) struct LoadedStream<E> {
    pub events: Vec<E>,
    pub version: i64,
    pub last_position: Option<i64>,
    /// Each event's position, in the same order.
    pub positions: Vec<i64>,
    /// The data key its personal fields are sealed with now, if any.
    pub key: Option<StreamKey>,
}

/// Stream `stream_id` of aggregate `A` in `tenant`, decoded (upcast), up to
/// and including the event at `position`: the history that event ended.
/// For whoever reacts to one event and needs the state it left (the client
/// notifications).
pub async fn history_until<A: muster_domain::aggregate::Aggregate>(
    conn: &mut PgConnection,
    secret: Option<&SecretKey>,
    tenant: &TenantId,
    stream_id: Uuid,
    position: i64,
) -> Result<Vec<A::Event>, StoreError> {
    let stream = read_stream::<A::Event>(conn, secret, tenant, A::STREAM_TYPE, stream_id).await?;
    Ok(stream
        .events
        .into_iter()
        .zip(stream.positions)
        .take_while(|(_, p)| *p <= position)
        .map(|(e, _)| e)
        .collect())
}

/// Reads one stream in version order and decodes it, upcasting old payloads.
pub(crate) async fn read_stream<E: DomainEvent>(
    conn: &mut PgConnection,
    secret: Option<&SecretKey>,
    tenant: &TenantId,
    stream_type: &str,
    stream_id: Uuid,
) -> Result<LoadedStream<E>, StoreError> {
    let rows = sqlx::query!(
        r#"select position, event_type, schema_version, payload,
                  (select k.sealed from personal_keys k
                    where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid) as "data_key?"
             from events
            where tenant_id = $1 and stream_id = $2 and stream_type = $3
            order by stream_version"#,
        tenant.as_str(),
        stream_id,
        stream_type,
    )
    .fetch_all(conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut positions = Vec::with_capacity(rows.len());
    let mut last_position = None;
    let mut key = None;
    for row in rows {
        let mut payload = row.payload;
        let opened = personal::open(row.position, &mut payload, row.data_key.as_deref(), secret)?;
        key = opened.next_key(key);
        let corrupt = |source| StoreError::CorruptEvent {
            position: row.position,
            source,
        };
        let payload = upcast(&row.event_type, row.schema_version, payload).map_err(corrupt)?;
        events.push(E::from_payload(&row.event_type, &payload).map_err(corrupt)?);
        last_position = Some(row.position);
        positions.push(row.position);
    }
    Ok(LoadedStream {
        version: events.len() as i64,
        events,
        last_position,
        positions,
        key,
    })
}

/// The events of streams `stream_ids` of type `stream_type`, upcast,
/// each with the actor of its first event (who made it), in one read.
pub(crate) async fn read_streams<E: DomainEvent>(
    conn: &mut PgConnection,
    secret: Option<&SecretKey>,
    tenant: &TenantId,
    stream_type: &str,
    stream_ids: &[Uuid],
) -> Result<Vec<(Uuid, String, Vec<E>)>, StoreError> {
    let rows = sqlx::query!(
        r#"select stream_id, stream_version, position, event_type, schema_version, payload,
                  coalesce(metadata->>'actor', '') as "actor!",
                  (select k.sealed from personal_keys k
                    where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid) as "data_key?"
             from events
            where tenant_id = $1 and stream_type = $2 and stream_id = any($3)
            order by stream_id, stream_version"#,
        tenant.as_str(),
        stream_type,
        stream_ids,
    )
    .fetch_all(conn)
    .await?;
    let mut streams: Vec<(Uuid, String, Vec<E>)> = Vec::new();
    for row in rows {
        let mut payload = row.payload;
        personal::open(row.position, &mut payload, row.data_key.as_deref(), secret)?;
        let corrupt = |source| StoreError::CorruptEvent {
            position: row.position,
            source,
        };
        let payload = upcast(&row.event_type, row.schema_version, payload).map_err(corrupt)?;
        let event = E::from_payload(&row.event_type, &payload).map_err(corrupt)?;
        match streams.last_mut() {
            Some((id, _, events)) if *id == row.stream_id => events.push(event),
            _ => streams.push((row.stream_id, row.actor, vec![event])),
        }
    }
    Ok(streams)
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream since `expected_version`.
    #[error("stream version conflict")]
    VersionConflict,
    /// Anything else.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One event, type-erased for storage.
#[derive(Debug, Clone)]
pub(crate) struct EventData {
    /// Dotted type name.
    pub event_type: &'static str,
    /// Schema version of the payload.
    pub schema_version: i32,
    /// Payload.
    pub payload: serde_json::Value,
}

impl EventData {
    /// The storable form of a domain event.
    pub(crate) fn of<E: DomainEvent>(event: &E) -> Self {
        Self {
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
        }
    }
}

/// Events to append to one stream after `expected_version`.
#[derive(Debug, Clone)]
pub(crate) struct StreamAppend {
    /// The tenant.
    pub tenant: TenantId,
    /// The stream's kind.
    pub stream_type: &'static str,
    /// The stream.
    pub stream_id: Uuid,
    /// The version the events were decided on.
    pub expected_version: i64,
    /// The events, in order.
    pub events: Vec<EventData>,
    /// Metadata stored with each of them.
    pub metadata: EventMetadata,
    /// The stream's data key as loaded, when the events carry personal
    /// data (taken by [`personal::seal`]).
    pub current_key: Option<StreamKey>,
    /// A data key the sealing made, stored with the events.
    pub new_key: Option<NewKey>,
}

impl StreamAppend {
    /// Whether any of its events has personal fields.
    pub(crate) fn carries_personal_data(&self) -> bool {
        self.events
            .iter()
            .any(|e| muster_domain::personal::has_personal_fields(e.event_type))
    }

    /// Seals the personal fields of its events (SPEC §12) with the
    /// stream's key while its client stays the same, a new key otherwise
    /// (kept in `new_key`, stored with the events).
    pub(crate) fn seal(&mut self, secret: &SecretKey) {
        if !self.carries_personal_data() {
            return;
        }
        // The client the events leave the stream with: the last one named,
        // or the stream's own when none is (a change of notes alone).
        let named = self
            .events
            .iter()
            .rev()
            .find_map(|e| personal::named_client(e.event_type, &e.payload));
        let (key, new_key) = personal::key_for(named, self.current_key.take(), secret);
        self.new_key = new_key;
        for event in &mut self.events {
            personal::seal_payload(event.event_type, &mut event.payload, &key);
        }
    }
}

/// Appends `events` to a stream at `expected_version + 1..`, atomically
/// within the caller's transaction, and returns the last event's position.
/// For the event store's own tests only: everything else appends through
/// the one commit path ([`crate::Store::execute_with`]), which checks what
/// the events imply.
///
/// The transaction must commit promptly after this: the epoch lock taken
/// here holds back every reader until it ends.
#[cfg(feature = "testing")]
pub async fn append_to_stream<E: DomainEvent>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    stream_type: &'static str,
    stream_id: Uuid,
    expected_version: i64,
    events: &[E],
    metadata: &EventMetadata,
) -> Result<i64, AppendError> {
    let events = events.iter().map(EventData::of).collect();
    let stream = (tenant, stream_type, stream_id, expected_version);
    append_one(conn, stream, events, metadata).await
}

/// Appends `events` to one stream (tenant, type, id, expected version)
/// alone; the last position.
#[cfg(feature = "testing")]
async fn append_one(
    conn: &mut PgConnection,
    (tenant, stream_type, stream_id, expected_version): (&TenantId, &'static str, Uuid, i64),
    events: Vec<EventData>,
    metadata: &EventMetadata,
) -> Result<i64, AppendError> {
    let append = StreamAppend {
        tenant: tenant.clone(),
        stream_type,
        stream_id,
        expected_version,
        events,
        metadata: metadata.clone(),
        current_key: None,
        new_key: None,
    };
    let positions = append_to_streams(conn, std::slice::from_ref(&append)).await?;
    Ok(positions[0])
}

/// Appends one event to a fresh or existing stream exactly as given (type,
/// schema version, payload): how an earlier version of muster stored it.
/// For tests of upcasting only.
#[cfg(feature = "testing")]
#[expect(
    clippy::too_many_arguments,
    reason = "one stored row, column by column"
)]
pub async fn append_as_stored(
    conn: &mut PgConnection,
    tenant: &TenantId,
    stream_type: &'static str,
    stream_id: Uuid,
    expected_version: i64,
    event_type: &'static str,
    schema_version: i32,
    payload: serde_json::Value,
    metadata: &EventMetadata,
) -> Result<i64, AppendError> {
    let events = vec![EventData {
        event_type,
        schema_version,
        payload,
    }];
    let stream = (tenant, stream_type, stream_id, expected_version);
    append_one(conn, stream, events, metadata).await
}

/// Appends to several streams in one statement, all or nothing, and returns
/// the last position of each, in the order given. Private to the store:
/// the one commit path calls it.
pub(crate) async fn append_to_streams(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
) -> Result<Vec<i64>, AppendError> {
    let rows: usize = appends.iter().map(|a| a.events.len()).sum();
    let mut tenants = Vec::with_capacity(rows);
    let mut stream_types = Vec::with_capacity(rows);
    let mut stream_ids = Vec::with_capacity(rows);
    let mut versions = Vec::with_capacity(rows);
    let mut types = Vec::with_capacity(rows);
    let mut schema_versions = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut metadata = Vec::with_capacity(rows);
    let mut key_ids = Vec::new();
    let mut key_tenants = Vec::new();
    let mut key_streams = Vec::new();
    let mut key_subjects = Vec::new();
    let mut key_sealed = Vec::new();
    for append in appends {
        if let Some(key) = &append.new_key {
            key_ids.push(key.key_id);
            key_tenants.push(append.tenant.as_str());
            key_streams.push(append.stream_id);
            key_subjects.push(key.subject.as_deref());
            key_sealed.push(key.sealed.as_slice());
        }
        let first =
            i32::try_from(append.expected_version + 1).map_err(|_| AppendError::VersionConflict)?;
        let meta = serde_json::to_value(&append.metadata).expect("metadata is plain data");
        for (version, event) in (first..).zip(&append.events) {
            tenants.push(append.tenant.as_str());
            stream_types.push(append.stream_type);
            stream_ids.push(append.stream_id);
            versions.push(version);
            types.push(event.event_type);
            schema_versions.push(event.schema_version);
            payloads.push(event.payload.clone());
            metadata.push(meta.clone());
        }
    }

    // The epoch lock must be held before the first nextval(): the
    // materialised CTE is evaluated before any row is produced, so before
    // the column default draws a position (see muster_safe_position).
    // The data keys the events' personal fields were sealed with go in
    // with them, in the same statement (no round trip of their own).
    let result = sqlx::query!(
        r#"with keys as (
               insert into personal_keys (key_id, tenant_id, stream_id, subject, sealed)
               select * from unnest($9::uuid[], $10::text[], $11::uuid[], $12::text[],
                                    $13::bytea[])
           ),
           epoch as materialized (
               select pg_advisory_xact_lock_shared(muster_position_lock_key(last_value))
                 from events_position_seq
           )
           insert into events (tenant_id, stream_type, stream_id, stream_version,
                               event_type, schema_version, payload, metadata)
           select e.tenant_id, e.stream_type, e.stream_id, e.version, e.event_type,
                  e.schema_version, e.payload, e.metadata
             from epoch, unnest($1::text[], $2::text[], $3::uuid[], $4::int4[], $5::text[],
                                $6::int4[], $7::jsonb[], $8::jsonb[])
                      as e(tenant_id, stream_type, stream_id, version, event_type,
                           schema_version, payload, metadata)
           returning stream_id, position"#,
        &tenants as &[&str],
        &stream_types as &[&str],
        &stream_ids,
        &versions,
        &types as &[&str],
        &schema_versions,
        &payloads,
        &metadata,
        &key_ids,
        &key_tenants as &[&str],
        &key_streams,
        &key_subjects as &[Option<&str>],
        &key_sealed as &[&[u8]],
    )
    .fetch_all(conn)
    .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(e) if crate::db::violates(&e, "events_pkey") => {
            return Err(AppendError::VersionConflict);
        }
        Err(e) => return Err(AppendError::Database(e)),
    };
    let mut last: std::collections::HashMap<Uuid, i64> =
        std::collections::HashMap::with_capacity(appends.len());
    for row in rows {
        let entry = last.entry(row.stream_id).or_insert(row.position);
        *entry = (*entry).max(row.position);
    }
    Ok(appends
        .iter()
        .map(|a| last.get(&a.stream_id).copied().unwrap_or(0))
        .collect())
}

impl Store {
    /// The highest position up to which every event is committed or will
    /// never exist: reads up to it can never skip an event.
    pub async fn safe_position(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar!(r#"select muster_safe_position() as "position!""#)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The highest position ever handed out (committed or not): a client
    /// cannot have seen a position above it.
    pub async fn last_allocated_position(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"select case when is_called then last_value else 0 end as "allocated!"
                 from events_position_seq"#
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every tenant's events after `after`, in position order, at most
    /// `limit`, never past the safe position: a reader that resumes from the
    /// last position it saw misses nothing and sees nothing twice.
    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.read_page(after, limit).await?.events)
    }

    /// Like [`Store::read_all`], with the safe position the read stopped at:
    /// a reader that got fewer than `limit` events has seen everything up
    /// to `horizon`.
    pub async fn read_page(&self, after: i64, limit: i64) -> Result<EventPage, StoreError> {
        // Two statements on purpose: the read's snapshot must be taken
        // after the safe position was computed.
        let horizon = self.safe_position().await?;
        let rows = events_between(&self.pool, after, horizon, limit).await?;
        EventPage::of(rows, horizon, self.secret_key())
    }

    /// Like [`Store::read_page`], with the events read on the hot standby
    /// set with [`Store::with_replica`] (on the primary without one). The
    /// safe position can only be known on the primary, which sees the
    /// appends in flight; so it is taken there, then the primary's WAL
    /// insert position, and the standby is read once it has replayed that
    /// far: every commit below the horizon is in the WAL before that
    /// position (even one made with `synchronous_commit = off`), so the
    /// standby then holds every event up to the horizon. The check and the
    /// read run on one connection, so that a load balancer in front of
    /// several standbys cannot answer them from two. A standby that has
    /// not got there within [`REPLAY_WAIT`] (replay paused or far behind)
    /// is passed over: the page is read on the primary, so the live
    /// stream never stalls.
    pub async fn read_page_from_replica(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<EventPage, StoreError> {
        let Some(replica) = &self.replica else {
            return self.read_page(after, limit).await;
        };
        // Two statements on purpose: the WAL position must be taken after
        // the safe position was computed.
        let horizon = self.safe_position().await?;
        let lsn = sqlx::query_scalar!(r#"select pg_current_wal_insert_lsn()::text as "lsn!""#)
            .fetch_one(&self.pool)
            .await?;
        let mut conn = replica.acquire().await?;
        let deadline = std::time::Instant::now() + REPLAY_WAIT;
        loop {
            // NULL on a server that is not a standby: it has everything.
            let replayed = sqlx::query_scalar!(
                r#"select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, true) as "replayed!""#,
                lsn,
            )
            .fetch_one(&mut *conn)
            .await?;
            if replayed {
                let rows = events_between(&mut *conn, after, horizon, limit).await?;
                return EventPage::of(rows, horizon, self.secret_key());
            }
            if std::time::Instant::now() >= deadline {
                metrics::counter!("muster_replica_read_fallbacks_total").increment(1);
                let rows = events_between(&self.pool, after, horizon, limit).await?;
                return EventPage::of(rows, horizon, self.secret_key());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// One tenant's events after `after`, like [`Store::read_all`].
    pub async fn read_tenant(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .read_tenant_page(tenant, &EventFilter::default(), after, limit)
            .await?
            .events)
    }

    /// One tenant's events after `after` that pass `filter`, with the safe
    /// position the read stopped at (see [`Store::read_page`]).
    pub async fn read_tenant_page(
        &self,
        tenant: &TenantId,
        filter: &EventFilter,
        after: i64,
        limit: i64,
    ) -> Result<EventPage, StoreError> {
        let horizon = self.safe_position().await?;
        let rows = match filter.stream_id {
            // One entity's history: its primary key's range, however many
            // events the tenant has.
            Some(stream_id) => {
                sqlx::query_as!(
                    EventRow,
                    r#"select tenant_id, position, stream_type, stream_id, stream_version,
                              event_type, schema_version, payload, metadata, recorded_at,
                              (select k.sealed from personal_keys k
                                where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid)
                                  as "data_key?"
                         from events
                        where tenant_id = $1 and stream_id = $2
                          and position > $3 and position <= $4
                          and (cardinality($6::text[]) = 0 or stream_type = any($6))
                          and (cardinality($7::text[]) = 0 or event_type = any($7))
                          and ($8::text is null or metadata->>'actor' = $8)
                          and ($9::timestamptz is null or recorded_at >= $9)
                          and ($10::timestamptz is null or recorded_at < $10)
                        order by stream_version
                        limit $5"#,
                    tenant.as_str(),
                    stream_id,
                    after,
                    horizon,
                    limit,
                    &filter.stream_types,
                    &filter.event_types,
                    filter.actor,
                    filter.from,
                    filter.to,
                )
                .fetch_all(&self.pool)
                .await?
            }
            // An empty list means "any"; Postgres skips the array test then.
            None => {
                sqlx::query_as!(
                    EventRow,
                    r#"select tenant_id, position, stream_type, stream_id, stream_version,
                              event_type, schema_version, payload, metadata, recorded_at,
                              (select k.sealed from personal_keys k
                                where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid)
                                  as "data_key?"
                         from events
                        where tenant_id = $1 and position > $2 and position <= $3
                          and (cardinality($5::text[]) = 0 or stream_type = any($5))
                          and (cardinality($6::text[]) = 0 or event_type = any($6))
                          and ($7::text is null or metadata->>'actor' = $7)
                          and ($8::timestamptz is null or recorded_at >= $8)
                          and ($9::timestamptz is null or recorded_at < $9)
                        order by position
                        limit $4"#,
                    tenant.as_str(),
                    after,
                    horizon,
                    limit,
                    &filter.stream_types,
                    &filter.event_types,
                    filter.actor,
                    filter.from,
                    filter.to,
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        EventPage::of(rows, horizon, self.secret_key())
    }
}

impl Store {
    /// The events of streams `stream_ids` of type `stream_type` recorded
    /// at or before `until`, in (stream, version) order: each stream's
    /// history as muster knew it at that instant (time travel). Read on
    /// the primary, by the event store's primary key.
    pub async fn streams_until(
        &self,
        tenant: &TenantId,
        stream_type: &str,
        stream_ids: &[Uuid],
        until: DateTime<Utc>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"select tenant_id, position, stream_type, stream_id, stream_version,
                      event_type, schema_version, payload, metadata, recorded_at,
                      (select k.sealed from personal_keys k
                        where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid) as "data_key?"
                 from events
                where tenant_id = $1 and stream_id = any($2) and stream_type = $3
                  and recorded_at <= $4
                order by stream_id, stream_version"#,
            tenant.as_str(),
            stream_ids,
            stream_type,
            until,
        )
        .fetch_all(&self.pool)
        .await?;
        let secret = self.secret_key();
        rows.into_iter().map(|r| r.into_recorded(secret)).collect()
    }
}

/// Which events a tenant reader wants; empty lists and `None` mean any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    /// Stream types (`booking`, `resource`).
    pub stream_types: Vec<String>,
    /// Event types (`booking.confirmed`).
    pub event_types: Vec<String>,
    /// One stream (an entity's history).
    pub stream_id: Option<Uuid>,
    /// Who caused them (the `actor` of their metadata: an API key id,
    /// `worker`, `system:…`).
    pub actor: Option<String>,
    /// Recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// Whether `event` passes (the same test the store's reads apply).
    pub fn passes(&self, event: &RecordedEvent) -> bool {
        self.passes_fields(
            &event.stream_type,
            &event.event_type,
            event.stream_id,
            event.metadata["actor"].as_str(),
            event.recorded_at,
        )
    }

    /// Whether an event with `head` passes: the same test, on what is
    /// kept of an event without its payload.
    pub fn passes_head(&self, head: &EventHead) -> bool {
        self.passes_fields(
            &head.stream_type,
            &head.event_type,
            head.stream_id,
            head.actor.as_deref(),
            head.recorded_at,
        )
    }

    fn passes_fields(
        &self,
        stream_type: &str,
        event_type: &str,
        stream_id: Uuid,
        actor: Option<&str>,
        recorded_at: DateTime<Utc>,
    ) -> bool {
        (self.stream_types.is_empty() || self.stream_types.iter().any(|t| t == stream_type))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && self.stream_id.is_none_or(|id| id == stream_id)
            && self
                .actor
                .as_deref()
                .is_none_or(|wanted| actor == Some(wanted))
            && self.from.is_none_or(|from| recorded_at >= from)
            && self.to.is_none_or(|to| recorded_at < to)
    }
}

/// What filters test of an event: all of it but its payload, for those
/// who keep many events and test them often (the live tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// Global position.
    pub position: i64,
    /// The stream's kind.
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// Dotted type name.
    pub event_type: String,
    /// Who caused it (the metadata's `actor`).
    pub actor: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl EventHead {
    /// The head of `event`.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            tenant: event.tenant.clone(),
            position: event.position,
            stream_type: event.stream_type.clone(),
            stream_id: event.stream_id,
            event_type: event.event_type.clone(),
            actor: event.metadata["actor"].as_str().map(str::to_owned),
            recorded_at: event.recorded_at,
        }
    }

    /// Roughly the bytes it takes, with what it points to.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.tenant.as_str().len()
            + self.stream_type.len()
            + self.event_type.len()
            + self.actor.as_ref().map_or(0, String::len)
    }
}

/// Events read in position order, and how far the read looked.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events.
    pub events: Vec<RecordedEvent>,
    /// The safe position the read stopped at: no event at or below it that
    /// matches the read is missing from `events` unless `events` is full.
    pub horizon: i64,
}

impl EventPage {
    fn of(
        rows: Vec<EventRow>,
        horizon: i64,
        secret: Option<&SecretKey>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            events: rows
                .into_iter()
                .map(|r| r.into_recorded(secret))
                .collect::<Result<_, _>>()?,
            horizon,
        })
    }
}

/// How long a read on the standby waits for it to replay what the primary
/// has committed before it reads the primary instead.
pub const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every tenant's events in `(after, horizon]`, in position order, at most
/// `limit`.
async fn events_between(
    db: impl sqlx::PgExecutor<'_>,
    after: i64,
    horizon: i64,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as!(
        EventRow,
        r#"select tenant_id, position, stream_type, stream_id, stream_version, event_type,
                  schema_version, payload, metadata, recorded_at,
                  (select k.sealed from personal_keys k
                    where k.tenant_id = events.tenant_id
                      and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid) as "data_key?"
             from events
            where position > $1 and position <= $2
            order by position
            limit $3"#,
        after,
        horizon,
        limit,
    )
    .fetch_all(db)
    .await
}

/// One row of `events` as stored, before upcasting. Other crates read it
/// only inside a query of their own that needs the event with something
/// else in one round trip; [`EventRow::into_recorded`] makes it what every
/// reader gets.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Column `tenant_id`.
    pub tenant_id: String,
    /// Column `position`.
    pub position: i64,
    /// Column `stream_type`.
    pub stream_type: String,
    /// Column `stream_id`.
    pub stream_id: Uuid,
    /// Column `stream_version`.
    pub stream_version: i32,
    /// Column `event_type`.
    pub event_type: String,
    /// Column `schema_version`: the payload's schema as stored.
    pub schema_version: i32,
    /// Column `payload`, as stored.
    pub payload: serde_json::Value,
    /// Column `metadata`.
    pub metadata: serde_json::Value,
    /// Column `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// The sealed data key of its personal fields, read with it (`None`:
    /// it has none, or they were erased).
    pub data_key: Option<Vec<u8>>,
}

impl EventRow {
    /// The event as readers see it: its personal fields opened (or read
    /// as erased) with `secret`, and its payload upcast to the current
    /// schema of its type: the one way every stored event is decoded.
    pub fn into_recorded(self, secret: Option<&SecretKey>) -> Result<RecordedEvent, StoreError> {
        let position = self.position;
        let mut payload = self.payload;
        personal::open(position, &mut payload, self.data_key.as_deref(), secret)?;
        let payload = upcast(&self.event_type, self.schema_version, payload)
            .map_err(|source| StoreError::CorruptEvent { position, source })?;
        Ok(RecordedEvent {
            tenant: TenantId::try_from(self.tenant_id).map_err(|_| {
                StoreError::CorruptRow(format!("event {position} names an invalid tenant"))
            })?,
            position,
            stream_type: self.stream_type,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            schema_version: muster_domain::upcast::current_version(&self.event_type),
            event_type: self.event_type,
            payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        })
    }
}
