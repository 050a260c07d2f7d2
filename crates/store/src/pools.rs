//! Pools as the write side keeps them: the `pools` rows written in the
//! transactions of each pool's events (the events stay the record), and
//! what the pool routes read of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::pool::{Members, PoolSpec, Selector, Strategy};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::{Store, StoreError};

/// What a pool weighs now: its members in member order (what its
/// selector takes, for a selector pool), its strategy, and when it last
/// assigned each member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMembers {
    /// The members, in member order.
    pub members: Vec<Uuid>,
    /// How it orders free members.
    pub strategy: Strategy,
    /// When it last assigned each member it ever assigned.
    pub last_assigned: HashMap<Uuid, DateTime<Utc>>,
}

/// A pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPool {
    /// Its id.
    pub pool_id: Uuid,
    /// Its definition.
    pub spec: PoolSpec,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::LeastBooked => "least_booked",
        Strategy::First => "first",
        Strategy::RoundRobin => "round_robin",
    }
}

fn strategy_of(name: &str) -> Result<Strategy, StoreError> {
    match name {
        "least_booked" => Ok(Strategy::LeastBooked),
        "first" => Ok(Strategy::First),
        "round_robin" => Ok(Strategy::RoundRobin),
        other => Err(StoreError::CorruptRow(format!(
            "a pool's strategy {other:?}"
        ))),
    }
}

/// Writes pool `pool_id` as `spec` now has it (created or changed).
pub(crate) async fn save(
    conn: &mut PgConnection,
    tenant: &str,
    pool_id: Uuid,
    spec: &PoolSpec,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"insert into pools (tenant_id, pool_id, name, members, strategy)
           values ($1, $2, $3, $4, $5)
           on conflict (tenant_id, pool_id) do update
              set name = excluded.name, members = excluded.members,
                  strategy = excluded.strategy, updated_at = now()"#,
        tenant,
        pool_id,
        spec.name,
        Json(&spec.members) as Json<&Members>,
        strategy_name(spec.strategy),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes that pool `pool_id` assigned `resource_id` now.
pub(crate) async fn assigned(
    conn: &mut PgConnection,
    tenant: &str,
    pool_id: Uuid,
    resource_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"insert into pool_assignments (tenant_id, pool_id, resource_id, last_assigned_at)
           values ($1, $2, $3, now())
           on conflict (tenant_id, pool_id, resource_id) do update set last_assigned_at = now()"#,
        tenant,
        pool_id,
        resource_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// When each of `pools` last assigned each of its members (pool, member).
pub(crate) async fn last_assigned(
    conn: &mut PgConnection,
    tenant: &TenantId,
    pools: &[Uuid],
) -> Result<HashMap<(Uuid, Uuid), DateTime<Utc>>, StoreError> {
    if pools.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"select pool_id, resource_id, last_assigned_at from pool_assignments
            where tenant_id = $1 and pool_id = any($2)"#,
        tenant.as_str(),
        pools,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.pool_id, r.resource_id), r.last_assigned_at))
        .collect())
}

struct PoolRow {
    pool_id: Uuid,
    name: String,
    members: Json<Members>,
    strategy: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl PoolRow {
    fn stored(self) -> Result<StoredPool, StoreError> {
        Ok(StoredPool {
            pool_id: self.pool_id,
            spec: PoolSpec {
                name: self.name,
                members: self.members.0,
                strategy: strategy_of(&self.strategy)?,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    /// The live resources of `tenant` that `selector` takes, by id, at
    /// most [`muster_domain::pool::MAX_MEMBERS`].
    pub async fn resources_matching(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<Vec<Uuid>, StoreError> {
        let seats = selector
            .min_seats
            .map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let capacity = selector
            .min_capacity
            .map(|c| i32::try_from(c).unwrap_or(i32::MAX));
        Ok(sqlx::query_scalar!(
            r#"select resource_id from reservable_resources
                where tenant_id = $1 and not retired
                  and ($2::text is null or kind = $2)
                  and tags @> $3
                  and ($4::int4 is null or seats >= $4)
                  and ($5::int4 is null or capacity >= $5)
                order by resource_id
                limit $6"#,
            tenant.as_str(),
            selector.kind,
            serde_json::json!(selector.tags),
            seats,
            capacity,
            muster_domain::pool::MAX_MEMBERS as i64,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pool `pool_id` of `tenant`, if there is one.
    pub async fn find_pool(
        &self,
        tenant: &TenantId,
        pool_id: Uuid,
    ) -> Result<Option<StoredPool>, StoreError> {
        sqlx::query_as!(
            PoolRow,
            r#"select pool_id, name, members as "members: Json<Members>", strategy,
                      created_at, updated_at
                 from pools where tenant_id = $1 and pool_id = $2"#,
            tenant.as_str(),
            pool_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .map(PoolRow::stored)
        .transpose()
    }

    /// The members pool `pool_id` of `tenant` has now (what its selector
    /// takes, for a selector pool) and its strategy, if there is such a
    /// pool.
    pub async fn current_members(
        &self,
        tenant: &TenantId,
        pool_id: Uuid,
    ) -> Result<Option<(Vec<Uuid>, Strategy)>, StoreError> {
        let Some(pool) = self.find_pool(tenant, pool_id).await? else {
            return Ok(None);
        };
        let members = match pool.spec.members {
            Members::Explicit(ids) => ids,
            Members::Selector(selector) => self.resources_matching(tenant, &selector).await?,
        };
        Ok(Some((members, pool.spec.strategy)))
    }

    /// What pool `pool_id` of `tenant` weighs now, if there is such a pool.
    pub async fn pool_members(
        &self,
        tenant: &TenantId,
        pool_id: Uuid,
    ) -> Result<Option<PoolMembers>, StoreError> {
        let Some((members, strategy)) = self.current_members(tenant, pool_id).await? else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await?;
        let last_assigned = last_assigned(&mut conn, tenant, &[pool_id])
            .await?
            .into_iter()
            .map(|((_, member), at)| (member, at))
            .collect();
        Ok(Some(PoolMembers {
            members,
            strategy,
            last_assigned,
        }))
    }

    /// The pools of `tenant` after `after` (by id), at most `limit`.
    pub async fn list_pools(
        &self,
        tenant: &TenantId,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredPool>, StoreError> {
        sqlx::query_as!(
            PoolRow,
            r#"select pool_id, name, members as "members: Json<Members>", strategy,
                      created_at, updated_at
                 from pools
                where tenant_id = $1 and ($2::uuid is null or pool_id > $2)
                order by pool_id
                limit $3"#,
            tenant.as_str(),
            after,
            limit,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(PoolRow::stored)
        .collect()
    }
}
