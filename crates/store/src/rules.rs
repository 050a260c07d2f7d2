//! The write side's copy of a resource's booking rule: the columns of
//! `reservable_resources` that [`ResourceRules`] is read from and written
//! to, in the transactions of the resource's own events.

use muster_domain::duration::IsoDuration;
use muster_domain::policy::{BookingPolicy, ResourceRules};
use muster_domain::working_hours::WorkingWindow;
use sqlx::types::Json;
use uuid::Uuid;

/// A `reservable_resources` row as the ledger reads it.
pub(crate) struct ResourceRow {
    pub tenant_id: String,
    pub resource_id: Uuid,
    pub capacity: i32,
    pub retired: bool,
    pub longest_reservation_secs: f64,
    pub timezone: String,
    pub working_hours: Json<Vec<WorkingWindow>>,
    pub seats: Option<i32>,
    pub buffer_before_secs: i32,
    pub buffer_after_secs: i32,
    pub min_notice_secs: Option<i32>,
    pub max_advance_secs: Option<i32>,
    pub check_in_secs: Option<i32>,
    pub approval_secs: Option<i32>,
}

/// Takes a [`ResourceRow`] out of `$record`, the record of a query that
/// selects its columns under their own names: each compile-checked query
/// has a record type of its own, so the fields are moved by name here, in
/// one place. Other fields of `$record` stay usable.
macro_rules! resource_row {
    ($record:ident) => {
        $crate::rules::ResourceRow {
            tenant_id: $record.tenant_id,
            resource_id: $record.resource_id,
            capacity: $record.capacity,
            retired: $record.retired,
            longest_reservation_secs: $record.longest_reservation_secs,
            timezone: $record.timezone,
            working_hours: $record.working_hours,
            seats: $record.seats,
            buffer_before_secs: $record.buffer_before_secs,
            buffer_after_secs: $record.buffer_after_secs,
            min_notice_secs: $record.min_notice_secs,
            max_advance_secs: $record.max_advance_secs,
            check_in_secs: $record.check_in_secs,
            approval_secs: $record.approval_secs,
        }
    };
}
pub(crate) use resource_row;

impl ResourceRow {
    /// The booking rule the row holds.
    pub(crate) fn rules(&self) -> ResourceRules {
        from_columns(self)
    }
}

/// The rule a `reservable_resources` row holds. A zone the row cannot
/// name (never written by the domain, which validates it) reads as UTC.
pub(crate) fn from_columns(row: &ResourceRow) -> ResourceRules {
    let secs = |s: i32| IsoDuration::from_seconds(i64::from(s));
    ResourceRules {
        capacity: u32::try_from(row.capacity).unwrap_or(1),
        seats: row.seats.and_then(|s| u32::try_from(s).ok()),
        timezone: row.timezone.parse().unwrap_or(chrono_tz::UTC),
        working_hours: row.working_hours.0.clone(),
        policy: BookingPolicy {
            buffer_before: (row.buffer_before_secs > 0).then(|| secs(row.buffer_before_secs)),
            buffer_after: (row.buffer_after_secs > 0).then(|| secs(row.buffer_after_secs)),
            min_notice: row.min_notice_secs.map(secs),
            max_advance: row.max_advance_secs.map(secs),
            check_in_within: row.check_in_secs.map(secs),
            approval_timeout: row.approval_secs.map(secs),
        },
    }
}

/// The columns of a rule, as bound in statements.
pub(crate) struct RuleColumns {
    pub capacity: i32,
    pub seats: Option<i32>,
    pub timezone: String,
    pub working_hours: serde_json::Value,
    pub buffer_before_secs: i32,
    pub buffer_after_secs: i32,
    pub min_notice_secs: Option<i32>,
    pub max_advance_secs: Option<i32>,
    pub check_in_secs: Option<i32>,
    pub approval_secs: Option<i32>,
    /// [`ResourceRules::reach`]: how far around a range readers look.
    pub reach_secs: i32,
}

impl RuleColumns {
    /// The columns of `rules`. Durations are bounded by the domain (ten
    /// years at most), so seconds fit an `integer`.
    pub(crate) fn of(rules: &ResourceRules) -> Self {
        let secs = |d: IsoDuration| i32::try_from(d.seconds()).unwrap_or(i32::MAX);
        Self {
            capacity: i32::try_from(rules.capacity).unwrap_or(i32::MAX),
            seats: rules.seats.map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            timezone: rules.timezone.name().to_owned(),
            working_hours: serde_json::to_value(&rules.working_hours)
                .unwrap_or_else(|_| serde_json::Value::Array(Vec::new())),
            buffer_before_secs: rules.policy.buffer_before.map_or(0, secs),
            buffer_after_secs: rules.policy.buffer_after.map_or(0, secs),
            min_notice_secs: rules.policy.min_notice.map(secs),
            max_advance_secs: rules.policy.max_advance.map(secs),
            check_in_secs: rules.policy.check_in_within.map(secs),
            approval_secs: rules.policy.approval_timeout.map(secs),
            reach_secs: i32::try_from(rules.reach().num_seconds()).unwrap_or(i32::MAX),
        }
    }
}
