//! muster's application layer: one function per thing a user does, taking
//! domain inputs and answering typed outcomes ([`Outcome`]: executed,
//! refused with the domain's reason, or replayed). No HTTP and no SQL:
//! the API's handlers parse and render around these functions, and the
//! workers and the CLI call the same ones.
//!
//! Decisions that read or write several streams share one mechanism
//! ([`decision`]) that commits through the store's one commit path.

pub mod bookings;
pub mod calendars;
pub mod check_in;
pub mod clients;
pub mod decision;
pub mod deployments;
pub mod find_time;
pub mod holds;
mod idempotency;
pub mod keys;
mod outcome;
pub mod pools;
pub mod quotas;
pub mod resources;
pub mod series;
pub mod waitlist;
pub mod webhooks;

use muster_domain::Aggregate;
use muster_jobs::webhooks::Webhooks;
use muster_store::{CommandContext, Executed, Store};

pub use decision::{Decision, Plan, Query, Read};
pub use outcome::{AppError, Exhausted, MemberRefusal, Outcome, Refusal, Replay};

use crate::decision::EventsOf;

/// The context of a command the system issues itself (`actor` names the
/// loop), with no idempotency key or version guard: each is its own.
pub(crate) fn system_context(tenant: muster_domain::TenantId, actor: &str) -> CommandContext {
    CommandContext {
        tenant,
        actor: actor.to_owned(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        command_id: uuid::Uuid::now_v7(),
        if_match: None,
        idempotency: None,
    }
}

/// What a use case on an aggregate's stream answers.
pub type Answer<A> = Result<Outcome<Executed<<A as Aggregate>::Event>>, AppError>;

/// The application: every use case, on one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    store: Store,
    webhooks: Webhooks,
}

impl App {
    /// The use cases on `store`, with webhook endpoints disabled after
    /// failing every attempt for the default time.
    pub fn new(store: Store) -> Self {
        Self {
            webhooks: Webhooks::new(store.pool().clone()),
            store,
        }
    }

    /// The same use cases, disabling a webhook endpoint once it has failed
    /// every attempt for `disable_after`.
    pub fn with_webhook_disable_after(mut self, disable_after: std::time::Duration) -> Self {
        self.webhooks = self.webhooks.with_disable_after(disable_after);
        self
    }

    /// The store the use cases commit to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `command` on stream `stream_id` of aggregate `A`: the use case
    /// `name`, whose request names a resource in `resource_field`.
    async fn on_stream<A>(
        &self,
        ctx: &CommandContext,
        name: &'static str,
        stream_id: uuid::Uuid,
        command: A::Command,
        resource_field: &'static str,
    ) -> Answer<A>
    where
        A: muster_store::effects::WriteSide + Send + Sync + 'static,
        A::Command: Clone + Send + Sync,
        A::Event: Send,
    {
        let decision = decision::OnStream::<A> {
            name,
            stream_id,
            command,
            resource_field,
        };
        self.run(ctx, decision).await
    }

    /// Runs `decision`, or answers `refusal` when the request could not
    /// even be made into one (both under the context's idempotency key).
    async fn run_or_refuse<D: Decision>(
        &self,
        ctx: &CommandContext,
        decision: Result<D, Refusal>,
    ) -> Result<Outcome<Executed<EventsOf<D>>>, AppError>
    where
        <D::On as Aggregate>::Command: Send,
        EventsOf<D>: Send,
    {
        match decision {
            Ok(decision) => self.run(ctx, decision).await,
            Err(refusal) => self.refused::<D::On>(ctx, refusal).await,
        }
    }
}
