use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::working_hours::Weekday;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn range(from: &str, to: &str) -> TimeRange {
    TimeRange {
        starts_at: at(from),
        ends_at: at(to),
    }
}

fn claim(from: &str, to: &str) -> Claim {
    Claim {
        range: range(from, to),
        headcount: None,
        outside_working_hours: false,
    }
}

fn iso(s: &str) -> Option<IsoDuration> {
    Some(s.parse().unwrap())
}

fn window(day: Weekday, start: &str, end: &str) -> WorkingWindow {
    WorkingWindow {
        weekday: day,
        start: start.parse().unwrap(),
        end: end.parse().unwrap(),
    }
}

/// A catering hall: one hour set-up, thirty minutes clean-up.
fn hall(capacity: u32) -> ResourceRules {
    ResourceRules {
        policy: BookingPolicy {
            buffer_before: iso("PT1H"),
            buffer_after: iso("PT30M"),
            ..BookingPolicy::default()
        },
        ..ResourceRules::capacity_only(capacity)
    }
}

fn long_ago() -> DateTime<Utc> {
    at("2000-01-01T00:00:00Z")
}

#[test]
fn buffers_keep_both_sides_clear() {
    let rules = hall(1);
    let existing = [range("2027-06-07T10:00:00Z", "2027-06-07T12:00:00Z")];
    // Occupies 09:00-12:30. A claim after it needs its own hour of set-up:
    // it may start at 13:30 at the earliest.
    assert_eq!(
        rules.admits(
            &claim("2027-06-07T13:29:00Z", "2027-06-07T14:00:00Z"),
            &existing,
            long_ago()
        ),
        Err(Refusal::Full(vec![0]))
    );
    assert!(
        rules
            .admits(
                &claim("2027-06-07T13:30:00Z", "2027-06-07T14:00:00Z"),
                &existing,
                long_ago()
            )
            .is_ok()
    );
    // Before it: its clean-up must end by the other's set-up at 09:00.
    assert!(
        rules
            .admits(
                &claim("2027-06-07T07:00:00Z", "2027-06-07T08:30:00Z"),
                &existing,
                long_ago()
            )
            .is_ok()
    );
    assert!(
        rules
            .admits(
                &claim("2027-06-07T07:00:00Z", "2027-06-07T08:31:00Z"),
                &existing,
                long_ago()
            )
            .is_err()
    );
    // Without buffers the same claims fit back to back.
    let bare = ResourceRules::capacity_only(1);
    assert!(
        bare.admits(
            &claim("2027-06-07T12:00:00Z", "2027-06-07T13:00:00Z"),
            &existing,
            long_ago()
        )
        .is_ok()
    );
}

#[test]
fn capacity_two_counts_buffered_ranges() {
    let rules = hall(2);
    // Raw ranges never overlap, but with buffers 10-12 (09:00-12:30) and
    // 13:00-14:00 (12:00-14:30) overlap in 12:00-12:30.
    let existing = [
        range("2027-06-07T10:00:00Z", "2027-06-07T12:00:00Z"),
        range("2027-06-07T13:00:00Z", "2027-06-07T14:00:00Z"),
    ];
    assert_eq!(
        rules.admits(
            &claim("2027-06-07T12:45:00Z", "2027-06-07T12:50:00Z"),
            &existing,
            long_ago()
        ),
        Err(Refusal::Full(vec![0, 1]))
    );
    // 15:00-16:00 occupies 14:00-16:30: only the second is there.
    assert!(
        rules
            .admits(
                &claim("2027-06-07T15:00:00Z", "2027-06-07T16:00:00Z"),
                &existing,
                long_ago()
            )
            .is_ok()
    );
}

fn berlin_weekdays() -> ResourceRules {
    ResourceRules {
        timezone: chrono_tz::Europe::Berlin,
        working_hours: vec![
            window(Weekday::Sat, "09:00", "17:00"),
            window(Weekday::Sun, "09:00", "17:00"),
        ],
        ..ResourceRules::capacity_only(1)
    }
}

#[test]
fn working_hours_hold_in_the_resource_zone_across_both_dst_changes() {
    let rules = berlin_weekdays();
    // Winter (CET, +1): 09:00-17:00 is 08:00-16:00 UTC.
    assert!(rules.within_working_hours(&range("2027-03-27T08:00:00Z", "2027-03-27T16:00:00Z")));
    assert!(!rules.within_working_hours(&range("2027-03-27T07:00:00Z", "2027-03-27T09:00:00Z")));
    // Sunday 2027-03-28 is in summer time (CEST, +2): 07:00-15:00 UTC.
    assert!(rules.within_working_hours(&range("2027-03-28T07:00:00Z", "2027-03-28T15:00:00Z")));
    assert!(!rules.within_working_hours(&range("2027-03-28T14:00:00Z", "2027-03-28T16:00:00Z")));
    // Autumn: Saturday 2027-10-30 is still CEST, Sunday 2027-10-31 is CET.
    assert!(rules.within_working_hours(&range("2027-10-30T07:00:00Z", "2027-10-30T15:00:00Z")));
    assert!(rules.within_working_hours(&range("2027-10-31T08:00:00Z", "2027-10-31T16:00:00Z")));
    assert!(!rules.within_working_hours(&range("2027-10-31T07:30:00Z", "2027-10-31T09:00:00Z")));
}

