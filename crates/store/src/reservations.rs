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
    /// A job to push in the command's transaction (not a reservation
    /// change; the command executor pushes it).
    Enqueue(crate::implied_jobs::ImpliedJob),
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
            } => register_many(conn, &[(tenant, *resource_id, *capacity)]).await?,
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
            WriteEffect::Enqueue(_) => {}
        }
    }
    if !reserves.is_empty() {
        reserve(conn, tenant, &reserves).await?;
    }
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
    let wanted: Vec<Wanted<'_>> = reserves
        .iter()
        .map(|(booking_id, reservation)| Wanted {
            tenant,
            booking_id: *booking_id,
            reservation,
        })
        .collect();
    let mut ledger = Ledger::load(conn, &wanted).await?;
    ledger.admit(&wanted)?;
    ledger.save_growth(&mut *conn).await?;
    insert_reservations(conn, &wanted).await
}

/// A reservation a command wants to add.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub tenant: &'a str,
    pub booking_id: Uuid,
    pub reservation: &'a Reservation,
}

type ResourceKey = (String, Uuid);

/// The locked resources of one transaction and the reservations they hold
/// around the wanted ranges: what admitting a command is checked against.
pub(crate) struct Ledger {
    resources: HashMap<ResourceKey, LockedResource>,
    held: HashMap<ResourceKey, Vec<ReservationConflict>>,
}

/// What the write side knows of a locked resource.
struct LockedResource {
    capacity: u32,
    retired: bool,
    /// Longest reservation it ever held (seconds): how far back an
    /// overlapping reservation can start.
    longest_secs: f64,
    /// Whether an admitted reservation made `longest_secs` grow.
    grew: bool,
}

