//! The idempotency protocol, whole: a request whose key has an answer gets
//! that answer again; a command that commits records its outcome in its
//! own transaction (the store does that); a final refusal is recorded
//! after it, so a retry gets it too; two requests racing with one key both
//! end with the first one's answer. Transports only compute the request's
//! fingerprint and render what this answers.

use muster_domain::Aggregate;
use muster_store::idempotency::{Recorded, StoredRecord};
use muster_store::{CommandContext, Executed};

use crate::App;
use crate::decision::{Decision, EventsOf, Failure, execute};
use crate::outcome::{AppError, Outcome, Refusal, Replay};

impl App {
    /// Runs `decision` under the context's idempotency key, if it has one.
    pub(crate) async fn run<D: Decision>(
        &self,
        ctx: &CommandContext,
        decision: D,
    ) -> Result<Outcome<Executed<EventsOf<D>>>, AppError>
    where
        <D::On as Aggregate>::Command: Send,
        EventsOf<D>: Send,
    {
        if let Some(replayed) = self.replay_recorded::<D::On>(ctx).await? {
            return Ok(replayed);
        }
        let refusal = match execute(&self.store, ctx, &decision).await {
            Ok(executed) => return Ok(Outcome::Executed(executed)),
            Err(Failure::Refused(refusal)) => refusal,
            Err(Failure::Store(e)) => Refusal::from_store(e, |id| decision.resource_field(id))?,
        };
        metrics::counter!("muster_decisions_total", "decision" => decision.name(), "outcome" => "refused")
            .increment(1);
        self.refused::<D::On>(ctx, refusal).await
    }

    /// The answer recorded under the context's key, if there is one: what
    /// a command answers before it looks at anything else.
    pub(crate) async fn replay_recorded<A: Aggregate>(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<Outcome<Executed<A::Event>>>, AppError> {
        let Some(claim) = &ctx.idempotency else {
            return Ok(None);
        };
        let Some(stored) = self.store.find_record(&ctx.tenant, &claim.key).await? else {
            return Ok(None);
        };
        self.replay::<A>(ctx, &stored).await.map(Some)
    }

    /// Settles a refusal under the context's key: a concurrent request with
    /// the key may have committed meanwhile (typically by winning the race
    /// this one lost), and then its answer is this one's too; otherwise a
    /// final refusal is recorded.
    pub(crate) async fn refused<A: Aggregate>(
        &self,
        ctx: &CommandContext,
        refusal: Refusal,
    ) -> Result<Outcome<Executed<A::Event>>, AppError> {
        let Some(claim) = &ctx.idempotency else {
            return Ok(Outcome::Refused(refusal));
        };
        if let Some(stored) = self.store.find_record(&ctx.tenant, &claim.key).await? {
            return self.replay::<A>(ctx, &stored).await;
        }
        if refusal.is_final() {
            let recorded = serde_json::to_value(&refusal).unwrap_or_default();
            if !self
                .store
                .record_refusal(&ctx.tenant, claim, &recorded)
                .await?
                && let Some(stored) = self.store.find_record(&ctx.tenant, &claim.key).await?
            {
                return self.replay::<A>(ctx, &stored).await;
            }
        }
        Ok(Outcome::Refused(refusal))
    }

    /// The answer a key's record stands for, as the first request got it.
    async fn replay<A: Aggregate>(
        &self,
        ctx: &CommandContext,
        stored: &StoredRecord,
    ) -> Result<Outcome<Executed<A::Event>>, AppError> {
        let claim = ctx.idempotency.as_ref();
        if !claim.is_some_and(|claim| stored.answers(claim)) {
            return Ok(Outcome::Refused(Refusal::IdempotencyKeyReused));
        }
        metrics::counter!("muster_idempotent_replays_total").increment(1);
        let replay = match &stored.recorded {
            Recorded::Committed(outcome) => Replay::Executed(Executed {
                events: self
                    .store
                    .appended_events::<A>(&ctx.tenant, outcome)
                    .await?,
                outcome: outcome.clone(),
            }),
            Recorded::Refused(recorded) if recorded.get("refused").is_some() => {
                match serde_json::from_value::<Refusal>(recorded.clone()) {
                    Ok(refusal) => Replay::Refused(refusal),
                    Err(e) => {
                        return Err(AppError::Store(muster_store::StoreError::CorruptRow(
                            format!("idempotency record {}: {e}", claim.map_or("", |c| &c.key)),
                        )));
                    }
                }
            }
            // A refusal recorded as its problem document, before refusals
            // were recorded in the application's terms.
            Recorded::Refused(document) => Replay::Earlier {
                status: document["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(409),
                body: document.clone(),
            },
            Recorded::Rendered { status, body } => Replay::Earlier {
                status: *status,
                body: body.clone(),
            },
        };
        Ok(Outcome::Replayed(replay))
    }
}
