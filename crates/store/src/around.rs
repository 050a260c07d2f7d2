//! What a resource holds around a range: the reads every admission
//! decision starts from (the write side under its locks, and the readers
//! that must agree with it: the conflict check, free time and the
//! free-resource search).
//!
//! How far "around" reaches is the domain's rule
//! ([`ResourceRules::reach`](muster_domain::policy::ResourceRules::reach):
//! buffers widen what competes with a range), plus the resource's longest
//! reservation so far (how far back an overlapping reservation can start).
//! The write side knows the rule before it reads, having locked the row.
//! Readers without locks get the rule and what it holds in one statement,
//! [`read_around`], which reaches by the `reach_secs` the write side stored
//! with the rule; each row's stored reach is checked against the rule read
//! with it, and a reach that falls short is read again by the rule itself,
//! so the stored copy can cost a round trip but never change an answer.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use muster_domain::time::TimeRange;
use muster_domain::working_hours::WorkingWindow;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::rules::{ResourceRow, resource_row};
use crate::{ReservationConflict, StoreError};

/// A resource as the ledger keys it: tenant and resource id.
pub(crate) type ResourceKey = (String, Uuid);

/// A range asked about on one resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub tenant: &'a str,
    pub resource_id: Uuid,
    pub range: TimeRange,
}

/// The reach of one asked range: the range widened by the rule's reach,
/// and how much further back than that an overlapping reservation can
/// start (the resource's longest reservation).
struct Reach<'a> {
    tenant: &'a str,
    resource_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    lookback_secs: f64,
}

impl<'a> Reach<'a> {
    fn new(asked: &Asked<'a>, reach: Duration, longest_secs: f64) -> Self {
        Self {
            tenant: asked.tenant,
            resource_id: asked.resource_id,
            starts_at: asked.range.starts_at - reach,
            ends_at: asked.range.ends_at + reach,
            // One second of slack keeps float rounding on the safe side.
            lookback_secs: longest_secs + 1.0,
        }
    }
}

/// Resources' rules and what each holds around the asked ranges (holds
/// only while unexpired), without locks.
pub(crate) struct Around {
    /// The rows of the asked resources that exist.
    pub resources: HashMap<ResourceKey, ResourceRow>,
    /// What each holds around its asked ranges, each reservation once, by
    /// start.
    pub held: HashMap<ResourceKey, Vec<ReservationConflict>>,
}

