//! Weekly working hours, in a resource's own time zone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FieldError;

/// A day of the week, written `mon`..`sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A wall-clock time of day as minutes since midnight, written `HH:MM`;
/// `24:00` is allowed as an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Minutes since midnight (0..=1440).
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{s:?} is not a time of day (HH:MM, 00:00 to 24:00)");
        let (h, m) = s.split_once(':').ok_or_else(invalid)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(invalid());
        }
        let h: u16 = h.parse().map_err(|_| invalid())?;
        let m: u16 = m.parse().map_err(|_| invalid())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(invalid());
        }
        Ok(Self(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One weekly window `[start, end)` on `weekday`, in the resource's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingWindow {
    /// The day the window is on.
    pub weekday: Weekday,
    /// Local start time.
    pub start: TimeOfDay,
    /// Local end time, after `start`; `24:00` for end of day.
    pub end: TimeOfDay,
}

/// Validates a week of windows: each ends after it starts, and windows on
/// the same day do not overlap. Errors name `working_hours[i]`.
pub fn validate_working_hours(windows: &[WorkingWindow]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        if w.end <= w.start {
            errors.push(FieldError::new(
                format!("working_hours[{i}].end"),
                "must be after start",
            ));
        }
    }
    for (i, a) in windows.iter().enumerate() {
        for b in &windows[..i] {
            if a.weekday == b.weekday && a.start < b.end && b.start < a.end {
                errors.push(FieldError::new(
                    format!("working_hours[{i}]"),
                    "overlaps another window on the same day",
                ));
                break;
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(day: Weekday, start: &str, end: &str) -> WorkingWindow {
        WorkingWindow {
            weekday: day,
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!("08:30".parse::<TimeOfDay>().unwrap().minutes(), 510);
        assert_eq!("24:00".parse::<TimeOfDay>().unwrap().minutes(), 1440);
        for bad in ["8:30", "24:01", "12:60", "noon", "", "12-00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
        assert_eq!("07:05".parse::<TimeOfDay>().unwrap().to_string(), "07:05");
    }

    #[test]
    fn windows_must_be_ordered_and_not_overlap_on_a_day() {
        let ok = [
            w(Weekday::Mon, "08:00", "12:00"),
            w(Weekday::Mon, "12:00", "18:00"),
            w(Weekday::Tue, "09:00", "24:00"),
        ];
        assert!(validate_working_hours(&ok).is_empty());
        let bad = [
            w(Weekday::Mon, "08:00", "12:00"),
            w(Weekday::Mon, "11:00", "13:00"),
            w(Weekday::Wed, "10:00", "09:00"),
        ];
        let fields: Vec<_> = validate_working_hours(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["working_hours[2].end", "working_hours[1]"]);
    }
}
