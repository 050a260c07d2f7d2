//! Idempotency records: the first answer given to each `Idempotency-Key`.

use sqlx::PgConnection;

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

/// An answer stored under a key.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// Fingerprint of the request that produced it.
    pub fingerprint: Vec<u8>,
    /// HTTP status code of the first answer.
    pub status: u16,
    /// Its JSON body.
    pub body: serde_json::Value,
}

impl StoredAnswer {
    /// Whether `claim` is the same request that produced this answer.
    pub fn answers(&self, claim: &IdempotencyClaim) -> bool {
        self.fingerprint == claim.fingerprint
    }
}

impl Store {
    /// Forgets answers older than `ttl`; a key reused after that runs as a
    /// new command. Returns how many were forgotten.
    pub async fn purge_answers(&self, ttl: std::time::Duration) -> Result<u64, StoreError> {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let done = sqlx::query!("delete from idempotency_keys where created_at < $1", cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The answer stored under `key`, if any.
    pub async fn find_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let row = sqlx::query!(
            r#"select request_fingerprint, status_code, response
                 from idempotency_keys
                where tenant_id = $1 and idempotency_key = $2"#,
            tenant,
            key,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredAnswer {
            fingerprint: r.request_fingerprint,
            status: u16::try_from(r.status_code).unwrap_or(500),
            body: r.response,
        }))
    }

    /// Stores a refusal (a 4xx) as the key's answer, outside any command
    /// transaction. Returns false when another request stored its answer
    /// first; the caller then replays that one.
    pub async fn remember_answer(
        &self,
        tenant: &str,
        claim: &IdempotencyClaim,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(insert_answer(&mut conn, tenant, claim, status, body).await?)
    }
}

/// Inserts the answer for `claim`; false when the key already has one.
pub(crate) async fn insert_answer(
    conn: &mut PgConnection,
    tenant: &str,
    claim: &IdempotencyClaim,
    status: u16,
    body: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query_scalar!(
        r#"insert into idempotency_keys
               (tenant_id, idempotency_key, request_fingerprint, status_code, response)
           values ($1, $2, $3, $4, $5)
           on conflict (tenant_id, idempotency_key) do nothing
           returning true as "inserted!""#,
        tenant,
        claim.key,
        &claim.fingerprint[..],
        i16::try_from(status).unwrap_or(500),
        body,
    )
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}
