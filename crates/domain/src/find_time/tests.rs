use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;
use crate::duration::IsoDuration;
use crate::policy::{BookingPolicy, Claim, ResourceRules};
use crate::working_hours::{Weekday, WorkingWindow};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn range(from: &str, to: &str) -> TimeRange {
    TimeRange {
        starts_at: at(from),
        ends_at: at(to),
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// Monday 2027-03-01 to Friday, UTC, nine to five.
fn office() -> ResourceRules {
    let day = |weekday| WorkingWindow {
        weekday,
        start: "09:00".parse().unwrap(),
        end: "17:00".parse().unwrap(),
    };
    ResourceRules {
        working_hours: [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
        .into_iter()
        .map(day)
        .collect(),
        ..ResourceRules::capacity_only(1)
    }
}

fn candidate(n: u128, rules: ResourceRules, held: &[TimeRange]) -> Candidate {
    Candidate {
        resource_id: id(n),
        rules,
        held: held.to_vec(),
        retired: false,
    }
}

fn one(c: Candidate) -> Requirement {
    Requirement {
        candidates: vec![c],
        count: 1,
    }
}

fn search(from: &str, to: &str, hours: i64) -> Search {
    Search {
        window: range(from, to),
        duration: Duration::hours(hours),
        granularity: Duration::minutes(15),
        limit: 5,
        headcount: None,
        now: at("2027-02-01T00:00:00Z"),
    }
}

#[test]
fn the_earliest_common_time_of_two_resources() {
    // A is busy 09-11, B 10-13 on Monday: two hours together first fit at 13:00.
    let a = candidate(
        1,
        office(),
        &[range("2027-03-01T09:00:00Z", "2027-03-01T11:00:00Z")],
    );
    let b = candidate(
        2,
        office(),
        &[range("2027-03-01T10:00:00Z", "2027-03-01T13:00:00Z")],
    );
    let found = find_time(
        &search("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z", 2),
        &[one(a), one(b)],
        &[],
        0,
    )
    .unwrap();
    assert_eq!(
        found[0].range,
        range("2027-03-01T13:00:00Z", "2027-03-01T15:00:00Z")
    );
    assert_eq!(found[0].picks, vec![vec![id(1)], vec![id(2)]]);
    assert_eq!(found[1].range.starts_at, at("2027-03-01T13:15:00Z"));
    assert_eq!(found.len(), 5, "at most the limit");
}

#[test]
fn a_pool_gives_distinct_members_in_its_order() {
    let busy = [range("2027-03-01T09:00:00Z", "2027-03-01T12:00:00Z")];
    let pool = Requirement {
        candidates: vec![
            candidate(1, office(), &busy),
            candidate(2, office(), &[]),
            candidate(3, office(), &[]),
        ],
        count: 2,
    };
    let found = find_time(
        &search("2027-03-01T09:00:00Z", "2027-03-01T17:00:00Z", 1),
        &[pool],
        &[],
        0,
    )
    .unwrap();
    // Member 1 is busy at nine: the next two in order serve.
    assert_eq!(found[0].range.starts_at, at("2027-03-01T09:00:00Z"));
    assert_eq!(found[0].picks, vec![vec![id(2), id(3)]]);
}

#[test]
fn a_resource_two_requirements_want_goes_where_it_is_needed() {
    // Requirement 0 takes A or B; requirement 1 only A. Greedy in order
    // would give A to requirement 0 and fail; the assignment does not.
    let any_of = Requirement {
        candidates: vec![candidate(1, office(), &[]), candidate(2, office(), &[])],
        count: 1,
    };
    let only_a = one(candidate(1, office(), &[]));
    let found = find_time(
        &search("2027-03-01T09:00:00Z", "2027-03-01T17:00:00Z", 1),
        &[any_of, only_a],
        &[],
        0,
    )
    .unwrap();
    assert_eq!(found[0].picks, vec![vec![id(2)], vec![id(1)]]);
}

#[test]
fn optional_resources_count_towards_a_minimum() {
    let a = candidate(1, office(), &[]);
    // The optional B is free only from 15:00.
    let b = candidate(
        2,
        office(),
        &[range("2027-03-01T09:00:00Z", "2027-03-01T15:00:00Z")],
    );
    let found = find_time(
        &search("2027-03-01T09:00:00Z", "2027-03-01T17:00:00Z", 1),
        &[one(a)],
        &[b],
        1,
    )
    .unwrap();
    assert_eq!(found[0].range.starts_at, at("2027-03-01T15:00:00Z"));
    assert_eq!(found[0].optional_free, vec![id(2)]);
}

#[test]
fn reasons_name_why_each_requirement_never_fits() {
    let window = search("2027-03-06T00:00:00Z", "2027-03-08T00:00:00Z", 2); // a weekend
    let weekend = |n| one(candidate(n, office(), &[]));
    let reasons = find_time(&window, &[weekend(1)], &[], 0).unwrap_err();
    assert_eq!(reasons[0].requirement, Some(0));
    assert_eq!(reasons[0].never, Never::OutsideWorkingHours);

    let monday = search("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z", 2);
    let full_day = [range("2027-03-01T09:00:00Z", "2027-03-01T17:00:00Z")];
    let booked = one(candidate(1, office(), &full_day));
    let reasons = find_time(&monday, &[booked], &[], 0).unwrap_err();
    assert_eq!(reasons[0].never, Never::Booked);

    let small = ResourceRules {
        seats: Some(10),
        ..office()
    };
    let seats = Search {
        headcount: Some(40),
        ..monday
    };
    let reasons = find_time(&seats, &[one(candidate(1, small, &[]))], &[], 0).unwrap_err();
    assert_eq!(reasons[0].never, Never::SeatsExceeded);

    let notice = ResourceRules {
        policy: BookingPolicy {
            min_notice: Some("P60D".parse::<IsoDuration>().unwrap()),
            ..BookingPolicy::default()
        },
        ..office()
    };
    let reasons = find_time(&monday, &[one(candidate(1, notice, &[]))], &[], 0).unwrap_err();
    assert_eq!(reasons[0].never, Never::TooSoon);

    // A pool of three: one booked, two outside their hours (always-closed
    // rules): the most hopeful reason leads, the detail counts them all.
    let closed = ResourceRules {
        working_hours: vec![WorkingWindow {
            weekday: Weekday::Sun,
            start: "09:00".parse().unwrap(),
            end: "10:00".parse().unwrap(),
        }],
        ..ResourceRules::capacity_only(1)
    };
    let pool = Requirement {
        candidates: vec![
            candidate(1, office(), &full_day),
            candidate(2, closed.clone(), &[]),
            candidate(3, closed, &[]),
        ],
        count: 1,
    };
    let reasons = find_time(&monday, &[pool], &[], 0).unwrap_err();
    assert_eq!(reasons[0].never, Never::Booked);
    assert!(
        reasons[0].detail.contains("1 of 3: reservation-conflict"),
        "{}",
        reasons[0].detail
    );
    assert!(
        reasons[0].detail.contains("2 of 3: outside-working-hours"),
        "{}",
        reasons[0].detail
    );

    // Each fits alone, never together.
    let morning = one(candidate(
        1,
        office(),
        &[range("2027-03-01T12:00:00Z", "2027-03-01T17:00:00Z")],
    ));
    let afternoon = one(candidate(
        2,
        office(),
        &[range("2027-03-01T09:00:00Z", "2027-03-01T13:00:00Z")],
    ));
    let reasons = find_time(&monday, &[morning, afternoon], &[], 0).unwrap_err();
    assert_eq!(
        reasons,
        vec![Reason {
            requirement: None,
            never: Never::NotTogether,
            detail: "each requirement fits at some time in the window, never all at once".into(),
        }]
    );
}

#[test]
fn every_start_it_offers_the_write_side_admits_and_every_start_it_skips_it_refuses() {
    // Three resources with buffers, capacity 2, holds here and there; for
    // every start of the grid, the answer agrees with `admits` on each.
    let buffered = ResourceRules {
        capacity: 2,
        policy: BookingPolicy {
            buffer_before: Some("PT30M".parse().unwrap()),
            buffer_after: Some("PT15M".parse().unwrap()),
            ..BookingPolicy::default()
        },
        ..office()
    };
    let held = |spans: &[(&str, &str)]| -> Vec<TimeRange> {
        spans.iter().map(|(a, b)| range(a, b)).collect()
    };
    let resources = [
        candidate(
            1,
            buffered.clone(),
            &held(&[
                ("2027-03-01T10:00:00Z", "2027-03-01T11:00:00Z"),
                ("2027-03-01T10:30:00Z", "2027-03-01T12:00:00Z"),
            ]),
        ),
        candidate(
            2,
            office(),
            &held(&[("2027-03-01T13:00:00Z", "2027-03-01T14:00:00Z")]),
        ),
        candidate(
            3,
            buffered,
            &held(&[("2027-03-01T09:00:00Z", "2027-03-01T09:45:00Z")]),
        ),
    ];
    let requirements: Vec<Requirement> = resources.iter().cloned().map(one).collect();
    let s = Search {
        limit: usize::MAX,
        ..search("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z", 1)
    };
    let offered: Vec<DateTime<Utc>> = find_time(&s, &requirements, &[], 0)
        .unwrap()
        .into_iter()
        .map(|f| f.range.starts_at)
        .collect();
    let mut t = s.window.starts_at;
    let mut refused = 0;
    while t + s.duration <= s.window.ends_at {
        let claim = Claim {
            range: TimeRange {
                starts_at: t,
                ends_at: t + s.duration,
            },
            headcount: None,
            outside_working_hours: false,
        };
        let admitted = resources
            .iter()
            .all(|c| c.rules.admits(&claim, &c.held, s.now).is_ok());
        assert_eq!(offered.contains(&t), admitted, "{t}");
        refused += usize::from(!admitted);
        t += s.granularity;
    }
    assert!(!offered.is_empty() && refused > 0, "both answers occur");
}

#[test]
fn working_hours_follow_the_resources_zone_across_a_dst_change() {
    // Berlin, nine to five on weekdays: on Friday 26 March 2027 (CET) the
    // day starts at 08:00 UTC; on Monday 29 March (CEST) at 07:00 UTC.
    let berlin = ResourceRules {
        timezone: chrono_tz::Europe::Berlin,
        ..office()
    };
    let s = |from, to| search(from, to, 1);
    let friday = find_time(
        &s("2027-03-26T00:00:00Z", "2027-03-27T00:00:00Z"),
        &[one(candidate(1, berlin.clone(), &[]))],
        &[],
        0,
    )
    .unwrap();
    assert_eq!(friday[0].range.starts_at, at("2027-03-26T08:00:00Z"));
    let monday = find_time(
        &s("2027-03-29T00:00:00Z", "2027-03-30T00:00:00Z"),
        &[one(candidate(1, berlin.clone(), &[]))],
        &[],
        0,
    )
    .unwrap();
    assert_eq!(monday[0].range.starts_at, at("2027-03-29T07:00:00Z"));
    // The weekend between: outside working hours, said so.
    let weekend = find_time(
        &s("2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
        &[one(candidate(1, berlin, &[]))],
        &[],
        0,
    )
    .unwrap_err();
    assert_eq!(weekend[0].never, Never::OutsideWorkingHours);
}

#[test]
fn a_pool_is_free_where_enough_members_admit_the_same_start() {
    // Monday: A free 09-10:30, B 09:30-11, C 10-11:30 (each office hours,
    // otherwise busy). For an hour, A admits starts 09-09:30, B 09:30-10,
    // C 10-10:30.
    let day = |from: &str, to: &str| {
        range(
            &format!("2027-03-01T{from}:00Z"),
            &format!("2027-03-01T{to}:00Z"),
        )
    };
    let members = [
        candidate(1, office(), &[day("10:30", "17:00")]),
        candidate(2, office(), &[day("09:00", "09:30"), day("11:00", "17:00")]),
        candidate(3, office(), &[day("09:00", "10:00"), day("11:30", "17:00")]),
    ];
    let s = search("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z", 1);
    // Any one: starts 09:00-10:30, so 09:00-11:30.
    assert_eq!(free_together(&s, &members, 1), [day("09:00", "11:30")]);
    // Two at once: only the starts 09:30 (A, B) and 10:00 (B, C); 09:45
    // has B alone, although two members are free at every instant of it.
    assert_eq!(
        free_together(&s, &members, 2),
        [day("09:30", "10:30"), day("10:00", "11:00")]
    );
    assert!(free_together(&s, &members, 3).is_empty());
    // Every claim in an answered range's starts books on `count` members.
    for free in free_together(&s, &members, 2) {
        let mut start = free.starts_at;
        while start + s.duration <= free.ends_at {
            let claim = Claim {
                range: TimeRange {
                    starts_at: start,
                    ends_at: start + s.duration,
                },
                headcount: None,
                outside_working_hours: false,
            };
            let admitted = members
                .iter()
                .filter(|m| m.rules.admits(&claim, &m.held, s.now).is_ok())
                .count();
            assert!(admitted >= 2, "{start} admits {admitted}");
            start += Duration::minutes(5);
        }
    }
}
