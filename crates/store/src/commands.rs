//! The command executor: load a stream, decide, and commit the events, the
//! working-set changes they imply and the idempotency record in ONE
//! transaction, retrying the races a client should never see.

use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_domain::Aggregate;
use muster_domain::booking::{Booking, BookingCommand, BookingEvent};
use muster_domain::deployment::{Deployment, DeploymentCommand, DeploymentEvent};
use muster_domain::resource::{Resource, ResourceCommand, ResourceEvent};
use rand::Rng;
use sqlx::PgConnection;
use tracing::Instrument;
use uuid::Uuid;

use crate::event_store::{
    AppendError, EventData, EventMetadata, StreamAppend, append_to_stream, read_stream,
};
use crate::idempotency::{IdempotencyClaim, insert_answer};
use crate::implied_jobs::ImpliedJob;
use crate::reservations::{self, WriteEffect};
use crate::{Store, StoreError};

/// How many times a command runs when it loses a race it can retry
/// (a concurrent append to its stream, a deadlock).
const MAX_ATTEMPTS: u32 = 8;

/// Who runs a command, and under which conditions.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The caller's tenant.
    pub tenant: String,
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

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The stream (aggregate id).
    pub stream_id: Uuid,
    /// The stream's version after the command.
    pub version: i64,
    /// Position of the stream's last event (read-your-writes token).
    pub position: i64,
    /// How many events the command appended (0 for a no-op).
    pub appended: usize,
}

/// An aggregate the store knows how to write: which working-set changes its
/// events imply.
pub trait WriteSide: Aggregate {
    /// Whether `command` creates the stream; such commands skip loading,
    /// since their stream id is freshly generated.
    fn creates(command: &Self::Command) -> bool;

    /// The working-set changes `events` imply.
    fn effects(stream_id: Uuid, events: &[Self::Event]) -> Vec<WriteEffect>;
}

impl WriteSide for Resource {
    fn creates(command: &ResourceCommand) -> bool {
        matches!(command, ResourceCommand::Register(_))
    }

    fn effects(stream_id: Uuid, events: &[ResourceEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                ResourceEvent::Registered(p) => Some(WriteEffect::RegisterResource {
                    resource_id: stream_id,
                    capacity: p.capacity,
                }),
                ResourceEvent::Updated(c) => {
                    c.capacity.map(|capacity| WriteEffect::ChangeCapacity {
                        resource_id: stream_id,
                        capacity,
                    })
                }
                ResourceEvent::Retired => Some(WriteEffect::RetireResource {
                    resource_id: stream_id,
                }),
            })
            .collect()
    }
}

impl WriteSide for Booking {
    fn creates(command: &BookingCommand) -> bool {
        matches!(command, BookingCommand::Request { .. })
    }

    fn effects(stream_id: Uuid, events: &[BookingEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                BookingEvent::ReservationAdded(r) => Some(WriteEffect::Reserve {
                    booking_id: stream_id,
                    reservation: r.clone(),
                }),
                BookingEvent::ReservationReleased {
                    reservation_id,
                    released_from,
                } => Some(WriteEffect::Release {
                    reservation_id: *reservation_id,
                    released_from: *released_from,
                }),
                BookingEvent::TaskAdded(task) => task
                    .assignee_id
                    .map(|resource_id| WriteEffect::RequireResource { resource_id }),
                _ => None,
            })
            .collect()
    }
}

impl WriteSide for Deployment {
    fn creates(command: &DeploymentCommand) -> bool {
        matches!(command, DeploymentCommand::Request { .. })
    }

    /// A requested deployment is queued for a worker in the same
    /// transaction: exactly one job per deployment, or none if the command
    /// does not commit.
    fn effects(stream_id: Uuid, events: &[DeploymentEvent]) -> Vec<WriteEffect> {
        events
            .iter()
            .filter_map(|event| match event {
                DeploymentEvent::Requested(plan) => {
                    Some(WriteEffect::Enqueue(ImpliedJob::RunDeployment {
                        deployment_id: stream_id,
                        priority: plan.priority,
                        steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
                    }))
                }
                _ => None,
            })
            .collect()
    }
}

