//! The command executor: decide on fresh state and hand the decision to
//! the one commit path ([`crate::commit`]), alone or through the
//! group-commit batcher, retrying the races a client should never see.
//!
//! What a command reads and how it decides is the caller's
//! ([`Store::execute_with`]); a command on one stream is the simplest case
//! ([`Store::execute`]).

use std::future::Future;
use std::time::{Duration, Instant};

use muster_domain::{Aggregate, TenantId};
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

use crate::commit::{CommitError, Decided, commit, commit_in};
use crate::effects::WriteSide;
use crate::event_store::{EventData, EventMetadata, StreamAppend, read_stream};
use crate::idempotency::IdempotencyClaim;
use crate::locked::{LockRequest, Locked, lock_claims};
use crate::outcome::CommandOutcome;
use crate::personal::StreamKey;
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

/// A stream's state as read, with the version and position a command on
/// it is decided at.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// The state folded from its events.
    pub state: A,
    /// Its version (0: the stream does not exist).
    pub version: i64,
    /// Position of its last event.
    pub last_position: Option<i64>,
    /// The data key its personal fields are sealed with now, if any.
    pub(crate) key: Option<StreamKey>,
}

impl<A> Loaded<A> {
    /// `state` at `version` and `last_position`, as read elsewhere (its
    /// personal data then gets a key of its own if a command adds any).
    pub fn new(state: A, version: i64, last_position: Option<i64>) -> Self {
        Self {
            state,
            version,
            last_position,
            key: None,
        }
    }
}

impl<A: Default> Default for Loaded<A> {
    /// A stream that does not exist yet.
    fn default() -> Self {
        Self::new(A::default(), 0, None)
    }
}

