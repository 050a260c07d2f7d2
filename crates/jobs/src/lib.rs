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
pub use job::{DeploymentJob, Job, NotificationJob, ReportJob};
pub use kind::{JobKind, JobPolicies, RetryPolicy};
pub use queue::JobQueue;

/// Applies apalis-postgres' own migrations (schema `apalis`, its history in
/// `apalis._sqlx_migrations`; needs `hstore`, which muster's migrations
/// create first: run [`muster_store::db::migrate`] before this).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    apalis_postgres::PostgresStorage::migrations()
        .run(pool)
        .await
}
