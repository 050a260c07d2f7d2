//! The one commit path. Every command commits here, alone (a batch of one)
//! or in a group-commit batch: its idempotency claim, the working-set
//! changes its events imply (checked by the ledger), the jobs it implies,
//! its events, and its idempotency record, in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::effects::WriteEffect;
use crate::event_store::{AppendError, StreamAppend, append_to_streams};
use crate::idempotency::{self, IdempotencyClaim, TenantClaim};
use crate::implied_jobs::JobSink;
use crate::ledger::{Deadlines, Ledger, Wanted};
use crate::outcome::CommandOutcome;
use crate::quotas::{self, Recharge};
use crate::working_set::Registration;
use crate::{StoreError, working_set};

/// A command decided on its stream's state, with the commands on other
/// streams it is linked to, ready for the one commit path. Built by
/// [`Decided::own`], [`Decided::linked`] and [`Decided::link`]; committed by
/// [`crate::Store::execute_with`].
#[derive(Debug)]
pub struct Decided {
    /// Its events, with the stream version they were decided on.
    pub(crate) append: StreamAppend,
    /// Events of linked commands on other streams (a hold the command
    /// converts, the bookings of a series), each decided on its own
    /// stream's version: they commit with the command or not at all.
    pub(crate) linked: Vec<StreamAppend>,
    /// The working-set changes and jobs the events imply.
    pub(crate) effects: Vec<WriteEffect>,
    /// Its idempotency key, if the client sent one.
    pub(crate) claim: Option<IdempotencyClaim>,
    /// Position of the stream's last event before the command.
    pub(crate) last_position: Option<i64>,
    /// Whether it creates its stream and nothing else: such a command may
    /// share a group-commit batch with others.
    pub(crate) creates_alone: bool,
}

impl Decided {
    /// The command's outcome, given the position of its last event.
    pub(crate) fn outcome(&self, position: Option<i64>) -> CommandOutcome {
        let appended = self.append.events.len();
        CommandOutcome {
            stream_id: self.append.stream_id,
            version: self.append.expected_version + appended as i64,
            position: position.or(self.last_position).unwrap_or(0),
            appended,
        }
    }

    /// Adds `effect`, which its events do not imply but its use case
    /// does (an erasure's scrubbing), to what it commits.
    /// Such a command commits in a transaction of its own.
    pub fn with_effect(mut self, effect: WriteEffect) -> Self {
        self.effects.push(effect);
        self.creates_alone = false;
        self
    }

    /// Whether committing it writes anything at all.
    fn writes(&self) -> bool {
        !self.append.events.is_empty()
            || !self.linked.is_empty()
            || !self.effects.is_empty()
            || self.claim.is_some()
    }

    /// Its appends that carry events: its own, then the linked ones.
    fn appends(&self) -> impl Iterator<Item = &StreamAppend> {
        std::iter::once(&self.append)
            .chain(&self.linked)
            .filter(|a| !a.events.is_empty())
    }

    pub(crate) fn wanted(&self) -> Vec<Wanted<'_>> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                WriteEffect::Reserve {
                    booking_id,
                    reservation,
                    headcount,
                    basis,
                }
                | WriteEffect::Move {
                    booking_id,
                    reservation,
                    headcount,
                    basis,
                } => Some(Wanted {
                    tenant: self.append.tenant.as_str(),
                    booking_id: *booking_id,
                    reservation,
                    headcount: *headcount,
                    expires_at: None,
                    basis: Some(*basis),
                }),
                WriteEffect::Hold {
                    reservation,
                    expires_at,
                } => Some(Wanted {
                    tenant: self.append.tenant.as_str(),
                    booking_id: reservation.reservation_id,
                    reservation,
                    headcount: None,
                    expires_at: Some(*expires_at),
                    basis: None,
                }),
                _ => None,
            })
            .collect()
    }

    fn tenant_claim(&self) -> Option<TenantClaim<'_>> {
        self.claim.as_ref().map(|claim| TenantClaim {
            tenant: self.append.tenant.as_str(),
            claim,
        })
    }
}

/// Why a whole commit failed; nothing of it was written.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// A stream moved past the version one of the commands was decided on.
    VersionConflict,
    /// Anything else (a deadlock, the database).
    Store(StoreError),
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        CommitError::Store(e)
    }
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Store(e.into())
    }
}

/// What each command of a committed batch came to, in order: its outcome,
/// or why it was refused (nothing of it was written).
pub(crate) type Verdicts = Vec<Result<CommandOutcome, StoreError>>;

