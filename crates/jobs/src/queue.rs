//! The apalis-postgres queue (`apalis.jobs`): pushing typed jobs inside a
//! caller's transaction, with their kind's retry policy.
//!
//! apalis-postgres keeps a failed job `Failed` with its attempt count and
//! fetches it again while `attempts < max_attempts`, immediately unless its
//! `run_at` moved: the workers move `run_at` by [`crate::RetryPolicy::delay`]
//! before they give a failure back. A job that used up its attempts stays
//! in the table as a dead letter until an admin re-drives it
//! ([`JobQueue::retry`]).

use apalis::prelude::{MetadataStore, TaskBuilder};
use chrono::Utc;
use muster_domain::TenantId;
use muster_store::implied_jobs::{ImpliedJob, JobSink, SinkFuture};
use sqlx::{Connection, PgConnection, PgPool};

use crate::JobsError;
use crate::job::{CalendarSyncJob, DeploymentJob, Job};
use crate::kind::{JobKind, JobPolicies};

/// The queue: pushes typed jobs with the configured policies, and answers
/// the admins' questions about them (see [`crate::admin`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobQueue {
    pub(crate) pool: PgPool,
    policies: JobPolicies,
}

impl JobQueue {
    /// The queue on `pool`, pushing jobs with `policies`.
    pub fn new(pool: PgPool, policies: JobPolicies) -> Self {
        Self { pool, policies }
    }

    /// The retry policy of every kind.
    pub fn policies(&self) -> &JobPolicies {
        &self.policies
    }

    /// Pushes `job` in the caller's transaction, with its kind's attempts.
    /// Returns `false` when a job with the same kind and idempotency key
    /// is already queued: apalis-postgres refuses such a push with a unique
    /// violation, which would abort the caller's whole transaction, so the
    /// push runs under a savepoint and a duplicate becomes a no-op.
    pub async fn enqueue<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: &J,
    ) -> Result<bool, JobsError> {
        let task = self.task_of(job)?;
        let pushed = push(conn, J::KIND, vec![task]).await?;
        if !pushed {
            metrics::counter!("muster_jobs_duplicate_enqueues_total", "kind" => J::KIND.name())
                .increment(1);
        }
        Ok(pushed)
    }

    /// Pushes `jobs` in the caller's transaction with one statement. Keys
    /// must be new (the reactor's come from delivery rows it has just
    /// inserted); a duplicate among them falls back to [`JobQueue::enqueue`]
    /// one by one, which skips it.
    pub async fn enqueue_many<J: Job>(
        &self,
        conn: &mut PgConnection,
        jobs: &[J],
    ) -> Result<(), JobsError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let tasks = jobs
            .iter()
            .map(|job| self.task_of(job))
            .collect::<Result<Vec<_>, _>>()?;
        if !push(conn, J::KIND, tasks).await? {
            for job in jobs {
                self.enqueue(conn, job).await?;
            }
        }
        Ok(())
    }

    /// The apalis task for `job`, with its kind's attempts and its tenant
    /// in the metadata.
    fn task_of<J: Job>(&self, job: &J) -> Result<apalis_postgres::PgTask, JobsError> {
        let mut metadata = MetadataStore::new();
        metadata
            .insert("tenant", job.tenant().to_string())
            .map_err(|e| JobsError::Encode(e.to_string()))?;
        // The enqueue time in milliseconds: the queue's own `run_at` has
        // whole seconds, too coarse for the enqueue→start latency.
        let mut args = serde_json::to_value(job).map_err(|e| JobsError::Encode(e.to_string()))?;
        if let Some(map) = args.as_object_mut() {
            map.insert("enqueued_at".into(), Utc::now().timestamp_millis().into());
        }
        let args = serde_json::to_vec(&args).map_err(|e| JobsError::Encode(e.to_string()))?;
        let attempts = self
            .policies
            .of(J::KIND)
            .attempts
            .saturating_mul(job.work_units().max(1));
        let mut task = TaskBuilder::new(args)
            .with_metadata(metadata)
            .priority(usize::from(job.priority()))
            .max_attempts(attempts as usize)
            .idempotency_key(job.idempotency_key());
        if let Some(at) = job.run_at() {
            task = task.run_at_timestamp(u64::try_from(at.timestamp()).unwrap_or(0));
        }
        Ok(task.build())
    }
}

/// The jobs commands imply are typed jobs like any other.
impl JobSink for JobQueue {
    fn push<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        tenant: &'a TenantId,
        job: &'a ImpliedJob,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            let result = match job {
                ImpliedJob::RunDeployment {
                    run,
                    deployment_id,
                    priority,
                    steps,
                } => {
                    let job = DeploymentJob {
                        tenant: tenant.clone(),
                        deployment_id: *deployment_id,
                        priority: *priority,
                        steps: *steps,
                        enqueued_at: None,
                        run: *run,
                    };
                    self.enqueue(conn, &job).await
                }
                ImpliedJob::SyncCalendar { calendar_id } => {
                    let job = CalendarSyncJob::new(tenant.clone(), *calendar_id);
                    self.enqueue(conn, &job).await
                }
            };
            match result {
                Ok(_) => Ok(()),
                Err(JobsError::Unavailable(e) | JobsError::Database(e)) => Err(e),
                Err(e) => Err(sqlx::Error::Encode(e.to_string().into())),
            }
        })
    }
}

/// Pushes `tasks` of `kind` under a savepoint. `false`: one of them has an
/// idempotency key already queued, and nothing was pushed.
async fn push(
    conn: &mut PgConnection,
    kind: JobKind,
    tasks: Vec<apalis_postgres::PgTask>,
) -> Result<bool, JobsError> {
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
        Err(e) => Err(JobsError::Queue(e.to_string())),
    }
}

fn is_duplicate_key(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("23505")
            && d.constraint().is_some_and(|c| c.contains("idempotency"))
    })
}
