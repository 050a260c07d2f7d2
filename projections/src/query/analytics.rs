//! Analytics over the read models: utilization per resource and day, and
//! bookings by status.

use muster_domain::TenantId;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use muster_domain::availability::working_periods;
use muster_domain::time::TimeRange;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resources::ResourceView;

/// A resource's utilization, day by day in its own time zone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceUtilization {
    /// The resource.
    pub resource_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Days (local dates) within the asked window.
    pub days: Vec<DayUtilization>,
}

/// One local day of a resource.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayUtilization {
    /// The local date.
    pub date: NaiveDate,
    /// Working hours that day times capacity (24 h a day without working
    /// hours), within the asked window.
    pub available_hours: f64,
    /// Hours reserved that day, within the asked window.
    pub booked_hours: f64,
    /// `booked_hours / available_hours` (null when nothing was available).
    pub utilization: Option<f64>,
}

/// Utilization of `resource` within `window`, given the ranges reserved on it.
pub fn utilization(
    resource: &ResourceView,
    reserved: &[TimeRange],
    window: &TimeRange,
) -> ResourceUtilization {
    let tz: Tz = resource.timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut days: BTreeMap<NaiveDate, (f64, f64)> = BTreeMap::new();
    let mut day = window.starts_at.with_timezone(&tz).date_naive();
    let last = (window.ends_at - Duration::microseconds(1))
        .with_timezone(&tz)
        .date_naive();
    while day <= last {
        let span = local_day(tz, day, window);
        let available = if resource.working_hours.is_empty() {
            hours(&span)
        } else {
            working_periods(tz, &resource.working_hours, &span)
                .iter()
                .map(hours)
                .sum()
        } * f64::from(resource.capacity.max(0));
        let booked = reserved
            .iter()
            .filter_map(|r| intersect(r, &span))
            .map(|r| hours(&r))
            .sum();
        days.insert(day, (available, booked));
        day += Duration::days(1);
    }
    ResourceUtilization {
        resource_id: resource.id,
        name: resource.name.clone(),
        kind: resource.kind.clone(),
        days: days
            .into_iter()
            .map(|(date, (available, booked))| DayUtilization {
                date,
                available_hours: round(available),
                booked_hours: round(booked),
                utilization: (available > 0.0).then(|| round(booked / available)),
            })
            .collect(),
    }
}

/// Local day `day` in `tz`, clipped to `window`.
fn local_day(tz: Tz, day: NaiveDate, window: &TimeRange) -> TimeRange {
    let midnight = |d: NaiveDate| -> DateTime<Utc> {
        let local = d.and_time(chrono::NaiveTime::MIN);
        tz.from_local_datetime(&local)
            .earliest()
            // Midnight skipped by a DST change: the day starts an hour later.
            .or_else(|| {
                tz.from_local_datetime(&(local + Duration::hours(1)))
                    .earliest()
            })
            .map_or_else(|| Utc.from_utc_datetime(&local), |t| t.with_timezone(&Utc))
    };
    TimeRange {
        starts_at: midnight(day).max(window.starts_at),
        ends_at: midnight(day + Duration::days(1)).min(window.ends_at),
    }
}

fn intersect(a: &TimeRange, b: &TimeRange) -> Option<TimeRange> {
    let starts_at = a.starts_at.max(b.starts_at);
    let ends_at = a.ends_at.min(b.ends_at);
    (starts_at < ends_at).then_some(TimeRange { starts_at, ends_at })
}

fn hours(r: &TimeRange) -> f64 {
    (r.ends_at - r.starts_at).as_seconds_f64() / 3600.0
}

/// To the thousandth, and never `-0.0` (a tiny negative rounds to zero,
/// and `+ 0.0` turns its sign positive).
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0 + 0.0
}

/// How many bookings of one status start within a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusCount {
    /// The status.
    pub status: String,
    /// How many bookings have it.
    pub count: i64,
}

/// Bookings starting within `window`, counted by status.
pub async fn bookings_by_status(
    pool: &PgPool,
    tenant: &TenantId,
    window: TimeRange,
) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as!(
        StatusCount,
        r#"select status, count(*) as "count!"
             from read.bookings
            where tenant_id = $1 and starts_at >= $2 and starts_at < $3
            group by status
            order by status"#,
        tenant.as_str(),
        window.starts_at,
        window.ends_at,
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::round;

    #[test]
    fn rounding_never_answers_negative_zero() {
        for x in [-0.0, -0.0001, -0.0004] {
            let r = round(x);
            assert_eq!(r, 0.0);
            assert!(r.is_sign_positive(), "{x} rounds to {r}");
        }
        assert_eq!(round(1.23456), 1.235);
    }
}
