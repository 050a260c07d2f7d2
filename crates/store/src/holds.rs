//! Holds as the write side holds them: the active ones of a resource, and
//! those past their expiry instant, for the sweeper that records
//! `hold.expired` (`muster_app`). Correctness never waits for that: every
//! check stops counting a hold at its expiry instant by itself (the ledger
//! reads only unexpired holds).

use chrono::Utc;
use muster_domain::TenantId;
use uuid::Uuid;

use crate::{Store, StoreError};

/// A hold that counts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHold {
    /// The hold.
    pub hold_id: Uuid,
    /// Start of the held range.
    pub starts_at: chrono::DateTime<Utc>,
    /// End of the held range.
    pub ends_at: chrono::DateTime<Utc>,
    /// When it stops counting.
    pub expires_at: chrono::DateTime<Utc>,
}

/// A hold that counts now, with its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHoldOn {
    /// The held resource.
    pub resource_id: Uuid,
    /// The hold.
    pub hold: ActiveHold,
}

/// Holds recorded as expired per sweep at most.
const SWEEP_LIMIT: i64 = 200;

impl Store {
    /// The holds on `resource_id` overlapping `window` that count now (not
    /// expired), in start order: what a schedule shows as holds.
    pub async fn active_holds(
        &self,
        tenant: &TenantId,
        resource_id: Uuid,
        window: muster_domain::time::TimeRange,
    ) -> Result<Vec<ActiveHold>, StoreError> {
        Ok(sqlx::query_as!(
            ActiveHold,
            r#"select reservation_id as hold_id, starts_at, ends_at, expires_at as "expires_at!"
                 from reservations
                where tenant_id = $1 and resource_id = $2 and expires_at > now()
                  and reservation_id = booking_id
                  and starts_at < $4 and ends_at > $3
                order by starts_at, reservation_id"#,
            tenant.as_str(),
            resource_id,
            window.starts_at,
            window.ends_at,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The holds of the tenant (on `resource_ids`, or on any resource)
    /// overlapping `window` that count now, in start order.
    pub async fn active_holds_within(
        &self,
        tenant: &TenantId,
        resource_ids: Option<&[Uuid]>,
        window: muster_domain::time::TimeRange,
    ) -> Result<Vec<ActiveHoldOn>, StoreError> {
        let rows = sqlx::query!(
            r#"select resource_id, reservation_id, starts_at, ends_at, expires_at as "expires_at!"
                 from reservations
                where tenant_id = $1 and expires_at > now() and reservation_id = booking_id
                  and ($2::uuid[] is null or resource_id = any($2))
                  and starts_at < $4 and ends_at > $3
                order by starts_at, reservation_id"#,
            tenant.as_str(),
            resource_ids,
            window.starts_at,
            window.ends_at,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ActiveHoldOn {
                resource_id: r.resource_id,
                hold: ActiveHold {
                    hold_id: r.reservation_id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    expires_at: r.expires_at,
                },
            })
            .collect())
    }

    /// Holds whose expiry instant has passed (a second ago, so that the
    /// application's clock agrees with the database's), oldest first, at
    /// most a sweep's worth: each as its tenant and id.
    pub async fn holds_past_expiry(&self) -> Result<Vec<(TenantId, Uuid)>, StoreError> {
        let due = sqlx::query!(
            r#"select tenant_id, reservation_id from reservations
                where expires_at <= now() - interval '1 second' and reservation_id = booking_id
                order by expires_at
                limit $1"#,
            SWEEP_LIMIT,
        )
        .fetch_all(&self.pool)
        .await?;
        due.into_iter()
            .map(|hold| {
                let tenant = TenantId::try_from(hold.tenant_id)
                    .map_err(|e| StoreError::CorruptRow(format!("a hold's tenant: {e}")))?;
                Ok((tenant, hold.reservation_id))
            })
            .collect()
    }

    /// Bookings with a reservation whose check-in or approval deadline
    /// passed (a second ago, as for holds), at most a sweep's worth: what
    /// the sweeper records as `booking.no_show` or `booking.expired`.
    pub async fn bookings_past_deadline(&self) -> Result<Vec<Overdue>, StoreError> {
        let due = sqlx::query!(
            r#"select tenant_id, booking_id,
                      coalesce(bool_or(approve_by <= now() - interval '1 second'), false)
                          as "approval!",
                      min(check_in_by) filter (where check_in_by <= now() - interval '1 second')
                          as check_in_deadline
                 from reservations
                where expires_at <= now() - interval '1 second' and reservation_id <> booking_id
                group by tenant_id, booking_id
                order by min(expires_at)
                limit $1"#,
            SWEEP_LIMIT,
        )
        .fetch_all(&self.pool)
        .await?;
        due.into_iter()
            .map(|b| {
                let tenant = TenantId::try_from(b.tenant_id)
                    .map_err(|e| StoreError::CorruptRow(format!("a booking's tenant: {e}")))?;
                Ok(Overdue {
                    tenant,
                    booking_id: b.booking_id,
                    approval_passed: b.approval,
                    check_in_deadline: b.check_in_deadline,
                })
            })
            .collect()
    }
}

/// A booking with a deadline that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    /// Its tenant.
    pub tenant: TenantId,
    /// The booking.
    pub booking_id: Uuid,
    /// Whether its approval deadline passed (it is still requested).
    pub approval_passed: bool,
    /// The check-in deadline that passed, if one did.
    pub check_in_deadline: Option<chrono::DateTime<chrono::Utc>>,
}
