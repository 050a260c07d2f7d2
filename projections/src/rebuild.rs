//! `muster projections rebuild NAME`: replay a projection from position 0
//! into fresh tables in schema `read_rebuild` while the live tables keep
//! serving, then swap them in atomically.
//!
//! The swap transaction takes the live checkpoint row FOR UPDATE (the live
//! runner waits there), applies what the rebuild still lacks up to at least
//! the live checkpoint (so readers never see the model go back in time),
//! replaces the tables and sets the checkpoint to the rebuild's. The live
//! runner then finds its checkpoint moved and continues from it.

use std::time::{Duration, Instant};

use muster_store::Store;
use sqlx::{Connection, PgConnection};

use crate::runner::{BATCH, checkpoint};
use crate::{ProjectionError, ReadModel};

/// Advisory-lock class of rebuilds: one rebuild per projection at a time.
const REBUILD_CLASS: i32 = 0x4D53_5242; // "MSRB"
/// The rebuild switches to the swap when it is this close to the head.
const SWAP_DISTANCE: i64 = 10 * BATCH;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    /// Events read so far (position reached).
    pub position: i64,
    /// The head of the store when last looked.
    pub head: i64,
    /// Events applied per second since the start.
    pub rate: f64,
    /// Estimated time to reach the head.
    pub eta: Option<Duration>,
}

/// How a rebuild ended.
#[derive(Debug, Clone, Copy)]
pub struct RebuildOutcome {
    /// Events applied.
    pub events: u64,
    /// The checkpoint the swapped-in tables start from.
    pub position: i64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild of the same projection is running.
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(&'static str),
    /// Applying failed; the live tables are untouched.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<sqlx::Error> for RebuildError {
    fn from(e: sqlx::Error) -> Self {
        Self::Projection(e.into())
    }
}

impl From<muster_store::StoreError> for RebuildError {
    fn from(e: muster_store::StoreError) -> Self {
        Self::Projection(e.into())
    }
}

/// Rebuilds `model`, calling `progress` about once a second.
pub async fn rebuild(
    store: &Store,
    model: ReadModel,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<RebuildOutcome, RebuildError> {
    let name = model.name();
    let options = store.sessions().connect_options();
    let mut guard = PgConnection::connect_with(&options).await?;
    let mine = sqlx::query_scalar!(
        r#"select pg_try_advisory_lock($1, hashtext($2)) as "mine!""#,
        REBUILD_CLASS,
        name,
    )
    .fetch_one(&mut guard)
    .await?;
    if !mine {
        return Err(RebuildError::AlreadyRunning(name));
    }
    let result = run(store, model, &mut progress).await;
    let _ = sqlx::query!("delete from projection_rebuilds where name = $1", name)
        .execute(store.pool())
        .await;
    let _ = guard.close().await;
    result
}

async fn run(
    store: &Store,
    model: ReadModel,
    progress: &mut impl FnMut(RebuildProgress),
) -> Result<RebuildOutcome, RebuildError> {
    let name = model.name();
    let started = Instant::now();
    checkpoint(store, model.name()).await?;
    sqlx::query!(
        "select muster_rebuild_prepare($1)",
        model.tables() as &[&str]
    )
    .execute(store.pool())
    .await?;
    sqlx::query!(
        "insert into projection_rebuilds (name) values ($1)
         on conflict (name) do update set position = 0, started_at = now(), updated_at = now()",
        name,
    )
    .execute(store.pool())
    .await?;
    tracing::info!(
        projection = name,
        "rebuild started into schema read_rebuild"
    );

    let mut position = 0i64;
    let mut applied = 0u64;
    let mut reported = Instant::now();
    loop {
        let page = store.read_page(position, BATCH).await?;
        if page.horizon - position <= SWAP_DISTANCE {
            break;
        }
        let mut tx = store.pool().begin().await?;
        // The projection's statements name no schema: they write the
        // staging tables here (runtime-checked in the projections for that).
        sqlx::query!("set local search_path = read_rebuild, public")
            .execute(&mut *tx)
            .await?;
        model.apply(&mut tx, &page.events).await?;
        position = page.events.last().map_or(page.horizon, |e| e.position);
        sqlx::query!(
            "update projection_rebuilds set position = $2, updated_at = now() where name = $1",
            name,
            position,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += page.events.len() as u64;
        metrics::counter!("muster_projection_rebuild_events_total", "projection" => name)
            .increment(page.events.len() as u64);
        if reported.elapsed() >= Duration::from_secs(1) {
            progress(measure(position, page.horizon, applied, started));
            reported = Instant::now();
        }
    }

    let (position, tail) = swap(store, model, position).await?;
    applied += tail;
    let outcome = RebuildOutcome {
        events: applied,
        position,
        elapsed: started.elapsed(),
    };
    progress(measure(position, position, applied, started));
    tracing::info!(
        projection = name,
        events = applied,
        position,
        "rebuild swapped in"
    );
    Ok(outcome)
}

/// Catches the rebuild up past the live checkpoint and swaps the tables,
/// in one transaction. Returns the new checkpoint and the events applied.
async fn swap(store: &Store, model: ReadModel, from: i64) -> Result<(i64, u64), RebuildError> {
    let name = model.name();
    let mut tx = store.pool().begin().await?;
    sqlx::query!("set local search_path = read_rebuild, public")
        .execute(&mut *tx)
        .await?;
    // Readers hold the live tables only briefly; do not queue behind a
    // stuck one for ever.
    sqlx::query!("set local lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    let live = sqlx::query_scalar!(
        "select position from projection_checkpoints where name = $1 for update",
        name,
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut position = from;
    let mut applied = 0u64;
    loop {
        let page = store.read_page(position, BATCH).await?;
        if !page.events.is_empty() {
            model.apply(&mut tx, &page.events).await?;
            applied += page.events.len() as u64;
        }
        // Nothing is missing up to the horizon once a page is not full.
        position = match page.events.last() {
            Some(last) if page.events.len() as i64 == BATCH => last.position,
            _ => page.horizon,
        };
        if page.events.len() < BATCH as usize && position >= live {
            break;
        }
    }
    sqlx::query!("select muster_rebuild_swap($1)", model.tables() as &[&str])
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "update projection_checkpoints
            set position = $2, state = 'running', failed_position = null, error = null,
                updated_at = now()
          where name = $1",
        name,
        position,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((position, applied))
}

fn measure(position: i64, head: i64, applied: u64, started: Instant) -> RebuildProgress {
    let rate = applied as f64 / started.elapsed().as_secs_f64().max(1e-3);
    let remaining = (head - position).max(0) as f64;
    RebuildProgress {
        position,
        head,
        rate,
        eta: (rate > 0.0).then(|| Duration::from_secs_f64(remaining / rate)),
    }
}
