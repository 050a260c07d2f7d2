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
use muster_domain::waitlist::Target;
use muster_store::lease::Lease;
use muster_store::ledger::Availability;
use muster_store::waitlist::{PAGE, StoredEntry};
use muster_store::{CommandContext, Store};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

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
            match app.store.try_lease(LEASE_CLASS, "waitlist").await {
                Ok(Some(lease)) => break lease,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot take the waitlist lease"),
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
            Err(e) => tracing::warn!(error = %e, "waitlist lease lost; taking it again"),
        }
    }
}

/// Rounds while `lease` holds; `Ok` when stopped, `Err` when the lease's
/// connection failed.
async fn offer_while_leased(
    app: &App,
    mut lease: Lease,
    wakeups: &mut watch::Receiver<u64>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), muster_store::StoreError> {
    let mut seen = HashMap::new();
    let mut last_full: Option<Instant> = None;
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= LEASE_CHECK {
            lease.check().await?;
            checked = Instant::now();
        }
        let full = last_full.is_none_or(|at| at.elapsed() >= FULL_ROUND);
        if full {
            last_full = Some(Instant::now());
        }
        wakeups.borrow_and_update();
        let any_open = match round(app, &mut seen, full).await {
            Ok(any_open) => any_open,
            Err(e) => {
                tracing::warn!(error = %e, "a waitlist round failed");
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
            () = woken => tokio::time::sleep(SETTLE).await,
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
            offer_in(app, tenant)
                .instrument(tracing::info_span!("waitlist.round", tenant = %tenant))
                .await?;
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
        app.lapse_offer(&context(tenant), entry_id, hold_id).await?;
    }
    let mut members: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut after = None;
    loop {
        let page = app.store.waiting_entries(tenant, after).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some((last.priority, last.entry_id));
        offer_page(app, tenant, &page, &mut members).await?;
        if (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// Offers the entries of `page` what fits, in order; `members` keeps each
/// pool's members for the round.
async fn offer_page(
    app: &App,
    tenant: &TenantId,
    page: &[StoredEntry],
    members: &mut HashMap<Uuid, Vec<Uuid>>,
) -> Result<(), AppError> {
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
    for (entry, span) in page.iter().zip(spans) {
        let looks_free = verdicts
            .get(span)
            .is_some_and(|v| v.iter().any(|(_, a)| matches!(a, Availability::Free)));
        if looks_free {
            app.offer_slot(&context(tenant), entry).await?;
        }
    }
    Ok(())
}

/// The members pool `pool_id` has now (none, if it is gone).
async fn pool_members(
    store: &Store,
    tenant: &TenantId,
    pool_id: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    Ok(store
        .pool_members(tenant, pool_id)
        .await?
        .map(|pool| pool.members)
        .unwrap_or_default())
}

/// The loop's commands: by the system, each its own.
fn context(tenant: &TenantId) -> CommandContext {
    crate::system_context(tenant.clone(), "system:waitlist")
}
