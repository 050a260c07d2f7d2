//! Half-open time ranges in UTC.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The longest range a booking or reservation may span. Longer ones are
/// almost always a typo (a wrong year) and would make availability and
/// reports scan unbounded time.
pub const MAX_RANGE: Duration = Duration::days(366);

/// A half-open range `[starts_at, ends_at)`: back-to-back ranges do not
/// overlap, matching Postgres' default `tstzrange` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Inclusive start.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end.
    pub ends_at: DateTime<Utc>,
}

impl TimeRange {
    /// Validates `starts_at < ends_at` and a span of at most [`MAX_RANGE`];
    /// errors name the fields under `prefix` (e.g. `reservations[0].`).
    pub fn new(
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        prefix: &str,
    ) -> Result<Self, FieldError> {
        for (value, name) in [(starts_at, "starts_at"), (ends_at, "ends_at")] {
            if !(1..=9999).contains(&value.year()) {
                return Err(FieldError::new(
                    format!("{prefix}{name}"),
                    "must be between the years 1 and 9999",
                ));
            }
        }
        if ends_at <= starts_at {
            return Err(FieldError::new(
                format!("{prefix}ends_at"),
                "must be after starts_at",
            ));
        }
        if ends_at - starts_at > MAX_RANGE {
            return Err(FieldError::new(
                format!("{prefix}ends_at"),
                format!("range must not exceed {} days", MAX_RANGE.num_days()),
            ));
        }
        Ok(Self { starts_at, ends_at })
    }

    /// Whether the two half-open ranges share any instant.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.starts_at < other.ends_at && other.starts_at < self.ends_at
    }
}

/// Every IANA zone name a resource, a series or a quota may name, as
/// the time zone database this build carries spells them.
pub fn zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 6, 12, h, 0, 0).unwrap()
    }

    #[test]
    fn back_to_back_ranges_do_not_overlap() {
        let a = TimeRange::new(at(8), at(10), "").unwrap();
        let b = TimeRange::new(at(10), at(12), "").unwrap();
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        let c = TimeRange::new(at(9), at(11), "").unwrap();
        assert!(a.overlaps(&c) && c.overlaps(&b));
    }

    #[test]
    fn empty_inverted_and_huge_ranges_are_refused_with_the_field_named() {
        assert_eq!(
            TimeRange::new(at(10), at(10), "x.").unwrap_err().field,
            "x.ends_at"
        );
        assert!(TimeRange::new(at(10), at(9), "").is_err());
        assert!(TimeRange::new(at(0), at(0) + Duration::days(400), "").is_err());
    }

    #[test]
    fn times_outside_years_1_to_9999_are_refused() {
        let far: DateTime<Utc> = "+12000-01-01T00:00:00Z".parse().unwrap();
        let err = TimeRange::new(far, far + Duration::hours(1), "r.").unwrap_err();
        assert_eq!(err.field, "r.starts_at");
        let bc = Utc.with_ymd_and_hms(0, 12, 31, 0, 0, 0).unwrap();
        assert!(TimeRange::new(bc, bc + Duration::hours(1), "").is_err());
    }
}
