//! What admins see and do with jobs: list them by status, re-drive dead
//! letters, and what the workers need around an attempt (postpone a
//! retry, bury a job), plus cleanup and the queue-depth gauges.
//!
//! These statements run against apalis-postgres' own table, whose schema
//! is not ours (it is created by its migrations, after ours, so the
//! `.sqlx` check cannot see it): they are runtime-checked, here only.

use muster_domain::TenantId;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::JobsError;
use crate::kind::JobKind;
use crate::queue::JobQueue;
use crate::text_enum::text_enum;

/// A job as admins see it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRecord {
    /// The job id (a ULID).
    pub id: String,
    /// Its kind.
    pub kind: JobKind,
    /// Where it stands.
    pub status: JobStatus,
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

text_enum! {
    /// Where a job stands.
    pub enum JobStatus {
        /// Waiting to run (new).
        Pending = "pending",
        /// Taken by a worker.
        Running = "running",
        /// Finished.
        Done = "done",
        /// Failed with attempts left, waiting for its retry.
        Failed = "failed",
        /// Attempts used up: a dead letter.
        Dead = "dead",
    }
}

/// Which jobs to list (`status=failed` means the dead letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatusFilter {
    /// Dead letters: every attempt failed.
    Failed,
    /// Waiting for a worker (new, or a retry waiting for its backoff).
    Pending,
    /// Taken by a worker.
    Running,
    /// Finished.
    Done,
}

/// A row of the job listing, before its kind and status are typed.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    priority: i32,
    run_at: DateTime<Utc>,
    done_at: Option<DateTime<Utc>>,
    worker: Option<String>,
    last_error: Option<String>,
    args: Option<serde_json::Value>,
}

impl JobRow {
    /// `None`: a job of a queue that is not muster's.
    fn typed(self) -> Option<JobRecord> {
        Some(JobRecord {
            id: self.id,
            kind: JobKind::from_queue(&self.kind)?,
            status: JobStatus::try_from(self.status).ok()?,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            priority: self.priority,
            run_at: self.run_at,
            done_at: self.done_at,
            worker: self.worker,
            last_error: self.last_error,
            args: self.args,
        })
    }
}

/// The SQL status expression behind [`JobRecord::status`].
const STATUS_SQL: &str = "case
    when status in ('Failed', 'Killed') and attempts >= max_attempts then 'dead'
    when status = 'Failed' then 'failed'
    when status in ('Running', 'Queued') then 'running'
    when status = 'Done' then 'done'
    else 'pending' end";

/// How many workers heartbeat, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLiveness {
    /// Workers seen in the last 30 seconds.
    pub alive: i64,
    /// Workers seen in the last hour (alive or not).
    pub recent: i64,
}

impl WorkerLiveness {
    /// Workers ran lately and none of them heartbeats now: jobs wait.
    pub fn all_dead(self) -> bool {
        self.recent > 0 && self.alive == 0
    }
}

impl JobQueue {
    /// Whether the queue's workers are alive, by their heartbeats.
    pub async fn worker_liveness(&self) -> Result<WorkerLiveness, JobsError> {
        // Runtime-checked like the rest of this module: apalis' schema.
        let (alive, recent): (i64, i64) = sqlx::query_as(
            "select count(*) filter (where last_seen > now() - interval '30 seconds'),
                    count(*) filter (where last_seen > now() - interval '1 hour')
               from apalis.workers",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(WorkerLiveness { alive, recent })
    }

    /// Jobs of `tenant` with `status`, oldest id first after `after`.
    pub async fn list(
        &self,
        tenant: &TenantId,
        status: Option<JobStatusFilter>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRecord>, JobsError> {
        self.select_jobs(tenant, status, after, None, limit).await
    }

    /// Job `id` of `tenant`.
    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Option<JobRecord>, JobsError> {
        Ok(self
            .select_jobs(tenant, None, None, Some(id), 1)
            .await?
            .pop())
    }

    async fn select_jobs(
        &self,
        tenant: &TenantId,
        status: Option<JobStatusFilter>,
        after: Option<&str>,
        only: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRecord>, JobsError> {
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
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(wanted)
            .bind(after)
            .bind(limit)
            .bind(only)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(JobRow::typed).collect())
    }

    /// Re-drives a dead letter of `tenant`: it becomes pending with a fresh
    /// set of attempts. `Err(NotFound)`: no such job; `Err(JobNotDead)`: the job
    /// exists but has attempts left or is not failed.
    pub async fn retry(&self, tenant: &TenantId, id: &str) -> Result<JobRecord, JobsError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(bool,)> = sqlx::query_as(
            "select status in ('Failed', 'Killed') and attempts >= max_attempts
               from apalis.jobs where id = $1 and metadata -> 'tenant' = $2 for update",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        match found {
            None => return Err(JobsError::NotFound("job")),
            Some((false,)) => return Err(JobsError::JobNotDead),
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
        self.get(tenant, id)
            .await?
            .ok_or(JobsError::NotFound("job"))
    }

    /// Deletes finished jobs (done, or dead letters) older than `keep`, so
    /// that the queue table keeps a bounded history, and workers not seen
    /// for as long. Returns how many jobs.
    pub async fn purge_finished(&self, keep: Duration) -> Result<u64, JobsError> {
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

    /// Unfinished jobs (every status but done) per kind and status, for
    /// the queue-depth gauges. Done jobs are history, not depth: counting
    /// them would scan the whole retention window every time.
    pub async fn depths(&self) -> Result<Vec<(JobKind, JobStatus, i64)>, JobsError> {
        let sql = format!(
            "select job_type, {STATUS_SQL} as status, count(*)::int8 from apalis.jobs
              where status <> 'Done' group by 1, 2"
        );
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(queue, status, n)| {
                Some((
                    JobKind::from_queue(&queue)?,
                    JobStatus::try_from(status).ok()?,
                    n,
                ))
            })
            .collect())
    }

    /// Makes job `id` a dead letter after attempt `attempt`: no attempts
    /// remain, whatever its kind's policy allowed.
    pub async fn bury(&self, id: &str, attempt: u32) -> Result<(), JobsError> {
        sqlx::query("update apalis.jobs set max_attempts = least(max_attempts, $2) where id = $1")
            .bind(id)
            .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Postpones job `id`'s next attempt by `delay`: apalis-postgres would
    /// otherwise fetch a failed job again at once.
    pub async fn postpone(&self, id: &str, delay: Duration) -> Result<(), JobsError> {
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
