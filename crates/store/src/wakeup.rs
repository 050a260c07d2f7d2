//! Wake-ups for event readers that cost the write path nothing.
//!
//! `NOTIFY` inside an append transaction would serialise every writer behind
//! Postgres' cluster-wide notify lock at commit. Instead, a committed append
//! only signals an in-process `Notify`; a background task turns bursts of
//! signals into one `NOTIFY` every few milliseconds, from its own
//! connection and transaction. Readers LISTEN and still poll as a fallback.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

/// The channel readers LISTEN on.
pub const CHANNEL: &str = "muster_events";

/// Coalescing window: at most one NOTIFY per this interval per process.
const COALESCE: Duration = Duration::from_millis(5);

/// The in-process signal that appends were committed.
#[derive(Debug, Clone, Default)]
pub struct AppendSignal(Arc<Notify>);

impl AppendSignal {
    /// Records that events were committed; never blocks.
    pub fn appended(&self) {
        self.0.notify_one();
    }
}

/// Sends a NOTIFY after each burst of appends until the pool closes.
pub async fn run_notifier(pool: PgPool, signal: AppendSignal) {
    while !pool.is_closed() {
        signal.0.notified().await;
        if let Err(e) = sqlx::query!("select pg_notify($1, '')", CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "could not send the append wake-up");
        }
        metrics::counter!("muster_append_wakeups_total").increment(1);
        tokio::time::sleep(COALESCE).await;
    }
}
