//! What a command that picks among resources sees under their locks, in
//! the transaction that commits it: the write side's verdict on each
//! claim, how busy each resource is that local day, and when each pool
//! last assigned it. A pool's pick is decided on this, never on a read
//! that another request could overtake. Picks decided together in one
//! transaction ([`crate::pick_batch`]) see the ones before them through
//! [`Weights::note`] and [`simulate`].

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use muster_domain::TenantId;
use muster_domain::policy::Claim;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::commit::Decided;
use crate::effects::WriteEffect;
use crate::ledger::{Availability, Ledger, Wanted, claimed};
use crate::{ReservationConflict, StoreError};

/// The claims a command may take (resource, claim), and the pools whose
/// assignments it weighs.
#[derive(Debug, Clone, Default)]
pub struct LockRequest {
    /// Each claim it may make, on the resource that would hold it.
    pub claims: Vec<(Uuid, Claim)>,
    /// The pools it picks for (their members' last assignments are read).
    pub pools: Vec<Uuid>,
    /// Reservations that move away if the command commits: the verdicts
    /// leave them out, as the commit will.
    pub leaving: Vec<Uuid>,
    /// Also say what each claim's resource holds over the claim's range
    /// ([`Locked::held`]).
    pub with_held: bool,
}

/// What the locks show.
#[derive(Debug, Clone, Default)]
pub struct Locked {
    /// The verdict on each claim of the request, in its order.
    pub verdicts: Vec<(Uuid, Availability)>,
    /// For each claim, the minutes its resource has reserved on the
    /// claim's local day (reservations that start at most a day before
    /// it; holds not counted).
    pub booked_minutes: Vec<i64>,
    /// When each of the request's pools last assigned each resource
    /// (pool, resource).
    pub last_assigned: HashMap<(Uuid, Uuid), DateTime<Utc>>,
    /// With [`LockRequest::with_held`]: for each claim, what its resource
    /// holds that overlaps the claim's range (reservations, unexpired
    /// holds, external blocks), whatever the verdict.
    pub held: Vec<Vec<ReservationConflict>>,
}

/// Locks the request's resources (in key order) in `conn`'s transaction
/// and reads what a pick weighs; the ledger then goes on to commit. What
/// only weighs free members is not read when none is free.
pub(crate) async fn lock_claims(
    conn: &mut PgConnection,
    tenant: &TenantId,
    request: &LockRequest,
) -> Result<(Ledger, Locked), StoreError> {
    if request.claims.is_empty() {
        // Nothing to pick: the commit locks what it reserves, as any does.
        return Ok((Ledger::default(), Locked::default()));
    }
    let reservations = claimed(request.claims.iter().copied());
    let wanted: Vec<Wanted<'_>> = reservations
        .iter()
        .map(|(reservation, headcount)| Wanted {
            tenant: tenant.as_str(),
            booking_id: Uuid::nil(),
            reservation,
            headcount: *headcount,
            expires_at: None,
            basis: None,
        })
        .collect();
    let mut ledger = Ledger::load(conn, &wanted).await?;
    for &reservation_id in &request.leaving {
        ledger.forget(reservation_id);
    }
    let unweighed = Weights::default().locked(&ledger, tenant, request)?;
    if !unweighed
        .verdicts
        .iter()
        .any(|(_, v)| *v == Availability::Free)
    {
        return Ok((ledger, unweighed));
    }
    let claims: Vec<(&TenantId, Uuid, Claim)> = request
        .claims
        .iter()
        .map(|(resource_id, claim)| (tenant, *resource_id, *claim))
        .collect();
    let pools: Vec<(&TenantId, Uuid)> = request.pools.iter().map(|p| (tenant, *p)).collect();
    let weights = Weights::read(conn, &ledger, &claims, &pools).await?;
    let locked = weights.locked(&ledger, tenant, request)?;
    Ok((ledger, locked))
}

