//! Working hours as instants: a resource's weekly windows in its own time
//! zone, turned into UTC periods across DST changes. The booking rule
//! ([`crate::policy`]) builds free slots and the working-hours check on
//! them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::time::TimeRange;
use crate::working_hours::{Weekday, WorkingWindow};

/// The working periods within `window`, in UTC, merged where one day's
/// window runs into the next.
///
/// Local times that do not exist (the hour skipped when clocks go forward)
/// move to the first instant that does; local times that occur twice (when
/// clocks go back) start at their first occurrence and end at their second,
/// so a window covers every instant whose wall-clock time lies in it.
pub fn working_periods(tz: Tz, windows: &[WorkingWindow], window: &TimeRange) -> Vec<TimeRange> {
    let first = window.starts_at.with_timezone(&tz).date_naive() - Duration::days(1);
    let last = window.ends_at.with_timezone(&tz).date_naive() + Duration::days(1);
    let mut periods = Vec::new();
    let mut day = first;
    while day <= last {
        let weekday = weekday_of(day);
        for w in windows.iter().filter(|w| w.weekday == weekday) {
            let starts_at = local_instant(tz, day, w.start.minutes(), Occurrence::First);
            let ends_at = local_instant(tz, day, w.end.minutes(), Occurrence::Last);
            let clipped = TimeRange {
                starts_at: starts_at.max(window.starts_at),
                ends_at: ends_at.min(window.ends_at),
            };
            if clipped.starts_at < clipped.ends_at {
                periods.push(clipped);
            }
        }
        day += Duration::days(1);
    }
    merge(periods)
}

/// Which instant a repeated wall-clock time stands for.
#[derive(Clone, Copy)]
enum Occurrence {
    First,
    Last,
}

/// The instant of `minutes` after local midnight of `day` in `tz`.
fn local_instant(tz: Tz, day: NaiveDate, minutes: u16, occurrence: Occurrence) -> DateTime<Utc> {
    let mut local: NaiveDateTime =
        day.and_time(chrono::NaiveTime::MIN) + Duration::minutes(i64::from(minutes));
    // Gaps are at most a few hours; walking minute by minute to the first
    // wall-clock time that exists finds the instant the clocks jumped.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(early, late) => {
                let t = match occurrence {
                    Occurrence::First => early,
                    Occurrence::Last => late,
                };
                return t.with_timezone(&Utc);
            }
            chrono::LocalResult::None => local += Duration::minutes(1),
        }
    }
    // No zone skips a whole day of minutes; fall back to reading it as UTC.
    Utc.from_utc_datetime(&local)
}

fn weekday_of(day: NaiveDate) -> Weekday {
    match day.weekday() {
        chrono::Weekday::Mon => Weekday::Mon,
        chrono::Weekday::Tue => Weekday::Tue,
        chrono::Weekday::Wed => Weekday::Wed,
        chrono::Weekday::Thu => Weekday::Thu,
        chrono::Weekday::Fri => Weekday::Fri,
        chrono::Weekday::Sat => Weekday::Sat,
        chrono::Weekday::Sun => Weekday::Sun,
    }
}

/// Sorts and joins ranges that overlap or touch.
fn merge(mut ranges: Vec<TimeRange>) -> Vec<TimeRange> {
    ranges.sort_by_key(|r| r.starts_at);
    let mut merged: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.starts_at <= last.ends_at => last.ends_at = last.ends_at.max(r.ends_at),
            _ => merged.push(r),
        }
    }
    merged
}

