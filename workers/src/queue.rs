//! Running the apalis workers, and the policies around them that
//! apalis-postgres leaves to its user:
//!
//! - wake-ups: LISTEN/NOTIFY for new jobs *and* an interval poll, which
//!   picks up delayed jobs (retries) that no notification announces;
//! - a fresh worker name per process start and per restart, so a crashed
//!   worker's jobs are rescued (by any live worker's heartbeat, once the
//!   dead one missed `missed_heartbeats`) instead of staying stuck on a
//!   name that re-registers;
//! - retries with exponential backoff and jitter by moving the job's
//!   `run_at` (the queue itself would re-run a failure at once);
//! - cleanup of finished jobs, queue-depth gauges, and supervision: a
//!   worker whose backend failed (the database went away) is started
//!   again after a pause instead of staying dead.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use apalis::prelude::{
    Attempt as ApalisAttempt, BackendExt, BoxDynError, Data, Strategy, TaskId, WorkerBuilder,
    WorkerBuilderExt, WorkerError,
};
use apalis_postgres::{Config, PostgresStorage, Pubsub};
use muster_jobs::admin::JobStatus;
use muster_jobs::{CalendarSyncJob, DeploymentJob, Job, JobKind, NotificationJob, ReportJob};
use tokio_util::sync::CancellationToken;

use crate::failure::JobFailure;
use crate::{Runtime, Shared};

/// Runs the deployment, notification and report workers, the cleanup and
/// the queue gauges until `rt.shutdown`; in-flight jobs finish first.
pub(crate) async fn run_workers(rt: Shared) {
    let tasks = vec![
        tokio::spawn(supervise(
            rt.clone(),
            JobKind::Deployment,
            worker::<DeploymentJob>,
        )),
        tokio::spawn(supervise(
            rt.clone(),
            JobKind::Notification,
            worker::<NotificationJob>,
        )),
        tokio::spawn(supervise(rt.clone(), JobKind::Report, worker::<ReportJob>)),
        tokio::spawn(supervise(
            rt.clone(),
            JobKind::Calendar,
            worker::<CalendarSyncJob>,
        )),
        tokio::spawn(housekeeping(rt.clone())),
    ];
    for task in tasks {
        let _ = task.await;
    }
}

type WorkerRun = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

/// Runs the worker `start` builds until shutdown, starting a new one (under
/// a new name) after a pause whenever it stops on an error.
async fn supervise(rt: Shared, kind: JobKind, start: fn(Shared, String) -> WorkerRun) {
    let mut failures = 0u32;
    loop {
        let name = worker_name(kind);
        tracing::info!(worker = %name, queue = kind.queue(), "worker starting");
        let started = Instant::now();
        let result = start(rt.clone(), name.clone()).await;
        if rt.shutdown.is_cancelled() {
            tracing::info!(worker = %name, "worker stopped");
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        failures += 1;
        let pause = Duration::from_millis(500 * u64::from(failures.min(20)));
        tracing::warn!(worker = %name, error = ?result.err(), ?pause, "worker stopped unexpectedly; restarting");
        metrics::counter!("muster_worker_restarts_total", "kind" => kind.name()).increment(1);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = rt.shutdown.cancelled() => return,
        }
    }
}

