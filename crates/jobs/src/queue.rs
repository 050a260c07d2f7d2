//! Jobs on the apalis-postgres queue (`apalis.jobs`): kinds, the retry
//! policy per kind, and pushing typed jobs inside a caller's transaction.
//!
//! apalis-postgres keeps a failed job `Failed` with its attempt count and
//! fetches it again while `attempts < max_attempts`, immediately unless its
//! `run_at` moved: the workers move `run_at` by [`RetryPolicy::delay`]
//! before they give a failure back. A job that used up its attempts stays
//! in the table as a dead letter until an admin re-drives it
//! ([`JobQueue::retry`]).

use std::time::Duration;

use apalis::prelude::{MetadataStore, TaskBuilder};
use chrono::Utc;
use muster_store::implied_jobs::{ImpliedJob, JobSink, SinkFuture};
use rand::Rng;
use sqlx::{Connection, PgConnection, PgPool};

use crate::JobsError;
use crate::job::{DeploymentJob, Job};

/// What kind of work a job is; each kind is its own apalis queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
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
            .insert("tenant", job.tenant().to_owned())
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
        Ok(TaskBuilder::new(args)
            .with_metadata(metadata)
            .priority(usize::from(job.priority()))
            .max_attempts(attempts as usize)
            .idempotency_key(job.idempotency_key())
            .build())
    }
}

/// The jobs commands imply are typed jobs like any other.
impl JobSink for JobQueue {
    fn push<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        tenant: &'a str,
        job: &'a ImpliedJob,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            let result = match job {
                ImpliedJob::RunDeployment {
                    deployment_id,
                    priority,
                    steps,
                } => {
                    let job = DeploymentJob {
                        tenant: tenant.to_owned(),
                        deployment_id: *deployment_id,
                        priority: *priority,
                        steps: *steps,
                        enqueued_at: None,
                    };
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
