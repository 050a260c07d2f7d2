//! The offering loop: one process at a time (a lease, a session advisory
//! lock) watches the tenants that have open entries, and whenever events
//! arrive there (a cancel, a move, a released hold…) or a second passes
//! (time alone frees capacity: holds run out), lapses the offers whose
//! hold ended and offers each waiting entry, in order, what fits now.
//!
//! Nothing here is needed for correctness under races: an offer is a hold
//! admitted under the resource's locks and the entry's stream version, so
//! two loops (a lease lost mid-round) cannot offer one unit twice. The
//! lease keeps the order (priority, then first come) and the work single;
//! and since each round reads what is free rather than what happened, a
//! process killed between a cancel and its offer loses nothing: the next
//! lease holder's first round finds the unit free.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use muster_domain::TenantId;
use muster_domain::policy::Claim;
use muster_domain::time::TimeRange;
use muster_domain::waitlist::Target;
use muster_store::lease::Lease;
use muster_store::ledger::Availability;
use muster_store::waitlist::{PAGE, StoredEntry};
use muster_store::{CommandContext, Store};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::waitlist::Offered;
use crate::{App, AppError};

/// The lease's advisory lock class ("MSWL").
const LEASE_CLASS: i32 = 0x4D53_574C;
/// How often a process without the lease tries to take it.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the lease's connection is checked alive.
const LEASE_CHECK: Duration = Duration::from_secs(2);
/// A round over every open tenant at least this often, events or not.
const FULL_ROUND: Duration = Duration::from_secs(1);
/// After a wake-up, wait this long for the burst of events to settle.
const SETTLE: Duration = Duration::from_millis(5);
/// Rounds woken by events at most this often: a busy database wakes the
/// loop on every commit.
const MIN_SPACING: Duration = Duration::from_millis(25);
/// Longest a lease may take to be taken or checked: a half-open
/// connection must not stop the offers for the TCP timeout's minutes.
const LEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Offers freed capacity to waiting entries until `stop` completes,
/// waking on `wakeups` (the store's event signal, any process's appends).
pub async fn offer_freed(
    app: App,
    mut wakeups: watch::Receiver<u64>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let lease = loop {
            let taken =
                tokio::time::timeout(LEASE_TIMEOUT, app.store.try_lease(LEASE_CLASS, "waitlist"));
            match taken.await {
                Ok(Ok(Some(lease))) => break lease,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot take the waitlist lease"),
                Err(_) => tracing::debug!("taking the waitlist lease timed out"),
            }
            tokio::select! {
                () = tokio::time::sleep(LEASE_RETRY) => {}
                () = &mut stop => return,
            }
        };
        tracing::info!("waitlist lease acquired");
        metrics::gauge!("muster_waitlist_lease_held").set(1.0);
        let result = offer_while_leased(&app, lease, &mut wakeups, &mut stop).await;
        metrics::gauge!("muster_waitlist_lease_held").set(0.0);
        match result {
            Ok(()) => return,
            Err(why) => tracing::warn!(%why, "waitlist lease lost; taking it again"),
        }
    }
}

/// Rounds while `lease` holds; `Ok` when stopped, `Err` (why) when the
/// lease's connection failed or did not answer in time.
async fn offer_while_leased(
    app: &App,
    mut lease: Lease,
    wakeups: &mut watch::Receiver<u64>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), String> {
    let mut seen = HashMap::new();
    let mut last_full: Option<Instant> = None;
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= LEASE_CHECK {
            match tokio::time::timeout(LEASE_TIMEOUT, lease.check()).await {
                Ok(Ok(())) => checked = Instant::now(),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("the lease's connection did not answer".into()),
            }
        }
        let round_started = Instant::now();
        let full = last_full.is_none_or(|at| at.elapsed() >= FULL_ROUND);
        if full {
            last_full = Some(Instant::now());
        }
        wakeups.borrow_and_update();
        let any_open = match round(app, &mut seen, full).await {
            Ok(any_open) => any_open,
            Err(e) => {
                tracing::warn!(error = %e, "a waitlist round could not read the open entries");
                true
            }
        };
        let next_full = FULL_ROUND.saturating_sub(last_full.map_or(FULL_ROUND, |at| at.elapsed()));
        // Without any open entry, events wake nothing: a database without
        // waitlists pays one empty index probe a second, whatever the load.
        let woken = async {
            if !any_open || wakeups.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = woken => {
                let spaced = MIN_SPACING.saturating_sub(round_started.elapsed());
                tokio::time::sleep(spaced.max(SETTLE)).await;
            }
            () = tokio::time::sleep(next_full) => {}
            () = stop.as_mut() => {
                lease.release().await;
                return Ok(());
            }
        }
    }
}

