//! Connecting, migrating, and classifying database errors.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

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

/// `idle_in_transaction_session_timeout` of every connection (ms).
const IDLE_IN_TRANSACTION_MS: i64 = 30_000;

/// Where a process connects.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `DATABASE_URL`: every statement. With `direct` set, this is taken to
    /// be a pooler in transaction mode (PgBouncer), which keeps no session
    /// between transactions and refuses startup `options`.
    pub statements: PgConnectOptions,
    /// `MUSTER_DIRECT_DATABASE_URL`: Postgres itself, for what needs a
    /// session of its own (leases, `LISTEN`, migrations). `None`: the
    /// statements' URL serves both.
    pub direct: Option<PgConnectOptions>,
    /// `MUSTER_SECRET_KEY`: what seals the secrets stored in this database
    /// (calendar credentials). `None`: nothing secret can be stored.
    pub secret_key: Option<crate::secret::SecretKey>,
}

impl From<PgConnectOptions> for Endpoints {
    fn from(statements: PgConnectOptions) -> Self {
        Self {
            statements,
            direct: None,
            secret_key: None,
        }
    }
}

/// A process's pools for its [`Endpoints`].
#[derive(Debug, Clone)]
pub struct Pools {
    /// Statements and transactions.
    pub statements: PgPool,
    /// Sessions; the same pool as `statements` without a direct URL.
    pub sessions: PgPool,
}

impl Pools {
    /// Opens the pools lazily (see [`connect_lazy`]).
    pub fn connect_lazy(endpoints: &Endpoints, settings: &PoolSettings) -> Self {
        match &endpoints.direct {
            None => {
                let pool = connect_lazy(endpoints.statements.clone(), settings);
                Self {
                    statements: pool.clone(),
                    sessions: pool,
                }
            }
            Some(direct) => {
                let statements =
                    connect_lazy_through_pooler(endpoints.statements.clone(), settings);
                tokio::spawn(warn_unless_timeouts(statements.clone(), settings.clone()));
                Self {
                    statements,
                    sessions: connect_lazy(direct.clone(), settings),
                }
            }
        }
    }
}

/// Opens a pool lazily: the process starts even while the database is
/// down, and each connection is (re)made on demand, so it reconnects by
/// itself when the database returns.
pub fn connect_lazy(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
    let idle_in_transaction = format!("{IDLE_IN_TRANSACTION_MS}ms");
    let options = options.application_name("muster").options([
        ("statement_timeout", statement_timeout.as_str()),
        // An abandoned transaction would hold back every event reader
        // (see muster_safe_position), so the server ends it.
        (
            "idle_in_transaction_session_timeout",
            idle_in_transaction.as_str(),
        ),
    ]);
    pool_options(settings).connect_lazy_with(options)
}

/// A lazy pool through a pooler in transaction mode. No startup `options`
/// (PgBouncer refuses them: the timeouts belong on the role, see
/// docs/scaling.md), and no statement cache: a prepared statement would
/// outlive the transaction whose server connection it was made on. The
/// vendored sqlx-postgres then runs each statement unnamed in one flow
/// (vendor/README.md).
fn connect_lazy_through_pooler(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    let options = options
        .application_name("muster")
        .statement_cache_capacity(0);
    pool_options(settings).connect_lazy_with(options)
}

/// Behind a pooler, the server-side timeouts reach Postgres only where the
/// pooler's server connections get their settings (the role:
/// `ALTER ROLE … SET statement_timeout`, or PgBouncer's `connect_query`).
/// Says so once, at startup, if a pooled connection sees other values.
async fn warn_unless_timeouts(pool: PgPool, settings: PoolSettings) {
    let seen = sqlx::query!(
        r#"select (select setting::int8 from pg_settings where name = 'statement_timeout')
                      as "statement_timeout_ms!",
                  (select setting::int8 from pg_settings
                    where name = 'idle_in_transaction_session_timeout')
                      as "idle_in_transaction_ms!""#
    )
    .fetch_one(&pool)
    .await;
    let wanted = i64::try_from(settings.statement_timeout.as_millis()).unwrap_or(i64::MAX);
    match seen {
        Ok(seen)
            if seen.statement_timeout_ms == wanted
                && seen.idle_in_transaction_ms == IDLE_IN_TRANSACTION_MS => {}
        Ok(seen) => tracing::warn!(
            statement_timeout_ms = seen.statement_timeout_ms,
            idle_in_transaction_session_timeout_ms = seen.idle_in_transaction_ms,
            wanted_statement_timeout_ms = wanted,
            wanted_idle_in_transaction_session_timeout_ms = IDLE_IN_TRANSACTION_MS,
            "connections through the pooler do not have muster's timeouts; set them on the \
             role (ALTER ROLE … SET statement_timeout …) or in PgBouncer's connect_query"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read the timeouts through the pooler"),
    }
}

/// How long a pooled connection may sit idle and still be handed out
/// without a proof of life.
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

fn pool_options(settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // sqlx pings every idle connection before handing it out: one more
        // round trip per checkout, as long as a GET by id's whole query. A
        // connection that came back within the last second answered its
        // last statement then, so only longer-idle ones are checked: a
        // database that restarted (which takes longer than that) is still
        // never met through a stale connection. `BENCHMARKS.md` has the A/B.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > TRUSTED_IDLE {
                    prove_alive(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A round trip through `conn`: proof that the server still answers on it.
/// (`Connection::ping` is not: the vendored sqlx-postgres answers it
/// without a round trip when nothing is in flight, vendor/README.md.)
pub(crate) async fn prove_alive(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // Runtime-checked: a constant statement in the simple query protocol
    // (`raw_sql`), which has no compile-checked macro; nothing to bind.
    sqlx::raw_sql("select 1").execute(conn).await.map(drop)
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
