//! The async side's tables, with one owner: typed jobs on the
//! apalis-postgres queue (pushing them inside a caller's transaction,
//! retry policies, dead letters, cleanup), webhook subscriptions with their
//! deliveries and attempts, and report requests with their files.
//!
//! The event store does not know this crate: the jobs a command implies
//! reach the queue through [`JobQueue`]'s [`muster_store::implied_jobs::JobSink`].

pub mod admin;
pub mod client_messages;
pub mod error;
pub mod job;
pub mod kind;
pub mod queue;
pub mod reports;
mod text_enum;
pub mod webhooks;

pub use error::JobsError;
pub use job::{CalendarSyncJob, DeploymentJob, Job, NotificationJob, ReportJob};
pub use kind::{JobKind, JobPolicies, RetryPolicy};
pub use queue::JobQueue;

/// Applies apalis-postgres' own migrations (schema `apalis`, its history in
/// `apalis._sqlx_migrations`; needs `hstore`, which muster's migrations
/// create first: run [`muster_store::db::migrate`] before this).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    apalis_postgres::PostgresStorage::migrations()
        .run(pool)
        .await?;
    // Indexes of our own on apalis' table, which only exists from here on
    // (so not in muster's migrations). Finished jobs keep their worker's
    // name for their retention (days), so without them every heartbeat's
    // search for a dead worker's jobs and every queue-depth reading scan
    // that whole history: 236 ms and 125 ms with 600k finished jobs,
    // stalling a worker's fetches for the heartbeat's duration.
    for ddl in [
        "create index if not exists muster_jobs_in_flight on apalis.jobs (lock_by)
          where status = 'Running' or status = 'Queued'",
        "create index if not exists muster_jobs_unfinished on apalis.jobs (job_type, status)
          where status <> 'Done'",
    ] {
        // Runtime-checked: DDL on apalis' schema, which muster's compile
        // checks do not describe; the strings are constants.
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(pool)
            .await?;
    }
    Ok(())
}