/// `open` minus `taken`; both sorted and non-overlapping.
pub(crate) fn subtract(open: &[TimeRange], taken: &[TimeRange]) -> Vec<TimeRange> {
    let mut free = Vec::new();
    for o in open {
        let mut from = o.starts_at;
        for t in taken.iter().filter(|t| t.overlaps(o)) {
            if t.starts_at > from {
                free.push(TimeRange {
                    starts_at: from,
                    ends_at: t.starts_at,
                });
            }
            from = from.max(t.ends_at);
        }
        if from < o.ends_at {
            free.push(TimeRange {
                starts_at: from,
                ends_at: o.ends_at,
            });
        }
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn range(from: &str, to: &str) -> TimeRange {
        TimeRange {
            starts_at: at(from),
            ends_at: at(to),
        }
    }

    fn window(day: Weekday, start: &str, end: &str) -> WorkingWindow {
        WorkingWindow {
            weekday: day,
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }
    }

    fn berlin(hours: &[WorkingWindow], capacity: u32) -> crate::policy::ResourceRules {
        crate::policy::ResourceRules {
            timezone: chrono_tz::Europe::Berlin,
            working_hours: hours.to_vec(),
            ..crate::policy::ResourceRules::capacity_only(capacity)
        }
    }

    /// A clock long before every test range: no notice or horizon applies.
    fn long_ago() -> DateTime<Utc> {
        at("2000-01-01T00:00:00Z")
    }

    #[test]
    fn working_hours_follow_the_zone_across_spring_forward() {
        // Berlin skips 02:00-03:00 on Sunday 2027-03-28 (CET +1 → CEST +2).
        let hours = [
            window(Weekday::Sat, "08:00", "18:00"),
            window(Weekday::Sun, "08:00", "18:00"),
        ];
        let periods = working_periods(
            chrono_tz::Europe::Berlin,
            &hours,
            &range("2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
        );
        assert_eq!(
            periods,
            [
                range("2027-03-27T07:00:00Z", "2027-03-27T17:00:00Z"),
                range("2027-03-28T06:00:00Z", "2027-03-28T16:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_window_inside_the_skipped_hour_starts_when_the_clocks_jump() {
        let hours = [window(Weekday::Sun, "02:30", "05:00")];
        let periods = working_periods(
            chrono_tz::Europe::Berlin,
            &hours,
            &range("2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
        );
        // 03:00 CEST = 01:00 UTC; 05:00 CEST = 03:00 UTC.
        assert_eq!(
            periods,
            [range("2027-03-28T01:00:00Z", "2027-03-28T03:00:00Z")]
        );
    }

    #[test]
    fn the_repeated_hour_of_fall_back_is_worked_twice() {
        // Berlin repeats 02:00-03:00 on Sunday 2027-10-31 (CEST → CET).
        let hours = [window(Weekday::Sun, "01:00", "04:00")];
        let periods = working_periods(
            chrono_tz::Europe::Berlin,
            &hours,
            &range("2027-10-30T00:00:00Z", "2027-11-01T00:00:00Z"),
        );
        // 01:00 CEST = 23:00 UTC the day before; 04:00 CET = 03:00 UTC: 4 hours.
        assert_eq!(
            periods,
            [range("2027-10-30T23:00:00Z", "2027-10-31T03:00:00Z")]
        );
    }

    #[test]
    fn windows_that_meet_at_midnight_form_one_period() {
        let hours = [
            window(Weekday::Mon, "20:00", "24:00"),
            window(Weekday::Tue, "00:00", "06:00"),
        ];
        let periods = working_periods(
            chrono_tz::UTC,
            &hours,
            &range("2027-06-07T00:00:00Z", "2027-06-09T00:00:00Z"),
        );
        assert_eq!(
            periods,
            [range("2027-06-07T20:00:00Z", "2027-06-08T06:00:00Z")]
        );
    }

    #[test]
    fn slots_are_clipped_to_the_asked_window_and_working_hours() {
        // Monday 2027-06-07, Berlin summer time: 08:00-18:00 = 06:00-16:00 UTC.
        let hours = [window(Weekday::Mon, "08:00", "18:00")];
        let slots = berlin(&hours, 1).free_slots(
            &[],
            &range("2027-06-07T10:00:00Z", "2027-06-08T00:00:00Z"),
            Duration::hours(1),
            long_ago(),
        );
        assert_eq!(
            slots,
            [range("2027-06-07T10:00:00Z", "2027-06-07T16:00:00Z")]
        );
        // A slot that ends exactly at closing time still counts; one hour
        // shorter than asked does not.
        let slots = berlin(&hours, 1).free_slots(
            &[range("2027-06-07T06:00:00Z", "2027-06-07T15:00:00Z")],
            &range("2027-06-07T00:00:00Z", "2027-06-08T00:00:00Z"),
            Duration::hours(1),
            long_ago(),
        );
        assert_eq!(
            slots,
            [range("2027-06-07T15:00:00Z", "2027-06-07T16:00:00Z")]
        );
        let slots = berlin(&hours, 1).free_slots(
            &[range("2027-06-07T06:00:00Z", "2027-06-07T15:30:00Z")],
            &range("2027-06-07T00:00:00Z", "2027-06-08T00:00:00Z"),
            Duration::hours(1),
            long_ago(),
        );
        assert!(slots.is_empty());
    }

    #[test]
    fn back_to_back_reservations_leave_no_gap_and_free_time_starts_at_their_end() {
        let always: [WorkingWindow; 0] = [];
        let slots = berlin(&always, 1).free_slots(
            &[
                range("2027-06-07T09:00:00Z", "2027-06-07T10:00:00Z"),
                range("2027-06-07T10:00:00Z", "2027-06-07T11:00:00Z"),
            ],
            &range("2027-06-07T08:00:00Z", "2027-06-07T12:00:00Z"),
            Duration::minutes(30),
            long_ago(),
        );
        assert_eq!(
            slots,
            [
                range("2027-06-07T08:00:00Z", "2027-06-07T09:00:00Z"),
                range("2027-06-07T11:00:00Z", "2027-06-07T12:00:00Z"),
            ]
        );
    }

    #[test]
    fn capacity_two_is_full_only_where_two_reservations_overlap() {
        let always: [WorkingWindow; 0] = [];
        let reservations = [
            range("2027-06-07T09:00:00Z", "2027-06-07T11:00:00Z"),
            range("2027-06-07T10:00:00Z", "2027-06-07T12:00:00Z"),
        ];
        let window = range("2027-06-07T08:00:00Z", "2027-06-07T13:00:00Z");
        let slots =
            berlin(&always, 2).free_slots(&reservations, &window, Duration::minutes(1), long_ago());
        assert_eq!(
            slots,
            [
                range("2027-06-07T08:00:00Z", "2027-06-07T10:00:00Z"),
                range("2027-06-07T11:00:00Z", "2027-06-07T13:00:00Z"),
            ]
        );
        // With capacity 3 nothing is full.
        let slots =
            berlin(&always, 3).free_slots(&reservations, &window, Duration::minutes(1), long_ago());
        assert_eq!(slots, [window]);
    }
}
