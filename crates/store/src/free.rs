//! Free time and free resources, answered from the write side's working
//! set by the booking rule itself ([`ResourceRules`]), so that what is
//! shown as free is exactly what a booking made at the same instant would
//! be admitted to: buffers, seats, notice, horizon, working hours,
//! unexpired holds and capacity included.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use muster_domain::TenantId;
use muster_domain::find_time::Candidate;
use muster_domain::policy::Claim;
use muster_domain::time::TimeRange;
use muster_domain::working_hours::WorkingWindow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::around::{self, Around, Asked};
use crate::ledger::Availability;
use crate::rules::resource_row;
use crate::{ReservationConflict, Store, StoreError};

/// The free time on one resource within a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSlots {
    /// The resource.
    pub resource_id: Uuid,
    /// Its time zone (its working hours are in it).
    pub timezone: String,
    /// Whether it is retired (then it has no slots).
    pub retired: bool,
    /// Maximal ranges in which a claim of the asked duration may start:
    /// any start in `[starts_at, ends_at - duration]` is admitted now.
    pub slots: Vec<TimeRange>,
}

impl Store {
    /// Each of `resource_ids`' free slots of at least `duration` within
    /// `window`, in the order asked; `Err(UnknownResource)` names the first
    /// id the tenant does not have.
    pub async fn free_slots(
        &self,
        tenant: &TenantId,
        resource_ids: &[Uuid],
        window: TimeRange,
        duration: Duration,
    ) -> Result<Vec<FreeSlots>, StoreError> {
        let now = Utc::now();
        Ok(self
            .candidates(tenant, resource_ids, window)
            .await?
            .into_iter()
            .map(|c| FreeSlots {
                resource_id: c.resource_id,
                timezone: c.rules.timezone.name().to_owned(),
                retired: c.retired,
                slots: if c.retired {
                    Vec::new()
                } else {
                    c.rules.free_slots(&c.held, &window, duration, now)
                },
            })
            .collect())
    }

    /// Each of `resource_ids` with its booking rule and the ranges it holds
    /// around `window` (reservations and unexpired holds): what the write
    /// side would check a claim in the window against, as finding a time
    /// weighs it. In the order asked; `Err(UnknownResource)` names the
    /// first id the tenant does not have.
    pub async fn candidates(
        &self,
        tenant: &TenantId,
        resource_ids: &[Uuid],
        window: TimeRange,
    ) -> Result<Vec<Candidate>, StoreError> {
        let asked: Vec<Asked<'_>> = resource_ids
            .iter()
            .map(|&resource_id| Asked {
                tenant: tenant.as_str(),
                resource_id,
                range: window,
            })
            .collect();
        let mut conn = self.pool.acquire().await?;
        let Around { resources, held } = around::read_around(&mut conn, &asked).await?;
        drop(conn);
        let key = |id: &Uuid| (tenant.as_str().to_owned(), *id);
        resource_ids
            .iter()
            .map(|id| {
                let key = key(id);
                let row = resources
                    .get(&key)
                    .ok_or(StoreError::UnknownResource(*id))?;
                let rules = row.rules();
                let entries: Vec<&ReservationConflict> =
                    held.get(&key).into_iter().flatten().collect();
                let (held, _) = around::occupancy(&entries, rules.capacity);
                Ok(Candidate {
                    resource_id: *id,
                    rules,
                    held,
                    retired: row.retired,
                })
            })
            .collect()
    }

    /// Which of `resource_ids` could take a reservation of exactly `range`
    /// right now, in the order given, by the same rule as
    /// [`Store::check_reservations`] but cheaper for many resources: one
    /// statement reads each resource's rule and counts what it holds around
    /// the range (buffers widen "around"). A resource whose rule refuses
    /// the range itself is not free; fewer held than its capacity cannot
    /// fill it at any instant, so it is free; with capacity 1 anything
    /// held there blocks; only the rest (capacity above 1, enough held) go
    /// through the ledger's exact rule. Retired and unknown resources, and
    /// those with fewer than `min_seats` seats (or none declared), are never
    /// free.
    pub async fn free_among(
        &self,
        tenant: &TenantId,
        resource_ids: &[Uuid],
        range: TimeRange,
        min_seats: Option<u32>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let min_seats = min_seats.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let rows = sqlx::query!(
            r#"select w.tenant_id, w.resource_id, w.capacity, w.retired,
                      w.longest_reservation_secs, w.seats, w.timezone,
                      w.working_hours as "working_hours: Json<Vec<WorkingWindow>>",
                      w.buffer_before_secs, w.buffer_after_secs,
                      w.min_notice_secs, w.max_advance_secs, w.reach_secs,
                      w.check_in_secs, w.approval_secs,
                      -- An external block fills its resource.
                      (select coalesce(sum(case when h.calendar_id is null then 1
                                                else w.capacity end), 0)::int8
                         from reservations h
                        where h.tenant_id = w.tenant_id and h.resource_id = w.resource_id
                          and h.starts_at > $3::timestamptz
                                - make_interval(secs => w.longest_reservation_secs + 1 + w.reach_secs)
                          and h.starts_at < $4::timestamptz + make_interval(secs => w.reach_secs)
                          and h.ends_at > $3::timestamptz - make_interval(secs => w.reach_secs)
                          and (h.expires_at is null or h.expires_at > now())) as "overlapping!"
                 from reservable_resources w
                where w.tenant_id = $1 and w.resource_id = any($2) and not w.retired
                  and ($5::int4 is null or w.seats >= $5)"#,
            tenant.as_str(),
            resource_ids,
            range.starts_at,
            range.ends_at,
            min_seats,
        )
        .fetch_all(&self.pool)
        .await?;
        let claim = Claim {
            range,
            headcount: None,
            outside_working_hours: false,
        };
        let now = Utc::now();
        let mut free = HashSet::new();
        let mut undecided = Vec::new();
        for row in rows {
            let resource_id = row.resource_id;
            let rules = resource_row!(row).rules();
            if rules.admits_range(&claim, now).is_err() {
                continue;
            }
            // A stored reach behind the rule may have missed some of what
            // is held: then only the exact rule decides.
            let counted = rules.reach() <= Duration::seconds(i64::from(row.reach_secs));
            if counted && row.overlapping < i64::from(row.capacity) {
                free.insert(resource_id);
            } else if row.capacity > 1 || !counted {
                undecided.push(resource_id);
            }
        }
        if !undecided.is_empty() {
            for (id, availability) in self
                .check_reservations(tenant, &undecided, claim, None)
                .await?
            {
                if availability == Availability::Free {
                    free.insert(id);
                }
            }
        }
        Ok(resource_ids
            .iter()
            .copied()
            .filter(|id| free.contains(id))
            .collect())
    }
}
