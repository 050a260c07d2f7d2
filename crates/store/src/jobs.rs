//! Jobs on the apalis-postgres queue (`apalis.jobs`): pushing them inside a
//! caller's transaction, the retry policy per kind, the dead letters, and
//! cleanup.
//!
//! apalis-postgres keeps a failed job `Failed` with its attempt count and
//! fetches it again while `attempts < max_attempts`, immediately unless its
//! `run_at` moved: the workers move `run_at` by [`RetryPolicy::delay`]
//! before they give a failure back. A job that used up its attempts stays
//! in the table as a dead letter until an admin re-drives it
//! ([`Store::retry_job`]).

use std::time::Duration;

use apalis::prelude::{MetadataStore, TaskBuilder};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::{Store, StoreError};

/// What kind of work a job is; each kind is its own apalis queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Runs a deployment's steps.
    Deployment,
    /// Delivers one webhook or email notification.
    Notification,
    /// Builds one report file.
    Report,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 3] = [JobKind::Deployment, JobKind::Notification, JobKind::Report];

    /// The apalis queue (`job_type`) of this kind.
    pub fn queue(self) -> &'static str {
        match self {
            JobKind::Deployment => "muster.deployment",
            JobKind::Notification => "muster.notification",
            JobKind::Report => "muster.report",
        }
    }

    /// The short name used in metrics and the API.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Deployment => "deployment",
            JobKind::Notification => "notification",
            JobKind::Report => "report",
        }
    }

    /// The kind whose queue is `queue`.
    pub fn from_queue(queue: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.queue() == queue)
    }
}

/// How often a kind of job runs and how long it waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The delay before the second attempt; it doubles after each failure.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): exponential,
    /// capped, with jitter over its upper half so that jobs failing
    /// together do not come back together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_delay);
        capped.mul_f64(0.5 + rand::rng().random::<f64>() * 0.5)
    }
}

/// The retry policy of every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPolicies {
    /// Deployments (SPEC: 3 attempts by default).
    pub deployment: RetryPolicy,
    /// Notifications.
    pub notification: RetryPolicy,
    /// Reports.
    pub report: RetryPolicy,
}

impl Default for JobPolicies {
    fn default() -> Self {
        Self {
            deployment: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(60),
            },
            notification: RetryPolicy {
                attempts: 8,
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(3_600),
            },
            report: RetryPolicy {
                attempts: 2,
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(60),
            },
        }
    }
}

impl JobPolicies {
    /// The policy of `kind`.
    pub fn of(&self, kind: JobKind) -> RetryPolicy {
        match kind {
            JobKind::Deployment => self.deployment,
            JobKind::Notification => self.notification,
            JobKind::Report => self.report,
        }
    }
}

/// A job to push.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Its kind (queue).
    pub kind: JobKind,
    /// The tenant it works for (kept in the job's metadata, so admins see
    /// only their own tenant's jobs).
    pub tenant: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Higher runs first.
    pub priority: u8,
    /// At most one job per kind and key exists.
    pub idempotency_key: String,
    /// Units of retryable work in the job (a deployment's steps): its
    /// attempts are the kind's attempts per unit.
    pub work_units: u32,
}

/// Pushes `job` in the caller's transaction, with the kind's attempts.
/// Returns `false` when a job with the same kind and idempotency key is
/// already queued: apalis-postgres refuses such a push with a unique
/// violation, which would abort the caller's whole transaction, so the
/// push runs under a savepoint and a duplicate becomes a no-op.
pub async fn enqueue(
    conn: &mut PgConnection,
    policies: &JobPolicies,
    job: &JobRequest,
) -> Result<bool, StoreError> {
    let task = task_of(policies, job)?;
    let pushed = push(conn, job.kind, vec![task]).await?;
    if !pushed {
        metrics::counter!("muster_jobs_duplicate_enqueues_total", "kind" => job.kind.name())
            .increment(1);
    }
    Ok(pushed)
}

