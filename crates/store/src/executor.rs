//! The command executor: load a stream, decide, and hand the decision to
//! the one commit path ([`crate::commit`]), alone or through the
//! group-commit batcher, retrying the races a client should never see.

use std::time::{Duration, Instant};

use muster_domain::{Aggregate, TenantId};
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

use crate::commit::{CommitError, Decided, commit};
use crate::effects::WriteSide;
use crate::event_store::{EventData, EventMetadata, StreamAppend, read_stream};
use crate::idempotency::IdempotencyClaim;
use crate::outcome::CommandOutcome;
use crate::{Store, StoreError};

/// How many times a command runs when it loses a race it can retry
/// (a concurrent append to its stream, a deadlock).
const MAX_ATTEMPTS: u32 = 8;

/// Who runs a command, and under which conditions.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The caller's tenant.
    pub tenant: TenantId,
    /// The caller (API key id).
    pub actor: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// This command's id.
    pub command_id: Uuid,
    /// `If-Match`: the stream version the client saw.
    pub if_match: Option<i64>,
    /// `Idempotency-Key`, if sent.
    pub idempotency: Option<IdempotencyClaim>,
}

/// A command that committed: its outcome and the events it appended.
#[derive(Debug, Clone)]
pub struct Executed<E> {
    /// What it did.
    pub outcome: CommandOutcome,
    /// The events it appended, in order.
    pub events: Vec<E>,
}

