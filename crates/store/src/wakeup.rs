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

/// The channel event readers LISTEN on: events were appended.
pub const EVENTS_CHANNEL: &str = "muster_events";

/// The channel read-your-writes waiters LISTEN on: projections moved on.
pub const PROJECTIONS_CHANNEL: &str = "muster_projections";

/// Coalescing window: at most one NOTIFY per this interval per process.
const COALESCE: Duration = Duration::from_millis(5);

/// The in-process signal that something readers wait for was committed.
#[derive(Debug, Clone, Default)]
pub struct CommitSignal(Arc<Notify>);

impl CommitSignal {
    /// Records a commit; never blocks.
    pub fn committed(&self) {
        self.0.notify_one();
    }
}

/// Sends a NOTIFY on `channel` after each burst of commits until the pool
/// closes.
pub async fn run_notifier(pool: PgPool, signal: CommitSignal, channel: &'static str) {
    while !pool.is_closed() {
        signal.0.notified().await;
        if let Err(e) = sqlx::query!("select pg_notify($1, '')", channel)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "could not send the append wake-up");
        }
        metrics::counter!("muster_wakeups_sent_total", "channel" => channel).increment(1);
        tokio::time::sleep(COALESCE).await;
    }
}