impl Decided {
    /// Decides `command` on `loaded`, the state of stream `stream_id` of
    /// aggregate `A`: the events it appends (with optimistic concurrency on
    /// `loaded.version`) and the working-set changes and jobs they imply.
    ///
    /// The command the context is about: a stale `If-Match` is refused
    /// here, before deciding (on a stream that does not exist, `If-Match`
    /// is left to the aggregate, which refuses a command on nothing as not
    /// found), and the idempotency key is recorded with its outcome.
    pub fn own<A: WriteSide>(
        ctx: &CommandContext,
        stream_id: Uuid,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<(Decided, Vec<A::Event>), StoreError> {
        Self::decide(ctx, stream_id, loaded, command, true)
    }

    /// Decides `command` on `loaded` like [`Decided::own`], as a command
    /// linked to another (see [`Decided::link`]): `If-Match` and the
    /// idempotency key are not its own.
    pub fn linked<A: WriteSide>(
        ctx: &CommandContext,
        stream_id: Uuid,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<(Decided, Vec<A::Event>), StoreError> {
        Self::decide(ctx, stream_id, loaded, command, false)
    }

    fn decide<A: WriteSide>(
        ctx: &CommandContext,
        stream_id: Uuid,
        loaded: &Loaded<A>,
        command: A::Command,
        own: bool,
    ) -> Result<(Decided, Vec<A::Event>), StoreError> {
        if own
            && let Some(expected) = ctx.if_match
            && loaded.version > 0
            && expected != loaded.version
        {
            return Err(StoreError::PreconditionFailed {
                expected,
                actual: loaded.version,
            });
        }
        let creates = loaded.version == 0 && A::creates(&command);
        let events = loaded.state.decide(command)?;
        let mut decided = Decided {
            append: StreamAppend {
                tenant: ctx.tenant.clone(),
                stream_type: A::STREAM_TYPE,
                stream_id,
                expected_version: loaded.version,
                events: events.iter().map(EventData::of).collect(),
                metadata: metadata(ctx),
                current_key: None,
                new_key: None,
            },
            linked: Vec::new(),
            effects: A::effects(&loaded.state, stream_id, &events),
            claim: if own { ctx.idempotency.clone() } else { None },
            last_position: loaded.last_position,
            creates_alone: creates,
        };
        if decided.append.carries_personal_data() {
            decided.append.current_key = loaded.key.clone();
        }
        Ok((decided, events))
    }

    /// Links `other`, a command decided on another stream: it commits with
    /// this one or not at all, and its working-set changes apply before
    /// this command's (a converted hold stops counting before the
    /// booking's reservation is checked).
    pub fn link(&mut self, other: Decided) {
        let mut effects = other.effects;
        effects.append(&mut self.effects);
        self.effects = effects;
        self.linked.push(other.append);
        self.linked.extend(other.linked);
        // Linked commands commit in their own transaction, never in a
        // group-commit batch another command's refusal could touch.
        self.creates_alone = false;
    }
}

impl Store {
    /// Runs one command through the one commit path: `decide` reads what
    /// the command needs and decides it (and the commands linked to it),
    /// and everything commits together: its events (with optimistic
    /// concurrency on every stream it writes), the reservations or
    /// resource changes they imply, the jobs they imply, and, when the
    /// context carries an idempotency key, the command's outcome as the
    /// key's record.
    ///
    /// A lost race (a stream moved since `decide` read it, a deadlock)
    /// calls `decide` again on fresh state; with `If-Match`, a stream that
    /// moved is [`StoreError::PreconditionFailed`]. Answers the outcome and
    /// what `decide` answered with the decision that committed.
    pub async fn execute_with<T, E, F, Fut>(
        &self,
        ctx: &CommandContext,
        stream_type: &'static str,
        stream_id: Uuid,
        mut decide: F,
    ) -> Result<(CommandOutcome, T), E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(Decided, T), E>>,
        E: From<StoreError>,
    {
        self.retrying(ctx, stream_type, stream_id, || {
            let decided = decide();
            async move {
                let (decided, answer) = decided.await?;
                Ok((self.commit_one(decided, ctx).await, answer))
            }
        })
        .await
    }

    /// Runs a command that picks among resources under their locks, through
    /// the one commit path: `read` reads what the command needs (outside
    /// any transaction) and names the claims it may take; then, in the
    /// transaction that commits, those resources are locked (in key order)
    /// and `decide` chooses on the write side's verdict under the locks
    /// ([`Locked`]), so that concurrent pickers never take the same room
    /// twice and a refusal means the resources truly are taken. Retried
    /// like [`Store::execute_with`].
    pub async fn execute_locked<R, T, E, F, Fut, D>(
        &self,
        ctx: &CommandContext,
        stream_type: &'static str,
        stream_id: Uuid,
        mut read: F,
        decide: D,
    ) -> Result<(CommandOutcome, T), E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(R, LockRequest), E>>,
        D: Fn(&mut R, Locked) -> Result<(Decided, T), E>,
        E: From<StoreError>,
    {
        let decide = &decide;
        self.retrying(ctx, stream_type, stream_id, || {
            let reading = read();
            async move {
                let (mut read, request) = reading.await?;
                if let Some(batcher) = self.pick_batcher.as_ref().filter(|_| {
                    ctx.if_match.is_none()
                        && request.leaving.is_empty()
                        && !request.claims.is_empty()
                }) && let Some(ticket) = batcher.submit(&ctx.tenant, request.clone()).await
                    && let Ok(locked) = ticket.locked.await
                {
                    match decide(&mut read, locked) {
                        Ok((decided, answer)) => {
                            let _ = ticket.decided.send(Some(self.sealed(decided)));
                            if let Ok(Ok(verdict)) = ticket.reply.await {
                                return Ok((verdict.map_err(CommitError::Store), answer));
                            }
                            // The batch failed as a whole: decide alone.
                        }
                        Err(e) => {
                            let _ = ticket.decided.send(None);
                            return Err(e);
                        }
                    }
                }
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                let (ledger, locked) = lock_claims(&mut tx, &ctx.tenant, &request).await?;
                let (decided, answer) = decide(&mut read, locked)?;
                let decided = self.sealed(decided);
                let sink = self.job_sink.as_deref();
                let committed = commit_in(tx, sink, std::slice::from_ref(&decided), Some(ledger))
                    .await
                    .and_then(|mut verdicts| {
                        verdicts
                            .pop()
                            .expect("one verdict per command")
                            .map_err(CommitError::Store)
                    });
                Ok((committed, answer))
            }
        })
        .await
    }

    /// `decided` with the personal fields of its events sealed (SPEC §12),
    /// when this process has a secret key; as it is otherwise.
    fn sealed(&self, mut decided: Decided) -> Decided {
        if let Some(secret) = self.secret_key() {
            decided.append.seal(secret);
            for linked in &mut decided.linked {
                linked.seal(secret);
            }
        }
        decided
    }

    /// The retry loop of every command: `attempt` decides and commits;
    /// a lost race (a stream moved, a deadlock) runs it again.
    async fn retrying<T, E, F, Fut>(
        &self,
        ctx: &CommandContext,
        stream_type: &'static str,
        stream_id: Uuid,
        mut attempt_once: F,
    ) -> Result<(CommandOutcome, T), E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(Result<CommandOutcome, CommitError>, T), E>>,
        E: From<StoreError>,
    {
        let span = tracing::info_span!(
            "command",
            stream_type,
            %stream_id,
            command_id = %ctx.command_id,
        );
        async move {
            let mut attempt = 1;
            loop {
                let started = Instant::now();
                let (committed, answer) = attempt_once().await?;
                let reason = match committed {
                    Ok(outcome) => {
                        self.record_append(stream_type, &outcome, started);
                        return Ok((outcome, answer));
                    }
                    Err(CommitError::Store(StoreError::Database(e)))
                        if crate::db::is_transient(&e) =>
                    {
                        "deadlock"
                    }
                    Err(CommitError::Store(e)) => return Err(e.into()),
                    Err(CommitError::VersionConflict) => {
                        metrics::counter!("muster_concurrency_conflicts_total", "stream_type" => stream_type)
                            .increment(1);
                        if let Some(expected) = ctx.if_match {
                            let actual = self.stream_version(ctx, stream_type, stream_id).await?;
                            if actual != expected {
                                return Err(StoreError::PreconditionFailed { expected, actual }.into());
                            }
                        }
                        "version"
                    }
                };
                metrics::counter!("muster_command_retries_total", "reason" => reason).increment(1);
                if attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::ConcurrencyConflict.into());
                }
                tracing::debug!(attempt, reason, "command lost a race; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
        .instrument(span)
        .await
    }

    /// Runs `command` against stream `stream_id` of aggregate `A`, through
    /// [`Store::execute_with`]: the stream is read (unless the command
    /// creates it) and the aggregate decides.
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
        let command = &command;
        let (outcome, events) = self
            .execute_with(ctx, A::STREAM_TYPE, stream_id, || async move {
                let loaded = if A::creates(command) {
                    Loaded::default()
                } else {
                    self.load_stream::<A>(&ctx.tenant, stream_id).await?
                };
                Decided::own(ctx, stream_id, &loaded, command.clone())
            })
            .await?;
        Ok(Executed { outcome, events })
    }

    /// Commits one decided command: through the group-commit batcher when
    /// it creates its stream alone and has no `If-Match` (a precondition on
    /// a stream that does not exist yet belongs to its own transaction),
    /// otherwise as a batch of one.
    async fn commit_one(
        &self,
        decided: Decided,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommitError> {
        let decided = self.sealed(decided);
        let decided = match &self.batcher {
            Some(batcher) if decided.creates_alone && ctx.if_match.is_none() => {
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

    /// Stream `stream_id` of aggregate `A` in `tenant` as it is now: its
    /// state, version and last position (version 0: no such stream).
    pub async fn load_stream<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream_id: Uuid,
    ) -> Result<Loaded<A>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let stream = read_stream::<A::Event>(
            &mut conn,
            self.secret_key(),
            tenant,
            A::STREAM_TYPE,
            stream_id,
        )
        .await?;
        Ok(Loaded {
            state: A::from_events(stream.events.iter()),
            version: stream.version,
            last_position: stream.last_position,
            key: stream.key,
        })
    }

    /// The current state of stream `stream_id` of aggregate `A` in
    /// `tenant`, with its version (0: no such stream).
    pub async fn load<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream_id: Uuid,
    ) -> Result<(A, i64), StoreError> {
        let loaded = self.load_stream::<A>(tenant, stream_id).await?;
        Ok((loaded.state, loaded.version))
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
        let stream = read_stream::<A::Event>(
            &mut conn,
            self.secret_key(),
            tenant,
            A::STREAM_TYPE,
            outcome.stream_id,
        )
        .await?;
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