/// Commits `batch` in one transaction on `pool`.
///
/// Commands are admitted in order, each against the working set as the
/// ones before it left it; a refused command leaves no trace and the others
/// commit. `Err`: the transaction as a whole failed and nothing committed
/// (the caller decides again, or runs the commands alone).
pub(crate) async fn commit(
    pool: &PgPool,
    sink: Option<&dyn JobSink>,
    batch: &[Decided],
) -> Result<Verdicts, CommitError> {
    if !batch.iter().any(Decided::writes) {
        return Ok(batch.iter().map(|d| Ok(d.outcome(None))).collect());
    }
    let tx = pool.begin().await?;
    commit_in(tx, sink, batch, None).await
}

/// Commits `batch` in `tx`, like [`commit`]; `locked` is a ledger the
/// transaction already holds (resources locked, and what they hold read,
/// before a decision picked among them): the batch's reservations are
/// checked on it, with whatever else they name locked now.
pub(crate) async fn commit_in(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    sink: Option<&dyn JobSink>,
    batch: &[Decided],
    locked: Option<Ledger>,
) -> Result<Verdicts, CommitError> {
    let claims: Vec<(usize, TenantClaim<'_>)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.tenant_claim().map(|c| (i, c)))
        .collect();
    let won =
        idempotency::claim(&mut tx, &claims.iter().map(|(_, c)| *c).collect::<Vec<_>>()).await?;
    let mut claimed = vec![true; batch.len()];
    for ((i, _), won) in claims.iter().zip(won) {
        claimed[*i] = won;
    }

    let wanted: Vec<Vec<Wanted<'_>>> = batch.iter().map(Decided::wanted).collect();
    let all: Vec<Wanted<'_>> = wanted.iter().flatten().copied().collect();
    let mut ledger = match locked {
        Some(mut ledger) => {
            ledger.include(&mut tx, &all).await?;
            Some(ledger)
        }
        None if all.is_empty() => None,
        None => Some(Ledger::load(&mut tx, &all).await?),
    };

    let alone = batch.len() == 1;
    // The approval deadlines of reservations that move: a move keeps it.
    let mut kept = HashMap::new();
    let mut admitted: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
    for (i, decided) in batch.iter().enumerate() {
        if !claimed[i] {
            admitted.push(Err(StoreError::IdempotencyKeyTaken));
            continue;
        }
        let verdict = if alone || !touches_rows(decided, ledger.as_ref()) {
            admit(&mut tx, sink, decided, &wanted[i], &mut ledger, &mut kept).await
        } else {
            // A refusal must leave no trace in the batch's transaction, nor
            // in the ledger the later commands are checked against.
            let before = ledger.clone();
            let mut savepoint = Connection::begin(&mut *tx).await?;
            match admit(
                &mut savepoint,
                sink,
                decided,
                &wanted[i],
                &mut ledger,
                &mut kept,
            )
            .await
            {
                Ok(()) => {
                    savepoint.commit().await?;
                    Ok(())
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    ledger = before;
                    Err(e)
                }
            }
        };
        admitted.push(match verdict {
            Err(e) if is_refusal(&e) => Err(e),
            Err(e) => return Err(e.into()),
            Ok(()) => Ok(()),
        });
    }
    if alone && let Some(Err(_)) = admitted.first() {
        // Nothing else to commit: the claim goes with the rollback.
        tx.rollback().await?;
        return Ok(admitted
            .into_iter()
            .map(|r| r.map(|()| batch[0].outcome(None)))
            .collect());
    }

    if let Some(ledger) = &ledger {
        ledger.save_growth(&mut tx).await?;
    }
    let accepted: Vec<usize> = (0..batch.len()).filter(|&i| admitted[i].is_ok()).collect();
    let registrations: Vec<Registration<'_>> = accepted
        .iter()
        .flat_map(|&i| registrations(&batch[i]))
        .collect();
    working_set::register_many(&mut tx, &registrations).await?;
    let reservations: Vec<Wanted<'_>> = accepted
        .iter()
        .flat_map(|&i| wanted[i].iter().copied())
        .collect();
    let now = chrono::Utc::now();
    let deadlines: Vec<Deadlines> = reservations
        .iter()
        .map(|w| {
            let mut d = ledger
                .as_ref()
                .map_or_else(Deadlines::default, |l| l.deadlines(w, now));
            if d.approve_by.is_some()
                && let Some(kept) = kept.get(&w.reservation.reservation_id)
            {
                d.approve_by = Some(*kept);
            }
            d
        })
        .collect();
    working_set::insert_reservations(&mut tx, &reservations, &deadlines).await?;

    // Each append with the command it belongs to.
    let (appending, appends): (Vec<usize>, Vec<StreamAppend>) = accepted
        .iter()
        .flat_map(|&i| batch[i].appends().map(move |a| (i, a.clone())))
        .unzip();
    let positions = if appends.is_empty() {
        Vec::new()
    } else {
        append_to_streams(&mut tx, &appends)
            .await
            .map_err(|e| match e {
                AppendError::VersionConflict => CommitError::VersionConflict,
                AppendError::Database(e) => CommitError::Store(e.into()),
            })?
    };
    // A command's position is the last of its appends: reading at it
    // shows the linked streams' changes too.
    let mut last: Vec<Option<i64>> = vec![None; batch.len()];
    for (&i, position) in appending.iter().zip(positions) {
        last[i] = Some(last[i].map_or(position, |l| l.max(position)));
    }
    let mut outcomes: Vec<Option<CommandOutcome>> = vec![None; batch.len()];
    for &i in &accepted {
        outcomes[i] = Some(batch[i].outcome(last[i]));
    }

    let mut recorded = Vec::new();
    let mut released = Vec::new();
    for (i, decided) in batch.iter().enumerate() {
        let Some(claim) = decided.tenant_claim() else {
            continue;
        };
        match (&outcomes[i], claimed[i]) {
            (Some(outcome), _) => recorded.push((claim, outcome)),
            (None, true) => released.push(claim),
            (None, false) => {}
        }
    }
    idempotency::record_outcomes(&mut tx, &recorded).await?;
    idempotency::release(&mut tx, &released).await?;
    tx.commit().await?;

    Ok(admitted
        .into_iter()
        .zip(outcomes)
        .map(|(verdict, outcome)| {
            verdict.map(|()| outcome.expect("every admitted command has an outcome"))
        })
        .collect())
}

/// Whether the command writes rows while it is admitted (so that a refusal
/// in a batch needs a savepoint), rather than only through the ledger and
/// the batch's bulk inserts. A quota charge writes rows only where the
/// tenant has quotas.
fn touches_rows(decided: &Decided, ledger: Option<&Ledger>) -> bool {
    let tenant = decided.append.tenant.as_str();
    decided.effects.iter().any(|e| match e {
        WriteEffect::Reserve { .. }
        | WriteEffect::Hold { .. }
        | WriteEffect::RegisterResource { .. } => false,
        WriteEffect::Charge { .. } => ledger.and_then(|l| l.quotas(tenant)) != Some(false),
        _ => true,
    })
}

/// Refusals of one command, as opposed to failures of the transaction.
fn is_refusal(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::ReservationConflict(_)
            | StoreError::CapacityInUse { .. }
            | StoreError::UnknownResource(_)
            | StoreError::RetiredResource(_)
            | StoreError::Refused { .. }
            | StoreError::QuotaExceeded(_)
            | StoreError::Rejected(_)
            | StoreError::NoJobQueue
    )
}

