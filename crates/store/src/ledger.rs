//! The ledger: the no-double-booking rule and its lock.
//!
//! Every writer that adds reservations to a resource first locks the
//! resource's `reservable_resources` row (FOR NO KEY UPDATE, in resource id
//! order, so two bookings never deadlock on each other). Writers of one
//! resource therefore run one after the other, and each sees every
//! reservation committed before it when it counts overlaps with the same
//! pure rule the conflict check uses ([`muster_domain::policy`]).
//!
//! The ledger's statements read their keys as `unnest((select $n))`: a
//! bare `unnest($n)` lets a custom plan see each array's length, so
//! Postgres judges the generic plan (10 rows per array) dearer and plans
//! every execution again, which took longer (0.2–0.5 ms) than running the
//! statement (0.06–0.11 ms). Behind a scalar subquery both plans see the
//! same estimate, and the prepared statement settles on its generic plan
//! (the same index probes). `BENCHMARKS.md` has the A/B.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::booking::Reservation;
use muster_domain::policy::{Claim, Refusal, ResourceRules};
use muster_domain::time::TimeRange;
use muster_domain::working_hours::WorkingWindow;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::around::{self, Around, Asked, ResourceKey};
use crate::effects::DeadlineBasis;
use crate::rules::{ResourceRow, resource_row};
use crate::{ReservationConflict, StoreError};

/// A reservation a command wants to add.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub tenant: &'a str,
    pub booking_id: Uuid,
    pub reservation: &'a Reservation,
    /// The booking's headcount (none for a hold), checked against seats.
    pub headcount: Option<u32>,
    /// When it stops counting: a hold's expiry; `None` for a reservation.
    pub expires_at: Option<DateTime<Utc>>,
    /// For a booking's reservation: what its resource's check-in and
    /// approval deadlines count from.
    pub basis: Option<DeadlineBasis>,
}

impl<'a> Wanted<'a> {
    fn asked(&self) -> Asked<'a> {
        Asked {
            tenant: self.tenant,
            resource_id: self.reservation.resource_id,
            range: self.reservation.range(),
        }
    }

    fn claim(&self) -> Claim {
        Claim {
            range: self.reservation.range(),
            headcount: self.headcount,
            outside_working_hours: self.reservation.outside_working_hours,
        }
    }
}

/// When a booking's reservation stops counting unless the booking is
/// checked in, or confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deadlines {
    /// Check in by.
    pub check_in_by: Option<DateTime<Utc>>,
    /// Confirm by.
    pub approve_by: Option<DateTime<Utc>>,
}

/// The locked resources of one transaction and the reservations they hold
/// around the wanted ranges: what admitting a command is checked against.
#[derive(Clone, Default)]
pub(crate) struct Ledger {
    resources: HashMap<ResourceKey, LockedResource>,
    held: HashMap<ResourceKey, Vec<ReservationConflict>>,
}

impl ResourceRow {
    fn entry(self) -> (ResourceKey, LockedResource) {
        let resource = LockedResource {
            rules: self.rules(),
            retired: self.retired,
            longest_secs: self.longest_reservation_secs,
            grew: false,
            quotas: false,
        };
        ((self.tenant_id, self.resource_id), resource)
    }
}

