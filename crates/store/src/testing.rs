//! Test support: a fresh, migrated database per test, dropped afterwards.
//!
//! The server is `MUSTER_TEST_DATABASE_URL` (default: the local Postgres as
//! user `postgres`). Each test gets its own database, so tests run in
//! parallel without sharing state.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool};

/// The default test server.
pub const DEFAULT_TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
pub struct TestDatabase {
    /// Connection options for it.
    pub options: PgConnectOptions,
    /// A pool on it.
    pub pool: PgPool,
    name: String,
    admin: PgConnectOptions,
    server_url: String,
}

/// A database left behind by a test that was killed is dropped by a later
/// run after this long.
const STALE_AFTER_SECS: u64 = 3600;

impl TestDatabase {
    /// Creates and migrates a fresh database.
    pub async fn new() -> Self {
        let url = std::env::var("MUSTER_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_SERVER.to_owned());
        let admin: PgConnectOptions = url
            .parse()
            .expect("MUSTER_TEST_DATABASE_URL is a postgres URL");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = format!("muster_test_{now}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .expect("the test Postgres is reachable (set MUSTER_TEST_DATABASE_URL)");
        drop_stale(&mut conn, now).await;
        // The name is ours (a timestamp and a UUID), never input.
        sqlx::query(AssertSqlSafe(format!("create database {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let options = admin.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        crate::db::migrate(&pool)
            .await
            .expect("migrate the test database");
        Self {
            options,
            pool,
            name,
            admin,
            server_url: url,
        }
    }

    /// A `postgres://` URL of the database, for child processes.
    pub fn url(&self) -> String {
        let server = self
            .server_url
            .split('?')
            .next()
            .unwrap_or(&self.server_url);
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        format!("{base}/{}", self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

async fn drop_stale(conn: &mut sqlx::PgConnection, now: u64) {
    let names: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database where datname like 'muster\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "drop database if exists {name} with (force)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Async work cannot run in drop; a short-lived thread with its own
        // runtime drops the database, forcing off any connection left open.
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "drop database if exists {name} with (force)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}
