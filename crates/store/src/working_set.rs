//! The working set's changes: the rows of `reservable_resources` and
//! `reservations` that a command's effects write, in its transaction.

use chrono::{DateTime, Utc};
use muster_domain::DomainError;
use muster_domain::capacity::peak_concurrency;
use muster_domain::policy::{Refusal, ResourceRules};
use muster_domain::time::TimeRange;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;
use crate::effects::{Deadline, Labels};
use crate::ledger::{Deadlines, Wanted};
use crate::rules::RuleColumns;

/// Locks the resource, refuses a capacity decrease or a buffer increase
/// that current and future reservations would not fit (counting their
/// buffers as the new rule does: 409 `capacity-in-use`), and stores the
/// new rule.
pub(crate) async fn change_rules(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
    rules: &ResourceRules,
) -> Result<(), StoreError> {
    let current = sqlx::query!(
        r#"select capacity, buffer_before_secs, buffer_after_secs from reservable_resources
            where tenant_id = $1 and resource_id = $2
              for no key update"#,
        tenant,
        resource_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    let columns = RuleColumns::of(rules);
    // Less capacity, or longer buffers (existing reservations then occupy
    // more), must still fit what is held from now on.
    let tighter = rules.capacity < current.capacity as u32
        || columns.buffer_before_secs > current.buffer_before_secs
        || columns.buffer_after_secs > current.buffer_after_secs;
    if tighter {
        let held = sqlx::query!(
            r#"select starts_at, ends_at from reservations
                where tenant_id = $1 and resource_id = $2 and ends_at > now()
                  and (expires_at is null or expires_at > now())"#,
            tenant,
            resource_id,
        )
        .fetch_all(&mut *conn)
        .await?;
        let ranges: Vec<TimeRange> = held
            .into_iter()
            .map(|r| {
                rules.occupied(&TimeRange {
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                })
            })
            .collect();
        let needed = peak_concurrency(&ranges);
        if needed > rules.capacity as usize {
            return Err(StoreError::CapacityInUse { needed });
        }
    }
    let c = RuleColumns::of(rules);
    sqlx::query!(
        r#"update reservable_resources
              set capacity = $3, seats = $4, timezone = $5, working_hours = $6,
                  buffer_before_secs = $7, buffer_after_secs = $8,
                  min_notice_secs = $9, max_advance_secs = $10, reach_secs = $11,
                  check_in_secs = $12, approval_secs = $13
            where tenant_id = $1 and resource_id = $2"#,
        tenant,
        resource_id,
        c.capacity,
        c.seats,
        c.timezone,
        c.working_hours,
        c.buffer_before_secs,
        c.buffer_after_secs,
        c.min_notice_secs,
        c.max_advance_secs,
        c.reach_secs,
        c.check_in_secs,
        c.approval_secs,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Refuses a headcount that exceeds the seats of any of `resource_ids`.
pub(crate) async fn check_seats(
    conn: &mut PgConnection,
    tenant: &str,
    resource_ids: &[Uuid],
    headcount: u32,
) -> Result<(), StoreError> {
    if resource_ids.is_empty() {
        return Ok(());
    }
    let smallest = sqlx::query!(
        r#"select resource_id, seats as "seats!" from reservable_resources
            where tenant_id = $1 and resource_id = any($2) and seats is not null
            order by seats limit 1"#,
        tenant,
        resource_ids,
    )
    .fetch_optional(conn)
    .await?;
    match smallest {
        Some(r) if i64::from(r.seats) < i64::from(headcount) => Err(StoreError::Refused {
            resource_id: r.resource_id,
            refusal: Refusal::SeatsExceeded {
                seats: r.seats as u32,
                headcount,
            },
        }),
        _ => Ok(()),
    }
}

pub(crate) async fn require(
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

pub(crate) async fn retire(
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

pub(crate) async fn release(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_id: Uuid,
    released_from: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Released at or before its start: gone. Released while under way:
    // shortened to end where the release begins, and done with its
    // deadlines (what is left is over, or ends at one that passed).
    sqlx::query!(
        r#"with removed as (
               delete from reservations
                where tenant_id = $1 and reservation_id = $2 and starts_at >= $3
           )
           update reservations
              set ends_at = least(ends_at, $3), check_in_by = null, approve_by = null,
                  expires_at = null
            where tenant_id = $1 and reservation_id = $2 and starts_at < $3"#,
        tenant,
        reservation_id,
        released_from,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a reservation's row (it moves: its new place is inserted with
/// the command's admitted reservations); answers the approval deadline it
/// had, which its new place keeps.
pub(crate) async fn remove(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_id: Uuid,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let removed = sqlx::query_scalar!(
        "delete from reservations where tenant_id = $1 and reservation_id = $2 returning approve_by",
        tenant,
        reservation_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(removed.flatten())
}

/// The booking ended: what is left of its reservations has no deadline
/// any more (the rows that already ended would otherwise stay overdue).
/// A booking without deadlines reads its rows by key and writes nothing.
pub(crate) async fn drop_deadlines(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_ids: &[Uuid],
) -> Result<(), StoreError> {
    if reservation_ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"update reservations set check_in_by = null, approve_by = null, expires_at = null
            where tenant_id = $1 and reservation_id = any($2)
              and (check_in_by is not null or approve_by is not null)"#,
        tenant,
        reservation_ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The booking was confirmed (or checked in): its reservations' approval
/// (or check-in) deadline is lifted. Refused when one has passed already:
/// those reservations stopped counting, and another booking may hold the
/// time now (the sweeper records the expiry or no-show). A booking
/// without such deadlines reads its rows once and writes nothing.
pub(crate) async fn clear_deadline(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_ids: &[Uuid],
    deadline: Deadline,
) -> Result<(), StoreError> {
    if reservation_ids.is_empty() {
        return Ok(());
    }
    let set = sqlx::query!(
        r#"select reservation_id, approve_by, check_in_by, now() as "now!" from reservations
            where tenant_id = $1 and reservation_id = any($2)
              and (approve_by is not null or check_in_by is not null)
              for no key update"#,
        tenant,
        reservation_ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    let due: Vec<(Uuid, DateTime<Utc>)> = set
        .iter()
        .filter_map(|r| {
            let at = match deadline {
                Deadline::Approval => r.approve_by,
                Deadline::CheckIn => r.check_in_by,
            }?;
            Some((r.reservation_id, at))
        })
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    if let Some((_, passed)) = due.iter().find(|(_, at)| *at <= set[0].now) {
        let what = match deadline {
            Deadline::Approval => "confirm",
            Deadline::CheckIn => "check in",
        };
        return Err(StoreError::Rejected(DomainError::InvalidTransition(
            format!(
                "too late to {what}: the deadline passed at {}, and the booking's reservations \
             no longer hold their resources",
                passed.to_rfc3339()
            ),
        )));
    }
    let ids: Vec<Uuid> = due.into_iter().map(|(id, _)| id).collect();
    match deadline {
        Deadline::Approval => {
            sqlx::query!(
                r#"update reservations set approve_by = null, expires_at = check_in_by
                where tenant_id = $1 and reservation_id = any($2)"#,
                tenant,
                &ids,
            )
            .execute(conn)
            .await?
        }
        Deadline::CheckIn => {
            sqlx::query!(
                r#"update reservations set check_in_by = null, expires_at = approve_by
                where tenant_id = $1 and reservation_id = any($2)"#,
                tenant,
                &ids,
            )
            .execute(conn)
            .await?
        }
    };
    Ok(())
}

/// Inserts admitted reservations, each with its deadlines (in order): a
/// reservation with one stops counting when it passes (`expires_at`, as
/// a hold does at its expiry).
pub(crate) async fn insert_reservations(
    conn: &mut PgConnection,
    wanted: &[Wanted<'_>],
    deadlines: &[Deadlines],
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
    let mut expiries = Vec::with_capacity(wanted.len());
    let mut check_ins = Vec::with_capacity(wanted.len());
    let mut approvals = Vec::with_capacity(wanted.len());
    for (w, d) in wanted.iter().zip(deadlines) {
        tenants.push(w.tenant);
        ids.push(w.reservation.reservation_id);
        bookings.push(w.booking_id);
        resources.push(w.reservation.resource_id);
        starts.push(w.reservation.starts_at);
        ends.push(w.reservation.ends_at);
        labels.push(w.reservation.label.clone());
        expiries.push(match (w.expires_at, d.check_in_by, d.approve_by) {
            (Some(hold), _, _) => Some(hold),
            (None, Some(a), Some(b)) => Some(a.min(b)),
            (None, a, b) => a.or(b),
        });
        check_ins.push(d.check_in_by);
        approvals.push(d.approve_by);
    }
    sqlx::query!(
        r#"insert into reservations
               (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at, label,
                expires_at, check_in_by, approve_by)
           select * from unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[],
                                $5::timestamptz[], $6::timestamptz[], $7::text[],
                                $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])"#,
        &tenants as &[&str],
        &ids,
        &bookings,
        &resources,
        &starts,
        &ends,
        &labels as &[Option<String>],
        &expiries as &[Option<DateTime<Utc>>],
        &check_ins as &[Option<DateTime<Utc>>],
        &approvals as &[Option<DateTime<Utc>>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Registers resources as reservable, with their booking rules.
/// A resource to make reservable: its rule, kind and tags.
pub(crate) struct Registration<'a> {
    pub tenant: &'a str,
    pub resource_id: Uuid,
    pub rules: &'a ResourceRules,
    pub labels: &'a Labels,
}

pub(crate) async fn register_many(
    conn: &mut PgConnection,
    resources: &[Registration<'_>],
) -> Result<(), StoreError> {
    if resources.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = resources.iter().map(|r| r.tenant).collect();
    let ids: Vec<Uuid> = resources.iter().map(|r| r.resource_id).collect();
    let kinds: Vec<&str> = resources.iter().map(|r| r.labels.kind.as_str()).collect();
    let tags: Vec<serde_json::Value> = resources
        .iter()
        .map(|r| serde_json::json!(r.labels.tags))
        .collect();
    let columns: Vec<RuleColumns> = resources.iter().map(|r| RuleColumns::of(r.rules)).collect();
    let capacities: Vec<i32> = columns.iter().map(|c| c.capacity).collect();
    let seats: Vec<Option<i32>> = columns.iter().map(|c| c.seats).collect();
    let zones: Vec<&str> = columns.iter().map(|c| c.timezone.as_str()).collect();
    let hours: Vec<serde_json::Value> = columns.iter().map(|c| c.working_hours.clone()).collect();
    let before: Vec<i32> = columns.iter().map(|c| c.buffer_before_secs).collect();
    let after: Vec<i32> = columns.iter().map(|c| c.buffer_after_secs).collect();
    let notice: Vec<Option<i32>> = columns.iter().map(|c| c.min_notice_secs).collect();
    let advance: Vec<Option<i32>> = columns.iter().map(|c| c.max_advance_secs).collect();
    let reach: Vec<i32> = columns.iter().map(|c| c.reach_secs).collect();
    let check_in: Vec<Option<i32>> = columns.iter().map(|c| c.check_in_secs).collect();
    let approval: Vec<Option<i32>> = columns.iter().map(|c| c.approval_secs).collect();
    // A quota defined meanwhile is waited for, so the flag each new row
    // takes is the tenant's as it is after it.
    crate::quotas::share_definitions(conn, &tenants).await?;
    sqlx::query!(
        r#"insert into reservable_resources
               (tenant_id, resource_id, capacity, seats, timezone, working_hours,
                buffer_before_secs, buffer_after_secs, min_notice_secs, max_advance_secs,
                reach_secs, kind, tags, check_in_secs, approval_secs, quotas)
           select u.*, exists(select 1 from quotas q where q.tenant_id = u.tenant_id)
             from unnest($1::text[], $2::uuid[], $3::int4[], $4::int4[], $5::text[],
                         $6::jsonb[], $7::int4[], $8::int4[], $9::int4[], $10::int4[],
                         $11::int4[], $12::text[], $13::jsonb[], $14::int4[], $15::int4[])
                  as u(tenant_id, resource_id, capacity, seats, timezone, working_hours,
                       buffer_before_secs, buffer_after_secs, min_notice_secs,
                       max_advance_secs, reach_secs, kind, tags, check_in_secs,
                       approval_secs)"#,
        &tenants as &[&str],
        &ids,
        &capacities,
        &seats as &[Option<i32>],
        &zones as &[&str],
        &hours,
        &before,
        &after,
        &notice as &[Option<i32>],
        &advance as &[Option<i32>],
        &reach,
        &kinds as &[&str],
        &tags,
        &check_in as &[Option<i32>],
        &approval as &[Option<i32>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a resource's tags (what pools' selectors match).
pub(crate) async fn retag(
    conn: &mut PgConnection,
    tenant: &str,
    resource_id: Uuid,
    tags: &[String],
) -> Result<(), StoreError> {
    sqlx::query!(
        "update reservable_resources set tags = $3 where tenant_id = $1 and resource_id = $2",
        tenant,
        resource_id,
        serde_json::json!(tags),
    )
    .execute(conn)
    .await?;
    Ok(())
}
