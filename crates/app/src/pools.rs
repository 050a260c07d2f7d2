//! Pools: create and change them (SPEC §12). Picking members for a
//! reservation is the write side's, in the commit of the booking.

use muster_domain::pool::{Members, Pool, PoolChanges, PoolCommand, PoolSpec};
use muster_store::CommandContext;
use uuid::Uuid;

use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

/// A command on a pool's stream; an explicit member that does not exist
/// is named by its place in the request (`members[i]`).
struct OnPool {
    name: &'static str,
    pool_id: Uuid,
    command: PoolCommand,
}

impl OnPool {
    fn members(&self) -> Option<&[Uuid]> {
        let members = match &self.command {
            PoolCommand::Create(spec) => Some(&spec.members),
            PoolCommand::Update(changes) => changes.members.as_ref(),
        };
        match members {
            Some(Members::Explicit(ids)) => Some(ids),
            _ => None,
        }
    }
}

impl Decision for OnPool {
    type On = Pool;

    fn name(&self) -> &'static str {
        self.name
    }

    fn stream_id(&self) -> Uuid {
        self.pool_id
    }

    fn query(&self, _: &Read) -> Query {
        match self.command {
            PoolCommand::Create(_) => Query::default(),
            PoolCommand::Update(_) => Query::default().stream::<Pool>(self.pool_id),
        }
    }

    fn decide(&self, _: &Read) -> Result<Plan<Pool>, Refusal> {
        Ok(Plan::new(self.command.clone()))
    }

    fn resource_field(&self, resource_id: Uuid) -> String {
        let at = self
            .members()
            .and_then(|ids| ids.iter().position(|&id| id == resource_id));
        at.map_or_else(|| "members".to_owned(), |i| format!("members[{i}]"))
    }
}

impl App {
    /// Creates a pool; its explicit members must be resources of the
    /// tenant.
    pub async fn create_pool(&self, ctx: &CommandContext, spec: PoolSpec) -> Answer<Pool> {
        let decision = OnPool {
            name: "pool.create",
            pool_id: Uuid::now_v7(),
            command: PoolCommand::Create(spec),
        };
        self.run(ctx, decision).await
    }

    /// Changes pool `id`'s name, members or strategy.
    pub async fn update_pool(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        changes: PoolChanges,
    ) -> Answer<Pool> {
        let decision = OnPool {
            name: "pool.update",
            pool_id: id,
            command: PoolCommand::Update(changes),
        };
        self.run(ctx, decision).await
    }
}