/// The answer to store with an idempotency key: status and JSON body.
pub type Answer = (u16, serde_json::Value);

/// Renders a command's answer from its outcome; shared with the batch
/// writers, which store it in the batch's transaction.
pub(crate) type AnswerFn = Arc<dyn Fn(&CommandOutcome) -> Answer + Send + Sync>;

/// How one attempt ended when it did not succeed.
enum AttemptError {
    /// Lost a race that a fresh attempt may win.
    Retry(&'static str),
    /// Final.
    Fail(StoreError),
}

impl From<StoreError> for AttemptError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Database(db) if crate::db::is_transient(db) => {
                AttemptError::Retry("deadlock")
            }
            _ => AttemptError::Fail(e),
        }
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl Store {
    /// Runs `command` against stream `stream_id` of aggregate `A`.
    ///
    /// Everything the command writes commits together: its events (with
    /// optimistic concurrency on the stream version), the reservations or
    /// resource capacity they imply, and, when the context carries an
    /// idempotency key, `answer(outcome)` as the key's stored answer.
    /// Without `If-Match`, a lost race for the stream is retried with fresh
    /// state; with it, the client gets [`StoreError::PreconditionFailed`].
    pub async fn execute<A>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: A::Command,
        answer: impl Fn(&CommandOutcome) -> Answer + Send + Sync + 'static,
    ) -> Result<CommandOutcome, StoreError>
    where
        A: WriteSide,
        A::Command: Clone,
    {
        let answer: AnswerFn = Arc::new(answer);
        let span = tracing::info_span!(
            "command",
            stream_type = A::STREAM_TYPE,
            %stream_id,
            command_id = %ctx.command_id,
        );
        async move {
            let started = Instant::now();
            if let Some(outcome) = self
                .try_batched::<A>(ctx, stream_id, &command, &answer)
                .await?
            {
                self.record_append(A::STREAM_TYPE, &outcome, started);
                return Ok(outcome);
            }
            let mut attempt = 1;
            loop {
                let started = Instant::now();
                match self.attempt::<A>(ctx, stream_id, command.clone(), answer.as_ref()).await {
                    Ok(outcome) => {
                        self.record_append(A::STREAM_TYPE, &outcome, started);
                        return Ok(outcome);
                    }
                    Err(AttemptError::Fail(e)) => return Err(e),
                    Err(AttemptError::Retry(reason)) => {
                        metrics::counter!("muster_command_retries_total", "reason" => reason).increment(1);
                        if reason == "version" {
                            metrics::counter!("muster_concurrency_conflicts_total", "stream_type" => A::STREAM_TYPE)
                                .increment(1);
                            if let Some(expected) = ctx.if_match {
                                let actual = self.stream_version(ctx, A::STREAM_TYPE, stream_id).await?;
                                return Err(StoreError::PreconditionFailed { expected, actual });
                            }
                        }
                        if attempt >= MAX_ATTEMPTS {
                            return Err(StoreError::ConcurrencyConflict);
                        }
                        tracing::debug!(attempt, reason, "command lost a race; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Runs a stream-creating command through the group-commit batcher, when
    /// there is one and the command has no `If-Match` (a precondition on a
    /// stream that does not exist yet belongs to its own transaction).
    /// `None`: run it alone.
    async fn try_batched<A>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: &A::Command,
        answer: &AnswerFn,
    ) -> Result<Option<CommandOutcome>, StoreError>
    where
        A: WriteSide,
        A::Command: Clone,
    {
        let Some(batcher) = &self.batcher else {
            return Ok(None);
        };
        if ctx.if_match.is_some() || !A::creates(command) {
            return Ok(None);
        }
        let events = A::default().decide(command.clone())?;
        let effects = A::effects(stream_id, &events);
        if !crate::batch::Creation::batchable(&effects) {
            return Ok(None);
        }
        let append = StreamAppend {
            tenant: ctx.tenant.clone(),
            stream_type: A::STREAM_TYPE,
            stream_id,
            expected_version: 0,
            events: events.iter().map(EventData::of).collect(),
            metadata: metadata(ctx),
        };
        let claim = ctx.idempotency.clone().map(|claim| (claim, answer.clone()));
        match batcher.submit(append, effects, claim).await {
            Some(verdict) => verdict.map(|position| {
                Some(CommandOutcome {
                    stream_id,
                    version: events.len() as i64,
                    position,
                    appended: events.len(),
                })
            }),
            None => Ok(None),
        }
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

    async fn attempt<A>(
        &self,
        ctx: &CommandContext,
        stream_id: Uuid,
        command: A::Command,
        answer: &(dyn Fn(&CommandOutcome) -> Answer + Send + Sync),
    ) -> Result<CommandOutcome, AttemptError>
    where
        A: WriteSide,
    {
        let mut tx = self.pool.begin().await?;
        let (state, version, last_position) = if A::creates(&command) {
            (A::default(), 0, None)
        } else {
            let stream =
                read_stream::<A::Event>(&mut tx, &ctx.tenant, A::STREAM_TYPE, stream_id).await?;
            (
                A::from_events(stream.events.iter()),
                stream.version,
                stream.last_position,
            )
        };
        if let Some(expected) = ctx.if_match
            && expected != version
        {
            return Err(AttemptError::Fail(StoreError::PreconditionFailed {
                expected,
                actual: version,
            }));
        }
        let events = state.decide(command).map_err(StoreError::from)?;

        let outcome = if events.is_empty() {
            // A no-op (an update that changes nothing) still answers with the
            // stream's current version and position.
            CommandOutcome {
                stream_id,
                version,
                position: last_position.unwrap_or(0),
                appended: 0,
            }
        } else {
            let effects = A::effects(stream_id, &events);
            reservations::apply(&mut tx, &ctx.tenant, &effects).await?;
            for effect in &effects {
                if let WriteEffect::Enqueue(job) = effect {
                    let sink = self.job_sink.as_ref().ok_or(StoreError::NoJobQueue)?;
                    sink.push(&mut tx, &ctx.tenant, job).await?;
                }
            }
            let position = append_events::<A>(&mut tx, ctx, stream_id, version, &events).await?;
            CommandOutcome {
                stream_id,
                version: version + events.len() as i64,
                position,
                appended: events.len(),
            }
        };
        if let Some(claim) = &ctx.idempotency {
            let (status, body) = answer(&outcome);
            if !insert_answer(&mut tx, &ctx.tenant, claim, status, &body).await? {
                // A concurrent request with the same key committed first; the
                // caller replays its answer.
                return Err(AttemptError::Fail(StoreError::IdempotencyKeyTaken));
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The current state of stream `stream_id` of aggregate `A` in
    /// `tenant`, with its version (0: no such stream).
    pub async fn load<A: Aggregate>(
        &self,
        tenant: &str,
        stream_id: Uuid,
    ) -> Result<(A, i64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let stream = read_stream::<A::Event>(&mut conn, tenant, A::STREAM_TYPE, stream_id).await?;
        Ok((A::from_events(stream.events.iter()), stream.version))
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
            ctx.tenant,
            stream_id,
            stream_type,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(version)
    }
}

async fn append_events<A: WriteSide>(
    conn: &mut PgConnection,
    ctx: &CommandContext,
    stream_id: Uuid,
    version: i64,
    events: &[A::Event],
) -> Result<i64, AttemptError> {
    let metadata = EventMetadata {
        command_id: ctx.command_id,
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.command_id,
        actor: ctx.actor.clone(),
        tenant: ctx.tenant.clone(),
    };
    match append_to_stream(
        conn,
        &ctx.tenant,
        A::STREAM_TYPE,
        stream_id,
        version,
        events,
        &metadata,
    )
    .await
    {
        Ok(position) => Ok(position),
        Err(AppendError::VersionConflict) => Err(AttemptError::Retry("version")),
        Err(AppendError::Database(e)) => Err(e.into()),
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
