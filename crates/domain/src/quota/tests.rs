use chrono::{TimeZone, Utc};

use super::*;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn spec(scope: QuotaScope, period: QuotaPeriod, limit: QuotaLimit) -> QuotaSpec {
    QuotaSpec {
        scope,
        period,
        limit,
        timezone: chrono_tz::Europe::Berlin,
        subjects: Vec::new(),
    }
}

fn charge() -> Charge {
    let room = Uuid::from_u128(1);
    let pool = Uuid::from_u128(9);
    Charge {
        client: Some("ada@example.com".into()),
        starts_at: at(2026, 12, 6, 22),
        ends_at: at(2026, 12, 7, 0),
        reservations: vec![
            ChargedReservation {
                resource_id: room,
                pool_id: Some(pool),
                starts_at: at(2026, 12, 6, 22),
                ends_at: at(2026, 12, 6, 23),
            },
            ChargedReservation {
                resource_id: room,
                pool_id: None,
                starts_at: at(2026, 12, 6, 23),
                ends_at: at(2026, 12, 7, 0),
            },
        ],
        expires_at: None,
    }
}

#[test]
fn periods_are_local_to_the_zone() {
    let berlin = chrono_tz::Europe::Berlin;
    // 22:00 UTC on Sunday 6 December is 23:00 Sunday in Berlin: the week
    // began on Monday 30 November, local midnight.
    let (start, end) = QuotaPeriod::Week.containing(at(2026, 12, 6, 22), berlin);
    assert_eq!(start, at(2026, 11, 29, 23));
    assert_eq!(end, at(2026, 12, 6, 23));
    // 23:30 UTC is already Monday in Berlin: the next week.
    let later = at(2026, 12, 6, 23) + Duration::minutes(30);
    assert_eq!(QuotaPeriod::Week.containing(later, berlin).0, end);
    let (day, next) = QuotaPeriod::Day.containing(at(2026, 3, 29, 12), berlin);
    assert_eq!((day, next), (at(2026, 3, 28, 23), at(2026, 3, 29, 22)));
    let (month, next) = QuotaPeriod::Month.containing(at(2026, 12, 31, 23), berlin);
    assert_eq!((month, next), (at(2026, 12, 31, 23), at(2027, 1, 31, 23)));
}

#[test]
fn a_midnight_skipped_by_dst_starts_the_day_after_the_gap() {
    // Santiago moves its clocks from 00:00 to 01:00 on 6 September 2026.
    let santiago = chrono_tz::America::Santiago;
    let (start, _) = QuotaPeriod::Day.containing(at(2026, 9, 6, 12), santiago);
    assert_eq!(
        start.with_timezone(&santiago).format("%H:%M").to_string(),
        "01:00"
    );
}

#[test]
fn client_lines_count_the_booking_in_the_period_it_starts() {
    let q = spec(
        QuotaScope::Client,
        QuotaPeriod::Day,
        QuotaLimit::Bookings(3),
    );
    let lines = q.lines(&charge(), "key");
    assert_eq!(
        lines,
        vec![ChargeLine {
            subject: "ada@example.com".into(),
            period_start: at(2026, 12, 6, 23) - Duration::days(1),
            minutes: 120,
        }]
    );
    let anonymous = Charge {
        client: None,
        ..charge()
    };
    assert!(q.lines(&anonymous, "key").is_empty());
}

#[test]
fn resource_and_pool_lines_sum_their_reservations() {
    let room = Uuid::from_u128(1).to_string();
    let r = spec(
        QuotaScope::Resource,
        QuotaPeriod::Day,
        QuotaLimit::Minutes(600),
    );
    let lines = r.lines(&charge(), "key");
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0].subject.as_str(), lines[0].minutes),
        (room.as_str(), 120)
    );
    let p = spec(QuotaScope::Pool, QuotaPeriod::Day, QuotaLimit::Minutes(600));
    let lines = p.lines(&charge(), "key");
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].minutes, 60,
        "only the reservation picked from the pool"
    );
    let k = spec(QuotaScope::Key, QuotaPeriod::Month, QuotaLimit::Bookings(1));
    assert_eq!(k.lines(&charge(), "k1")[0].subject, "k1");
}

#[test]
fn subjects_narrow_a_quota() {
    let mut q = spec(
        QuotaScope::Client,
        QuotaPeriod::Week,
        QuotaLimit::Bookings(1),
    );
    q.subjects = vec!["bob@example.com".into()];
    assert!(q.lines(&charge(), "key").is_empty());
    q.subjects = vec!["ada@example.com".into()];
    assert_eq!(q.lines(&charge(), "key").len(), 1);
}

#[test]
fn limits_admit_up_to_the_last_unit() {
    let line = ChargeLine {
        subject: "s".into(),
        period_start: at(2026, 1, 1, 0),
        minutes: 90,
    };
    let count = spec(
        QuotaScope::Client,
        QuotaPeriod::Day,
        QuotaLimit::Bookings(3),
    );
    assert!(count.admits(2, 0, &line));
    assert!(!count.admits(3, 0, &line));
    let hours = spec(
        QuotaScope::Client,
        QuotaPeriod::Day,
        QuotaLimit::Minutes(600),
    );
    assert!(hours.admits(9, 510, &line));
    assert!(!hours.admits(0, 511, &line));
}

#[test]
fn bad_definitions_name_every_field() {
    let input = QuotaInput {
        scope: Some("planet".into()),
        period: Some("fortnight".into()),
        max_bookings: Some(-3),
        max_hours: None,
        timezone: Some("Mars/Olympus".into()),
        subjects: None,
    };
    let Err(DomainError::Invalid(errors)) = input.validate() else {
        panic!("accepted");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["scope", "period", "max_bookings", "timezone"]);

    for (bookings, hours) in [
        (None, None),
        (Some(1), Some(1.0)),
        (Some(0), None),
        (Some(i64::from(MAX_BOOKINGS) + 1), None),
        (None, Some(0.0)),
        (None, Some(f64::NAN)),
        (None, Some(MAX_HOURS * 2.0)),
        (None, Some(1.0 / 7.0)),
    ] {
        let input = QuotaInput {
            scope: Some("client".into()),
            period: Some("day".into()),
            max_bookings: bookings,
            max_hours: hours,
            ..QuotaInput::default()
        };
        assert!(input.validate().is_err(), "{bookings:?} {hours:?}");
    }
}

#[test]
fn subjects_are_kept_in_their_normal_form() {
    let input = QuotaInput {
        scope: Some("client".into()),
        period: Some("week".into()),
        max_bookings: Some(3),
        subjects: Some(vec!["Ada@Example.com".into(), "ada@example.com".into()]),
        ..QuotaInput::default()
    };
    let q = input.validate().unwrap();
    assert_eq!(q.subjects, ["ada@example.com"]);
    assert_eq!(q.timezone, chrono_tz::UTC);
    let bad = QuotaInput {
        scope: Some("resource".into()),
        period: Some("week".into()),
        max_hours: Some(10.5),
        subjects: Some(vec!["not-an-id".into()]),
        ..QuotaInput::default()
    };
    let Err(DomainError::Invalid(errors)) = bad.validate() else {
        panic!("accepted");
    };
    assert_eq!(errors[0].field, "subjects[0]");
}

#[test]
fn names_are_short_and_plain() {
    assert!(valid_name("weekly-client.v2"));
    assert!(!valid_name(""));
    assert!(!valid_name("a/b"));
    assert!(!valid_name(&"x".repeat(65)));
}