/// Pushes `jobs` in the caller's transaction with one statement. Keys must
/// be new (the reactor's come from delivery rows it has just inserted); a
/// duplicate among them falls back to [`enqueue`] one by one, which skips it.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    policies: &JobPolicies,
    jobs: &[JobRequest],
) -> Result<(), StoreError> {
    let Some(first) = jobs.first() else {
        return Ok(());
    };
    if jobs.iter().any(|j| j.kind != first.kind) {
        for job in jobs {
            enqueue(conn, policies, job).await?;
        }
        return Ok(());
    }
    let tasks = jobs
        .iter()
        .map(|job| task_of(policies, job))
        .collect::<Result<Vec<_>, _>>()?;
    if !push(conn, first.kind, tasks).await? {
        for job in jobs {
            enqueue(conn, policies, job).await?;
        }
    }
    Ok(())
}

/// Pushes `tasks` of `kind` under a savepoint. `false`: one of them has an
/// idempotency key already queued, and nothing was pushed.
async fn push(
    conn: &mut PgConnection,
    kind: JobKind,
    tasks: Vec<apalis_postgres::PgTask>,
) -> Result<bool, StoreError> {
    let count = tasks.len() as u64;
    let mut savepoint = conn.begin().await?;
    match apalis_postgres::queries::push_tasks(&mut *savepoint, kind.queue(), tasks).await {
        Ok(()) => {
            savepoint.commit().await?;
            metrics::counter!("muster_jobs_enqueued_total", "kind" => kind.name()).increment(count);
            Ok(true)
        }
        Err(apalis_postgres::Error::Database(e)) if is_duplicate_key(&e) => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(apalis_postgres::Error::Database(e)) => Err(e.into()),
        Err(e) => Err(StoreError::Job(e.to_string())),
    }
}

/// The apalis task for `job`, with the kind's attempts and the tenant in
/// its metadata.
fn task_of(
    policies: &JobPolicies,
    job: &JobRequest,
) -> Result<apalis_postgres::PgTask, StoreError> {
    let mut metadata = MetadataStore::new();
    metadata
        .insert("tenant", job.tenant.clone())
        .map_err(|e| StoreError::Job(e.to_string()))?;
    // The enqueue time in milliseconds: the queue's own `run_at` has
    // whole seconds, too coarse for the enqueue→start latency.
    let mut args = job.args.clone();
    if let Some(map) = args.as_object_mut() {
        map.insert("enqueued_at".into(), Utc::now().timestamp_millis().into());
    }
    let args = serde_json::to_vec(&args).map_err(|e| StoreError::Job(e.to_string()))?;
    let attempts = policies
        .of(job.kind)
        .attempts
        .saturating_mul(job.work_units.max(1));
    Ok(TaskBuilder::new(args)
        .with_metadata(metadata)
        .priority(usize::from(job.priority))
        .max_attempts(attempts as usize)
        .idempotency_key(&job.idempotency_key)
        .build())
}

fn is_duplicate_key(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("23505")
            && d.constraint().is_some_and(|c| c.contains("idempotency"))
    })
}

/// A job as admins see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobRecord {
    /// The job id (a ULID).
    pub id: String,
    /// Its kind (`deployment`, `notification`, `report`).
    pub kind: String,
    /// `pending`, `running`, `done`, `failed` (attempts left, waiting for
    /// its retry) or `dead` (attempts used up: a dead letter).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Priority (higher first).
    pub priority: i32,
    /// When it runs (next).
    pub run_at: DateTime<Utc>,
    /// When it finished.
    pub done_at: Option<DateTime<Utc>>,
    /// The worker holding it.
    pub worker: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// Its arguments.
    pub args: Option<serde_json::Value>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatusFilter {
    /// Dead letters: attempts used up.
    Failed,
    /// Waiting (new or retrying).
    Pending,
    /// Taken by a worker.
    Running,
    /// Finished.
    Done,
}

/// The SQL status expression behind [`JobRecord::status`].
const STATUS_SQL: &str = "case
    when status in ('Failed', 'Killed') and attempts >= max_attempts then 'dead'
    when status = 'Failed' then 'failed'
    when status in ('Running', 'Queued') then 'running'
    when status = 'Done' then 'done'
    else 'pending' end";