impl Store {
    /// Runs `command` against stream `stream_id` of aggregate `A`.
    ///
    /// Everything the command writes commits together, through the one
    /// commit path: its events (with optimistic concurrency on the stream
    /// version), the reservations or resource capacity they imply, the jobs
    /// they imply, and, when the context carries an idempotency key, the
    /// command's outcome as the key's record. Without `If-Match`, a lost
    /// race for the stream is decided again on fresh state; with it, the
    /// client gets [`StoreError::PreconditionFailed`].
    pub async fn execute<A>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: A::Command,
    ) -> Result<Executed<A::Event>, StoreError>
    where
        A: WriteSide,
        A::Command: Clone,
    {
        let (executed, _) = self
            .execute_linked::<A, A>(ctx, stream_id, command, Vec::new())
            .await?;
        Ok(executed)
    }

    /// Runs `command` against stream `stream_id` of aggregate `A` together
    /// with `linked` commands on other streams of aggregate `B`, all or
    /// nothing, through the same commit path as [`Store::execute`]: a
    /// booking that converts holds, the bookings of a series. Each linked
    /// command is decided on its own stream's state and appended with
    /// optimistic concurrency on it; its working-set effects apply before
    /// the command's own (a converted hold stops counting before the
    /// booking's reservation is checked). `If-Match` and the idempotency key
    /// belong to the command. Answers the command's execution and each
    /// linked command's events, in order.
    pub async fn execute_linked<A, B>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: A::Command,
        linked: Vec<(Uuid, B::Command)>,
    ) -> Result<(Executed<A::Event>, Vec<Vec<B::Event>>), StoreError>
    where
        A: WriteSide,
        A::Command: Clone,
        B: WriteSide,
        B::Command: Clone,
    {
        let span = tracing::info_span!(
            "command",
            stream_type = A::STREAM_TYPE,
            %stream_id,
            command_id = %ctx.command_id,
            linked = linked.len(),
        );
        async move {
            let mut attempt = 1;
            loop {
                let started = Instant::now();
                let (mut decided, events) = self
                    .decide::<A>(ctx, stream_id, command.clone(), true)
                    .await?;
                let mut effects = Vec::new();
                let mut linked_events = Vec::with_capacity(linked.len());
                for (linked_id, linked_command) in &linked {
                    let (other, other_events) = self
                        .decide::<B>(ctx, *linked_id, linked_command.clone(), false)
                        .await?;
                    effects.extend(other.effects);
                    decided.linked.push(other.append);
                    linked_events.push(other_events);
                }
                effects.append(&mut decided.effects);
                decided.effects = effects;
                // Linked commands commit in their own transaction, never in
                // a group-commit batch another command's refusal could touch.
                let creates = A::creates(&command) && linked.is_empty();
                let reason = match self.commit_one(decided, creates, ctx).await {
                    Ok(outcome) => {
                        self.record_append(A::STREAM_TYPE, &outcome, started);
                        return Ok((Executed { outcome, events }, linked_events));
                    }
                    Err(CommitError::Store(StoreError::Database(e)))
                        if crate::db::is_transient(&e) =>
                    {
                        "deadlock"
                    }
                    Err(CommitError::Store(e)) => return Err(e),
                    Err(CommitError::VersionConflict) => {
                        metrics::counter!("muster_concurrency_conflicts_total", "stream_type" => A::STREAM_TYPE)
                            .increment(1);
                        if let Some(expected) = ctx.if_match {
                            let actual = self.stream_version(ctx, A::STREAM_TYPE, stream_id).await?;
                            if actual != expected {
                                return Err(StoreError::PreconditionFailed { expected, actual });
                            }
                        }
                        "version"
                    }
                };
                metrics::counter!("muster_command_retries_total", "reason" => reason).increment(1);
                if attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::ConcurrencyConflict);
                }
                tracing::debug!(attempt, reason, "command lost a race; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
        .instrument(span)
        .await
    }

    /// Loads the stream (unless the command creates it), checks `If-Match`
    /// (for the context's own command, not a linked one) and decides.
    async fn decide<A>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: A::Command,
        own: bool,
    ) -> Result<(Decided, Vec<A::Event>), StoreError>
    where
        A: WriteSide,
    {
        let (state, version, last_position) = if A::creates(&command) {
            (A::default(), 0, None)
        } else {
            let mut conn = self.pool.acquire().await?;
            let stream =
                read_stream::<A::Event>(&mut conn, &ctx.tenant, A::STREAM_TYPE, stream_id).await?;
            (
                A::from_events(stream.events.iter()),
                stream.version,
                stream.last_position,
            )
        };
        if own
            && let Some(expected) = ctx.if_match
            && expected != version
        {
            return Err(StoreError::PreconditionFailed {
                expected,
                actual: version,
            });
        }
        let events = state.decide(command)?;
        let decided = Decided {
            append: StreamAppend {
                tenant: ctx.tenant.clone(),
                stream_type: A::STREAM_TYPE,
                stream_id,
                expected_version: version,
                events: events.iter().map(EventData::of).collect(),
                metadata: metadata(ctx),
            },
            linked: Vec::new(),
            effects: A::effects(&state, stream_id, &events),
            claim: if own { ctx.idempotency.clone() } else { None },
            last_position,
        };
        Ok((decided, events))
    }

    /// Commits one decided command: through the group-commit batcher when
    /// it creates its stream and has no `If-Match` (a precondition on a
    /// stream that does not exist yet belongs to its own transaction),
    /// otherwise as a batch of one.
    async fn commit_one(
        &self,
        decided: Decided,
        creates: bool,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommitError> {
        let decided = match &self.batcher {
            Some(batcher) if creates && ctx.if_match.is_none() => {
                match batcher.submit(decided).await {
                    Ok(verdict) => return verdict.map_err(CommitError::Store),
                    // The batch failed as a whole: run the command alone.
                    Err(decided) => decided,
                }
            }
            _ => decided,
        };
        let sink = self.job_sink.as_deref();
        commit(&self.pool, sink, std::slice::from_ref(&decided))
            .await?
            .pop()
            .expect("one verdict per command")
            .map_err(CommitError::Store)
    }

    fn record_append(&self, stream_type: &'static str, outcome: &CommandOutcome, started: Instant) {
        if outcome.appended > 0 {
            self.appended.committed();
            metrics::counter!("muster_appends_total", "stream_type" => stream_type).increment(1);
            metrics::counter!("muster_appended_events_total", "stream_type" => stream_type)
                .increment(outcome.appended as u64);
            metrics::histogram!("muster_append_duration_seconds", "stream_type" => stream_type)
                .record(started.elapsed().as_secs_f64());
        }
    }

    /// The current state of stream `stream_id` of aggregate `A` in
    /// `tenant`, with its version (0: no such stream).
    pub async fn load<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream_id: Uuid,
    ) -> Result<(A, i64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let stream = read_stream::<A::Event>(&mut conn, tenant, A::STREAM_TYPE, stream_id).await?;
        Ok((A::from_events(stream.events.iter()), stream.version))
    }

    /// The events the command with `outcome` appended, as it appended them
    /// (upcast): what a replay of its idempotency record renders.
    pub async fn appended_events<A: Aggregate>(
        &self,
        tenant: &TenantId,
        outcome: &CommandOutcome,
    ) -> Result<Vec<A::Event>, StoreError> {
        if outcome.appended == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let stream =
            read_stream::<A::Event>(&mut conn, tenant, A::STREAM_TYPE, outcome.stream_id).await?;
        let first = usize::try_from(outcome.version)
            .unwrap_or(0)
            .saturating_sub(outcome.appended);
        Ok(stream
            .events
            .into_iter()
            .skip(first)
            .take(outcome.appended)
            .collect())
    }

    async fn stream_version(
        &self,
        ctx: &CommandContext,
        stream_type: &str,
        stream_id: Uuid,
    ) -> Result<i64, StoreError> {
        let version = sqlx::query_scalar!(
            r#"select coalesce(max(stream_version), 0)::int8 as "version!"
                 from events where tenant_id = $1 and stream_id = $2 and stream_type = $3"#,
            ctx.tenant.as_str(),
            stream_id,
            stream_type,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(version)
    }
}

fn metadata(ctx: &CommandContext) -> EventMetadata {
    EventMetadata {
        command_id: ctx.command_id,
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.command_id,
        actor: ctx.actor.clone(),
        tenant: ctx.tenant.clone(),
    }
}

/// Exponential backoff with full jitter: 1–2 ms, 2–4 ms, … capped at 100 ms.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(1u64 << attempt.min(6)).min(Duration::from_millis(100));
    base + base.mul_f64(rand::rng().random::<f64>())
}
