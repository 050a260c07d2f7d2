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

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};

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
        match ask(&options, &mut connection).await {
            Probe::Answered => {
                refused = 0;
                unanswered_since = None;
            }
            Probe::Refused => {
                refused += 1;
                // Reconnect from scratch next time: the old session is gone.
                connection = None;
            }
            Probe::Unanswered => {
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

/// How one probe went.
enum Probe {
    /// The database answered.
    Answered,
    /// The server is gone: the connection was refused or reset.
    Refused,
    /// No answer in time, or the server is there but busy (no connection
    /// slot to spare).
    Unanswered,
}

/// One probe: a ping on the probe's connection, made first if need be
/// (a new connection gets longer than a ping: on a loaded machine a
/// backend takes a while to start).
async fn ask(options: &PgConnectOptions, connection: &mut Option<PgConnection>) -> Probe {
    let judge = |error: sqlx::Error| match &error {
        // too_many_connections: there, and busy.
        sqlx::Error::Database(e) if e.code().as_deref() == Some("53300") => Probe::Unanswered,
        _ => Probe::Refused,
    };
    if connection.is_none() {
        match tokio::time::timeout(SLOW_TO_DOWN, options.connect()).await {
            Ok(Ok(fresh)) => *connection = Some(fresh),
            Ok(Err(e)) => return judge(e),
            Err(_) => return Probe::Unanswered,
        }
    }
    let Some(live) = connection.as_mut() else {
        return Probe::Unanswered;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, crate::db::prove_alive(live)).await {
        Ok(Ok(())) => Probe::Answered,
        Ok(Err(e)) => judge(e),
        Err(_) => Probe::Unanswered,
    }
}
