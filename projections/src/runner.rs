//! The projection runner: for each projection, hold its lease, catch up
//! from its checkpoint, then follow the event store live.
//!
//! Exactly-once rests on the checkpoint row, not on the lease: every batch
//! is applied in one transaction that first takes the checkpoint row FOR
//! UPDATE, checks it is still where this runner left it, writes the read
//! model and moves the checkpoint. A crash at any instant rolls the whole
//! batch back; a runner that lost its lease finds the checkpoint moved and
//! re-reads from there. The lease (a session advisory lock on a dedicated
//! connection) only keeps a second process from doing the same work; it
//! goes with the connection when a process dies, so another takes over
//! within [`LEASE_RETRY`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use muster_store::lease::Lease;
use muster_store::wakeup::{CommitSignal, PROJECTIONS_CHANNEL, run_notifier};
use muster_store::{RecordedEvent, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Projection, ProjectionError, ReadModel, ReadSignals};

/// How many events one transaction applies at most while catching up.
pub const BATCH: i64 = 2_000;
/// How often a process tries to take a lease another process holds.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// The poll fallback when no wake-up arrives.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The least time between two reads of a projection that follows the log
/// live (its last page was not full); catching up reads back to back.
///
/// Every applied page is one transaction of half a dozen statements. At
/// 1,000 commands/s the five followers of `muster serve`, each applying as
/// soon as it could, committed about 2,000 transactions a second of two or
/// three events each, more than the commands did, on the cores the
/// commands need. Pacing live reads bounds that to a hundred per follower
/// and adds at most this much to the lag (SPEC §9: p99 ≤ 100 ms);
/// `BENCHMARKS.md` has the A/B.
const LIVE_PACE: Duration = Duration::from_millis(10);
/// How often the lease connection is checked while following.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// Advisory-lock class of projection leases (two-key form, so it can never
/// collide with the event store's position locks).
const LEASE_CLASS: i32 = 0x4D53_504A; // "MSPJ"

/// Runs its projections (by default every read model) until shut down.
#[derive(Clone)]
pub struct Projector {
    projections: Vec<Arc<dyn Projection>>,
    store: Store,
    signals: ReadSignals,
    owner: String,
    applied: CommitSignal,
    batch: i64,
}

impl Projector {
    /// A projector reading from `store`, woken by `signals`.
    pub fn new(store: Store, signals: ReadSignals) -> Self {
        Self {
            projections: ReadModel::ALL
                .into_iter()
                .map(|m| Arc::new(m) as Arc<dyn Projection>)
                .collect(),
            store,
            signals,
            owner: owner_name(),
            applied: CommitSignal::default(),
            batch: BATCH,
        }
    }