/// One round: every open tenant whose newest event moved since the last
/// round (every one, when `full`); answers whether any tenant has an open
/// entry.
async fn round(app: &App, seen: &mut HashMap<TenantId, i64>, full: bool) -> Result<bool, AppError> {
    let started = Instant::now();
    let open = app.store.open_waitlists().await?;
    let mut handled = 0;
    for (tenant, position) in &open {
        let moved = seen.insert(tenant.clone(), *position) != Some(*position);
        if full || moved {
            handled += 1;
            // One tenant's failure (its database rows, a poison event)
            // must not keep the others from their offers.
            let offered = offer_in(app, tenant)
                .instrument(tracing::info_span!("waitlist.round", tenant = %tenant))
                .await;
            if let Err(e) = offered {
                metrics::counter!("muster_waitlist_round_failures_total").increment(1);
                tracing::warn!(%tenant, error = %e, "a waitlist round failed for a tenant");
                // Tried again at the next round whatever moves.
                seen.remove(tenant);
            }
        }
    }
    let tenants: HashSet<&TenantId> = open.iter().map(|(tenant, _)| tenant).collect();
    seen.retain(|tenant, _| tenants.contains(tenant));
    if handled > 0 {
        metrics::histogram!("muster_waitlist_round_seconds")
            .record(started.elapsed().as_secs_f64());
    }
    Ok(!open.is_empty())
}

/// Lapses `tenant`'s ended offers, then offers each waiting entry what
/// fits, page by page in the order they are offered: a lock-free first
/// look at every entry's candidates of a page in one statement, and the
/// offer itself (under locks) only where it showed something free.
async fn offer_in(app: &App, tenant: &TenantId) -> Result<(), AppError> {
    for (entry_id, hold_id) in app.store.ended_offers(tenant).await? {
        if let Err(e) = app.lapse_offer(&context(tenant), entry_id, hold_id).await {
            tracing::warn!(%entry_id, error = %e, "an ended offer could not lapse");
        }
    }
    let mut members: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut after = None;
    loop {
        let page = app.store.waiting_entries(tenant, after).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some((last.priority, last.entry_id));
        if offer_page(app, tenant, &page, &mut members).await? {
            // Whether the contended entry fits is unknown: the ones after
            // it wait for the next round rather than take its unit.
            return Ok(());
        }
        if (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// Offers the entries of `page` what fits, in order; `members` keeps each
/// pool's members for the round. Answers whether an entry was contended
/// (its offer could not be decided; the page stops there).
async fn offer_page(
    app: &App,
    tenant: &TenantId,
    page: &[StoredEntry],
    members: &mut HashMap<Uuid, Vec<Uuid>>,
) -> Result<bool, AppError> {
    let mut claims = Vec::new();
    let mut spans = Vec::with_capacity(page.len());
    for entry in page {
        let claim = Claim {
            range: entry.range,
            headcount: None,
            outside_working_hours: false,
        };
        let start = claims.len();
        match entry.target {
            Target::Resource { resource_id } => claims.push((resource_id, claim)),
            Target::Pool { pool_id } => {
                let ids = match members.entry(pool_id) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(pool_members(&app.store, tenant, pool_id).await?)
                    }
                };
                claims.extend(ids.iter().map(|&id| (id, claim)));
            }
        }
        spans.push(start..claims.len());
    }
    let verdicts = app.store.check_claims(tenant, &claims, None).await?;
    // Ranges of resources offered in this page: the snapshot no longer
    // shows them, so the entries behind on them wait for the next round
    // (the offer's own events bring it) instead of failing under locks.
    let mut offered: Vec<(Uuid, TimeRange)> = Vec::new();
    for (entry, span) in page.iter().zip(spans) {
        let looks_free = verdicts
            .get(span)
            .is_some_and(|v| v.iter().any(|(_, a)| matches!(a, Availability::Free)));
        let behind_an_offer = match entry.target {
            Target::Resource { resource_id } => offered
                .iter()
                .any(|(id, range)| *id == resource_id && range.overlaps(&entry.range)),
            Target::Pool { .. } => false,
        };
        if !looks_free || behind_an_offer {
            continue;
        }
        match app.offer_slot(&context(tenant), entry).await {
            Ok(Offered::Yes) => {
                if let Target::Resource { resource_id } = entry.target {
                    offered.push((resource_id, entry.range));
                }
            }
            Ok(Offered::DoesNotFit) => {}
            Ok(Offered::Contended) => return Ok(true),
            Err(e) => {
                tracing::warn!(entry_id = %entry.entry_id, error = %e, "an entry could not be offered");
            }
        }
    }
    Ok(false)
}

/// The members pool `pool_id` has now (none, if it is gone); their loads
/// are the locked decision's to weigh, not the first look's.
async fn pool_members(
    store: &Store,
    tenant: &TenantId,
    pool_id: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    Ok(store
        .current_members(tenant, pool_id)
        .await?
        .map(|(members, _)| members)
        .unwrap_or_default())
}

/// The loop's commands: by the system, each its own.
fn context(tenant: &TenantId) -> CommandContext {
    crate::system_context(tenant.clone(), "system:waitlist")
}
