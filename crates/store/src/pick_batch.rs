//! Picks decided in batches: concurrent commands that pick among resources
//! under their locks (a pool's members) share one transaction, as the
//! group-commit batcher's creates do. The batch locks the union of their
//! candidates once, in key order; each pick then decides on the write
//! side's verdicts as the picks before it in the batch left them (the
//! ledger and the weights are kept current in memory), and all commit
//! together through the one commit path, each checked again by the ledger.
//! Racers for one pool thus cost one transaction and one WAL flush between
//! them, instead of queueing on the members' locks one commit at a time.
//!
//! The deciding stays with the command's own task: the writer hands it
//! what the locks show and waits for its decision, so a decision borrows
//! what it read and needs no `'static` closure.

use std::sync::Arc;

use muster_domain::TenantId;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::StoreError;
use crate::commit::{Decided, commit_in};
use crate::implied_jobs::JobSink;
use crate::ledger::{Ledger, Wanted, claimed};
use crate::locked::{LockRequest, Locked, Weights, simulate};
use crate::outcome::CommandOutcome;

/// Most picks decided in one transaction.
const MAX_BATCH: usize = 128;

/// What a pick that was decided in a batch came to; `Err(BatchFailed)`
/// when the batch failed as a whole (nothing of it committed; the command
/// decides again alone).
pub(crate) type PickReply = Result<Result<CommandOutcome, StoreError>, BatchFailed>;

/// The batch did not commit; nothing of it was written.
#[derive(Debug)]
pub(crate) struct BatchFailed;

/// A pick waiting for its batch.
struct Pending {
    tenant: TenantId,
    request: LockRequest,
    locked: oneshot::Sender<Locked>,
    decided: oneshot::Receiver<Option<Decided>>,
    reply: oneshot::Sender<PickReply>,
}

/// The command's side of a pick in a batch: what the locks show, then its
/// decision, then the verdict.
pub(crate) struct Ticket {
    /// What the locks show for its request, once its turn comes.
    pub locked: oneshot::Receiver<Locked>,
    /// Its decision (`None`: it decided not to commit anything).
    pub decided: oneshot::Sender<Option<Decided>>,
    /// The verdict.
    pub reply: oneshot::Receiver<PickReply>,
}

/// The queue in front of the pick writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PickBatcher {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("claims", &self.request.claims.len())
            .finish()
    }
}

impl PickBatcher {
    /// Starts the pick writer on `pool`; it stops when every clone is
    /// dropped.
    pub(crate) fn start(pool: PgPool, sink: Option<Arc<dyn JobSink>>) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run_writer(pool, sink, Arc::new(Mutex::new(receiver))));
        Self { queue }
    }

    /// Queues a pick of `tenant` that may take `request`'s claims; `None`
    /// when the writer is gone (decide alone).
    pub(crate) async fn submit(&self, tenant: &TenantId, request: LockRequest) -> Option<Ticket> {
        let (locked_tx, locked) = oneshot::channel();
        let (decided, decided_rx) = oneshot::channel();
        let (reply_tx, reply) = oneshot::channel();
        let pending = Pending {
            tenant: tenant.clone(),
            request,
            locked: locked_tx,
            decided: decided_rx,
            reply: reply_tx,
        };
        self.queue.send(pending).await.ok()?;
        Some(Ticket {
            locked,
            decided,
            reply,
        })
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
        metrics::histogram!("muster_pick_batch_size").record(batch.len() as f64);
        decide_batch(&pool, sink.as_deref(), batch).await;
    }
}

/// Locks the batch's candidates, has each pick decide in turn on what the
/// ones before it left, and commits the decisions together.
async fn decide_batch(pool: &PgPool, sink: Option<&dyn JobSink>, batch: Vec<Pending>) {
    let claims: Vec<(&TenantId, uuid::Uuid, muster_domain::policy::Claim)> = batch
        .iter()
        .flat_map(|p| {
            p.request
                .claims
                .iter()
                .map(move |(resource_id, claim)| (&p.tenant, *resource_id, *claim))
        })
        .collect();
    let pools: Vec<(&TenantId, uuid::Uuid)> = batch
        .iter()
        .flat_map(|p| p.request.pools.iter().map(move |pool| (&p.tenant, *pool)))
        .collect();
    let prepared = async {
        let mut tx = pool.begin().await?;
        let reservations = claimed(claims.iter().map(|(_, r, c)| (*r, *c)));
        let wanted: Vec<Wanted<'_>> = claims
            .iter()
            .zip(&reservations)
            .map(|((tenant, _, _), (reservation, headcount))| Wanted {
                tenant: tenant.as_str(),
                booking_id: uuid::Uuid::nil(),
                reservation,
                headcount: *headcount,
                expires_at: None,
                basis: None,
            })
            .collect();
        let ledger = Ledger::load(&mut tx, &wanted).await?;
        let weights = Weights::read(&mut tx, &ledger, &claims, &pools).await?;
        Ok::<_, StoreError>((tx, ledger, weights))
    }
    .await;
    let (tx, ledger, mut weights) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            tracing::debug!(error = %e, size = batch.len(), "pick batch failed to lock; picks run alone");
            for pending in batch {
                let _ = pending.reply.send(Err(BatchFailed));
            }
            return;
        }
    };
    // The commit checks every decision again on the ledger as it was
    // read; `now` is how the decisions so far left it.
    let mut now = ledger.clone();
    let mut decided = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for pending in batch {
        let locked = match weights.locked(&now, &pending.tenant, &pending.request) {
            Ok(locked) => locked,
            Err(_) => {
                let _ = pending.reply.send(Err(BatchFailed));
                continue;
            }
        };
        if pending.locked.send(locked).is_err() {
            continue;
        }
        // A refusal, or a command gone, commits nothing.
        if let Ok(Some(decision)) = pending.decided.await {
            simulate(&mut now, &decision);
            weights.note(&decision);
            decided.push(decision);
            replies.push(pending.reply);
        }
    }
    if decided.is_empty() {
        let _ = tx.rollback().await;
        return;
    }
    match commit_in(tx, sink, &decided, Some(ledger)).await {
        Ok(verdicts) => {
            for (reply, verdict) in replies.into_iter().zip(verdicts) {
                let _ = reply.send(Ok(verdict));
            }
        }
        Err(e) => {
            tracing::debug!(error = ?e, size = decided.len(), "pick batch failed; picks run alone");
            metrics::counter!("muster_pick_batch_fallbacks_total").increment(1);
            for reply in replies {
                let _ = reply.send(Err(BatchFailed));
            }
        }
    }
}