#[test]
fn a_reservation_may_span_windows_that_join_at_midnight() {
    let rules = ResourceRules {
        working_hours: vec![
            window(Weekday::Fri, "18:00", "24:00"),
            window(Weekday::Sat, "00:00", "06:00"),
        ],
        ..ResourceRules::capacity_only(1)
    };
    // Friday 2027-06-11 22:00 to Saturday 04:00 UTC.
    let overnight = claim("2027-06-11T22:00:00Z", "2027-06-12T04:00:00Z");
    assert!(rules.admits(&overnight, &[], long_ago()).is_ok());
    let too_long = claim("2027-06-11T22:00:00Z", "2027-06-12T07:00:00Z");
    assert_eq!(
        rules.admits(&too_long, &[], long_ago()),
        Err(Refusal::OutsideWorkingHours)
    );
}

#[test]
fn the_planners_override_admits_outside_working_hours() {
    let rules = berlin_weekdays();
    let night = Claim {
        outside_working_hours: true,
        ..claim("2027-06-12T01:00:00Z", "2027-06-12T03:00:00Z")
    };
    assert!(rules.admits(&night, &[], long_ago()).is_ok());
    let without = Claim {
        outside_working_hours: false,
        ..night
    };
    assert_eq!(
        rules.admits(&without, &[], long_ago()),
        Err(Refusal::OutsideWorkingHours)
    );
}

#[test]
fn notice_and_horizon_bound_the_start_inclusively() {
    let rules = ResourceRules {
        policy: BookingPolicy {
            min_notice: iso("PT2H"),
            max_advance: iso("P30D"),
            ..BookingPolicy::default()
        },
        ..ResourceRules::capacity_only(1)
    };
    let now = at("2027-06-01T10:00:00Z");
    let at_notice = claim("2027-06-01T12:00:00Z", "2027-06-01T13:00:00Z");
    assert!(rules.admits(&at_notice, &[], now).is_ok());
    let sooner = claim("2027-06-01T11:59:59Z", "2027-06-01T13:00:00Z");
    assert_eq!(
        rules.admits(&sooner, &[], now),
        Err(Refusal::TooSoon {
            earliest: at("2027-06-01T12:00:00Z")
        })
    );
    let at_horizon = claim("2027-07-01T10:00:00Z", "2027-07-01T11:00:00Z");
    assert!(rules.admits(&at_horizon, &[], now).is_ok());
    let beyond = claim("2027-07-01T10:00:01Z", "2027-07-01T11:00:00Z");
    assert_eq!(
        rules.admits(&beyond, &[], now),
        Err(Refusal::TooFarAhead {
            latest: at("2027-07-01T10:00:00Z")
        })
    );
}

#[test]
fn seats_bound_the_headcount() {
    let rules = ResourceRules {
        seats: Some(120),
        ..ResourceRules::capacity_only(1)
    };
    let mut c = claim("2027-06-01T12:00:00Z", "2027-06-01T13:00:00Z");
    c.headcount = Some(120);
    assert!(rules.admits(&c, &[], long_ago()).is_ok());
    c.headcount = Some(121);
    assert_eq!(
        rules.admits(&c, &[], long_ago()),
        Err(Refusal::SeatsExceeded {
            seats: 120,
            headcount: 121
        })
    );
    // A hold has no headcount: seats do not apply to it.
    c.headcount = None;
    assert!(rules.admits(&c, &[], long_ago()).is_ok());
}

#[test]
fn policy_validation_names_the_part() {
    let mut v = Validator::default();
    BookingPolicy {
        buffer_before: iso("P2D"),
        min_notice: iso("P2D"),
        max_advance: iso("P1D"),
        ..BookingPolicy::default()
    }
    .validate(&mut v);
    let crate::DomainError::Invalid(errors) = v.finish().unwrap_err() else {
        panic!("a validation error")
    };
    let fields: Vec<_> = errors.into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["policy.buffer_before", "policy.max_advance"]);
}

/// Free slots are the rule turned around: for every start minute in a
/// day, "free_slots says it fits" and "admits says yes" agree, with
/// buffers, capacity 2, working hours, notice and horizon all in play.
#[test]
fn free_slots_agree_with_admits_minute_by_minute() {
    let rules = ResourceRules {
        timezone: chrono_tz::Europe::Berlin,
        working_hours: vec![window(Weekday::Mon, "08:00", "20:00")],
        policy: BookingPolicy {
            buffer_before: iso("PT20M"),
            buffer_after: iso("PT35M"),
            min_notice: iso("PT1H"),
            max_advance: iso("PT11H"),
            ..BookingPolicy::default()
        },
        ..ResourceRules::capacity_only(2)
    };
    let existing = [
        range("2027-06-07T07:00:00Z", "2027-06-07T09:00:00Z"),
        range("2027-06-07T08:30:00Z", "2027-06-07T10:00:00Z"),
        range("2027-06-07T11:00:00Z", "2027-06-07T11:30:00Z"),
        range("2027-06-07T11:15:00Z", "2027-06-07T12:00:00Z"),
        range("2027-06-07T14:00:00Z", "2027-06-07T15:00:00Z"),
    ];
    let now = at("2027-06-07T05:10:00Z");
    let window = range("2027-06-07T00:00:00Z", "2027-06-08T00:00:00Z");
    let duration = Duration::minutes(45);
    let slots = rules.free_slots(&existing, &window, duration, now);
    assert!(!slots.is_empty());
    let mut start = window.starts_at;
    while start + duration <= window.ends_at {
        let c = Claim {
            range: TimeRange {
                starts_at: start,
                ends_at: start + duration,
            },
            headcount: None,
            outside_working_hours: false,
        };
        let admitted = rules.admits(&c, &existing, now).is_ok();
        let listed = slots
            .iter()
            .any(|s| s.starts_at <= start && start + duration <= s.ends_at);
        assert_eq!(admitted, listed, "start {start}");
        start += Duration::minutes(1);
    }
}
