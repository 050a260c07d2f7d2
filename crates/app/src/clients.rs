//! A client's personal data (SPEC §12): erasing it, everywhere muster
//! keeps it. What is erased and what is kept is in
//! `docs/personal-data.md`.

use muster_domain::Aggregate;
use muster_domain::booking::is_plausible_email;
use muster_domain::erasure::{Erased, Erasure, ErasureCommand, ErasureEvent};
use muster_store::effects::WriteEffect;
use muster_store::{CommandContext, Decided, Executed, Loaded, StoreError};
use tracing::Instrument;
use uuid::Uuid;

use crate::{App, AppError, Outcome, Refusal};

impl App {
    /// Erases the client with `email` (any case) in the context's tenant:
    /// deletes their data keys, redacts events written before keys
    /// existed, scrubs the copies the write side keeps, and records
    /// `client.erased`, all in one transaction (the read models scrub
    /// theirs when they reach the event). Erasing again finds nothing
    /// more and records another erasure.
    pub async fn erase_client(
        &self,
        ctx: &CommandContext,
        email: &str,
    ) -> Result<Outcome<Executed<ErasureEvent>>, AppError> {
        if !is_plausible_email(email) {
            return Ok(Outcome::Refused(Refusal::invalid(
                "email",
                "must be an email address",
            )));
        }
        // The subject of a client's keys, as sealing names it.
        let subject = email.to_lowercase();
        if let Some(replayed) = self.replay_recorded::<Erasure>(ctx).await? {
            return Ok(replayed);
        }
        let erasure_id = Uuid::now_v7();
        let started = std::time::Instant::now();
        let subject = &subject;
        let result = self
            .store
            .execute_with(ctx, Erasure::STREAM_TYPE, erasure_id, || async move {
                let plan = self.store.plan_erasure(&ctx.tenant, subject).await?;
                let erased = Erased {
                    bookings: plan.bookings.clone(),
                    waitlist_entries: plan.waitlist_entries.clone(),
                    keys_deleted: plan.keys,
                    events_redacted: u32::try_from(plan.redactions.len()).unwrap_or(u32::MAX),
                };
                let (decided, events) = Decided::own(
                    ctx,
                    erasure_id,
                    &Loaded::<Erasure>::default(),
                    ErasureCommand::Record(erased),
                )?;
                let effect = WriteEffect::Erase {
                    erasure_id,
                    plan: Box::new(plan),
                };
                Ok::<_, StoreError>((decided.with_effect(effect), events))
            })
            .instrument(tracing::info_span!("client.erase", erasure = %erasure_id))
            .await;
        match result {
            Ok((outcome, events)) => {
                metrics::histogram!("muster_client_erasure_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("muster_client_erasures_total").increment(1);
                Ok(Outcome::Executed(Executed { outcome, events }))
            }
            Err(e) => {
                let refusal = Refusal::from_store(e, |_| "email".to_owned())?;
                self.refused::<Erasure>(ctx, refusal).await
            }
        }
    }

    /// Re-seals everything sealed with the server's key with the
    /// process's own (`muster keys rotate-secret`).
    pub async fn rotate_secret(&self) -> Result<muster_store::keyring::Rotated, AppError> {
        let rotated = self.store.rotate_secret().await?;
        tracing::info!(
            data_keys = rotated.data_keys,
            calendar_links = rotated.calendar_links,
            "rotated the server's secret key"
        );
        Ok(rotated)
    }

    /// When the client with `email` (lower case) was last erased, if ever.
    pub async fn client_erased_at(
        &self,
        tenant: &muster_domain::TenantId,
        email: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, AppError> {
        Ok(self.store.erased_at(tenant, email).await?)
    }
}
