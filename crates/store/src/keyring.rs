//! Which server key this database's secrets are sealed with, and its
//! rotation. A check value sealed with the key (`secret_key_check`) is
//! opened at boot, so that a wrong or missing `MUSTER_SECRET_KEY` stops
//! the process with one line before it reads or writes anything. The value
//! is itself a random key, for the erasure records' digests: it outlives a
//! rotation, which re-seals it like everything else.

use muster_domain::TenantId;
use uuid::Uuid;

use crate::secret::{KEY_BYTES, SecretKey};
use crate::{Store, StoreError};

/// What the check value is sealed for.
const CHECK: &[u8] = b"muster secret key check";

/// Rows re-sealed per transaction by a rotation.
const ROTATION_BATCH: i64 = 1_000;

/// Why the server's key cannot serve this database.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// The key opens nothing this database holds.
    #[error(
        "MUSTER_SECRET_KEY is not the key this database's personal data and secrets were sealed with"
    )]
    WrongKey,
    /// The database holds sealed data and the process has no key.
    #[error(
        "this database holds data sealed with MUSTER_SECRET_KEY, which is not set (the embedded default keeps it in .muster/secret.key)"
    )]
    MissingKey,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotated {
    /// Clients' data keys.
    pub data_keys: u64,
    /// Calendar links' URLs and credentials.
    pub calendar_links: u64,
}

impl Store {
    /// Checks the process's key against the database: it must open the
    /// check value (written with the key on the first start that has
    /// one), and a database with sealed data needs a key.
    pub async fn verify_secret_key(&self) -> Result<(), KeyCheckError> {
        match self.secret_key() {
            Some(key) => {
                let sealed = self.check_value(key).await?;
                key.open_for(&sealed, CHECK)
                    .map_err(|_| KeyCheckError::WrongKey)?;
                Ok(())
            }
            None => {
                let sealed = sqlx::query_scalar!(
                    r#"select exists (select 1 from secret_key_check)
                           or exists (select 1 from personal_keys)
                           or exists (select 1 from calendar_links) as "sealed!""#
                )
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::from)?;
                if sealed {
                    Err(KeyCheckError::MissingKey)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The key of the erasure records' digests.
    pub(crate) async fn digest_key(&self) -> Result<SecretKey, StoreError> {
        let key = self.secret_key().ok_or(StoreError::NoSecretKey)?;
        let sealed = self.check_value(key).await?;
        let bytes = key.open_for(&sealed, CHECK).map_err(|_| {
            StoreError::CorruptRow("secret_key_check does not open with MUSTER_SECRET_KEY".into())
        })?;
        SecretKey::from_bytes(&bytes)
            .map_err(|_| StoreError::CorruptRow("secret_key_check is malformed".into()))
    }

    /// The sealed check value, written with `key` if there is none yet.
    async fn check_value(&self, key: &SecretKey) -> Result<Vec<u8>, StoreError> {
        let (_, fresh) = SecretKey::generate_raw();
        debug_assert_eq!(fresh.len(), KEY_BYTES);
        sqlx::query!(
            "insert into secret_key_check (sealed) values ($1) on conflict do nothing",
            key.seal_for(&fresh, CHECK),
        )
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar!("select sealed from secret_key_check")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Re-seals everything sealed with the server's key with the process's
    /// own (`MUSTER_SECRET_KEY`), opening it with that key or the extra
    /// one (`MUSTER_EXTRA_SECRET_KEY`, the key being replaced): clients'
    /// data keys, calendar links, and the check value. In batches, each
    /// its own transaction, while the servers run with both keys; run it
    /// again and it re-seals everything again, harmlessly.
    pub async fn rotate_secret(&self) -> Result<Rotated, StoreError> {
        let key = self.secret_key().ok_or(StoreError::NoSecretKey)?;
        let unreadable =
            |what: &str| StoreError::CorruptRow(format!("{what} opens with neither key"));
        let mut rotated = Rotated::default();
        let mut after = (String::new(), Uuid::nil());
        loop {
            let rows = sqlx::query!(
                r#"select tenant_id, key_id, sealed from personal_keys
                    where (tenant_id, key_id) > ($1, $2)
                    order by tenant_id, key_id
                    limit $3"#,
                after.0,
                after.1,
                ROTATION_BATCH,
            )
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = (last.tenant_id.clone(), last.key_id);
            let mut tenants = Vec::with_capacity(rows.len());
            let mut ids = Vec::with_capacity(rows.len());
            let mut sealed = Vec::with_capacity(rows.len());
            for row in rows {
                let context = row.key_id.as_bytes();
                let plain = key
                    .open_for(&row.sealed, context)
                    .map_err(|_| unreadable("a data key"))?;
                sealed.push(key.seal_for(&plain, context));
                tenants.push(row.tenant_id);
                ids.push(row.key_id);
            }
            // A key erased meanwhile stays erased: only rows still there
            // are written.
            let done = sqlx::query!(
                r#"update personal_keys k set sealed = r.sealed
                     from unnest($1::text[], $2::uuid[], $3::bytea[]) as r(tenant_id, key_id, sealed)
                    where k.tenant_id = r.tenant_id and k.key_id = r.key_id"#,
                &tenants,
                &ids,
                &sealed,
            )
            .execute(&self.pool)
            .await?;
            rotated.data_keys += done.rows_affected();
        }
        let links = sqlx::query!("select tenant_id, calendar_id, sealed from calendar_links")
            .fetch_all(&self.pool)
            .await?;
        for link in links {
            let plain = key
                .open(&link.sealed)
                .map_err(|_| unreadable("a calendar link"))?;
            let done = sqlx::query!(
                "update calendar_links set sealed = $3 where tenant_id = $1 and calendar_id = $2",
                link.tenant_id,
                link.calendar_id,
                key.seal(&plain),
            )
            .execute(&self.pool)
            .await?;
            rotated.calendar_links += done.rows_affected();
        }
        let check = self.check_value(key).await?;
        let plain = key
            .open_for(&check, CHECK)
            .map_err(|_| unreadable("secret_key_check"))?;
        sqlx::query!(
            "update secret_key_check set sealed = $1",
            key.seal_for(&plain, CHECK)
        )
        .execute(&self.pool)
        .await?;
        Ok(rotated)
    }
}

/// The keyed digest an erasure keeps of whom it erased.
pub(crate) fn erasure_digest(digest_key: &SecretKey, tenant: &TenantId, email: &str) -> Vec<u8> {
    digest_key.digest(format!("client-erasure\0{}\0{email}", tenant.as_str()).as_bytes())
}