/// Writes what the command's bookings and holds now count for under the
/// tenant's quotas, refusing a quota passed. The flag read with the
/// ledger's locks says whether the tenant has quotas at all: without
/// them, nothing is read or written.
async fn charge_quotas(
    conn: &mut PgConnection,
    decided: &Decided,
    ledger: Option<&Ledger>,
) -> Result<(), StoreError> {
    let recharges: Vec<Recharge<'_>> = decided
        .effects
        .iter()
        .filter_map(|e| match e {
            WriteEffect::Charge {
                charge_id, charge, ..
            } => Some(Recharge {
                charge_id: *charge_id,
                charge: charge.as_deref(),
            }),
            _ => None,
        })
        .collect();
    if recharges.is_empty() {
        return Ok(());
    }
    let tenant = decided.append.tenant.as_str();
    let has_quotas = match ledger.and_then(|l| l.quotas(tenant)) {
        Some(flag) => flag,
        // Nothing locked tells: a booking that stops counting only needs
        // what it counted removed; anything else asks the tenant.
        None if recharges.iter().all(|r| r.charge.is_none()) => {
            let ids: Vec<Uuid> = recharges.iter().map(|r| r.charge_id).collect();
            return quotas::forget(conn, tenant, &ids).await;
        }
        None => quotas::tenant_has_quotas(conn, tenant).await?,
    };
    if !has_quotas {
        return Ok(());
    }
    let key = decided.append.metadata.actor.as_str();
    quotas::recharge(conn, tenant, key, &recharges)
        .instrument(tracing::info_span!(
            "quota.check",
            charges = recharges.len()
        ))
        .await
}

fn registrations(decided: &Decided) -> impl Iterator<Item = Registration<'_>> {
    decided.effects.iter().filter_map(|e| match e {
        WriteEffect::RegisterResource {
            resource_id,
            rules,
            labels,
        } => Some(Registration {
            tenant: decided.append.tenant.as_str(),
            resource_id: *resource_id,
            rules,
            labels,
        }),
        _ => None,
    })
}

