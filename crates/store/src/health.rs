//! Whether the database answers, known before a request needs it.
//!
//! A probe on a connection of its own (not the pool's: a busy pool is not a
//! down database) pings every [`PROBE_EVERY`]. After [`FAILURES_TO_DOWN`]
//! failed probes in a row, requests that need the database are answered 503
//! at once instead of each waiting out the pool's acquire timeout, and
//! `/readyz` says not ready; the first probe that succeeds again lets them
//! through. Nothing is
//! lost meanwhile: what was not acknowledged was not committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Failed probes in a row before the database counts as down: one slow
/// ping under load must not turn every request away.
const FAILURES_TO_DOWN: u32 = 3;

/// The database's health as the probe saw it last.
#[derive(Clone, Default)]
pub struct DbHealth {
    down: Arc<AtomicBool>,
}

impl DbHealth {
    /// Whether the last probe failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Starts probing the database `pool` connects to, for as long as the
    /// pool is open.
    pub fn spawn(pool: &PgPool) -> Self {
        let health = Self::default();
        metrics::gauge!("muster_database_up").set(1.0);
        tokio::spawn(probe(pool.clone(), health.down.clone()));
        health
    }
}

async fn probe(pool: PgPool, down: Arc<AtomicBool>) {
    let options = pool.connect_options().as_ref().clone();
    let mut connection: Option<PgConnection> = None;
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            if connection.is_none() {
                connection = Some(options.connect().await?);
            }
            match connection.as_mut() {
                Some(c) => c.ping().await,
                None => Ok(()),
            }
        })
        .await;
        let answered = matches!(answered, Ok(Ok(())));
        if answered {
            failures = 0;
        } else {
            failures += 1;
            // Reconnect from scratch next time: the old session is gone.
            connection = None;
        }
        let healthy = failures < FAILURES_TO_DOWN;
        let was_down = down.swap(!healthy, Ordering::Relaxed);
        if was_down == healthy {
            if healthy {
                tracing::info!("the database answers again");
            } else {
                tracing::warn!("the database does not answer: requests get 503 until it does");
            }
            metrics::gauge!("muster_database_up").set(if healthy { 1.0 } else { 0.0 });
        }
    }
}
