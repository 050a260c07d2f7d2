//! Resources together with what is reserved on them within one window: the
//! one assembly that utilization is computed from, so the API's analytics
//! and the utilization report cannot drift apart. (Free slots are answered
//! by the write side's booking rule: `muster_store::free`.)

use muster_domain::TenantId;
use std::collections::HashMap;

use muster_domain::time::TimeRange;
use sqlx::PgPool;
use uuid::Uuid;

use super::analytics::{ResourceUtilization, utilization};
use super::bookings::reserved_ranges;
use super::resources::{self, ResourceFilter, ResourceView};

/// Some resources and the ranges reserved on each within a window.
#[derive(Debug, Clone)]
pub struct Occupancy {
    window: TimeRange,
    resources: Vec<ResourceView>,
    reserved: HashMap<Uuid, Vec<TimeRange>>,
}

impl Occupancy {
    /// Loads what is reserved on `resources` (kept in the given order)
    /// within `window`.
    pub async fn load(
        pool: &PgPool,
        tenant: &TenantId,
        resources: Vec<ResourceView>,
        window: TimeRange,
    ) -> Result<Self, sqlx::Error> {
        let ids: Vec<Uuid> = resources.iter().map(|r| r.id).collect();
        let mut reserved: HashMap<Uuid, Vec<TimeRange>> = HashMap::new();
        for (id, range) in reserved_ranges(pool, tenant, &ids, window).await? {
            reserved.entry(id).or_default().push(range);
        }
        Ok(Self {
            window,
            resources,
            reserved,
        })
    }

    /// One page of the resources a utilization covers, in id order after
    /// `after`: every kind or only `kind`, retired ones included (they
    /// were used while they served).
    pub async fn utilization_page(
        pool: &PgPool,
        tenant: &TenantId,
        kind: Option<&str>,
        window: TimeRange,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Self, sqlx::Error> {
        let filter = ResourceFilter {
            kind: kind.map(str::to_owned),
            tag: None,
            include_retired: true,
            min_capacity: None,
            min_seats: None,
        };
        let page = resources::list(pool, tenant, &filter, after, limit).await?;
        Self::load(pool, tenant, page, window).await
    }

    /// The resources, in the order they were loaded.
    pub fn resources(&self) -> &[ResourceView] {
        &self.resources
    }

    fn reserved_on(&self, resource: Uuid) -> &[TimeRange] {
        self.reserved.get(&resource).map_or(&[][..], Vec::as_slice)
    }

    /// Each resource's utilization, day by day, computed one resource at a
    /// time so that a caller streaming them holds only one.
    pub fn utilization(&self) -> impl Iterator<Item = ResourceUtilization> + '_ {
        self.resources
            .iter()
            .map(|r| utilization(r, self.reserved_on(r.id), &self.window))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a test time")
    }

    fn range(from: &str, to: &str) -> TimeRange {
        TimeRange {
            starts_at: at(from),
            ends_at: at(to),
        }
    }

    fn resource(retired: bool) -> ResourceView {
        ResourceView {
            id: Uuid::now_v7(),
            name: "Room".into(),
            kind: "room".into(),
            capacity: 1,
            timezone: "UTC".into(),
            working_hours: Vec::new(),
            tags: Vec::new(),
            seats: None,
            policy: Default::default(),
            retired,
            version: 1,
            registered_at: at("2027-01-01T00:00:00Z"),
            updated_at: at("2027-01-01T00:00:00Z"),
            position: 1,
        }
    }

    /// A day with one two-hour reservation on an always-open room, and a
    /// retired room next to it.
    fn one_day() -> (Occupancy, Uuid, Uuid) {
        let open = resource(false);
        let retired = resource(true);
        let (open_id, retired_id) = (open.id, retired.id);
        let occupancy = Occupancy {
            window: range("2027-06-01T00:00:00Z", "2027-06-02T00:00:00Z"),
            resources: vec![open, retired],
            reserved: HashMap::from([(
                open_id,
                vec![range("2027-06-01T10:00:00Z", "2027-06-01T12:00:00Z")],
            )]),
        };
        (occupancy, open_id, retired_id)
    }

    #[test]
    fn utilization_counts_reserved_hours_of_each_resource() {
        let (occupancy, open, retired) = one_day();
        let days: Vec<(Uuid, f64, f64)> = occupancy
            .utilization()
            .flat_map(|u| {
                let id = u.resource_id;
                u.days
                    .into_iter()
                    .map(move |d| (id, d.available_hours, d.booked_hours))
            })
            .collect();
        assert_eq!(days, [(open, 24.0, 2.0), (retired, 24.0, 0.0)]);
    }
}
