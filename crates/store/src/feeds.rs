//! Calendar feeds: secret, revocable URLs of a resource's schedule as
//! iCalendar. A token reads `cf.<tenant>.<64 hex digits>` (256 random
//! bits, like an API key) and only its SHA-256 is stored.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use rand::RngCore;
use uuid::Uuid;

use crate::keys::hash_key;
use crate::{Store, StoreError};

/// A feed just created: its token is in clear here only.
#[derive(Debug, Clone)]
pub struct CreatedFeed {
    /// Its id.
    pub feed_id: Uuid,
    /// The secret part of its URL.
    pub token: String,
}

/// What a feed token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The tenant.
    pub tenant: TenantId,
    /// The feed.
    pub feed_id: Uuid,
    /// The resource whose schedule it shows.
    pub resource_id: Uuid,
    /// When it was created (the feed's stable DTSTAMP).
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Creates a feed of `resource_id` (which must be one of the tenant's).
    pub async fn create_feed(
        &self,
        tenant: &TenantId,
        resource_id: Uuid,
    ) -> Result<CreatedFeed, StoreError> {
        let exists = sqlx::query_scalar!(
            r#"select exists(select 1 from reservable_resources
                              where tenant_id = $1 and resource_id = $2) as "exists!""#,
            tenant.as_str(),
            resource_id,
        )
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Err(StoreError::NotFound("resource"));
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("cf.{tenant}.{}", hex::encode(secret));
        let feed_id = Uuid::now_v7();
        sqlx::query!(
            r#"insert into calendar_feeds (tenant_id, feed_id, resource_id, token_hash)
               values ($1, $2, $3, $4)"#,
            tenant.as_str(),
            feed_id,
            resource_id,
            &hash_key(&token)[..],
        )
        .execute(&self.pool)
        .await?;
        Ok(CreatedFeed { feed_id, token })
    }

    /// Revokes feed `feed_id`; `false` when the tenant has no such live feed.
    pub async fn revoke_feed(&self, tenant: &TenantId, feed_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            r#"update calendar_feeds set revoked_at = now()
                where tenant_id = $1 and feed_id = $2 and revoked_at is null"#,
            tenant.as_str(),
            feed_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live feed `token` opens, if any.
    pub async fn open_feed(&self, token: &str) -> Result<Option<Feed>, StoreError> {
        let Some(tenant) = token
            .strip_prefix("cf.")
            .and_then(|rest| rest.rsplit_once('.'))
            .filter(|(_, secret)| {
                secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .and_then(|(tenant, _)| TenantId::parse(tenant).ok())
        else {
            return Ok(None);
        };
        let row = sqlx::query!(
            r#"select feed_id, resource_id, created_at from calendar_feeds
                where tenant_id = $1 and token_hash = $2 and revoked_at is null"#,
            tenant.as_str(),
            &hash_key(token)[..],
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Feed {
            tenant,
            feed_id: r.feed_id,
            resource_id: r.resource_id,
            created_at: r.created_at,
        }))
    }
}
