//! Idempotency records: what the first request with each `Idempotency-Key`
//! did. Every statement on `idempotency_keys` is here.
//!
//! A command claims its key in its own transaction (a placeholder row, so
//! that a concurrent request with the same key waits for it), and the
//! commit replaces the claim with the command's outcome; a refused command
//! gives its claim up, and the caller may record the refusal afterwards.
//! Records are kept in the store's terms (an outcome, or the caller's
//! document of a refusal); rendering them is the caller's business.

use std::collections::HashSet;

use muster_domain::TenantId;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::outcome::CommandOutcome;
use crate::{Store, StoreError};

/// A command's claim on an idempotency key: the key and a fingerprint of
/// the request it was first used with.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the request (method, route, canonical body).
    pub fingerprint: [u8; 32],
}

/// What the first request with a key did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The command committed.
    Committed(CommandOutcome),
    /// The command was refused for good; the caller's document of why.
    Refused(serde_json::Value),
    /// An answer rendered by a version of muster before outcomes were
    /// recorded (status and body); such rows expire within the TTL.
    Rendered {
        /// Its status code.
        status: u16,
        /// Its body.
        body: serde_json::Value,
    },
}

/// A record stored under a key.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Fingerprint of the request that produced it.
    pub fingerprint: Vec<u8>,
    /// What that request did.
    pub recorded: Recorded,
}

impl StoredRecord {
    /// Whether `claim` is the same request that produced this record.
    pub fn answers(&self, claim: &IdempotencyClaim) -> bool {
        self.fingerprint == claim.fingerprint
    }
}

/// The stored form of an outcome.
#[derive(Serialize, Deserialize)]
struct OutcomeRow {
    stream_id: uuid::Uuid,
    version: i64,
    position: i64,
    appended: usize,
}

impl From<&CommandOutcome> for OutcomeRow {
    fn from(o: &CommandOutcome) -> Self {
        Self {
            stream_id: o.stream_id,
            version: o.version,
            position: o.position,
            appended: o.appended,
        }
    }
}

impl From<OutcomeRow> for CommandOutcome {
    fn from(o: OutcomeRow) -> Self {
        Self {
            stream_id: o.stream_id,
            version: o.version,
            position: o.position,
            appended: o.appended,
        }
    }
}

/// A claim of a tenant's key, as the commit takes it.
#[derive(Clone, Copy)]
pub(crate) struct TenantClaim<'a> {
    pub tenant: &'a str,
    pub claim: &'a IdempotencyClaim,
}

/// Claims `claims` in the caller's transaction; `claimed[i]` is false when
/// another request holds claim i's key (or an earlier claim of the same
/// list does). A key claimed by a transaction still in flight makes this
/// wait for it, so that the record then found is final.
pub(crate) async fn claim(
    conn: &mut PgConnection,
    claims: &[TenantClaim<'_>],
) -> Result<Vec<bool>, StoreError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant).collect();
    let keys: Vec<&str> = claims.iter().map(|c| c.claim.key.as_str()).collect();
    let fingerprints: Vec<Vec<u8>> = claims
        .iter()
        .map(|c| c.claim.fingerprint.to_vec())
        .collect();
    // The placeholder never outlives this transaction: the commit replaces
    // it with an outcome or deletes it.
    let won: HashSet<(String, String)> = sqlx::query!(
        r#"insert into idempotency_keys (tenant_id, idempotency_key, request_fingerprint)
           select t, k, f from unnest($1::text[], $2::text[], $3::bytea[]) as c(t, k, f)
           on conflict (tenant_id, idempotency_key) do nothing
           returning tenant_id, idempotency_key"#,
        &tenants as &[&str],
        &keys as &[&str],
        &fingerprints,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.tenant_id, r.idempotency_key))
    .collect();
    let mut seen = HashSet::new();
    Ok(claims
        .iter()
        .map(|c| {
            let key = (c.tenant.to_owned(), c.claim.key.clone());
            // Two commands of one batch with one key: the first one has it.
            won.contains(&key) && seen.insert(key)
        })
        .collect())
}

