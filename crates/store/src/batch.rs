//! Group commit: concurrent stream-creating commands are written in
//! batches, through the one commit path ([`crate::commit::commit`]), so
//! that one transaction (and one WAL flush) carries many commands.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::StoreError;
use crate::commit::{Decided, commit};
use crate::implied_jobs::JobSink;
use crate::outcome::CommandOutcome;

/// Most commands written in one transaction.
const MAX_BATCH: usize = 256;

/// What a submitted command comes to: its verdict, or itself back when the
/// batch failed as a whole (the caller then commits it alone).
type Reply = Result<Result<CommandOutcome, StoreError>, Decided>;

/// A decided command waiting for its batch.
struct Pending {
    decided: Decided,
    reply: oneshot::Sender<Reply>,
}

/// The queue in front of the batch writers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream_id", &self.decided.append.stream_id)
            .finish()
    }
}

impl Batcher {
    /// Starts `workers` batch writers on `pool`, queueing implied jobs on
    /// `sink`; they stop when every `Batcher` clone is dropped.
    pub(crate) fn start(pool: PgPool, sink: Option<Arc<dyn JobSink>>, workers: usize) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * workers.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tokio::spawn(run_writer(pool.clone(), sink.clone(), receiver.clone()));
        }
        Self { queue }
    }

    /// Queues `decided` and waits for its verdict (`Err`: commit it alone).
    pub(crate) async fn submit(&self, decided: Decided) -> Reply {
        let (reply, verdict) = oneshot::channel();
        if let Err(mpsc::error::SendError(pending)) =
            self.queue.send(Pending { decided, reply }).await
        {
            return Err(pending.decided);
        }
        match verdict.await {
            Ok(reply) => reply,
            // The writer is gone (shutting down) and the command with it.
            Err(_) => Ok(Err(StoreError::ConcurrencyConflict)),
        }
    }
}

async fn run_writer(
    pool: PgPool,
    sink: Option<Arc<dyn JobSink>>,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
) {
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
        let (decided, replies): (Vec<Decided>, Vec<_>) =
            batch.into_iter().map(|p| (p.decided, p.reply)).unzip();
        match commit(&pool, sink.as_deref(), &decided).await {
            Ok(verdicts) => {
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let _ = reply.send(Ok(verdict));
                }
            }
            Err(e) => {
                tracing::debug!(error = ?e, size = decided.len(), "write batch failed; commands run alone");
                metrics::counter!("muster_write_batch_fallbacks_total").increment(1);
                for (reply, decided) in replies.into_iter().zip(decided) {
                    let _ = reply.send(Err(decided));
                }
            }
        }
    }
}
