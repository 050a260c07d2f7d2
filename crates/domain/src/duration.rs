//! Fixed-length durations written in ISO 8601 (`PT1H30M`, `P1D`, `P2W`).
//!
//! Only weeks, days, hours, minutes and seconds: a buffer or a notice
//! period of "one month" has no fixed length, so years and months are
//! refused rather than guessed. Days are 24 hours (durations are added to
//! instants in UTC).

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration accepted anywhere (ten years of days): beyond it
/// instant arithmetic could leave the calendar.
const MAX_SECONDS: i64 = 3660 * 86_400;

/// A non-negative duration of whole seconds, written ISO 8601.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, example = "PT1H30M"))]
pub struct IsoDuration(i64);

impl IsoDuration {
    /// One day.
    pub const DAY: IsoDuration = IsoDuration(86_400);

    /// A duration of `seconds` (clamped to be non-negative).
    pub fn from_seconds(seconds: i64) -> Self {
        Self(seconds.clamp(0, MAX_SECONDS))
    }

    /// Whole seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// As a chrono duration.
    pub fn to_duration(self) -> Duration {
        Duration::seconds(self.0)
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for IsoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "{s:?} is not an ISO 8601 duration of weeks, days, hours, minutes and seconds (PT1H30M, P1D)"
            )
        };
        let rest = s.strip_prefix('P').ok_or_else(invalid)?;
        if rest.is_empty() || rest == "T" {
            return Err(invalid());
        }
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(invalid()),
            Some((date, time)) => (date, Some(time)),
            None => (rest, None),
        };
        let mut total: i64 = 0;
        let mut add = |part: &str, units: &[(char, i64)]| -> Result<(), String> {
            let mut number = String::new();
            let mut next_unit = 0;
            for c in part.chars() {
                if c.is_ascii_digit() {
                    number.push(c);
                    continue;
                }
                let at = units[next_unit..]
                    .iter()
                    .position(|(u, _)| *u == c)
                    .ok_or_else(invalid)?;
                if number.is_empty() || number.len() > 9 {
                    return Err(invalid());
                }
                let n: i64 = number.parse().map_err(|_| invalid())?;
                total = total
                    .checked_add(n * units[next_unit + at].1)
                    .ok_or_else(invalid)?;
                next_unit += at + 1;
                number.clear();
            }
            if number.is_empty() {
                Ok(())
            } else {
                Err(invalid())
            }
        };
        add(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
        if let Some(time) = time {
            add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
        }
        if total > MAX_SECONDS {
            return Err(format!(
                "{s:?} is longer than {} days",
                MAX_SECONDS / 86_400
            ));
        }
        Ok(Self(total))
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let days = rest / 86_400;
        rest %= 86_400;
        write!(f, "P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if rest > 0 || days == 0 {
            write!(f, "T")?;
            let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if m > 0 {
                write!(f, "{m}M")?;
            }
            if s > 0 || rest == 0 {
                write!(f, "{s}S")?;
            }
        }
        Ok(())
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> i64 {
        s.parse::<IsoDuration>().unwrap().seconds()
    }

    #[test]
    fn parses_weeks_days_and_clock_parts() {
        assert_eq!(secs("PT1H30M"), 5400);
        assert_eq!(secs("P1D"), 86_400);
        assert_eq!(secs("P2W"), 14 * 86_400);
        assert_eq!(secs("P1DT2H"), 93_600);
        assert_eq!(secs("PT45S"), 45);
        assert_eq!(secs("PT0S"), 0);
        assert_eq!(secs("P365D"), 365 * 86_400);
    }

    #[test]
    fn refuses_months_years_disorder_and_garbage() {
        for bad in [
            "",
            "P",
            "PT",
            "P1M",
            "P1Y",
            "PT1H1H",
            "PT30M1H",
            "P1DT",
            "1H",
            "PT-1H",
            "PT1.5H",
            "P99999D",
            "pt1h",
            "PT1234567890S",
        ] {
            assert!(bad.parse::<IsoDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_back_what_it_reads() {
        for s in ["PT1H30M", "P1D", "P1DT2H", "PT45S", "PT0S", "P14D"] {
            assert_eq!(s.parse::<IsoDuration>().unwrap().to_string(), s);
        }
        assert_eq!(IsoDuration::from_seconds(90).to_string(), "PT1M30S");
    }
}