/// Gives up the claims of refused commands (their callers may record the
/// refusal afterwards).
pub(crate) async fn release(
    conn: &mut PgConnection,
    claims: &[TenantClaim<'_>],
) -> Result<(), StoreError> {
    if claims.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant).collect();
    let keys: Vec<&str> = claims.iter().map(|c| c.claim.key.as_str()).collect();
    sqlx::query!(
        r#"delete from idempotency_keys k
            using unnest($1::text[], $2::text[]) as c(t, key)
            where k.tenant_id = c.t and k.idempotency_key = c.key
              and k.outcome is null and k.refusal is null and k.status_code is null"#,
        &tenants as &[&str],
        &keys as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the claims of committed commands with their outcomes.
pub(crate) async fn record_outcomes(
    conn: &mut PgConnection,
    committed: &[(TenantClaim<'_>, &CommandOutcome)],
) -> Result<(), StoreError> {
    if committed.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = committed.iter().map(|(c, _)| c.tenant).collect();
    let keys: Vec<&str> = committed
        .iter()
        .map(|(c, _)| c.claim.key.as_str())
        .collect();
    let outcomes: Vec<serde_json::Value> = committed
        .iter()
        .map(|(_, o)| serde_json::to_value(OutcomeRow::from(*o)).expect("plain data"))
        .collect();
    sqlx::query!(
        r#"update idempotency_keys k
              set outcome = a.outcome
             from unnest($1::text[], $2::text[], $3::jsonb[]) as a(t, key, outcome)
            where k.tenant_id = a.t and k.idempotency_key = a.key"#,
        &tenants as &[&str],
        &keys as &[&str],
        &outcomes,
    )
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Forgets records older than `ttl`; a key reused after that runs as a
    /// new command. Returns how many were forgotten.
    pub async fn purge_idempotency_records(
        &self,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let done = sqlx::query!("delete from idempotency_keys where created_at < $1", cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The record stored under `key`, if any.
    pub async fn find_record(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let row = sqlx::query!(
            r#"select request_fingerprint, outcome, refusal, status_code, response
                 from idempotency_keys
                where tenant_id = $1 and idempotency_key = $2"#,
            tenant.as_str(),
            key,
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let recorded = match (row.outcome, row.refusal, row.status_code, row.response) {
            (Some(outcome), _, _, _) => Recorded::Committed(
                serde_json::from_value::<OutcomeRow>(outcome)
                    .map_err(|e| StoreError::CorruptRow(e.to_string()))?
                    .into(),
            ),
            (None, Some(refusal), _, _) => Recorded::Refused(refusal),
            (None, None, Some(status), Some(body)) => Recorded::Rendered {
                status: u16::try_from(status).unwrap_or(500),
                body,
            },
            // A claim is only visible to the transaction holding it.
            _ => {
                return Err(StoreError::CorruptRow(format!("key {key} has no record")));
            }
        };
        Ok(Some(StoredRecord {
            fingerprint: row.request_fingerprint,
            recorded,
        }))
    }

    /// Records a final refusal as the key's record, outside any command
    /// transaction. Returns false when another request recorded first; the
    /// caller then replays that one.
    pub async fn record_refusal(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        refusal: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query_scalar!(
            r#"insert into idempotency_keys
                   (tenant_id, idempotency_key, request_fingerprint, refusal)
               values ($1, $2, $3, $4)
               on conflict (tenant_id, idempotency_key) do nothing
               returning true as "inserted!""#,
            tenant.as_str(),
            claim.key,
            &claim.fingerprint[..],
            refusal,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }
}

/// Forgets expired records once a minute, for as long as the store's pool
/// is open. Several processes may do this at once; it is harmless.
pub async fn purge_expired(store: Store, ttl: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    while !store.pool().is_closed() {
        tick.tick().await;
        match store.purge_idempotency_records(ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "expired idempotency records purged"),
            Err(e) => tracing::warn!(error = %e, "could not purge idempotency records"),
        }
    }
}
