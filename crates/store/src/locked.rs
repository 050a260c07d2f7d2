//! What a command that picks among resources sees under their locks, in
//! the transaction that commits it: the write side's verdict on each
//! claim, how busy each resource is that local day, and when each pool
//! last assigned it. A pool's pick is decided on this, never on a read
//! that another request could overtake.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use muster_domain::TenantId;
use muster_domain::booking::Reservation;
use muster_domain::policy::Claim;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;
use crate::ledger::{Availability, Ledger, Wanted};

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
}

/// Locks the request's resources (in key order) in `conn`'s transaction
/// and reads what a pick weighs; the ledger then goes on to commit.
pub(crate) async fn lock_claims(
    conn: &mut PgConnection,
    tenant: &TenantId,
    request: &LockRequest,
) -> Result<(Ledger, Locked), StoreError> {
    if request.claims.is_empty() {
        // Nothing to pick: the commit locks what it reserves, as any does.
        return Ok((Ledger::default(), Locked::default()));
    }
    let reservations: Vec<(Reservation, Option<u32>)> = request
        .claims
        .iter()
        .map(|&(resource_id, claim)| {
            let reservation = Reservation {
                reservation_id: Uuid::nil(),
                resource_id,
                starts_at: claim.range.starts_at,
                ends_at: claim.range.ends_at,
                label: None,
                outside_working_hours: claim.outside_working_hours,
                hold_id: None,
                pool_id: None,
            };
            (reservation, claim.headcount)
        })
        .collect();
    let wanted: Vec<Wanted<'_>> = reservations
        .iter()
        .map(|(reservation, headcount)| Wanted {
            tenant: tenant.as_str(),
            booking_id: Uuid::nil(),
            reservation,
            headcount: *headcount,
            expires_at: None,
        })
        .collect();
    let mut ledger = Ledger::load(conn, &wanted).await?;
    for &reservation_id in &request.leaving {
        ledger.forget(reservation_id);
    }
    let now = Utc::now();
    let verdicts = wanted
        .iter()
        .map(|w| Ok((w.reservation.resource_id, ledger.availability(w, now)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let booked_minutes = booked_minutes(conn, tenant, &ledger, &request.claims).await?;
    let last_assigned = last_assigned(conn, tenant, &request.pools).await?;
    Ok((
        ledger,
        Locked {
            verdicts,
            booked_minutes,
            last_assigned,
        },
    ))
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

async fn booked_minutes(
    conn: &mut PgConnection,
    tenant: &TenantId,
    ledger: &Ledger,
    claims: &[(Uuid, Claim)],
) -> Result<Vec<i64>, StoreError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(claims.len());
    let mut starts = Vec::with_capacity(claims.len());
    let mut ends = Vec::with_capacity(claims.len());
    for (resource_id, claim) in claims {
        let tz = ledger
            .timezone_of(tenant.as_str(), *resource_id)
            .unwrap_or(chrono_tz::UTC);
        let (start, end) = local_day(tz, claim.range.starts_at);
        ids.push(*resource_id);
        starts.push(start);
        ends.push(end);
    }
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
              and r.expires_at is null
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

/// When each of `pools` last assigned each of its members (pool, member).
pub(crate) async fn last_assigned(
    conn: &mut PgConnection,
    tenant: &TenantId,
    pools: &[Uuid],
) -> Result<HashMap<(Uuid, Uuid), DateTime<Utc>>, StoreError> {
    if pools.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"select pool_id, resource_id, last_assigned_at from pool_assignments
            where tenant_id = $1 and pool_id = any($2)"#,
        tenant.as_str(),
        pools,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.pool_id, r.resource_id), r.last_assigned_at))
        .collect())
}
