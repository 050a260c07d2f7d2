//! Tenants and API keys.
//!
//! A key reads `mk.<tenant>.<64 hex digits>`. Naming the tenant in the key
//! lets lookups stay within one tenant (SPEC §10); only the SHA-256 of the
//! whole key is stored.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use muster_domain::TenantId;

use crate::{Store, StoreError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including keys and webhooks.
    Admin,
    /// Commands and queries.
    Planner,
    /// Queries, reports and the event feed.
    Analyst,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Planner => "planner",
            Role::Analyst => "analyst",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "planner" => Ok(Role::Planner),
            "analyst" => Ok(Role::Analyst),
            other => Err(format!(
                "unknown role {other:?} (admin, planner or analyst)"
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's tenant; everything the caller touches is scoped to it.
    pub tenant: TenantId,
    /// The key's id (the actor in event metadata).
    pub key_id: Uuid,
    /// The key's role.
    pub role: Role,
}

/// A key just created.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// Its id (the actor of what it does).
    pub key_id: Uuid,
    /// The key in clear: shown once, stored only hashed.
    pub key: String,
    /// What it is for, if named.
    pub name: Option<String>,
}

/// A key as it is listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its id.
    pub key_id: Uuid,
    /// What it is for.
    pub name: Option<String>,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The tenant a key names, if it is shaped like a key at all.
fn tenant_of(key: &str) -> Option<TenantId> {
    let rest = key.strip_prefix("mk.")?;
    let (tenant, secret) = rest.rsplit_once('.')?;
    if secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        TenantId::parse(tenant).ok()
    } else {
        None
    }
}

impl Store {
    /// Creates the tenant unless it exists.
    pub async fn ensure_tenant(&self, tenant: &TenantId) -> Result<(), StoreError> {
        sqlx::query!(
            "insert into tenants (tenant_id) values ($1) on conflict do nothing",
            tenant.as_str()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates a key for `tenant` (creating the tenant if needed) and returns
    /// it in clear; this is the only time it is ever seen.
    pub async fn create_key(&self, tenant: &TenantId, role: Role) -> Result<String, StoreError> {
        Ok(self.create_named_key(tenant, role, None).await?.key)
    }

    /// Creates a key named `name` (what it is for) for `tenant`; the key
    /// in clear is in the answer, and nowhere else ever.
    pub async fn create_named_key(
        &self,
        tenant: &TenantId,
        role: Role,
        name: Option<&str>,
    ) -> Result<CreatedKey, StoreError> {
        self.ensure_tenant(tenant).await?;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = format!("mk.{tenant}.{}", hex::encode(secret));
        let key_id = Uuid::now_v7();
        sqlx::query!(
            "insert into api_keys (tenant_id, key_id, key_hash, role, name) values ($1, $2, $3, $4, $5)",
            tenant.as_str(),
            key_id,
            &hash_key(&key)[..],
            role.as_str(),
            name,
        )
        .execute(&self.pool)
        .await?;
        Ok(CreatedKey {
            key_id,
            key,
            name: name.map(str::to_owned),
        })
    }

    /// The tenant's keys (never their secrets), oldest first.
    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query!(
            r#"select key_id, name, role, created_at, last_used_at, revoked_at
                 from api_keys where tenant_id = $1 order by key_id"#,
            tenant.as_str(),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(KeyInfo {
                    key_id: r.key_id,
                    name: r.name,
                    role: r
                        .role
                        .parse()
                        .map_err(|_| StoreError::CorruptRow(format!("key role {:?}", r.role)))?,
                    created_at: r.created_at,
                    last_used_at: r.last_used_at,
                    revoked_at: r.revoked_at,
                })
            })
            .collect()
    }

    /// Revokes the tenant's key `key_id` (again: nothing changes); `None`
    /// when the tenant has no such key. Every process refuses it once its
    /// cache entry expires (a second).
    pub async fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: Uuid,
    ) -> Result<Option<KeyInfo>, StoreError> {
        sqlx::query!(
            r#"update api_keys set revoked_at = coalesce(revoked_at, now())
                where tenant_id = $1 and key_id = $2"#,
            tenant.as_str(),
            key_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(self
            .list_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.key_id == key_id))
    }

    /// The principal of a presented key, or `None` if it is unknown or
    /// revoked.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Principal>, StoreError> {
        let Some(tenant) = tenant_of(key) else {
            return Ok(None);
        };
        let row = sqlx::query!(
            r#"select key_id, role, last_used_at from api_keys
                where tenant_id = $1 and key_hash = $2 and revoked_at is null"#,
            tenant.as_str(),
            &hash_key(key)[..],
        )
        .fetch_optional(&self.pool)
        .await?;
        // The last-used time is kept to the minute: a write per key and
        // minute, not per request.
        if let Some(r) = &row
            && r.last_used_at
                .is_none_or(|at| chrono::Utc::now() - at > chrono::Duration::minutes(1))
        {
            sqlx::query!(
                "update api_keys set last_used_at = now() where tenant_id = $1 and key_id = $2",
                tenant.as_str(),
                r.key_id,
            )
            .execute(&self.pool)
            .await?;
        }
        Ok(row.and_then(|r| {
            Some(Principal {
                tenant,
                key_id: r.key_id,
                role: r.role.parse().ok()?,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_name_a_tenant() {
        let secret = "ab".repeat(32);
        assert_eq!(
            tenant_of(&format!("mk.acme.{secret}")).map(String::from),
            Some("acme".to_owned())
        );
        assert_eq!(tenant_of(&format!("mk.Acme.{secret}")), None);
        assert_eq!(tenant_of(&format!("xx.acme.{secret}")), None);
        assert_eq!(tenant_of("mk.acme.short"), None);
        assert_eq!(tenant_of(""), None);
    }
}
