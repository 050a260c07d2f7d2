//! Wake-ups for the read side, one LISTEN connection per process.
//!
//! `muster_events` (sent after appends, outside their transactions) wakes
//! projection runners and live subscribers; `muster_projections` (sent after
//! projection commits) refreshes the checkpoint positions that
//! read-your-writes waits on. A poll backs both up, so a lost notification
//! or a dropped connection costs latency, never correctness.
//!
//! With a hot standby serving the queries (`READ_DATABASE_URL`), the
//! positions are read from the standby (what its copy of the read models
//! has applied), while the notifications still come from the primary: a
//! standby cannot `LISTEN`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use muster_store::wakeup::{EVENTS_CHANNEL, PROJECTIONS_CHANNEL};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ReadModel;

/// How often positions are re-read and readers woken without a notification.
const POLL: Duration = Duration::from_millis(250);

/// Checkpoint positions by projection name.
pub type Positions = Arc<HashMap<String, i64>>;

/// Handles on the process's read-side wake-ups. Cheap to clone.
#[derive(Clone)]
pub struct ReadSignals {
    /// Where the positions are read: the primary, or the standby.
    pool: PgPool,
    /// Whether `pool` is a standby's, which no notification speaks for.
    replica: bool,
    events: watch::Receiver<u64>,
    positions: watch::Receiver<Positions>,
}

/// How often a read-your-writes wait re-reads a standby's positions: its
/// replay is not announced, so the wait looks.
const REPLICA_RECHECK: Duration = Duration::from_millis(10);

impl ReadSignals {
    /// Starts listening on `pool`'s database until `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Self {
        Self::spawn(pool.clone(), pool, false, shutdown)
    }

    /// Listens on the primary (`primary`) but reads positions from the
    /// standby (`replica`), whose replica lag it records as
    /// `muster_replica_lag_seconds`.
    pub fn start_on_replica(primary: PgPool, replica: PgPool, shutdown: CancellationToken) -> Self {
        Self::spawn(primary, replica, true, shutdown)
    }

    fn spawn(listen_on: PgPool, pool: PgPool, replica: bool, shutdown: CancellationToken) -> Self {
        let (events_tx, events) = watch::channel(0u64);
        let (positions_tx, positions) = watch::channel(Positions::default());
        let sources = Sources {
            listen_on,
            positions_from: pool.clone(),
            replica,
        };
        tokio::spawn(listen(sources, events_tx, positions_tx, shutdown));
        Self {
            pool,
            replica,
            events,
            positions,
        }
    }

    /// Changes whenever events may have been appended.
    pub fn events(&self) -> watch::Receiver<u64> {
        self.events.clone()
    }

    /// Whether every projection in `models` has applied `position`, by the
    /// positions last seen (no query; may be a poll behind).
    pub fn reached(&self, models: &[ReadModel], position: i64) -> bool {
        all_reached(&self.positions.borrow(), models, position)
    }

    /// Waits until every projection in `models` has applied `position`, at
    /// most `timeout`. Returns whether they did.
    pub async fn wait_for(
        &self,
        models: &[ReadModel],
        position: i64,
        timeout: Duration,
    ) -> Result<bool, sqlx::Error> {
        let reached = |positions: &Positions| all_reached(positions, models, position);
        let mut positions = self.positions.clone();
        if reached(&positions.borrow_and_update()) {
            return Ok(true);
        }
        // The cached positions may be a poll behind: look once directly.
        if reached(&read_positions(&self.pool).await?) {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        if self.replica {
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(REPLICA_RECHECK).await;
                if reached(&read_positions(&self.pool).await?) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        loop {
            match tokio::time::timeout_at(deadline, positions.changed()).await {
                Ok(Ok(())) => {
                    if reached(&positions.borrow_and_update()) {
                        return Ok(true);
                    }
                }
                Ok(Err(_)) | Err(_) => return Ok(reached(&read_positions(&self.pool).await?)),
            }
        }
    }
}

fn all_reached(positions: &Positions, models: &[ReadModel], position: i64) -> bool {
    models
        .iter()
        .all(|m| positions.get(m.name()).is_some_and(|&p| p >= position))
}

/// Where the signals come from.
struct Sources {
    /// The primary, which notifies.
    listen_on: PgPool,
    /// Where the read models are queried.
    positions_from: PgPool,
    /// Whether `positions_from` is a standby.
    replica: bool,
}

impl Sources {
    async fn refresh(&self, positions: &watch::Sender<Positions>) {
        refresh(&self.positions_from, positions).await;
        if self.replica {
            record_replica_lag(&self.positions_from).await;
        }
    }
}

async fn listen(
    sources: Sources,
    events: watch::Sender<u64>,
    positions: watch::Sender<Positions>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pool = &sources.listen_on;
    while !shutdown.is_cancelled() && !pool.is_closed() {
        let mut listener = match connect(pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(error = %e, "cannot LISTEN for wake-ups; polling");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
                events.send_modify(|n| *n += 1);
                sources.refresh(&positions).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                notification = listener.recv() => match notification {
                    Ok(n) if n.channel() == EVENTS_CHANNEL => events.send_modify(|n| *n += 1),
                    Ok(_) => sources.refresh(&positions).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "wake-up listener lost its connection");
                        break;
                    }
                },
                _ = poll.tick() => {
                    events.send_modify(|n| *n += 1);
                    sources.refresh(&positions).await;
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([EVENTS_CHANNEL, PROJECTIONS_CHANNEL])
        .await?;
    Ok(listener)
}

async fn refresh(pool: &PgPool, positions: &watch::Sender<Positions>) {
    match read_positions(pool).await {
        Ok(fresh) => {
            positions.send_if_modified(|current| {
                let changed = **current != *fresh;
                if changed {
                    *current = fresh;
                }
                changed
            });
        }
        Err(e) => tracing::debug!(error = %e, "cannot read projection positions"),
    }
}

/// How far the standby's replay is behind what it has received, in
/// seconds (0 when it has replayed everything).
async fn record_replica_lag(replica: &PgPool) {
    let lag = sqlx::query_scalar!(
        r#"select case when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
                       else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8
                  end as lag"#
    )
    .fetch_one(replica)
    .await;
    match lag {
        Ok(Some(seconds)) => metrics::gauge!("muster_replica_lag_seconds").set(seconds.max(0.0)),
        Ok(None) => tracing::debug!("READ_DATABASE_URL is not a standby"),
        Err(e) => tracing::debug!(error = %e, "cannot read the replica's lag"),
    }
}

async fn read_positions(pool: &PgPool) -> Result<Positions, sqlx::Error> {
    let rows = sqlx::query!("select name, position from projection_checkpoints")
        .fetch_all(pool)
        .await?;
    Ok(Arc::new(
        rows.into_iter().map(|r| (r.name, r.position)).collect(),
    ))
}
