//! `muster projections rebuild NAME`: replay a projection from position 0
//! into fresh tables in schema `read_rebuild` while the live tables keep
//! serving, then swap them in atomically.
//!
//! While they load, the staging tables carry only their unique indexes
//! (the others are built in bulk before the swap, migration
//! `rebuild_staging`); two writers apply disjoint streams at once, each
//! batch commits without waiting for its WAL flush, and the next page is
//! read while one is written. None of that weakens the swap: a crash
//! loses at most the last unflushed batches, and an interrupted rebuild
//! starts again from position 0 anyway, while the swap transaction itself
//! commits like any other.
//!
//! The swap transaction takes the live checkpoint row FOR UPDATE (the live
//! runner waits there), applies what the rebuild still lacks up to at least
//! the live checkpoint (so readers never see the model go back in time),
//! replaces the tables and sets the checkpoint to the rebuild's. The live
//! runner then finds its checkpoint moved and continues from it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use muster_store::{RecordedEvent, Store};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::runner::{BATCH, checkpoint};
use crate::{ProjectionError, ReadModel};

/// Advisory-lock class of rebuilds: one rebuild per projection at a time.
const REBUILD_CLASS: i32 = 0x4D53_5242; // "MSRB"
/// How many events one rebuild transaction applies by default: more than
/// the live runner's [`BATCH`], since nobody waits on a rebuild's batches
/// and each costs its round trips. The rebuild switches to the swap when
/// it is one batch from the head.
pub const DEFAULT_BATCH: i64 = 10_000;

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

/// Rebuilds `model` in transactions of `batch` events, calling `progress`
/// about once a second.
pub async fn rebuild(
    store: &Store,
    model: ReadModel,
    batch: i64,
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
    let result = run(store, model, batch.max(1), &mut progress).await;
    let _ = sqlx::query!("delete from projection_rebuilds where name = $1", name)
        .execute(store.pool())
        .await;
    let _ = guard.close().await;
    result
}

async fn run(
    store: &Store,
    model: ReadModel,
    batch: i64,
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

    let (position, mut applied) = load(store, model, batch, started, progress).await?;
    tracing::info!(
        projection = name,
        events = applied,
        seconds = started.elapsed().as_secs_f64(),
        "rebuild loaded; building indexes"
    );
    // One table per connection: the index builds share the cores.
    futures_util::future::try_join_all(model.tables().iter().map(|table| finish(store, table)))
        .await?;
    tracing::info!(
        projection = name,
        seconds = started.elapsed().as_secs_f64(),
        "rebuild indexed; swapping"
    );

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

/// Builds the indexes of one staging table that loading went without.
async fn finish(store: &Store, table: &str) -> Result<(), RebuildError> {
    let mut tx = store.pool().begin().await?;
    // Building indexes takes as long as the data asks; the statement
    // timeout is for requests.
    sqlx::query!("set local statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("select muster_rebuild_finish($1)", &[table] as &[&str])
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Loads the staging tables from position 0 to about one batch from the
/// head, and returns the position reached and the events applied.
///
/// Pages are read in order and split by stream over [`WRITERS`] writers,
/// each with transactions of its own, so that muster's folding and the
/// database's writing keep both sides busy. Splitting by stream is sound
/// because every read model folds entity by entity (module `fold`): each
/// row belongs to one stream, so writers never touch the same rows, and
/// each stream's events still reach its writer in order.
async fn load(
    store: &Store,
    model: ReadModel,
    batch: i64,
    started: Instant,
    progress: &mut impl FnMut(RebuildProgress),
) -> Result<(i64, u64), RebuildError> {
    let name = model.name();
    let committed: Arc<[AtomicI64]> = (0..WRITERS).map(|_| AtomicI64::new(0)).collect();
    let mut pages = Vec::with_capacity(WRITERS);
    let mut writers = Vec::with_capacity(WRITERS);
    for writer in 0..WRITERS {
        let (sender, mut receiver) = mpsc::channel::<(Vec<RecordedEvent>, i64)>(2);
        let (store, committed) = (store.clone(), committed.clone());
        writers.push(tokio::spawn(async move {
            while let Some((events, position)) = receiver.recv().await {
                write_batch(&store, model, &events).await?;
                committed[writer].store(position, Ordering::Release);
                metrics::counter!("muster_projection_rebuild_events_total", "projection" => name)
                    .increment(events.len() as u64);
            }
            Ok::<(), RebuildError>(())
        }));
        pages.push(sender);
    }
    let reached = || {
        committed
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    };

    let mut position = 0i64;
    let mut applied = 0u64;
    let mut batches = 0u64;
    let mut reported = Instant::now();
    let mut page = store.read_page(position, batch).await?;
    let mut handed_over = true;
    while page.horizon - position > batch {
        let next = page.events.last().map_or(page.horizon, |e| e.position);
        applied += page.events.len() as u64;
        let mut parts: Vec<Vec<RecordedEvent>> = (0..WRITERS).map(|_| Vec::new()).collect();
        for event in page.events {
            parts[writer_of(&event)].push(event);
        }
        for (sender, part) in pages.iter().zip(parts) {
            handed_over &= sender.send((part, next)).await.is_ok();
        }
        if !handed_over {
            break; // A writer failed: its error is collected below.
        }
        position = next;
        batches += 1;
        if batches.is_power_of_two() && batches <= ANALYZED_BATCHES {
            // While the tables are young, so that the statements are
            // planned for tables of their size (a plan made for a tiny
            // table scans it whole once it is not).
            sqlx::query!(
                "select muster_rebuild_analyze($1)",
                model.tables() as &[&str]
            )
            .execute(store.pool())
            .await?;
        }
        if reported.elapsed() >= Duration::from_secs(1) {
            let at = reached();
            sqlx::query!(
                "update projection_rebuilds set position = $2, updated_at = now() where name = $1",
                name,
                at,
            )
            .execute(store.pool())
            .await?;
            progress(measure(at, page.horizon, applied, started));
            reported = Instant::now();
        }
        page = store.read_page(next, batch).await?;
    }
    drop(pages);
    for writer in writers {
        // A writer is never aborted: a join error is its panic, raised here.
        writer
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    }
    Ok((position, applied))
}

/// The staging tables get statistics after 1, 2, 4 … and this many
/// batches; by then a plan's shape no longer changes as they grow.
const ANALYZED_BATCHES: u64 = 16;

/// How many writers load a rebuild's staging tables at once: one per core
/// of the machine this was measured on, where two kept both busy.
const WRITERS: usize = 2;

/// The writer that applies `event`'s stream.
fn writer_of(event: &RecordedEvent) -> usize {
    let mut hash = std::hash::DefaultHasher::new();
    (event.tenant.as_str(), event.stream_id).hash(&mut hash);
    (hash.finish() % WRITERS as u64) as usize
}

/// Applies `events` (one writer's part of a page) to the staging tables in
/// one transaction that does not wait for its WAL to reach the disk (see
/// the module's note on crash safety).
async fn write_batch(
    store: &Store,
    model: ReadModel,
    events: &[RecordedEvent],
) -> Result<(), RebuildError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    // The projection's statements name no schema: they write the staging
    // tables here (runtime-checked in the projections for that).
    sqlx::query!("set local search_path = read_rebuild, public")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    model.apply(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
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
