//! Jobs a command's events imply, queued in the command's own transaction
//! (exactly one job per trigger, or none if the command does not commit).
//!
//! The store names the work in its own terms and hands it to a
//! [`JobSink`]; how a job is queued (apalis-postgres, its retry policy)
//! belongs to the async side (`muster-jobs`), which implements the sink.

use std::future::Future;
use std::pin::Pin;

use muster_domain::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

/// Work that a command's events hand to the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImpliedJob {
    /// Run deployment `deployment_id`'s steps.
    RunDeployment {
        /// Which run of it: 0 the first, n after n retries (each run is a
        /// job of its own).
        run: u32,
        /// The deployment.
        deployment_id: Uuid,
        /// Higher runs first.
        priority: u8,
        /// Its steps: each has the kind's attempts.
        steps: u32,
    },
    /// Sync calendar link `calendar_id` now (its first sync).
    SyncCalendar {
        /// The link.
        calendar_id: Uuid,
    },
}

/// What a [`JobSink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// Queues implied jobs inside the caller's transaction.
pub trait JobSink: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `job` of `tenant` on `conn`, in the command's transaction; a
    /// job already queued for the same trigger is a no-op, and must not
    /// abort the transaction.
    fn push<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        tenant: &'a TenantId,
        job: &'a ImpliedJob,
    ) -> SinkFuture<'a>;
}
