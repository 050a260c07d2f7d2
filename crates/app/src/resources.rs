//! Resources: register, change and retire them.

use muster_domain::resource::{Resource, ResourceChanges, ResourceCommand, ResourceProfile};
use muster_store::CommandContext;
use uuid::Uuid;

use crate::{Answer, App};

impl App {
    /// Registers a resource.
    pub async fn register_resource(
        &self,
        ctx: &CommandContext,
        profile: ResourceProfile,
    ) -> Answer<Resource> {
        let command = ResourceCommand::Register(profile);
        self.on_resource(ctx, "resource.register", Uuid::now_v7(), command)
            .await
    }

    /// Changes a resource's name, tags, capacity, working hours, seats or
    /// booking policy; a capacity below what is reserved is refused.
    pub async fn update_resource(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        changes: ResourceChanges,
    ) -> Answer<Resource> {
        let command = ResourceCommand::Update(changes);
        self.on_resource(ctx, "resource.update", id, command).await
    }

    /// Retires a resource: it can no longer be reserved.
    pub async fn retire_resource(&self, ctx: &CommandContext, id: Uuid) -> Answer<Resource> {
        self.on_resource(ctx, "resource.retire", id, ResourceCommand::Retire)
            .await
    }

    async fn on_resource(
        &self,
        ctx: &CommandContext,
        name: &'static str,
        id: Uuid,
        command: ResourceCommand,
    ) -> Answer<Resource> {
        self.on_stream::<Resource>(ctx, name, id, command, "id")
            .await
    }
}