/// A resource's local day: (tenant, resource, the day's first instant).
type ResourceDay = (String, Uuid, DateTime<Utc>);

/// What a pick weighs besides the verdicts, for the claims of one
/// transaction: each resource's reserved minutes on each claim's local
/// day, and when each pool last assigned each member. Read once under the
/// locks and kept current in memory while a batch of picks decides, so
/// that a later pick sees the earlier ones.
#[derive(Debug, Default)]
pub(crate) struct Weights {
    /// (tenant, resource, local day start) → (day end, minutes).
    minutes: HashMap<ResourceDay, (DateTime<Utc>, i64)>,
    /// (pool, resource) → last assignment (pool ids are unique across
    /// tenants).
    last: HashMap<(Uuid, Uuid), DateTime<Utc>>,
}

impl Weights {
    /// Reads the weights of `claims` (by tenant) and `pools` on `conn`.
    pub(crate) async fn read(
        conn: &mut PgConnection,
        ledger: &Ledger,
        claims: &[(&TenantId, Uuid, Claim)],
        pools: &[(&TenantId, Uuid)],
    ) -> Result<Self, StoreError> {
        let mut weights = Weights::default();
        let mut tenants: Vec<&TenantId> = claims.iter().map(|(t, _, _)| *t).collect();
        tenants.sort_unstable_by_key(|t| t.as_str());
        tenants.dedup_by_key(|t| t.as_str());
        for tenant in tenants {
            let mut days: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = claims
                .iter()
                .filter(|(t, _, _)| t.as_str() == tenant.as_str())
                .map(|(_, resource_id, claim)| {
                    let tz = ledger
                        .timezone_of(tenant.as_str(), *resource_id)
                        .unwrap_or(chrono_tz::UTC);
                    let (start, end) = local_day(tz, claim.range.starts_at);
                    (*resource_id, start, end)
                })
                .collect();
            days.sort_unstable();
            days.dedup();
            for ((resource_id, start, end), minutes) in
                days.iter().zip(booked_minutes(conn, tenant, &days).await?)
            {
                weights.minutes.insert(
                    (tenant.as_str().to_owned(), *resource_id, *start),
                    (*end, minutes),
                );
            }
            let tenant_pools: Vec<Uuid> = pools
                .iter()
                .filter(|(t, _)| t.as_str() == tenant.as_str())
                .map(|(_, p)| *p)
                .collect();
            weights
                .last
                .extend(crate::pools::last_assigned(conn, tenant, &tenant_pools).await?);
        }
        Ok(weights)
    }

