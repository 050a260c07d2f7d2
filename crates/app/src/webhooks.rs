//! Webhook health: an endpoint that keeps failing is disabled by the
//! domain's rule ([`muster_domain::webhook`]), through the one commit path,
//! and an admin enables it again.

use chrono::Utc;
use muster_domain::TenantId;
use muster_domain::webhook::{HealthCommand, HealthEvent, WebhookHealth};
use muster_jobs::webhooks::Failing;
use muster_store::CommandContext;
use uuid::Uuid;

use crate::decision::OnStream;
use crate::{Answer, App, AppError, Outcome, Refusal};

impl App {
    /// Notes that delivery `delivery_id` to an endpoint failed (`gone`:
    /// it answered 410), with the endpoint's failure clock as the delivery
    /// side keeps it. Answers why the endpoint was disabled, when this
    /// failure disabled it.
    pub async fn note_webhook_failure(
        &self,
        tenant: &TenantId,
        failing: Failing,
        delivery_id: Uuid,
        gone: bool,
    ) -> Result<Option<String>, AppError> {
        if failing.disabled {
            return Ok(None);
        }
        let disable_after = chrono::Duration::from_std(self.webhooks.disable_after())
            .unwrap_or(chrono::Duration::MAX);
        let ctx = CommandContext {
            tenant: tenant.clone(),
            actor: "system:webhook-health".to_owned(),
            correlation_id: delivery_id.to_string(),
            command_id: Uuid::now_v7(),
            if_match: None,
            idempotency: None,
        };
        let decision = OnStream::<WebhookHealth> {
            name: "webhook.note_failure",
            stream_id: failing.webhook_id,
            command: HealthCommand::NoteFailure {
                webhook_id: failing.webhook_id,
                delivery_id,
                gone,
                failing_since: failing.since,
                now: Utc::now(),
                disable_after,
            },
            resource_field: "webhook_id",
        };
        let Outcome::Executed(executed) = self.run(&ctx, decision).await? else {
            return Ok(None);
        };
        let Some(reason) = executed.events.into_iter().find_map(|e| match e {
            HealthEvent::Disabled(d) => Some(d.reason),
            HealthEvent::Enabled => None,
        }) else {
            return Ok(None);
        };
        // Its endpoint is disabled: no attempt follows, so the delivery is
        // a dead letter rather than pending.
        self.webhooks.bury(tenant, delivery_id).await?;
        tracing::warn!(%tenant, delivery = %delivery_id, reason, "webhook endpoint disabled");
        metrics::counter!("muster_webhooks_disabled_total").increment(1);
        Ok(Some(reason))
    }

    /// Enables webhook `id` again (disabled after a 410 Gone or after
    /// failing for too long): deliveries resume, its failure clock starts
    /// over.
    pub async fn enable_webhook(&self, ctx: &CommandContext, id: Uuid) -> Answer<WebhookHealth> {
        if !self.webhooks.exists(&ctx.tenant, id).await? {
            return self
                .refused::<WebhookHealth>(
                    ctx,
                    Refusal::NotFound {
                        what: "webhook".into(),
                    },
                )
                .await;
        }
        let decision = OnStream::<WebhookHealth> {
            name: "webhook.enable",
            stream_id: id,
            command: HealthCommand::Enable,
            resource_field: "id",
        };
        self.run(ctx, decision).await
    }
}
