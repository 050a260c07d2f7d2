//! Whether the database answers, known before a request needs it.
//!
//! A probe on a connection of its own (not the pool's: a busy pool is not a
//! down database) pings every [`PROBE_EVERY`]. After [`FAILURES_TO_DOWN`]
//! refused probes in a row (the server is gone: connections are refused or
//! reset), or probes that have not answered for [`SLOW_TO_DOWN`] (the
//! server hangs), requests that need the database are answered 503 at once
//! instead of each waiting out the pool's acquire timeout, and `/readyz`
//! says not ready; the first probe that succeeds again lets them through.
//! A slow answer alone is not a down database: on a loaded machine a new
//! connection can take longer than a probe's timeout, and turning every
//! request away then would make the load the outage. Nothing is lost
//! meanwhile: what was not acknowledged was not committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Refused probes in a row before the database counts as down.
const FAILURES_TO_DOWN: u32 = 3;
/// How long probes may go unanswered (timing out) before the database
/// counts as down: about the pool's acquire timeout, which a request
/// would otherwise wait out.
const SLOW_TO_DOWN: Duration = Duration::from_secs(3);

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
    let mut refused = 0u32;
    let mut unanswered_since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        let started = tokio::time::Instant::now();
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
        match answered {
            Ok(Ok(())) => {
                refused = 0;
                unanswered_since = None;
            }
            Ok(Err(_)) => {
                refused += 1;
                // Reconnect from scratch next time: the old session is gone.
                connection = None;
            }
            Err(_) => {
                unanswered_since.get_or_insert(started);
                // A ping abandoned mid-way leaves the session unusable.
                connection = None;
            }
        }
        let hanging = unanswered_since.is_some_and(|since| since.elapsed() >= SLOW_TO_DOWN);
        let healthy = refused < FAILURES_TO_DOWN && !hanging;
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
