//! Erasing a client (SPEC §12). What to erase is planned from the client's
//! data keys, the bookings read model and the waitlist, and decided from
//! their events; then it is all erased in the transaction that records
//! `client.erased`, through the one commit path ([`WriteEffect::Erase`]):
//! the keys are deleted (every sealed field they sealed now reads as
//! erased), events written before sealing existed are redacted in place
//! (the one exception to append-only), and the copies the write side keeps
//! are scrubbed. The read models scrub their own copies when they reach
//! the event. A crash before the commit leaves nothing done (the erasure
//! can be asked again); after it, everything is.
//!
//! [`WriteEffect::Erase`]: crate::effects::WriteEffect::Erase

use std::collections::HashMap;

use muster_domain::personal::redact;
use muster_domain::upcast::{current_version, upcast};
use muster_domain::{Aggregate, TenantId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::keyring::erasure_digest;
use crate::personal::{self, Opened};
use crate::{Store, StoreError};

/// The event types whose payloads may hold personal data, as stored.
const PERSONAL_EVENTS: [&str; 3] = ["booking.requested", "booking.updated", "waitlist.joined"];

/// What erasing one client will do, planned before its commit.
#[derive(Debug, Clone)]
pub struct ErasurePlan {
    /// The client: a lower-case email.
    pub subject: String,
    /// A keyed digest of the tenant and the email, kept to tell later
    /// that this client was erased.
    pub digest: Vec<u8>,
    /// The bookings whose client it is now.
    pub bookings: Vec<Uuid>,
    /// The waitlist entries whose client it is.
    pub waitlist_entries: Vec<Uuid>,
    /// How many data keys of the client there are.
    pub keys: u32,
    /// Events written in the clear that name the client, redacted.
    pub redactions: Vec<Redaction>,
}

/// One event redacted in place.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Its position.
    pub position: i64,
    /// Its payload, upcast to the current schema and redacted.
    pub payload: serde_json::Value,
    /// That schema's version.
    pub schema_version: i32,
}

/// A candidate stream's personal events, in order.
struct PersonalEvent {
    stream_type: String,
    stream_id: Uuid,
    position: i64,
    event_type: String,
    schema_version: i32,
    payload: serde_json::Value,
    data_key: Option<Vec<u8>>,
}