/// What the write side knows of a locked resource.
#[derive(Clone)]
struct LockedResource {
    rules: ResourceRules,
    retired: bool,
    /// Longest reservation it ever held (seconds): how far back an
    /// overlapping reservation can start.
    longest_secs: f64,
    /// Whether an admitted reservation made `longest_secs` grow.
    grew: bool,
    /// Whether its tenant has quotas (read with its lock; unknown, and
    /// `false`, when it was only peeked at).
    quotas: bool,
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
        let resources = Self::lock(conn, wanted).await?;
        Self::around(conn, resources, wanted).await
    }

    /// Also what `wanted` needs: locks the resources this ledger has not
    /// locked yet (a decision that picked under locks may add a resource
    /// it did not ask about), and reads what every wanted range meets.
    pub(crate) async fn include(
        &mut self,
        conn: &mut PgConnection,
        wanted: &[Wanted<'_>],
    ) -> Result<(), StoreError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let missing: Vec<Wanted<'_>> = wanted
            .iter()
            .filter(|w| {
                !self
                    .resources
                    .contains_key(&(w.tenant.to_owned(), w.reservation.resource_id))
            })
            .copied()
            .collect();
        if !missing.is_empty() {
            let more = Self::lock(conn, &missing).await?;
            self.resources.extend(more);
        }
        let Ledger { held, .. } = Self::around(conn, self.resources.clone(), wanted).await?;
        for (key, found) in held {
            let known = self.held.entry(key).or_default();
            for reservation in found {
                if !known
                    .iter()
                    .any(|k| k.reservation_id == reservation.reservation_id)
                {
                    known.push(reservation);
                }
            }
        }
        Ok(())
    }

    /// Locks the resources `wanted` names, in key order; their rules.
    async fn lock(
        conn: &mut PgConnection,
        wanted: &[Wanted<'_>],
    ) -> Result<HashMap<ResourceKey, LockedResource>, StoreError> {
        let mut keys: Vec<(&str, Uuid)> = wanted
            .iter()
            .map(|w| (w.tenant, w.reservation.resource_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (tenants, ids): (Vec<&str>, Vec<Uuid>) = keys.into_iter().unzip();
        let rows = sqlx::query!(
            // One index probe per key, locking in the (sorted) order of the
            // keys; `offset 0` keeps the planner from flattening the probes
            // into a join that scans the table.
            r#"select r.tenant_id as "tenant_id!", r.resource_id as "resource_id!",
                      r.capacity as "capacity!", r.retired as "retired!",
                      r.longest_reservation_secs as "longest_reservation_secs!",
                      r.timezone as "timezone!",
                      r.working_hours as "working_hours!: Json<Vec<WorkingWindow>>",
                      r.seats, r.buffer_before_secs as "buffer_before_secs!",
                      r.buffer_after_secs as "buffer_after_secs!",
                      r.min_notice_secs, r.max_advance_secs, r.check_in_secs, r.approval_secs,
                      r.quotas as "quotas!"
                 from unnest((select $1::text[]), (select $2::uuid[]))
                      with ordinality as k(tenant_id, resource_id, n)
                cross join lateral (
                      select rr.*
                        from reservable_resources rr
                       where rr.tenant_id = k.tenant_id and rr.resource_id = k.resource_id
                         for no key update
                      offset 0) r
                order by k.n"#,
            &tenants as &[&str],
            &ids,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut resources = HashMap::with_capacity(rows.len());
        for row in rows {
            let quotas = row.quotas;
            let (key, mut resource) = resource_row!(row).entry();
            resource.quotas = quotas;
            resources.insert(key, resource);
        }
        Ok(resources)
    }

    /// Like [`Ledger::load`] without taking locks, in one statement: what
    /// a writer would check against right now, for the conflict check.
    pub(crate) async fn peek(
        conn: &mut PgConnection,
        wanted: &[Wanted<'_>],
    ) -> Result<Self, StoreError> {
        let asked: Vec<Asked<'_>> = wanted.iter().map(Wanted::asked).collect();
        let Around { resources, held } = around::read_around(conn, &asked).await?;
        let resources = resources.into_values().map(ResourceRow::entry).collect();
        Ok(Self { resources, held })
    }

    /// Reads the reservations held around the wanted ranges, as far as the
    /// locked resources' rules reach.
    async fn around(
        conn: &mut PgConnection,
        resources: HashMap<ResourceKey, LockedResource>,
        wanted: &[Wanted<'_>],
    ) -> Result<Self, StoreError> {
        let asked: Vec<Asked<'_>> = wanted.iter().map(Wanted::asked).collect();
        let held = around::held_around(conn, &asked, |a| {
            resources
                .get(&(a.tenant.to_owned(), a.resource_id))
                .map_or((chrono::Duration::zero(), 0.0), |r| {
                    (r.rules.reach(), r.longest_secs)
                })
        })
        .await?;
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
        let now = Utc::now();
        for w in wanted {
            let r = w.reservation;
            let key = (w.tenant.to_owned(), r.resource_id);
            let blocking = self.blocking(w, &admitted, now)?;
            if blocking.is_empty() {
                admitted.push((
                    key,
                    ReservationConflict {
                        resource_id: r.resource_id,
                        booking_id: w.booking_id,
                        reservation_id: r.reservation_id,
                        starts_at: r.starts_at,
                        ends_at: r.ends_at,
                        hold_expires_at: w.expires_at,
                        calendar_id: None,
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

    /// The held (and `admitted`) reservations that leave no room for `w`
    /// at `now`, or why `w`'s resource refuses it whatever is held (the
    /// resource is unknown or retired, or its booking rule refuses the
    /// claim itself: seats, notice, horizon, working hours).
    pub(crate) fn blocking(
        &self,
        w: &Wanted<'_>,
        admitted: &[(ResourceKey, ReservationConflict)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ReservationConflict>, StoreError> {
        let r = w.reservation;
        let key = (w.tenant.to_owned(), r.resource_id);
        let rules = match self.resources.get(&key) {
            None => return Err(StoreError::UnknownResource(r.resource_id)),
            Some(resource) if resource.retired => {
                return Err(StoreError::RetiredResource(r.resource_id));
            }
            Some(resource) => &resource.rules,
        };
        let existing: Vec<&ReservationConflict> = self
            .held
            .get(&key)
            .into_iter()
            .flatten()
            .chain(admitted.iter().filter(|(k, _)| *k == key).map(|(_, c)| c))
            .collect();
        let (ranges, origin) = around::occupancy(&existing, rules.capacity);
        match rules.admits(&w.claim(), &ranges, now) {
            Ok(()) => Ok(Vec::new()),
            Err(Refusal::Full(blocking)) => {
                let mut entries: Vec<usize> = blocking.into_iter().map(|i| origin[i]).collect();
                entries.dedup();
                Ok(entries.into_iter().map(|i| existing[i].clone()).collect())
            }
            Err(refusal) => Err(StoreError::Refused {
                resource_id: r.resource_id,
                refusal,
            }),
        }
    }

    /// What `resource_id` holds that overlaps `range` (buffers aside).
    pub(crate) fn overlapping(
        &self,
        tenant: &str,
        resource_id: Uuid,
        range: &TimeRange,
    ) -> Vec<ReservationConflict> {
        self.held
            .get(&(tenant.to_owned(), resource_id))
            .into_iter()
            .flatten()
            .filter(|h| h.starts_at < range.ends_at && range.starts_at < h.ends_at)
            .cloned()
            .collect()
    }

    /// The time zone of a locked resource's rule (its local days).
    /// Whether `tenant` has quotas, as the flag of the first of its
    /// resources this ledger locked shows (the flag is written under those
    /// locks); `None`: it locked none of the tenant's resources.
    pub(crate) fn quotas(&self, tenant: &str) -> Option<bool> {
        self.resources
            .iter()
            .find(|((t, _), _)| t == tenant)
            .map(|(_, r)| r.quotas)
    }

    /// The check-in and approval deadlines `w` has on its (locked)
    /// resource if it is inserted at `now`: after them it stops counting.
    pub(crate) fn deadlines(&self, w: &Wanted<'_>, now: DateTime<Utc>) -> Deadlines {
        let (Some(basis), Some(resource)) = (
            w.basis,
            self.resources
                .get(&(w.tenant.to_owned(), w.reservation.resource_id)),
        ) else {
            return Deadlines::default();
        };
        Deadlines {
            check_in_by: (!basis.checked_in)
                .then(|| resource.rules.check_in_by(basis.booking_start))
                .flatten(),
            approve_by: basis
                .awaiting_approval
                .then(|| resource.rules.approve_by(now))
                .flatten(),
        }
    }

    pub(crate) fn timezone_of(&self, tenant: &str, resource_id: Uuid) -> Option<chrono_tz::Tz> {
        self.resources
            .get(&(tenant.to_owned(), resource_id))
            .map(|r| r.rules.timezone)
    }

    /// Whether `w` would be admitted on this ledger at `now`, and if not,
    /// why: the verdict the conflict check answers and a pick reads.
    pub(crate) fn availability(
        &self,
        w: &Wanted<'_>,
        now: DateTime<Utc>,
    ) -> Result<Availability, StoreError> {
        Ok(match self.blocking(w, &[], now) {
            Ok(blocking) if blocking.is_empty() => Availability::Free,
            Ok(blocking) => Availability::Conflicts(blocking),
            Err(StoreError::Refused { refusal, .. }) => Availability::Refused(refusal),
            Err(StoreError::RetiredResource(_)) => Availability::Retired,
            Err(StoreError::UnknownResource(_)) => Availability::Unknown,
            Err(e) => return Err(e),
        })
    }

    /// Forgets what `reservation_id` holds from `released_from` on, as the
    /// working set's release does, so that a command that releases and
    /// reserves (a move) is checked against what it leaves.
    pub(crate) fn release(&mut self, reservation_id: Uuid, released_from: DateTime<Utc>) {
        for held in self.held.values_mut() {
            held.retain(|h| !(h.reservation_id == reservation_id && h.starts_at >= released_from));
            for h in held.iter_mut() {
                if h.reservation_id == reservation_id && h.ends_at > released_from {
                    h.ends_at = released_from;
                }
            }
        }
    }

    /// Forgets reservation `reservation_id` entirely (it moves elsewhere).
    pub(crate) fn forget(&mut self, reservation_id: Uuid) {
        for held in self.held.values_mut() {
            held.retain(|h| h.reservation_id != reservation_id);
        }
    }

    /// Forgets every reservation of booking `booking_id` (a move of it is
    /// checked without them: a booking never conflicts with itself).
    fn forget_booking(&mut self, booking_id: Uuid) {
        for held in self.held.values_mut() {
            held.retain(|h| h.booking_id != booking_id);
        }
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

/// What the conflict check finds for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A reservation of the range would be admitted now.
    Free,
    /// These reservations leave no room (capacity 1: every overlap).
    Conflicts(Vec<ReservationConflict>),
    /// The resource's booking rule refuses the range itself (seats,
    /// notice, horizon, working hours).
    Refused(Refusal),
    /// The resource is retired and takes no reservations.
    Retired,
    /// No such resource in the tenant.
    Unknown,
}

impl crate::Store {
    /// Whether `claim` could be reserved on each of `resource_ids` right
    /// now: the same working set and the same rule
    /// ([`Ledger::blocking`]) that writers are admitted by, without locks.
    /// With `exclude_booking`, that booking's own reservations are left out,
    /// as they are when it moves.
    pub async fn check_reservations(
        &self,
        tenant: &TenantId,
        resource_ids: &[Uuid],
        claim: Claim,
        exclude_booking: Option<Uuid>,
    ) -> Result<Vec<(Uuid, Availability)>, StoreError> {
        let claims: Vec<(Uuid, Claim)> = resource_ids.iter().map(|&id| (id, claim)).collect();
        self.check_claims(tenant, &claims, exclude_booking).await
    }

    /// Like [`Store::check_reservations`] for many claims at once (the
    /// occurrences of a series), each checked alone against what is held
    /// now, in one read.
    pub async fn check_claims(
        &self,
        tenant: &TenantId,
        claims: &[(Uuid, Claim)],
        exclude_booking: Option<Uuid>,
    ) -> Result<Vec<(Uuid, Availability)>, StoreError> {
        let reservations = claimed(claims.iter().copied());
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
        let mut conn = self.pool().acquire().await?;
        let mut ledger = Ledger::peek(&mut conn, &wanted).await?;
        if let Some(booking_id) = exclude_booking {
            ledger.forget_booking(booking_id);
        }
        let now = Utc::now();
        wanted
            .iter()
            .map(|w| Ok((w.reservation.resource_id, ledger.availability(w, now)?)))
            .collect()
    }
}

/// Each claim (resource, claim) as the reservation it would be, with its
/// headcount: what the ledger checks a claim as.
pub(crate) fn claimed(
    claims: impl IntoIterator<Item = (Uuid, Claim)>,
) -> Vec<(Reservation, Option<u32>)> {
    claims
        .into_iter()
        .map(|(resource_id, claim)| {
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
        .collect()
}