    /// Applies at most `batch` events per transaction (default [`BATCH`]).
    pub fn with_batch(mut self, batch: i64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Runs `projections` instead of the read models.
    pub fn with_projections(mut self, projections: Vec<Arc<dyn Projection>>) -> Self {
        self.projections = projections;
        self
    }

    /// Runs all projections until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let notifier = tokio::spawn(run_notifier(
            self.store.pool().clone(),
            self.applied.clone(),
            PROJECTIONS_CHANNEL,
        ));
        let runs: Vec<_> = self
            .projections
            .iter()
            .map(|model| tokio::spawn(self.clone().run_one(model.clone(), shutdown.clone())))
            .collect();
        for run in runs {
            let _ = run.await;
        }
        notifier.abort();
    }

    /// Holds `model`'s lease and follows the store, re-acquiring the lease
    /// after any failure, until shut down.
    async fn run_one(self, model: Arc<dyn Projection>, shutdown: CancellationToken) {
        let name = model.name();
        while !shutdown.is_cancelled() {
            let Some(mut lease) = self.acquire_lease(name, &shutdown).await else {
                return;
            };
            tracing::info!(projection = name, owner = %self.owner, "projection lease acquired");
            metrics::gauge!("muster_projection_lease_held", "projection" => name).set(1.0);
            let result = self.follow(model.as_ref(), &mut lease, &shutdown).await;
            metrics::gauge!("muster_projection_lease_held", "projection" => name).set(0.0);
            lease.release().await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "projection interrupted; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(LEASE_RETRY) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// A dedicated connection holding `model`'s lease, or `None` on shutdown.
    async fn acquire_lease(
        &self,
        name: &'static str,
        shutdown: &CancellationToken,
    ) -> Option<Lease> {
        loop {
            match self.store.try_lease(LEASE_CLASS, name).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(projection = name, error = %e, "cannot take the lease")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(LEASE_RETRY) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Catches up and follows live while the lease holds.
    async fn follow(
        &self,
        model: &dyn Projection,
        lease: &mut Lease,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let name = model.name();
        let mut position = checkpoint(&self.store, name).await?;
        let mut wakeups = self.signals.events();
        let mut lease_checked = Instant::now();
        let mut stopped = failed_position(&self.store, name).await?.is_some();
        while !shutdown.is_cancelled() {
            if lease_checked.elapsed() >= LEASE_CHECK {
                lease.check().await?;
                lease_checked = Instant::now();
            }
            if stopped {
                // A poison event: stay stopped (no spinning) until a
                // rebuild or an operator puts the projection back to running.
                metrics::gauge!("muster_projection_failed", "projection" => name).set(1.0);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                stopped = failed_position(&self.store, name).await?.is_some();
                position = checkpoint(&self.store, name).await?;
                continue;
            }
            metrics::gauge!("muster_projection_failed", "projection" => name).set(0.0);

            let read_at = tokio::time::Instant::now();
            let page = self.store.read_shared_page(position, self.batch).await?;
            record_lag(name, position, page.events(), page.horizon);
            if page.events().is_empty() {
                wakeups.borrow_and_update();
                tokio::select! {
                    _ = wakeups.changed() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            let live = page.events().len() < usize::try_from(self.batch).unwrap_or(usize::MAX);
            match self.apply(model, position, page.events()).await? {
                Step::Applied(next) => position = next,
                Step::Stopped(at) => {
                    position = at;
                    stopped = true;
                }
            }
            if live {
                // Let the next events gather rather than chase each commit.
                tokio::select! {
                    () = tokio::time::sleep_until(read_at + LIVE_PACE) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
        Ok(())
    }

    /// Applies `events` after `position`; returns the new checkpoint. A
    /// batch that fails for a non-transient reason is retried one event at
    /// a time, so that the events before a poison event still apply and
    /// the projection stops exactly at it.
    async fn apply(
        &self,
        model: &dyn Projection,
        position: i64,
        events: &[RecordedEvent],
    ) -> Result<Step, ProjectionError> {
        match self.apply_batch(model, position, events).await {
            Ok(next) => Ok(Step::Applied(next)),
            Err(e) if e.is_transient() => Err(e),
            Err(e) if events.len() > 1 => {
                tracing::info!(projection = model.name(), error = %e, "batch failed; applying one event at a time");
                let mut at = position;
                for event in events {
                    at = match self
                        .apply_batch(model, at, std::slice::from_ref(event))
                        .await
                    {
                        Ok(next) => next,
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => return self.stop(model, at, event, &e).await,
                    };
                }
                Ok(Step::Applied(at))
            }
            Err(e) => self.stop(model, position, &events[0], &e).await,
        }
    }

    /// One transaction: check the checkpoint, write, move the checkpoint.
    /// Returns the checkpoint after it (which is another runner's, if the
    /// checkpoint had moved).
    async fn apply_batch(
        &self,
        model: &dyn Projection,
        position: i64,
        events: &[RecordedEvent],
    ) -> Result<i64, ProjectionError> {
        let name = model.name();
        let last = events.last().map_or(position, |e| e.position);
        let span = tracing::info_span!(
            "projection.apply",
            projection = name,
            after = position,
            to = last,
            events = events.len()
        );
        async {
            let started = Instant::now();
            let mut tx = self.store.pool().begin().await?;
            // The projections' own statements name their tables without a
            // schema, so that the same statements write `read` here and the
            // staging schema during a rebuild (rebuild.rs): they are
            // runtime-checked for that reason, the checkpoint's are not.
            sqlx::query!("set local search_path = read, public")
                .execute(&mut *tx)
                .await?;
            let current = sqlx::query_scalar!(
                "select position from projection_checkpoints where name = $1 for update",
                name,
            )
            .fetch_one(&mut *tx)
            .await?;
            if current != position {
                tracing::info!(
                    projection = name,
                    expected = position,
                    found = current,
                    "checkpoint moved elsewhere; re-reading"
                );
                return Ok(current);
            }
            model.apply(&mut tx, events).await?;
            sqlx::query!(
                "update projection_checkpoints
                    set position = $2, owner = $3, updated_at = now()
                  where name = $1",
                name,
                last,
                self.owner,
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.applied.committed();
            metrics::counter!("muster_projection_events_applied_total", "projection" => name)
                .increment(events.len() as u64);
            metrics::histogram!("muster_projection_batch_events", "projection" => name)
                .record(events.len() as f64);
            metrics::histogram!("muster_projection_batch_seconds", "projection" => name)
                .record(started.elapsed().as_secs_f64());
            metrics::gauge!("muster_projection_position", "projection" => name).set(last as f64);
            Ok(last)
        }
        .instrument(span)
        .await
    }

    /// Marks `model` failed at `event` (if its checkpoint is still at
    /// `position`).
    async fn stop(
        &self,
        model: &dyn Projection,
        position: i64,
        event: &RecordedEvent,
        error: &ProjectionError,
    ) -> Result<Step, ProjectionError> {
        let name = model.name();
        tracing::error!(projection = name, position = event.position, error = %error,
            "poison event: projection stopped; other projections go on");
        metrics::counter!("muster_projection_poison_events_total", "projection" => name)
            .increment(1);
        sqlx::query!(
            "update projection_checkpoints
                set state = 'failed', failed_position = $3, error = $4, owner = $5, updated_at = now()
              where name = $1 and position = $2",
            name,
            position,
            event.position,
            error.to_string(),
            self.owner,
        )
        .execute(self.store.pool())
        .await?;
        Ok(Step::Stopped(position))
    }
}

/// What applying a page did.
enum Step {
    /// The checkpoint is now here.
    Applied(i64),
    /// A poison event stopped the projection at this checkpoint.
    Stopped(i64),
}

/// The projection's checkpoint, creating its row on first use.
pub(crate) async fn checkpoint(store: &Store, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query!(
        "insert into projection_checkpoints (name) values ($1) on conflict do nothing",
        name,
    )
    .execute(store.pool())
    .await?;
    sqlx::query_scalar!(
        "select position from projection_checkpoints where name = $1",
        name,
    )
    .fetch_one(store.pool())
    .await
}

async fn failed_position(store: &Store, name: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "select failed_position from projection_checkpoints where name = $1 and state = 'failed'",
        name,
    )
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|at| at.unwrap_or(0)))
}

/// Lag in events (the safe head minus the checkpoint) and in seconds (the
/// age of the oldest event not yet applied; zero when caught up).
fn record_lag(name: &'static str, position: i64, pending: &[RecordedEvent], horizon: i64) {
    let lag_events = (horizon - position).max(0);
    let lag_seconds = pending.first().map_or(0.0, |e| {
        (Utc::now() - e.recorded_at).as_seconds_f64().max(0.0)
    });
    metrics::gauge!("muster_projection_lag_events", "projection" => name).set(lag_events as f64);
    metrics::gauge!("muster_projection_lag_seconds", "projection" => name).set(lag_seconds);
    metrics::gauge!("muster_projection_position", "projection" => name).set(position as f64);
}

/// `host:pid`, shown as a checkpoint's owner.
fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}
