//! The working set's changes: the rows of `reservable_resources` and
//! `reservations` that a command's effects write, in its transaction.

use chrono::{DateTime, Utc};
use muster_domain::capacity::peak_concurrency;
use muster_domain::time::TimeRange;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;
use crate::ledger::Wanted;

/// Locks the resource, refuses a decrease that current and future
/// reservations would exceed, and stores the new capacity.
pub(crate) async fn change_capacity(
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

/// Removes a reservation's row (it moves: its new place is inserted with
/// the command's admitted reservations).
pub(crate) async fn remove(
    conn: &mut PgConnection,
    tenant: &str,
    reservation_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        "delete from reservations where tenant_id = $1 and reservation_id = $2",
        tenant,
        reservation_id,
    )
    .execute(conn)
    .await?;
    Ok(())
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
