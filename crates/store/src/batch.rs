//! Group commit for commands that create a stream (register a resource,
//! request a booking): the hot path.
//!
//! Such commands need no stream read; their decision is made in the caller
//! and only the database part is queued. A few workers each take whatever
//! is queued (up to [`MAX_BATCH`]) and write it in ONE transaction: lock
//! the named resources, read overlapping reservations, admit each command
//! on the shared ledger in order (a refused command does not affect the
//! others), then insert reservations and events for the admitted ones with
//! one statement each. Round trips and commit flushes are paid per batch,
//! not per command. If the batch transaction fails as a whole, every
//! command in it falls back to running on its own.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::StoreError;
use crate::event_store::{StreamAppend, append_to_streams};
use crate::reservations::{Ledger, Wanted, WriteEffect, insert_reservations, register_many};

/// Most commands written in one transaction.
const MAX_BATCH: usize = 256;

/// A decided creation waiting to be written.
pub(crate) struct Creation {
    pub append: StreamAppend,
    pub effects: Vec<WriteEffect>,
    /// The last event's position, the command's refusal, or `None` when the
    /// batch failed as a whole and the caller should run it alone.
    pub reply: oneshot::Sender<Option<Result<i64, StoreError>>>,
}

impl Creation {
    /// Only reservations and registrations can be admitted in a batch.
    pub(crate) fn batchable(effects: &[WriteEffect]) -> bool {
        effects.iter().all(|e| {
            matches!(
                e,
                WriteEffect::Reserve { .. } | WriteEffect::RegisterResource { .. }
            )
        })
    }

    fn wanted(&self) -> Vec<Wanted<'_>> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                WriteEffect::Reserve {
                    booking_id,
                    reservation,
                } => Some(Wanted {
                    tenant: &self.append.tenant,
                    booking_id: *booking_id,
                    reservation,
                }),
                _ => None,
            })
            .collect()
    }

    fn registrations(&self) -> impl Iterator<Item = (&str, Uuid, u32)> {
        self.effects.iter().filter_map(|e| match e {
            WriteEffect::RegisterResource {
                resource_id,
                capacity,
            } => Some((self.append.tenant.as_str(), *resource_id, *capacity)),
            _ => None,
        })
    }
}

/// The queue in front of the batch writers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Creation>,
}

impl std::fmt::Debug for Creation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creation")
            .field("stream_id", &self.append.stream_id)
            .finish()
    }
}

impl Batcher {
    /// Starts `workers` batch writers on `pool`; they stop when every
    /// `Batcher` clone is dropped.
    pub fn start(pool: PgPool, workers: usize) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * workers.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tokio::spawn(run_writer(pool.clone(), receiver.clone()));
        }
        Self { queue }
    }

    /// Queues `creation` and waits for its verdict (`None`: run it alone).
    pub(crate) async fn submit(
        &self,
        append: StreamAppend,
        effects: Vec<WriteEffect>,
    ) -> Option<Result<i64, StoreError>> {
        let (reply, verdict) = oneshot::channel();
        self.queue
            .send(Creation {
                append,
                effects,
                reply,
            })
            .await
            .ok()?;
        verdict.await.ok().flatten()
    }
}

async fn run_writer(pool: PgPool, receiver: Arc<Mutex<mpsc::Receiver<Creation>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("muster_write_batch_size").record(batch.len() as f64);
        match write_batch(&pool, &batch).await {
            Ok(verdicts) => {
                for (creation, verdict) in batch.into_iter().zip(verdicts) {
                    let _ = creation.reply.send(Some(verdict));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, size = batch.len(), "write batch failed; commands run alone");
                metrics::counter!("muster_write_batch_fallbacks_total").increment(1);
                for creation in batch {
                    let _ = creation.reply.send(None);
                }
            }
        }
    }
}

/// Writes the admitted creations of `batch` in one transaction; returns each
/// command's verdict, in order.
async fn write_batch(
    pool: &PgPool,
    batch: &[Creation],
) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let wanted: Vec<Vec<Wanted<'_>>> = batch.iter().map(Creation::wanted).collect();
    let all: Vec<Wanted<'_>> = wanted.iter().flatten().copied().collect();
    let mut ledger = if all.is_empty() {
        None
    } else {
        Some(Ledger::load(&mut tx, &all).await?)
    };
    let admitted: Vec<Result<(), StoreError>> = wanted
        .iter()
        .map(|w| match &mut ledger {
            Some(ledger) if !w.is_empty() => ledger.admit(w),
            _ => Ok(()),
        })
        .collect();

    let accepted: Vec<usize> = (0..batch.len()).filter(|&i| admitted[i].is_ok()).collect();
    if let Some(ledger) = &ledger {
        ledger.save_growth(&mut tx).await?;
    }
    let registrations: Vec<(&str, Uuid, u32)> = accepted
        .iter()
        .flat_map(|&i| batch[i].registrations())
        .collect();
    register_many(&mut tx, &registrations).await?;
    let reservations: Vec<Wanted<'_>> = accepted
        .iter()
        .flat_map(|&i| wanted[i].iter().copied())
        .collect();
    insert_reservations(&mut tx, &reservations).await?;
    let appends: Vec<StreamAppend> = accepted.iter().map(|&i| batch[i].append.clone()).collect();
    let positions = if appends.is_empty() {
        Vec::new()
    } else {
        append_to_streams(&mut tx, &appends)
            .await
            .map_err(|e| match e {
                crate::event_store::AppendError::Database(e) => StoreError::from(e),
                crate::event_store::AppendError::VersionConflict => StoreError::ConcurrencyConflict,
            })?
    };
    tx.commit().await?;

    let mut positions = positions.into_iter();
    Ok(admitted
        .into_iter()
        .map(|verdict| verdict.map(|()| positions.next().unwrap_or(0)))
        .collect())
}
