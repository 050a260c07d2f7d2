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
//!
//! Commands with an `Idempotency-Key` claim their key first, in the same
//! transaction: a key another request holds makes that command step aside
//! (its caller replays the stored answer); a claimed command's answer is
//! stored before commit, and a refused one releases its claim so that the
//! caller can store the refusal.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::commands::AnswerFn;
use crate::event_store::{StreamAppend, append_to_streams};
use crate::idempotency::IdempotencyClaim;
use crate::reservations::{Ledger, Wanted, WriteEffect, insert_reservations, register_many};
use crate::{CommandOutcome, StoreError};

/// Most commands written in one transaction.
const MAX_BATCH: usize = 256;

/// A decided creation waiting to be written.
pub(crate) struct Creation {
    pub append: StreamAppend,
    pub effects: Vec<WriteEffect>,
    /// The idempotency key to claim, and how to render the answer to store.
    pub claim: Option<(IdempotencyClaim, AnswerFn)>,
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
        claim: Option<(IdempotencyClaim, AnswerFn)>,
    ) -> Option<Result<i64, StoreError>> {
        let (reply, verdict) = oneshot::channel();
        self.queue
            .send(Creation {
                append,
                effects,
                claim,
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
    let claimed = claim_keys(&mut tx, batch).await?;
    let wanted: Vec<Vec<Wanted<'_>>> = batch.iter().map(Creation::wanted).collect();
    let all: Vec<Wanted<'_>> = wanted.iter().flatten().copied().collect();
    let mut ledger = if all.is_empty() {
        None
    } else {
        Some(Ledger::load(&mut tx, &all).await?)
    };
    let admitted: Vec<Result<(), StoreError>> = (0..batch.len())
        .map(|i| {
            if !claimed[i] {
                return Err(StoreError::IdempotencyKeyTaken);
            }
            match &mut ledger {
                Some(ledger) if !wanted[i].is_empty() => ledger.admit(&wanted[i]),
                _ => Ok(()),
            }
        })
        .collect();
    if let Some(ledger) = &ledger {
        ledger.save_growth(&mut tx).await?;
    }
    let refused_claims: Vec<(&str, &str)> = (0..batch.len())
        .filter(|&i| claimed[i] && admitted[i].is_err())
        .filter_map(|i| {
            let (claim, _) = batch[i].claim.as_ref()?;
            Some((batch[i].append.tenant.as_str(), claim.key.as_str()))
        })
        .collect();
    release_claims(&mut tx, &refused_claims).await?;

    let accepted: Vec<usize> = (0..batch.len()).filter(|&i| admitted[i].is_ok()).collect();
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
    let positions: Vec<(usize, i64)> = accepted.iter().copied().zip(positions).collect();
    store_answers(&mut tx, batch, &positions).await?;
    tx.commit().await?;

    let mut verdicts: Vec<Result<i64, StoreError>> = admitted
        .into_iter()
        .map(|verdict| verdict.map(|()| 0))
        .collect();
    for (i, position) in positions {
        verdicts[i] = Ok(position);
    }
    Ok(verdicts)
}

/// Claims the batch's idempotency keys; `claimed[i]` is false when another
/// request holds command i's key (or an earlier command of this batch
/// does). A key claimed by a transaction still in flight makes this wait
/// for it, so the answer then found is final.
async fn claim_keys(conn: &mut PgConnection, batch: &[Creation]) -> Result<Vec<bool>, StoreError> {
    let claims: Vec<(usize, &IdempotencyClaim)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.claim.as_ref().map(|(claim, _)| (i, claim)))
        .collect();
    let mut claimed = vec![true; batch.len()];
    if claims.is_empty() {
        return Ok(claimed);
    }
    let tenants: Vec<&str> = claims
        .iter()
        .map(|(i, _)| batch[*i].append.tenant.as_str())
        .collect();
    let keys: Vec<&str> = claims.iter().map(|(_, c)| c.key.as_str()).collect();
    let fingerprints: Vec<Vec<u8>> = claims.iter().map(|(_, c)| c.fingerprint.to_vec()).collect();
    // The placeholder (status 0) never outlives this transaction: it is
    // replaced by the answer or deleted before commit.
    let won: HashSet<(String, String)> = sqlx::query!(
        r#"insert into idempotency_keys
               (tenant_id, idempotency_key, request_fingerprint, status_code, response)
           select t, k, f, 0, 'null'::jsonb
             from unnest($1::text[], $2::text[], $3::bytea[]) as c(t, k, f)
           on conflict (tenant_id, idempotency_key) do nothing
           returning tenant_id, idempotency_key"#,
        &tenants as &[&str],
        &keys as &[&str],
        &fingerprints,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.tenant_id, r.idempotency_key))
    .collect();
    let mut seen = HashSet::new();
    for (i, claim) in claims {
        let key = (batch[i].append.tenant.clone(), claim.key.clone());
        // Two commands of one batch with one key: the first one has it.
        claimed[i] = won.contains(&key) && seen.insert(key);
    }
    Ok(claimed)
}

/// Gives up the claims (tenant, key) of refused commands; their callers
/// store the refusal.
async fn release_claims(
    conn: &mut PgConnection,
    claims: &[(&str, &str)],
) -> Result<(), StoreError> {
    if claims.is_empty() {
        return Ok(());
    }
    let (tenants, keys): (Vec<&str>, Vec<&str>) = claims.iter().copied().unzip();
    sqlx::query!(
        r#"delete from idempotency_keys k
            using unnest($1::text[], $2::text[]) as c(t, key)
            where k.tenant_id = c.t and k.idempotency_key = c.key and k.status_code = 0"#,
        &tenants as &[&str],
        &keys as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the answers of the accepted commands that claimed a key.
async fn store_answers(
    conn: &mut PgConnection,
    batch: &[Creation],
    positions: &[(usize, i64)],
) -> Result<(), StoreError> {
    let mut tenants = Vec::new();
    let mut keys = Vec::new();
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for &(i, position) in positions {
        let creation = &batch[i];
        let Some((claim, answer)) = &creation.claim else {
            continue;
        };
        let appended = creation.append.events.len();
        let (status, body) = answer(&CommandOutcome {
            stream_id: creation.append.stream_id,
            version: appended as i64,
            position,
            appended,
        });
        tenants.push(creation.append.tenant.as_str());
        keys.push(claim.key.as_str());
        statuses.push(i16::try_from(status).unwrap_or(500));
        bodies.push(body);
    }
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"update idempotency_keys k
              set status_code = a.status, response = a.body
             from unnest($1::text[], $2::text[], $3::int2[], $4::jsonb[]) as a(t, key, status, body)
            where k.tenant_id = a.t and k.idempotency_key = a.key"#,
        &tenants as &[&str],
        &keys as &[&str],
        &statuses,
        &bodies,
    )
    .execute(conn)
    .await?;
    Ok(())
}