impl Store {
    /// Plans the erasure of the client with `email` (lower case) in
    /// `tenant`. Needs the secret key (the digest is keyed with it).
    pub async fn plan_erasure(
        &self,
        tenant: &TenantId,
        email: &str,
    ) -> Result<ErasurePlan, StoreError> {
        let secret = self.secret_key().ok_or(StoreError::NoSecretKey)?;
        let digest = erasure_digest(&self.digest_key().await?, tenant, email);
        // Every stream that may hold the client's data: those with a key
        // of theirs, their bookings as the read model knows them (events
        // written in the clear have no key), and their waitlist entries.
        let streams: Vec<Uuid> = sqlx::query_scalar!(
            r#"select stream_id as "id!" from personal_keys where tenant_id = $1 and subject = $2
               union
               select booking_id from read.bookings
                where tenant_id = $1 and lower(client_email) = $2
               union
               select entry_id from waitlist_entries
                where tenant_id = $1 and lower(client->>'email') = $2"#,
            tenant.as_str(),
            email,
        )
        .fetch_all(&self.pool)
        .await?;
        let keys = sqlx::query_scalar!(
            r#"select count(*) as "count!" from personal_keys
                where tenant_id = $1 and subject = $2"#,
            tenant.as_str(),
            email,
        )
        .fetch_one(&self.pool)
        .await?;
        let events = sqlx::query_as!(
            PersonalEvent,
            r#"select stream_type, stream_id, position, event_type, schema_version, payload,
                      (select k.sealed from personal_keys k
                        where k.tenant_id = events.tenant_id
                          and k.key_id = (events.payload->'sealed_personal'->>'key')::uuid)
                          as "data_key?"
                 from events
                where tenant_id = $1 and stream_id = any($2) and event_type = any($3)
                order by stream_id, stream_version"#,
            tenant.as_str(),
            &streams,
            &PERSONAL_EVENTS as &[&str],
        )
        .fetch_all(&self.pool)
        .await?;
        let mut plan = ErasurePlan {
            subject: email.to_owned(),
            digest,
            bookings: Vec::new(),
            waitlist_entries: Vec::new(),
            keys: u32::try_from(keys).unwrap_or(u32::MAX),
            redactions: Vec::new(),
        };
        // Whose each stream is after its last event that names a client.
        let mut clients: HashMap<Uuid, (String, Option<String>)> = HashMap::new();
        for event in events {
            let mut payload = event.payload;
            let sealed = !matches!(
                personal::open(
                    event.position,
                    &mut payload,
                    event.data_key.as_deref(),
                    Some(secret),
                )?,
                Opened::Plain
            );
            let payload =
                upcast(&event.event_type, event.schema_version, payload).map_err(|source| {
                    StoreError::CorruptEvent {
                        position: event.position,
                        source,
                    }
                })?;
            let named = personal::named_client(&event.event_type, &payload);
            let entry = clients
                .entry(event.stream_id)
                .or_insert_with(|| (event.stream_type.clone(), None));
            if let Some(named) = named {
                entry.1 = named;
            }
            // An event in the clear about the client (naming them, or
            // changing notes while the client is theirs) is redacted.
            if !sealed && entry.1.as_deref() == Some(email) {
                let mut redacted = payload;
                if redact(&event.event_type, &mut redacted) {
                    plan.redactions.push(Redaction {
                        position: event.position,
                        payload: redacted,
                        schema_version: current_version(&event.event_type),
                    });
                }
            }
        }
        let mut ids: Vec<(Uuid, (String, Option<String>))> = clients.into_iter().collect();
        ids.sort_unstable_by_key(|(id, _)| *id);
        for (id, (stream_type, client)) in ids {
            if client.as_deref() != Some(email) {
                continue;
            }
            if stream_type == muster_domain::booking::Booking::STREAM_TYPE {
                plan.bookings.push(id);
            } else if stream_type == muster_domain::waitlist::WaitlistEntry::STREAM_TYPE {
                plan.waitlist_entries.push(id);
            }
        }
        Ok(plan)
    }