impl Store {
    /// Jobs of `tenant` with `status`, oldest id first after `after`.
    pub async fn list_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatusFilter>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs(tenant, status, after, None, limit).await
    }

    /// Job `id` of `tenant`.
    pub async fn job(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(self
            .select_jobs(tenant, None, None, Some(id), 1)
            .await?
            .pop())
    }

    async fn select_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatusFilter>,
        after: Option<&str>,
        only: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let wanted = status.map(|s| match s {
            JobStatusFilter::Failed => "dead",
            JobStatusFilter::Pending => "pending",
            JobStatusFilter::Running => "running",
            JobStatusFilter::Done => "done",
        });
        let sql = format!(
            "select * from (
               select id, job_type as kind, {STATUS_SQL} as status, attempts, max_attempts,
                      priority, run_at, done_at, lock_by as worker,
                      coalesce(last_result->>'Err', case when status <> 'Done' then last_result::text end) as last_error,
                      convert_from(job, 'UTF8')::jsonb as args
                 from apalis.jobs
                where metadata -> 'tenant' = $1 and ($3::text is null or id > $3)
                  and ($5::text is null or id = $5)
             ) j
             where $2::text is null or j.status = $2
             order by id limit $4"
        );
        let mut rows: Vec<JobRecord> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(wanted)
            .bind(after)
            .bind(limit)
            .bind(only)
            .fetch_all(&self.pool)
            .await?;
        for row in &mut rows {
            if let Some(kind) = JobKind::from_queue(&row.kind) {
                row.kind = kind.name().to_owned();
            }
        }
        Ok(rows)
    }

    /// Re-drives a dead letter of `tenant`: it becomes pending with a fresh
    /// set of attempts. `Err(NotFound)`: no such job; `Err(JobNotDead)`: the job
    /// exists but has attempts left or is not failed.
    pub async fn retry_job(&self, tenant: &str, id: &str) -> Result<JobRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(bool,)> = sqlx::query_as(
            "select status in ('Failed', 'Killed') and attempts >= max_attempts
               from apalis.jobs where id = $1 and metadata -> 'tenant' = $2 for update",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        match found {
            None => return Err(StoreError::NotFound("job")),
            Some((false,)) => return Err(StoreError::JobNotDead),
            Some((true,)) => {}
        }
        sqlx::query(
            "update apalis.jobs
                set status = 'Pending', attempts = 0, run_at = now(), done_at = null,
                    lock_by = null, lock_at = null
              where id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("muster_jobs_redriven_total").increment(1);
        self.job(tenant, id)
            .await?
            .ok_or(StoreError::NotFound("job"))
    }

    /// Deletes finished jobs (done, or dead letters) older than `keep`, so
    /// that the queue table keeps a bounded history, and workers not seen
    /// for as long. Returns how many jobs.
    pub async fn purge_finished_jobs(&self, keep: Duration) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "delete from apalis.jobs
              where (status = 'Done' or (status in ('Failed', 'Killed') and attempts >= max_attempts))
                and coalesce(done_at, run_at) < now() - make_interval(secs => $1)",
        )
        .bind(keep.as_secs_f64())
        .execute(&self.pool)
        .await?;
        // Every process start registers workers under new names; forget
        // the long-gone ones that no job refers to any more.
        sqlx::query(
            "delete from apalis.workers w
              where w.last_seen < now() - make_interval(secs => $1)
                and not exists (select 1 from apalis.jobs j where j.lock_by = w.id)",
        )
        .bind(keep.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Jobs per queue and status, for the queue-depth gauges.
    pub async fn queue_depths(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = format!(
            "select job_type, {STATUS_SQL} as status, count(*)::int8 from apalis.jobs group by 1, 2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Makes job `id` a dead letter after attempt `attempt`: no attempts
    /// remain, whatever its kind's policy allowed.
    pub async fn bury_job(&self, id: &str, attempt: u32) -> Result<(), StoreError> {
        sqlx::query("update apalis.jobs set max_attempts = least(max_attempts, $2) where id = $1")
            .bind(id)
            .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Postpones job `id`'s next attempt by `delay`: apalis-postgres would
    /// otherwise fetch a failed job again at once.
    pub async fn postpone_job(&self, id: &str, delay: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "update apalis.jobs set run_at = now() + make_interval(secs => $2) where id = $1",
        )
        .bind(id)
        .bind(delay.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