/// `kind@host:pid:<random>`: unique per process start and restart.
fn worker_name(kind: JobKind) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!(
        "{}@{host}:{}:{}",
        kind.name(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The queue of `kind` as a worker backend: woken by NOTIFY and by an
/// interval poll, with the configured heartbeat.
fn backend<A>(
    rt: &Runtime,
    kind: JobKind,
    batch: usize,
) -> apalis::prelude::PollWith<PostgresStorage<A>, Strategy> {
    let config = Config::default()
        .queue(kind.queue())
        .batch_size(batch.max(1))
        .heartbeat_interval(rt.config.heartbeat)
        .missed_heartbeats(rt.config.missed_heartbeats.max(1) as usize)
        // Fetching already marks a job `Queued` with this worker's name,
        // which is what the rescue of a dead worker's jobs looks at; the
        // extra `Running` update per job buys nothing.
        .lock_tasks(false);
    let pool = rt.store.pool().clone();
    // LISTEN needs a session: through a transaction pooler it would not
    // hear a thing.
    let strategy = Strategy::new()
        .stream(Pubsub::new(
            rt.store.sessions().clone(),
            kind.queue().to_owned(),
        ))
        .interval(rt.config.poll_interval);
    PostgresStorage::<A>::new(&pool)
        .with_config(config)
        .poll_with_strategy(strategy)
}

/// Stops a worker when the process shuts down.
async fn stop_on(shutdown: CancellationToken) -> Result<(), WorkerError> {
    shutdown.cancelled().await;
    Ok(())
}

/// A job the workers run: one attempt of it.
pub(crate) trait Handler: Job {
    /// Runs one attempt of `job`; `book` knows whether it is the last, and
    /// how many units of work the job holds.
    fn attempt<'a>(
        rt: &'a Runtime,
        job: &'a Self,
        book: &'a mut Attempt,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>>;
}

/// The apalis handler of every job type: the book-keeping around
/// [`Handler::attempt`].
async fn handle<J: Handler>(
    job: J,
    rt: Data<Shared>,
    id: TaskId,
    attempt: ApalisAttempt,
) -> Result<(), BoxDynError> {
    let rt: Shared = (*rt).clone();
    let mut book = Attempt::begin(
        rt.clone(),
        J::KIND,
        &id,
        attempt.current(),
        job.enqueued_at(),
    );
    let result = J::attempt(&rt, &job, &mut book).await;
    book.finish(result).await
}

/// The one worker builder: a worker on `J`'s queue, running `J`'s handler
/// with its kind's concurrency, until shutdown.
fn worker<J: Handler>(rt: Shared, name: String) -> WorkerRun {
    let concurrency = rt.config.concurrency(J::KIND);
    let worker = WorkerBuilder::new(name.as_str())
        .backend(backend::<J>(&rt, J::KIND, concurrency))
        .concurrency(concurrency.max(1))
        .catch_panic()
        .data(rt.clone())
        .build(handle::<J>);
    Box::pin(worker.run_until(stop_on(rt.shutdown.clone())))
}

/// Book-keeping around one attempt of a job: metrics, the start latency
/// (on the first attempt), and what the queue must do after a failure.
pub(crate) struct Attempt {
    rt: Shared,
    kind: JobKind,
    id: String,
    attempt: u32,
    budget: u32,
    started: Instant,
}

impl Attempt {
    /// Starts the book-keeping of attempt `attempt` (1-based) of job `id`.
    pub(crate) fn begin(
        rt: Shared,
        kind: JobKind,
        id: &TaskId,
        attempt: usize,
        enqueued_at_ms: Option<i64>,
    ) -> Self {
        let attempt = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
        let budget = rt.config.policies.of(kind).attempts;
        metrics::counter!("muster_job_attempts_total", "kind" => kind.name()).increment(1);
        if attempt == 1
            && let Some(enqueued) = enqueued_at_ms
        {
            let waited = chrono::Utc::now().timestamp_millis() - enqueued;
            metrics::histogram!("muster_job_start_latency_seconds", "kind" => kind.name())
                .record(waited.max(0) as f64 / 1000.0);
        }
        Self {
            rt,
            kind,
            id: id.to_string(),
            attempt,
            budget,
            started: Instant::now(),
        }
    }

    /// The job holds `units` retryable pieces of work (a deployment's
    /// steps), each with the kind's attempts.
    pub(crate) fn set_units(&mut self, units: usize) {
        let units = u32::try_from(units.max(1)).unwrap_or(u32::MAX);
        self.budget = self
            .rt
            .config
            .policies
            .of(self.kind)
            .attempts
            .saturating_mul(units);
    }

    /// The job's id, for correlation.
    pub(crate) fn job_id(&self) -> &str {
        &self.id
    }

    /// This attempt's number (1-based).
    pub(crate) fn number(&self) -> u32 {
        self.attempt
    }

    /// Whether this is the kind's last attempt.
    pub(crate) fn is_last(&self) -> bool {
        self.attempt >= self.budget
    }

    /// Finishes the attempt: a retryable failure with attempts left moves
    /// the job's `run_at` by the backoff; any other failure makes it a dead
    /// letter now. The error goes back to apalis, which records it.
    pub(crate) async fn finish(self, result: Result<(), JobFailure>) -> Result<(), BoxDynError> {
        let kind = self.kind.name();
        let elapsed = self.started.elapsed().as_secs_f64();
        let (outcome, error) = match result {
            Ok(()) => ("succeeded", None),
            Err(JobFailure::Retry(e)) if !self.is_last() => {
                let delay = self.rt.config.policies.of(self.kind).delay(self.attempt);
                if let Err(pe) = self.rt.queue.postpone(&self.id, delay).await {
                    tracing::warn!(job = %self.id, error = %pe, "cannot postpone the retry");
                }
                tracing::info!(job = %self.id, kind, attempt = self.attempt, ?delay, error = %e, "job failed; retrying later");
                ("retried", Some(e))
            }
            Err(JobFailure::Retry(e) | JobFailure::Fatal(e)) => {
                if let Err(de) = self.rt.queue.bury(&self.id, self.attempt).await {
                    tracing::warn!(job = %self.id, error = %de, "cannot dead-letter the job");
                }
                tracing::warn!(job = %self.id, kind, attempt = self.attempt, error = %e, "job failed for good; dead-lettered");
                ("dead", Some(e))
            }
        };
        metrics::counter!("muster_jobs_total", "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!("muster_job_duration_seconds", "kind" => kind, "outcome" => outcome)
            .record(elapsed);
        match error {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }
}

/// Advisory-lock class of job leases (two-key form, apart from the event
/// store's and the projections' locks).
const JOB_LEASE_CLASS: i32 = 0x4D53_4A42; // "MSJB"

/// A session advisory lock on `key`, held on its own pooled connection for
/// as long as a job runs: a second worker that got the same job (a rescue
/// that judged a slow-but-alive worker dead) finds it taken and retries
/// later instead of running the job beside the first. The lock goes with
/// the connection if the process dies.
pub(crate) struct JobLease {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: String,
}

impl JobLease {
    /// Takes the lease on `key`, or `None` if another worker holds it.
    pub(crate) async fn take(rt: &Runtime, key: String) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = rt.store.sessions().acquire().await?;
        let taken = sqlx::query_scalar!(
            r#"select pg_try_advisory_lock($1, hashtext($2)) as "taken!""#,
            JOB_LEASE_CLASS,
            key,
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(taken.then_some(Self {
            conn: Some(conn),
            key,
        }))
    }

    /// Releases the lease; a connection that cannot confirm the release is
    /// closed rather than returned to the pool still holding it.
    pub(crate) async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let released = sqlx::query_scalar!(
            r#"select pg_advisory_unlock($1, hashtext($2)) as "released!""#,
            JOB_LEASE_CLASS,
            self.key,
        )
        .fetch_one(&mut *conn)
        .await;
        if !matches!(released, Ok(true)) {
            conn.close_on_drop();
        }
    }
}

impl Drop for JobLease {
    fn drop(&mut self) {
        // Dropped without `release` (a panic): never pool a connection that
        // may still hold the lock.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Cleans up finished jobs on a schedule and keeps the queue gauges fresh.
async fn housekeeping(rt: Shared) {
    let mut last_cleanup: Option<Instant> = None;
    loop {
        if last_cleanup.is_none_or(|at| at.elapsed() >= rt.config.cleanup_interval) {
            match rt.queue.purge_finished(rt.config.job_history).await {
                Ok(purged) => {
                    last_cleanup = Some(Instant::now());
                    if purged > 0 {
                        tracing::info!(purged, "finished jobs cleaned up");
                    }
                    metrics::counter!("muster_jobs_purged_total").increment(purged);
                }
                Err(e) => tracing::warn!(error = %e, "job cleanup failed; will retry"),
            }
            // Retention of what the jobs leave behind.
            match rt.reports.purge_finished(rt.config.report_retention).await {
                Ok(n) => metrics::counter!("muster_retention_purged_total", "what" => "reports")
                    .increment(n),
                Err(e) => tracing::warn!(error = %e, "report retention failed; will retry"),
            }
            match rt
                .webhooks
                .purge_finished(rt.config.delivery_retention)
                .await
            {
                Ok(n) => metrics::counter!("muster_retention_purged_total", "what" => "deliveries")
                    .increment(n),
                Err(e) => tracing::warn!(error = %e, "delivery retention failed; will retry"),
            }
        }
        match rt.queue.depths().await {
            Ok(depths) => {
                for kind in JobKind::ALL {
                    for &status in JobStatus::ALL.iter().filter(|&&s| s != JobStatus::Done) {
                        let n = depths
                            .iter()
                            .find(|(k, s, _)| *k == kind && *s == status)
                            .map_or(0, |(_, _, n)| *n);
                        metrics::gauge!("muster_job_queue_depth", "kind" => kind.name(), "status" => status.name())
                            .set(n as f64);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read queue depths"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5).min(rt.config.cleanup_interval)) => {}
            () = rt.shutdown.cancelled() => return,
        }
    }
}