/// Reads each asked resource's rule and what it holds around the asked
/// ranges in one statement (one round trip); see the module's note on the
/// stored reach.
pub(crate) async fn read_around(
    conn: &mut PgConnection,
    asked: &[Asked<'_>],
) -> Result<Around, StoreError> {
    let mut tenants = Vec::with_capacity(asked.len());
    let mut ids = Vec::with_capacity(asked.len());
    let mut starts = Vec::with_capacity(asked.len());
    let mut ends = Vec::with_capacity(asked.len());
    for a in asked {
        tenants.push(a.tenant);
        ids.push(a.resource_id);
        starts.push(a.range.starts_at);
        ends.push(a.range.ends_at);
    }
    let rows = sqlx::query!(
        // Per asked range: one index probe for the resource, one index
        // range scan for what it holds (`offset 0` and the aggregate keep
        // both per row, never a join over the tables). The reservation
        // columns come as parallel arrays, in one order.
        r#"select rr.tenant_id as "tenant_id!", rr.resource_id as "resource_id!",
                  rr.capacity as "capacity!", rr.retired as "retired!",
                  rr.longest_reservation_secs as "longest_reservation_secs!",
                  rr.timezone as "timezone!",
                  rr.working_hours as "working_hours!: Json<Vec<WorkingWindow>>",
                  rr.seats, rr.buffer_before_secs as "buffer_before_secs!",
                  rr.buffer_after_secs as "buffer_after_secs!",
                  rr.min_notice_secs, rr.max_advance_secs, rr.reach_secs as "reach_secs!",
                  rr.check_in_secs, rr.approval_secs,
                  h.booking_ids as "booking_ids!", h.reservation_ids as "reservation_ids!",
                  h.starts as "starts!", h.ends as "ends!",
                  h.expiries as "expiries!: Vec<Option<DateTime<Utc>>>",
                  h.calendars as "calendars!: Vec<Option<Uuid>>"
             from unnest((select $1::text[]), (select $2::uuid[]), (select $3::timestamptz[]),
                         (select $4::timestamptz[]))
                      as c(tenant_id, resource_id, starts_at, ends_at)
            cross join lateral (
                  select r.* from reservable_resources r
                   where r.tenant_id = c.tenant_id and r.resource_id = c.resource_id
                  offset 0) rr
            cross join lateral (
                  select coalesce(array_agg(x.booking_id), '{}') as booking_ids,
                         coalesce(array_agg(x.reservation_id), '{}') as reservation_ids,
                         coalesce(array_agg(x.starts_at), '{}') as starts,
                         coalesce(array_agg(x.ends_at), '{}') as ends,
                         coalesce(array_agg(case when x.reservation_id = x.booking_id
                                                 then x.expires_at end), '{}') as expiries,
                         coalesce(array_agg(x.calendar_id), '{}') as calendars
                    from reservations x
                   where x.tenant_id = c.tenant_id and x.resource_id = c.resource_id
                     and x.starts_at > c.starts_at
                           - make_interval(secs => rr.reach_secs + rr.longest_reservation_secs + 1)
                     and x.starts_at < c.ends_at + make_interval(secs => rr.reach_secs)
                     and x.ends_at > c.starts_at - make_interval(secs => rr.reach_secs)
                     and (x.expires_at is null or x.expires_at > now())) h"#,
        &tenants as &[&str],
        &ids,
        &starts,
        &ends,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut around = Around {
        resources: HashMap::with_capacity(rows.len()),
        held: HashMap::new(),
    };
    let mut short = false;
    for row in rows {
        let resource = resource_row!(row);
        let key = (resource.tenant_id.clone(), resource.resource_id);
        let list = around.held.entry(key.clone()).or_default();
        for (i, reservation_id) in row.reservation_ids.iter().enumerate() {
            list.push(ReservationConflict {
                resource_id: resource.resource_id,
                booking_id: row.booking_ids[i],
                reservation_id: *reservation_id,
                starts_at: row.starts[i],
                ends_at: row.ends[i],
                hold_expires_at: row.expiries[i],
                calendar_id: row.calendars[i],
            });
        }
        short |= resource.rules().reach() > Duration::seconds(i64::from(row.reach_secs));
        around.resources.insert(key, resource);
    }
    if short {
        // A row's stored reach is behind its rule: read what is held again
        // by the rule itself.
        metrics::counter!("muster_stale_reach_total").increment(1);
        let reaches: Vec<Reach<'_>> = asked
            .iter()
            .filter_map(|a| {
                let row = around
                    .resources
                    .get(&(a.tenant.to_owned(), a.resource_id))?;
                Some(Reach::new(
                    a,
                    row.rules().reach(),
                    row.longest_reservation_secs,
                ))
            })
            .collect();
        around.held = held_within(conn, &reaches).await?;
    }
    for list in around.held.values_mut() {
        list.sort_by_key(|c| (c.starts_at, c.reservation_id));
        list.dedup_by_key(|c| c.reservation_id);
    }
    Ok(around)
}

/// What the resources hold around the asked ranges, each asked range
/// widened by `reach` and looking back `longest_secs` further, as known
/// from their rows (read under their locks by the write side).
pub(crate) async fn held_around(
    conn: &mut PgConnection,
    asked: &[Asked<'_>],
    reach_of: impl Fn(&Asked<'_>) -> (Duration, f64),
) -> Result<HashMap<ResourceKey, Vec<ReservationConflict>>, StoreError> {
    let reaches: Vec<Reach<'_>> = asked
        .iter()
        .map(|a| {
            let (reach, longest_secs) = reach_of(a);
            Reach::new(a, reach, longest_secs)
        })
        .collect();
    held_within(conn, &reaches).await
}

async fn held_within(
    conn: &mut PgConnection,
    reaches: &[Reach<'_>],
) -> Result<HashMap<ResourceKey, Vec<ReservationConflict>>, StoreError> {
    let mut tenants = Vec::with_capacity(reaches.len());
    let mut ids = Vec::with_capacity(reaches.len());
    let mut starts = Vec::with_capacity(reaches.len());
    let mut ends = Vec::with_capacity(reaches.len());
    let mut lookbacks = Vec::with_capacity(reaches.len());
    for r in reaches {
        tenants.push(r.tenant);
        ids.push(r.resource_id);
        starts.push(r.starts_at);
        ends.push(r.ends_at);
        lookbacks.push(r.lookback_secs);
    }
    let rows = sqlx::query!(
        // One index range scan per candidate (`offset 0` keeps the
        // planner from turning the probes into a hash join over the
        // whole table); nothing held is longer than the lookback. A
        // hold counts until its expiry instant, by the database's clock
        // (the transaction's start: never later than the real instant,
        // so a hold never stops counting early).
        r#"select distinct r.tenant_id as "tenant_id!", r.resource_id as "resource_id!",
                  r.booking_id as "booking_id!", r.reservation_id as "reservation_id!",
                  r.starts_at as "starts_at!", r.ends_at as "ends_at!",
                  case when r.reservation_id = r.booking_id then r.expires_at end as hold_expires_at,
                  r.calendar_id
             from unnest((select $1::text[]), (select $2::uuid[]), (select $3::timestamptz[]),
                         (select $4::timestamptz[]), (select $5::float8[]))
                      as c(tenant_id, resource_id, starts_at, ends_at, lookback_secs)
            cross join lateral (
                  select h.tenant_id, h.resource_id, h.booking_id, h.reservation_id,
                         h.starts_at, h.ends_at, h.expires_at, h.calendar_id
                    from reservations h
                   where h.tenant_id = c.tenant_id
                     and h.resource_id = c.resource_id
                     and h.starts_at > c.starts_at - make_interval(secs => c.lookback_secs)
                     and h.starts_at < c.ends_at
                     and h.ends_at > c.starts_at
                     and (h.expires_at is null or h.expires_at > now())
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
                hold_expires_at: r.hold_expires_at,
                calendar_id: r.calendar_id,
            });
    }
    Ok(held)
}

/// The ranges `held` occupies on a resource of `capacity`, for the
/// domain's capacity rule, and which entry of `held` each came from: a
/// reservation once, an external block `capacity` times (it fills the
/// resource).
pub(crate) fn occupancy(
    held: &[&ReservationConflict],
    capacity: u32,
) -> (Vec<TimeRange>, Vec<usize>) {
    let mut ranges = Vec::with_capacity(held.len());
    let mut origin = Vec::with_capacity(held.len());
    for (i, h) in held.iter().enumerate() {
        let range = TimeRange {
            starts_at: h.starts_at,
            ends_at: h.ends_at,
        };
        let times = if h.is_external() { capacity.max(1) } else { 1 };
        for _ in 0..times {
            ranges.push(range);
            origin.push(i);
        }
    }
    (ranges, origin)
}