impl Ledger {
    /// Locks every resource `wanted` names (FOR NO KEY UPDATE, in key order,
    /// so that concurrent writers never deadlock on each other), then reads
    /// the reservations overlapping the wanted ranges. The read comes after
    /// the locks were granted, so it sees every reservation committed by
    /// the writers we waited for.
    pub(crate) async fn load(
        conn: &mut PgConnection,
        wanted: &[Wanted<'_>],
    ) -> Result<Self, StoreError> {
        let mut keys: Vec<(&str, Uuid)> = wanted
            .iter()
            .map(|w| (w.tenant, w.reservation.resource_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (tenants, ids): (Vec<&str>, Vec<Uuid>) = keys.into_iter().unzip();
        let resources: HashMap<ResourceKey, LockedResource> = sqlx::query!(
            // One index probe per key, locking in the (sorted) order of the
            // keys; `offset 0` keeps the planner from flattening the probes
            // into a join that scans the table.
            r#"select r.tenant_id as "tenant_id!", r.resource_id as "resource_id!",
                      r.capacity as "capacity!", r.retired as "retired!",
                      r.longest_reservation_secs as "longest_reservation_secs!"
                 from unnest($1::text[], $2::uuid[]) with ordinality as k(tenant_id, resource_id, n)
                cross join lateral (
                      select rr.tenant_id, rr.resource_id, rr.capacity, rr.retired,
                             rr.longest_reservation_secs
                        from reservable_resources rr
                       where rr.tenant_id = k.tenant_id and rr.resource_id = k.resource_id
                         for no key update
                      offset 0) r
                order by k.n"#,
            &tenants as &[&str],
            &ids,
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| {
            let locked = LockedResource {
                capacity: r.capacity as u32,
                retired: r.retired,
                longest_secs: r.longest_reservation_secs,
                grew: false,
            };
            ((r.tenant_id, r.resource_id), locked)
        })
        .collect();
        Self::around(conn, resources, wanted).await
    }

    /// Like [`Ledger::load`] without taking locks: what a writer would check
    /// against right now, for the conflict check.
    pub(crate) async fn peek(
        conn: &mut PgConnection,
        wanted: &[Wanted<'_>],
    ) -> Result<Self, StoreError> {
        let (tenants, ids): (Vec<&str>, Vec<Uuid>) = wanted
            .iter()
            .map(|w| (w.tenant, w.reservation.resource_id))
            .unzip();
        let resources: HashMap<ResourceKey, LockedResource> = sqlx::query!(
            r#"select rr.tenant_id, rr.resource_id, rr.capacity, rr.retired,
                      rr.longest_reservation_secs
                 from reservable_resources rr
                 join unnest($1::text[], $2::uuid[]) as k(tenant_id, resource_id)
                   on rr.tenant_id = k.tenant_id and rr.resource_id = k.resource_id"#,
            &tenants as &[&str],
            &ids,
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| {
            let resource = LockedResource {
                capacity: r.capacity as u32,
                retired: r.retired,
                longest_secs: r.longest_reservation_secs,
                grew: false,
            };
            ((r.tenant_id, r.resource_id), resource)
        })
        .collect();
        Self::around(conn, resources, wanted).await
    }

    /// Reads the reservations held around the wanted ranges.
    async fn around(
        conn: &mut PgConnection,
        resources: HashMap<ResourceKey, LockedResource>,
        wanted: &[Wanted<'_>],
    ) -> Result<Self, StoreError> {
        let mut tenants = Vec::with_capacity(wanted.len());
        let mut ids = Vec::with_capacity(wanted.len());
        let mut starts = Vec::with_capacity(wanted.len());
        let mut ends = Vec::with_capacity(wanted.len());
        let mut lookbacks = Vec::with_capacity(wanted.len());
        for w in wanted {
            let key = (w.tenant.to_owned(), w.reservation.resource_id);
            tenants.push(w.tenant);
            ids.push(w.reservation.resource_id);
            starts.push(w.reservation.starts_at);
            ends.push(w.reservation.ends_at);
            // One second of slack keeps float rounding on the safe side.
            lookbacks.push(resources.get(&key).map_or(0.0, |r| r.longest_secs) + 1.0);
        }
        let rows = sqlx::query!(
            // One index range scan per candidate (`offset 0` keeps the
            // planner from turning the probes into a hash join over the
            // whole table); nothing held is longer than the lookback.
            r#"select distinct r.tenant_id as "tenant_id!", r.resource_id as "resource_id!",
                      r.booking_id as "booking_id!", r.reservation_id as "reservation_id!",
                      r.starts_at as "starts_at!", r.ends_at as "ends_at!"
                 from unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::float8[])
                          as c(tenant_id, resource_id, starts_at, ends_at, lookback_secs)
                cross join lateral (
                      select h.tenant_id, h.resource_id, h.booking_id, h.reservation_id,
                             h.starts_at, h.ends_at
                        from reservations h
                       where h.tenant_id = c.tenant_id
                         and h.resource_id = c.resource_id
                         and h.starts_at > c.starts_at - make_interval(secs => c.lookback_secs)
                         and h.starts_at < c.ends_at
                         and h.ends_at > c.starts_at
                      offset 0) r"#,
            &tenants as &[&str],
            &ids,
            &starts as &[DateTime<Utc>],
            &ends as &[DateTime<Utc>],
            &lookbacks,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut held: HashMap<ResourceKey, Vec<ReservationConflict>> = HashMap::new();
        for r in rows {
            held.entry((r.tenant_id, r.resource_id))
                .or_default()
                .push(ReservationConflict {
                    resource_id: r.resource_id,
                    booking_id: r.booking_id,
                    reservation_id: r.reservation_id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                });
        }
        Ok(Self { resources, held })
    }

    /// Admits one command's reservations, all or none: each must name a
    /// live resource and fit its capacity given what is held, including
    /// the command's own earlier reservations. Admitted ones count against
    /// later commands checked on this ledger.
    pub(crate) fn admit(&mut self, wanted: &[Wanted<'_>]) -> Result<(), StoreError> {
        let mut admitted: Vec<(ResourceKey, ReservationConflict)> =
            Vec::with_capacity(wanted.len());
        let mut conflicts = Vec::new();
        for w in wanted {
            let r = w.reservation;
            let key = (w.tenant.to_owned(), r.resource_id);
            let blocking = self.blocking(w, &admitted)?;
            if blocking.is_empty() {
                admitted.push((
                    key,
                    ReservationConflict {
                        resource_id: r.resource_id,
                        booking_id: w.booking_id,
                        reservation_id: r.reservation_id,
                        starts_at: r.starts_at,
                        ends_at: r.ends_at,
                    },
                ));
            } else {
                conflicts.extend(blocking);
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort_by_key(|c| (c.resource_id, c.starts_at, c.reservation_id));
            conflicts.dedup();
            metrics::counter!("muster_reservation_conflicts_total").increment(1);
            return Err(StoreError::ReservationConflict(conflicts));
        }
        for (key, reservation) in admitted {
            let length = (reservation.ends_at - reservation.starts_at).as_seconds_f64();
            if let Some(resource) = self.resources.get_mut(&key)
                && length > resource.longest_secs
            {
                resource.longest_secs = length;
                resource.grew = true;
            }
            self.held.entry(key).or_default().push(reservation);
        }
        Ok(())
    }

    /// The held (and `admitted`) reservations that leave no room for `w`,
    /// or why `w`'s resource cannot be reserved at all.
    pub(crate) fn blocking(
        &self,
        w: &Wanted<'_>,
        admitted: &[(ResourceKey, ReservationConflict)],
    ) -> Result<Vec<ReservationConflict>, StoreError> {
        let r = w.reservation;
        let key = (w.tenant.to_owned(), r.resource_id);
        let capacity = match self.resources.get(&key) {
            None => return Err(StoreError::UnknownResource(r.resource_id)),
            Some(resource) if resource.retired => {
                return Err(StoreError::RetiredResource(r.resource_id));
            }
            Some(resource) => resource.capacity,
        };
        let existing: Vec<&ReservationConflict> = self
            .held
            .get(&key)
            .into_iter()
            .flatten()
            .chain(admitted.iter().filter(|(k, _)| *k == key).map(|(_, c)| c))
            .collect();
        let ranges: Vec<TimeRange> = existing
            .iter()
            .map(|e| TimeRange {
                starts_at: e.starts_at,
                ends_at: e.ends_at,
            })
            .collect();
        Ok(blocking_reservations(&ranges, &r.range(), capacity)
            .into_iter()
            .map(|i| existing[i].clone())
            .collect())
    }

    /// Stores the longest-reservation bound of resources whose admitted
    /// reservations raised it (rare once a resource has some history).
    pub(crate) async fn save_growth(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let grown: Vec<(&ResourceKey, f64)> = self
            .resources
            .iter()
            .filter(|(_, r)| r.grew)
            .map(|(k, r)| (k, r.longest_secs))
            .collect();
        if grown.is_empty() {
            return Ok(());
        }
        let tenants: Vec<&str> = grown.iter().map(|(k, _)| k.0.as_str()).collect();
        let ids: Vec<Uuid> = grown.iter().map(|(k, _)| k.1).collect();
        let secs: Vec<f64> = grown.iter().map(|(_, s)| *s).collect();
        sqlx::query!(
            r#"update reservable_resources rr
                  set longest_reservation_secs = greatest(rr.longest_reservation_secs, g.secs)
                 from unnest($1::text[], $2::uuid[], $3::float8[]) as g(tenant_id, resource_id, secs)
                where rr.tenant_id = g.tenant_id and rr.resource_id = g.resource_id"#,
            &tenants as &[&str],
            &ids,
            &secs,
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Inserts admitted reservations.
pub(crate) async fn insert_reservations(
    conn: &mut PgConnection,
    wanted: &[Wanted<'_>],
) -> Result<(), StoreError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut tenants = Vec::with_capacity(wanted.len());
    let mut ids = Vec::with_capacity(wanted.len());
    let mut bookings = Vec::with_capacity(wanted.len());
    let mut resources = Vec::with_capacity(wanted.len());
    let mut starts = Vec::with_capacity(wanted.len());
    let mut ends = Vec::with_capacity(wanted.len());
    let mut labels = Vec::with_capacity(wanted.len());
    for w in wanted {
        tenants.push(w.tenant);
        ids.push(w.reservation.reservation_id);
        bookings.push(w.booking_id);
        resources.push(w.reservation.resource_id);
        starts.push(w.reservation.starts_at);
        ends.push(w.reservation.ends_at);
        labels.push(w.reservation.label.clone());
    }
    sqlx::query!(
        r#"insert into reservations
               (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at, label)
           select * from unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[],
                                $5::timestamptz[], $6::timestamptz[], $7::text[])"#,
        &tenants as &[&str],
        &ids,
        &bookings,
        &resources,
        &starts,
        &ends,
        &labels as &[Option<String>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Registers resources as reservable.
pub(crate) async fn register_many(
    conn: &mut PgConnection,
    resources: &[(&str, Uuid, u32)],
) -> Result<(), StoreError> {
    if resources.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = resources.iter().map(|r| r.0).collect();
    let ids: Vec<Uuid> = resources.iter().map(|r| r.1).collect();
    let capacities: Vec<i32> = resources.iter().map(|r| r.2 as i32).collect();
    sqlx::query!(
        r#"insert into reservable_resources (tenant_id, resource_id, capacity)
           select * from unnest($1::text[], $2::uuid[], $3::int4[])"#,
        &tenants as &[&str],
        &ids,
        &capacities,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What the conflict check finds for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A reservation of the range would be admitted now.
    Free,
    /// These reservations leave no room (capacity 1: every overlap).
    Conflicts(Vec<ReservationConflict>),
    /// The resource is retired and takes no reservations.
    Retired,
    /// No such resource in the tenant.
    Unknown,
}

impl crate::Store {
    /// Whether `range` could be reserved on each of `resource_ids` right
    /// now: the same working set and the same rule
    /// ([`Ledger::blocking`]) that writers are admitted by, without locks.
    pub async fn check_reservations(
        &self,
        tenant: &str,
        resource_ids: &[Uuid],
        range: TimeRange,
    ) -> Result<Vec<(Uuid, Availability)>, StoreError> {
        let reservations: Vec<Reservation> = resource_ids
            .iter()
            .map(|&resource_id| Reservation {
                reservation_id: Uuid::nil(),
                resource_id,
                starts_at: range.starts_at,
                ends_at: range.ends_at,
                label: None,
            })
            .collect();
        let wanted: Vec<Wanted<'_>> = reservations
            .iter()
            .map(|reservation| Wanted {
                tenant,
                booking_id: Uuid::nil(),
                reservation,
            })
            .collect();
        let mut conn = self.pool().acquire().await?;
        let ledger = Ledger::peek(&mut conn, &wanted).await?;
        wanted
            .iter()
            .map(|w| {
                let availability = match ledger.blocking(w, &[]) {
                    Ok(blocking) if blocking.is_empty() => Availability::Free,
                    Ok(blocking) => Availability::Conflicts(blocking),
                    Err(StoreError::RetiredResource(_)) => Availability::Retired,
                    Err(StoreError::UnknownResource(_)) => Availability::Unknown,
                    Err(e) => return Err(e),
                };
                Ok((w.reservation.resource_id, availability))
            })
            .collect()
    }
}
