//! The reservation working set: what the write side changes, in the command's
//! transaction, so that no resource is ever over capacity.
//!
//! Every writer that adds reservations to a resource first locks the
//! resource's `reservable_resources` row (FOR NO KEY UPDATE, in resource id
//! order, so two bookings never deadlock on each other). Writers of one
//! resource therefore run one after the other, and each sees every
//! reservation committed before it when it counts overlaps with the same
//! pure rule the conflict check uses ([`muster_domain::capacity`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::booking::Reservation;
use muster_domain::capacity::{blocking_reservations, peak_concurrency};
use muster_domain::time::TimeRange;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ReservationConflict, StoreError};

/// A change to the working set implied by a command's events.
#[derive(Debug, Clone)]
pub enum WriteEffect {
    /// A resource became reservable.
    RegisterResource {
        /// The resource.
        resource_id: Uuid,
        /// Its capacity.
        capacity: u32,
    },
    /// A resource's capacity changed.
    ChangeCapacity {
        /// The resource.
        resource_id: Uuid,
        /// The new capacity.
        capacity: u32,
    },
    /// A resource was retired.
    RetireResource {
        /// The resource.
        resource_id: Uuid,
    },
    /// The command refers to this resource (a task's assignee), which must
    /// exist in the tenant.
    RequireResource {
        /// The resource.
        resource_id: Uuid,
    },
    /// A booking reserves a resource.
    Reserve {
        /// The reserving booking.
        booking_id: Uuid,
        /// The reservation.
        reservation: Reservation,
    },
    /// A reservation stops holding time from `released_from` on.
    Release {
        /// The reservation.
        reservation_id: Uuid,
        /// From when it no longer holds time.
        released_from: DateTime<Utc>,
    },
}

/// Applies `effects` in the caller's transaction.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    tenant: &str,
    effects: &[WriteEffect],
) -> Result<(), StoreError> {
    let mut reserves = Vec::new();
    for effect in effects {
        match effect {
            WriteEffect::RegisterResource {
                resource_id,
                capacity,
            } => register(conn, tenant, *resource_id, *capacity).await?,
            WriteEffect::ChangeCapacity {
                resource_id,
                capacity,
            } => change_capacity(conn, tenant, *resource_id, *capacity).await?,
            WriteEffect::RetireResource { resource_id } => {
                retire(conn, tenant, *resource_id).await?
            }
            WriteEffect::RequireResource { resource_id } => {
                require(conn, tenant, *resource_id).await?
            }
            WriteEffect::Reserve {
                booking_id,
                reservation,
            } => reserves.push((*booking_id, reservation)),
            WriteEffect::Release {
                reservation_id,
                released_from,
            } => release(conn, tenant, *reservation_id, *released_from).await?,
        }
    }
    if !reserves.is_empty() {
        reserve(conn, tenant, &reserves).await?;
    }
    Ok(())
}

