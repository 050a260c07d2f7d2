//! Connecting, migrating, and classifying database errors.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How the pool connects.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a caller waits for a connection before the request fails
    /// fast with 503.
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` of every connection.
    pub statement_timeout: Duration,
}

/// Opens a pool lazily: the process starts even while the database is
/// down, and each connection is (re)made on demand, so it reconnects by
/// itself when the database returns.
pub fn connect_lazy(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
    let options = options.application_name("muster").options([
        ("statement_timeout", statement_timeout.as_str()),
        // An abandoned transaction would hold back every event reader
        // (see muster_safe_position), so the server ends it.
        ("idle_in_transaction_session_timeout", "30s"),
    ]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options)
}

/// Applies the embedded migrations. The job queue's own schema comes after
/// them, from `muster_jobs::migrate`.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../../migrations").run(pool).await
}

/// The embedded migrations, for readiness checks.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("../../migrations")
}

/// SQLSTATE of the error, if the server sent one.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Deadlocks and serialisation failures: the transaction did nothing and
/// may simply run again.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    matches!(sqlstate(error).as_deref(), Some("40P01" | "40001"))
}

/// A unique violation of the named constraint.
pub(crate) fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    match error {
        sqlx::Error::Database(e) => e.is_unique_violation() && e.constraint() == Some(constraint),
        _ => false,
    }
}

/// The database cannot serve now (down, restarting, overloaded, too slow):
/// the client should retry later, and nothing was written.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(_) => matches!(
            sqlstate(error).as_deref(),
            // query_canceled (statement timeout), admin_shutdown,
            // crash_shutdown, cannot_connect_now, too_many_connections
            Some("57014" | "57P01" | "57P02" | "57P03" | "53300")
        ),
        _ => false,
    }
}