    /// What `request`'s locks show on `ledger` now.
    pub(crate) fn locked(
        &self,
        ledger: &Ledger,
        tenant: &TenantId,
        request: &LockRequest,
    ) -> Result<Locked, StoreError> {
        let now = Utc::now();
        let reservations = claimed(request.claims.iter().copied());
        let mut verdicts = Vec::with_capacity(reservations.len());
        let mut booked_minutes = Vec::with_capacity(reservations.len());
        for (reservation, headcount) in &reservations {
            let wanted = Wanted {
                tenant: tenant.as_str(),
                booking_id: Uuid::nil(),
                reservation,
                headcount: *headcount,
                expires_at: None,
                basis: None,
            };
            verdicts.push((reservation.resource_id, ledger.availability(&wanted, now)?));
            let tz = ledger
                .timezone_of(tenant.as_str(), reservation.resource_id)
                .unwrap_or(chrono_tz::UTC);
            let (day, _) = local_day(tz, reservation.starts_at);
            let key = (tenant.as_str().to_owned(), reservation.resource_id, day);
            booked_minutes.push(self.minutes.get(&key).map_or(0, |(_, m)| *m));
        }
        let last_assigned = self
            .last
            .iter()
            .filter(|((pool, _), _)| request.pools.contains(pool))
            .map(|(k, at)| (*k, *at))
            .collect();
        let held = if request.with_held {
            reservations
                .iter()
                .map(|(r, _)| ledger.overlapping(tenant.as_str(), r.resource_id, &r.range()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Locked {
            verdicts,
            booked_minutes,
            last_assigned,
            held,
        })
    }

    /// Counts what `decided` reserves and assigns, as its commit will.
    pub(crate) fn note(&mut self, decided: &Decided) {
        let tenant = decided.append.tenant.as_str();
        let now = Utc::now();
        for effect in &decided.effects {
            match effect {
                WriteEffect::Reserve { reservation, .. } => {
                    for ((t, resource_id, start), (end, minutes)) in &mut self.minutes {
                        if t == tenant && *resource_id == reservation.resource_id {
                            let overlap =
                                reservation.ends_at.min(*end) - reservation.starts_at.max(*start);
                            *minutes += overlap.num_minutes().max(0);
                        }
                    }
                }
                WriteEffect::Assign {
                    pool_id,
                    resource_id,
                } => {
                    self.last.insert((*pool_id, *resource_id), now);
                }
                _ => {}
            }
        }
    }
}

/// Applies what `decided` will do to the working set to `ledger`, in
/// memory, as its commit will: what it releases, moves away or converts
/// stops counting, what it reserves counts. A later pick of the same
/// batch is decided on this; the commit checks every command again.
pub(crate) fn simulate(ledger: &mut Ledger, decided: &Decided) {
    for effect in &decided.effects {
        match effect {
            WriteEffect::Release {
                reservation_id,
                released_from,
            } => ledger.release(*reservation_id, *released_from),
            WriteEffect::Move { reservation, .. } => ledger.forget(reservation.reservation_id),
            WriteEffect::DropHold { hold_id } => ledger.forget(*hold_id),
            _ => {}
        }
    }
    // Refused here means refused at the commit too: it then counts for
    // nothing, and a later pick that avoided it lost only a preference.
    let _ = ledger.admit(&decided.wanted());
}

/// The local day of `at` in `tz`, as instants.
fn local_day(tz: chrono_tz::Tz, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = at.with_timezone(&tz).date_naive();
    let midnight = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(at, |t| t.with_timezone(&Utc))
    };
    (midnight(date), midnight(date + Duration::days(1)))
}

/// The minutes each (resource, day start, day end) of `days` has reserved
/// that day, in order.
async fn booked_minutes(
    conn: &mut PgConnection,
    tenant: &TenantId,
    days: &[(Uuid, DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<i64>, StoreError> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = days.iter().map(|d| d.0).collect();
    let starts: Vec<DateTime<Utc>> = days.iter().map(|d| d.1).collect();
    let ends: Vec<DateTime<Utc>> = days.iter().map(|d| d.2).collect();
    // `least`/`greatest` skip nulls, so a resource with nothing that day
    // must be filtered out of the sum rather than left to its nulls.
    // Reservations starting at most a day before the day: the scan stays
    // an index range, and a reservation longer than that is rare enough
    // not to matter for how busy a member looks.
    let rows = sqlx::query!(
        r#"select k.n as "n!",
                  coalesce(sum(extract(epoch from least(r.ends_at, k.day_end)
                                                  - greatest(r.starts_at, k.day_start)) / 60)
                               filter (where r.reservation_id is not null), 0)::int8
                  as "minutes!"
             from unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[])
                  with ordinality as k(resource_id, day_start, day_end, n)
             left join reservations r
               on r.tenant_id = $1 and r.resource_id = k.resource_id
              and r.reservation_id <> r.booking_id and r.calendar_id is null
              and (r.expires_at is null or r.expires_at > now())
              and r.starts_at >= k.day_start - interval '1 day'
              and r.starts_at < k.day_end and r.ends_at > k.day_start
            group by k.n
            order by k.n"#,
        tenant.as_str(),
        &ids,
        &starts,
        &ends,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.minutes).collect())
}