/// Applies one command's effects in order, then admits its reservations on
/// the ledger (all or none) and queues the jobs it implies. Registrations
/// and admitted reservations are inserted later, with the whole batch's.
async fn admit(
    conn: &mut PgConnection,
    sink: Option<&dyn JobSink>,
    decided: &Decided,
    wanted: &[Wanted<'_>],
    ledger: &mut Option<Ledger>,
    kept: &mut HashMap<Uuid, DateTime<Utc>>,
) -> Result<(), StoreError> {
    let tenant = &decided.append.tenant;
    for effect in &decided.effects {
        match effect {
            WriteEffect::ChangeRules { resource_id, rules } => {
                working_set::change_rules(conn, tenant.as_str(), *resource_id, rules).await?
            }
            WriteEffect::CheckSeats {
                resource_ids,
                headcount,
            } => working_set::check_seats(conn, tenant.as_str(), resource_ids, *headcount).await?,
            WriteEffect::RetireResource { resource_id } => {
                working_set::retire(conn, tenant.as_str(), *resource_id).await?
            }
            WriteEffect::RequireResource { resource_id } => {
                working_set::require(conn, tenant.as_str(), *resource_id).await?
            }
            WriteEffect::Release {
                reservation_id,
                released_from,
            } => {
                working_set::release(conn, tenant.as_str(), *reservation_id, *released_from)
                    .await?;
                if let Some(ledger) = ledger {
                    ledger.release(*reservation_id, *released_from);
                }
            }
            WriteEffect::Move { reservation, .. } => {
                // Its old place is left out before anything is admitted, so
                // that a booking never conflicts with itself.
                let id = reservation.reservation_id;
                if let Some(approve_by) = working_set::remove(conn, tenant.as_str(), id).await? {
                    kept.insert(id, approve_by);
                }
                if let Some(ledger) = ledger {
                    ledger.forget(id);
                }
            }
            WriteEffect::Assign {
                pool_id,
                resource_id,
            } => crate::pools::assigned(conn, tenant.as_str(), *pool_id, *resource_id).await?,
            WriteEffect::SaveEntry { entry_id, entry } => {
                crate::waitlist::save(conn, tenant.as_str(), *entry_id, entry).await?
            }
            WriteEffect::SavePool { pool_id, spec } => {
                crate::pools::save(conn, tenant.as_str(), *pool_id, spec).await?
            }
            WriteEffect::WebhookHealth {
                webhook_id,
                disabled,
            } => {
                crate::webhook_health::set(conn, tenant.as_str(), *webhook_id, disabled.as_deref())
                    .await?
            }
            WriteEffect::DropDeadlines { reservation_ids } => {
                working_set::drop_deadlines(conn, tenant.as_str(), reservation_ids).await?
            }
            WriteEffect::ClearDeadline {
                reservation_ids,
                deadline,
            } => {
                working_set::clear_deadline(conn, tenant.as_str(), reservation_ids, *deadline)
                    .await?
            }
            WriteEffect::DropHold { hold_id } => {
                working_set::remove(conn, tenant.as_str(), *hold_id).await?;
                if let Some(ledger) = ledger {
                    ledger.forget(*hold_id);
                }
            }
            WriteEffect::SaveCalendar { calendar_id, spec } => {
                crate::calendars::save(conn, tenant.as_str(), *calendar_id, spec).await?
            }
            WriteEffect::PlaceBlocks {
                calendar_id,
                resource_id,
                added,
                removed,
            } => {
                crate::calendars::place_blocks(
                    conn,
                    tenant.as_str(),
                    (*calendar_id, *resource_id),
                    added,
                    removed,
                )
                .await?
            }
            WriteEffect::DropCalendar { calendar_id } => {
                crate::calendars::drop(conn, tenant.as_str(), *calendar_id).await?
            }
            WriteEffect::Erase { erasure_id, plan } => {
                crate::erasure::erase(conn, tenant.as_str(), *erasure_id, plan).await?
            }
            WriteEffect::Retag { resource_id, tags } => {
                working_set::retag(conn, tenant.as_str(), *resource_id, tags).await?
            }
            WriteEffect::RegisterResource { .. }
            | WriteEffect::Reserve { .. }
            | WriteEffect::Hold { .. }
            | WriteEffect::Charge { .. }
            | WriteEffect::Enqueue(_) => {}
        }
    }
    if !wanted.is_empty() {
        ledger
            .as_mut()
            .expect("the ledger is loaded when a command reserves")
            .admit(wanted)?;
    }
    charge_quotas(conn, decided, ledger.as_ref()).await?;
    for effect in &decided.effects {
        if let WriteEffect::Enqueue(job) = effect {
            sink.ok_or(StoreError::NoJobQueue)?
                .push(conn, tenant, job)
                .await?;
        }
    }
    Ok(())
}