async fn register(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
    capacity: u32,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into reservable_resources (tenant_id, resource_id, capacity) values ($1, $2, $3)",
        tenant,
        resource_id,
        capacity as i32,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the resource, refuses a decrease that current and future
/// reservations would exceed, and stores the new capacity.
async fn change_capacity(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
    capacity: u32,
) -> Result<(), StoreError> {
    let current = sqlx::query_scalar!(
        r#"select capacity from reservable_resources
            where tenant_id = $1 and resource_id = $2
              for no key update"#,
        tenant,
        resource_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    if capacity < current as u32 {
        let held = sqlx::query!(
            r#"select starts_at, ends_at from reservations
                where tenant_id = $1 and resource_id = $2 and ends_at > now()"#,
            tenant,
            resource_id,
        )
        .fetch_all(&mut *conn)
        .await?;
        let ranges: Vec<TimeRange> = held
            .into_iter()
            .map(|r| TimeRange {
                starts_at: r.starts_at,
                ends_at: r.ends_at,
            })
            .collect();
        let needed = peak_concurrency(&ranges);
        if needed > capacity as usize {
            return Err(StoreError::CapacityInUse { needed });
        }
    }
    sqlx::query!(
        "update reservable_resources set capacity = $3 where tenant_id = $1 and resource_id = $2",
        tenant,
        resource_id,
        capacity as i32,
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn require(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
) -> Result<(), StoreError> {
    let exists = sqlx::query_scalar!(
        r#"select exists(select 1 from reservable_resources
                          where tenant_id = $1 and resource_id = $2) as "exists!""#,
        tenant,
        resource_id,
    )
    .fetch_one(conn)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::UnknownResource(resource_id))
    }
}

async fn retire(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update reservable_resources set retired = true where tenant_id = $1 and resource_id = $2",
        tenant,
        resource_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn release(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_id: Uuid,
    released_from: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Released at or before its start: gone. Released while under way:
    // shortened to end where the release begins.
    sqlx::query!(
        r#"with removed as (
               delete from reservations
                where tenant_id = $1 and reservation_id = $2 and starts_at >= $3
           )
           update reservations set ends_at = least(ends_at, $3)
            where tenant_id = $1 and reservation_id = $2 and starts_at < $3"#,
        tenant,
        reservation_id,
        released_from,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the resources, checks every new reservation against capacity
/// (including the others of the same command), then inserts them all.
async fn reserve(
    conn: &mut PgConnection,
    tenant: &str,
    reserves: &[(Uuid, &Reservation)],
) -> Result<(), StoreError> {
    let mut resource_ids: Vec<Uuid> = reserves.iter().map(|(_, r)| r.resource_id).collect();
    resource_ids.sort_unstable();
    resource_ids.dedup();

    let capacities: HashMap<Uuid, (u32, bool)> = sqlx::query!(
        r#"select resource_id, capacity, retired from reservable_resources
            where tenant_id = $1 and resource_id = any($2)
            order by resource_id
              for no key update"#,
        tenant,
        &resource_ids,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.resource_id, (r.capacity as u32, r.retired)))
    .collect();
    for (_, r) in reserves {
        match capacities.get(&r.resource_id) {
            None => return Err(StoreError::UnknownResource(r.resource_id)),
            Some((_, true)) => return Err(StoreError::RetiredResource(r.resource_id)),
            Some(_) => {}
        }
    }

    let (ids, starts, ends): (Vec<Uuid>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) = reserves
        .iter()
        .map(|(_, r)| (r.resource_id, r.starts_at, r.ends_at))
        .collect();
    // Read after the locks were granted, so it sees every reservation
    // committed by the writers we waited for.
    let rows = sqlx::query_as!(
        ReservationConflict,
        r#"select distinct r.resource_id, r.booking_id, r.reservation_id, r.starts_at, r.ends_at
             from reservations r
             join unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) as c(resource_id, starts_at, ends_at)
               on r.resource_id = c.resource_id
              and tstzrange(r.starts_at, r.ends_at) && tstzrange(c.starts_at, c.ends_at)
            where r.tenant_id = $1"#,
        tenant,
        &ids,
        &starts,
        &ends,
    )
    .fetch_all(&mut *conn)
    .await?;

    let mut held: HashMap<Uuid, Vec<ReservationConflict>> = HashMap::new();
    for row in rows {
        held.entry(row.resource_id).or_default().push(row);
    }
    let mut conflicts = Vec::new();
    for (booking_id, r) in reserves {
        let existing = held.entry(r.resource_id).or_default();
        let ranges: Vec<TimeRange> = existing
            .iter()
            .map(|e| TimeRange {
                starts_at: e.starts_at,
                ends_at: e.ends_at,
            })
            .collect();
        let capacity = capacities[&r.resource_id].0;
        let blocking = blocking_reservations(&ranges, &r.range(), capacity);
        if blocking.is_empty() {
            // Later reservations of the same command count this one too.
            existing.push(ReservationConflict {
                resource_id: r.resource_id,
                booking_id: *booking_id,
                reservation_id: r.reservation_id,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
            });
        } else {
            conflicts.extend(blocking.into_iter().map(|i| existing[i].clone()));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort_by_key(|c| (c.resource_id, c.starts_at, c.reservation_id));
        conflicts.dedup();
        metrics::counter!("muster_reservation_conflicts_total").increment(1);
        return Err(StoreError::ReservationConflict(conflicts));
    }

    let (res_ids, booking_ids, labels): (Vec<Uuid>, Vec<Uuid>, Vec<Option<String>>) = reserves
        .iter()
        .map(|(b, r)| (r.reservation_id, *b, r.label.clone()))
        .collect();
    sqlx::query!(
        r#"insert into reservations
               (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at, label)
           select $1, * from unnest($2::uuid[], $3::uuid[], $4::uuid[],
                                    $5::timestamptz[], $6::timestamptz[], $7::text[])"#,
        tenant,
        &res_ids,
        &booking_ids,
        &ids,
        &starts,
        &ends,
        &labels as &[Option<String>],
    )
    .execute(conn)
    .await?;
    Ok(())
}