    /// Clients (tenant and lower-case email) whose last booking ended
    /// before `cutoff` and who still have personal data: those a
    /// retention erases, at most `limit`. A client's bookings are those
    /// with a key of theirs, and those the read model names them on
    /// (written before keys existed); a key of a stream that is no booking
    /// (a waitlist entry) counts from when it was made. It reads every
    /// key and every booking with an email: a sweep, run rarely.
    pub async fn clients_past_retention(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let rows = sqlx::query!(
            r#"select tenant_id as "tenant_id!", subject as "subject!"
                 from (select k.tenant_id, k.subject, coalesce(b.ends_at, k.created_at) as last
                         from personal_keys k
                         left join read.bookings b
                           on b.tenant_id = k.tenant_id and b.booking_id = k.stream_id
                        where k.subject is not null
                       union all
                       select tenant_id, lower(client_email), ends_at
                         from read.bookings
                        where client_email is not null) as c
                group by tenant_id, subject
               having max(last) < $1
                order by tenant_id, subject
                limit $2"#,
            cutoff,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let tenant = TenantId::try_from(r.tenant_id)
                    .map_err(|_| StoreError::CorruptRow("a key names an invalid tenant".into()))?;
                Ok((tenant, r.subject))
            })
            .collect()
    }

    /// Whether the client with `email` (lower case) in `tenant` was
    /// erased, and when last.
    pub async fn erased_at(
        &self,
        tenant: &TenantId,
        email: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        if self.secret_key().is_none() {
            return Ok(None);
        }
        Ok(sqlx::query_scalar!(
            r#"select max(erased_at) from client_erasures
                where tenant_id = $1 and subject_digest = $2"#,
            tenant.as_str(),
            erasure_digest(&self.digest_key().await?, tenant, email),
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Erases as `plan` says, in the transaction of erasure `erasure_id`'s
/// `client.erased`: the client's keys, the redactions, and the write
/// side's copies (waitlist entries, client messages, quota subjects,
/// idempotency answers stored whole, report files).
pub(crate) async fn erase(
    conn: &mut PgConnection,
    tenant: &str,
    erasure_id: Uuid,
    plan: &ErasurePlan,
) -> Result<(), StoreError> {
    // Keys made since the plan (a booking of theirs a moment ago) go too.
    sqlx::query!(
        "delete from personal_keys where tenant_id = $1 and subject = $2",
        tenant,
        plan.subject,
    )
    .execute(&mut *conn)
    .await?;
    if !plan.redactions.is_empty() {
        let positions: Vec<i64> = plan.redactions.iter().map(|r| r.position).collect();
        let versions: Vec<i32> = plan.redactions.iter().map(|r| r.schema_version).collect();
        let payloads: Vec<serde_json::Value> =
            plan.redactions.iter().map(|r| r.payload.clone()).collect();
        // The one exception to append-only (docs/personal-data.md): the
        // event keeps its place, type, stream and time; only the personal
        // fields it held in the clear are replaced.
        sqlx::query!(
            r#"update events e set payload = r.payload, schema_version = r.version
                 from unnest($2::int8[], $3::int4[], $4::jsonb[]) as r(position, version, payload)
                where e.tenant_id = $1 and e.position = r.position"#,
            tenant,
            &positions,
            &versions,
            &payloads,
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query!(
        r#"update waitlist_entries set client = '{"erased": true}'::jsonb, updated_at = now()
            where tenant_id = $1 and (entry_id = any($2) or lower(client->>'email') = $3)"#,
        tenant,
        &plan.waitlist_entries,
        plan.subject,
    )
    .execute(&mut *conn)
    .await?;
    // Messages keep their kind, times and outcome; not whom they were to.
    // One not sent yet never will be.
    sqlx::query!(
        r#"update client_messages
              set recipient = '', last_error = null,
                  status = case when status = 'pending' then 'skipped' else status end
            where tenant_id = $1 and lower(recipient) = $2"#,
        tenant,
        plan.subject,
    )
    .execute(&mut *conn)
    .await?;
    // Quotas keep counting what the client's bookings hold, under a
    // stand-in that names no one.
    let stand_in = format!("erased:{erasure_id}");
    sqlx::query!(
        "update quota_charges set subject = $3 where tenant_id = $1 and subject = $2",
        tenant,
        plan.subject,
        stand_in,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"update quotas set subjects = array_replace(subjects, $2, $3), updated_at = now()
            where tenant_id = $1 and $2 = any(subjects)"#,
        tenant,
        plan.subject,
        stand_in,
    )
    .execute(&mut *conn)
    .await?;
    // Answers stored whole by earlier versions (newer ones store only the
    // outcome, and a replay renders the events, which read as erased).
    sqlx::query!(
        r#"delete from idempotency_keys
            where tenant_id = $1 and response is not null
              and position($2 in lower(response::text)) > 0"#,
        tenant,
        plan.subject,
    )
    .execute(&mut *conn)
    .await?;
    // Report files that list the client: their rows name the email, and
    // chunks end at row boundaries. The report stays, failed, saying why.
    sqlx::query!(
        r#"with named as (
               select distinct report_id from report_chunks
                where tenant_id = $1
                  and position($2 in lower(convert_from(data, 'UTF8'))) > 0
           ),
           gone as (
               delete from report_chunks c using named
                where c.tenant_id = $1 and c.report_id = named.report_id
           )
           update reports r
              set status = 'failed', bytes = 0,
                  error = 'erased: it listed a client whose personal data was erased'
             from named
            where r.tenant_id = $1 and r.report_id = named.report_id"#,
        tenant,
        plan.subject,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"insert into client_erasures
               (tenant_id, erasure_id, subject_digest, keys_deleted, events_redacted, bookings)
           values ($1, $2, $3, $4, $5, $6)"#,
        tenant,
        erasure_id,
        plan.digest,
        i32::try_from(plan.keys).unwrap_or(i32::MAX),
        i32::try_from(plan.redactions.len()).unwrap_or(i32::MAX),
        i32::try_from(plan.bookings.len()).unwrap_or(i32::MAX),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
