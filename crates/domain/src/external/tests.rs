use chrono::TimeZone;

use super::*;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn year_2027() -> TimeRange {
    TimeRange {
        starts_at: at(2027, 1, 1, 0, 0),
        ends_at: at(2028, 1, 1, 0, 0),
    }
}

/// A weekly Monday 09:00–10:00 in New York from 1 March to 29 November
/// 2027 (both DST changes lie inside), without 5 April, with 12 April
/// moved to Tuesday 13 April 15:00; an all-day event; a transparent and a
/// cancelled one; a floating one. Lines end in CRLF and one is folded.
const CALENDAR: &str = "BEGIN:VCALENDAR\r\n\
VERSION:2.0\r\n\
PRODID:-//muster tests//EN\r\n\
BEGIN:VEVENT\r\n\
UID:weekly@example.com\r\n\
SUMMARY:Standing appointment wi\r\n th the dentist\r\n\
DTSTART;TZID=America/New_York:20270301T090000\r\n\
DTEND;TZID=America/New_York:20270301T100000\r\n\
RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20271130T000000Z\r\n\
EXDATE;TZID=America/New_York:20270405T090000\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:weekly@example.com\r\n\
RECURRENCE-ID;TZID=America/New_York:20270412T090000\r\n\
DTSTART;TZID=America/New_York:20270413T150000\r\n\
DTEND;TZID=America/New_York:20270413T160000\r\n\
SUMMARY:Moved\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:holiday@example.com\r\n\
DTSTART;VALUE=DATE:20270503\r\n\
DTEND;VALUE=DATE:20270504\r\n\
SUMMARY:Day off\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:free@example.com\r\n\
DTSTART:20270601T120000Z\r\n\
DTEND:20270601T130000Z\r\n\
TRANSP:TRANSPARENT\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:off@example.com\r\n\
DTSTART:20270602T120000Z\r\n\
DTEND:20270602T130000Z\r\n\
STATUS:CANCELLED\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:floating@example.com\r\n\
DTSTART:20270603T120000\r\n\
DURATION:PT30M\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n";

fn weekly(busy: &[Busy]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    busy.iter()
        .filter(|b| b.uid == "weekly@example.com")
        .map(|b| (b.range.starts_at, b.range.ends_at))
        .collect()
}

#[test]
fn a_weekly_event_keeps_its_local_time_across_both_dst_changes() {
    let busy = busy_times(CALENDAR, chrono_tz::Europe::Berlin, year_2027()).unwrap();
    let weekly = weekly(&busy);
    // 1 March (EST) and 8 March: 14:00 UTC; 15 March (EDT): 13:00 UTC.
    assert_eq!(weekly[0], (at(2027, 3, 1, 14, 0), at(2027, 3, 1, 15, 0)));
    assert_eq!(weekly[1].0, at(2027, 3, 8, 14, 0));
    assert_eq!(weekly[2].0, at(2027, 3, 15, 13, 0));
    // 1 November is still EDT; 8 November is EST again.
    assert!(weekly.contains(&(at(2027, 11, 1, 13, 0), at(2027, 11, 1, 14, 0))));
    assert!(weekly.contains(&(at(2027, 11, 8, 14, 0), at(2027, 11, 8, 15, 0))));
    // 1 March to 29 November: 40 Mondays, one excluded; the moved one is
    // its own block.
    assert_eq!(weekly.len(), 40 - 1);
    assert!(
        !weekly.iter().any(|(s, _)| *s == at(2027, 4, 5, 13, 0)),
        "EXDATE"
    );
    assert!(
        !weekly.iter().any(|(s, _)| *s == at(2027, 4, 12, 13, 0)),
        "moved away"
    );
    assert!(weekly.contains(&(at(2027, 4, 13, 19, 0), at(2027, 4, 13, 20, 0))));
    let moved = busy
        .iter()
        .find(|b| b.range.starts_at == at(2027, 4, 13, 19, 0))
        .unwrap();
    assert_eq!(moved.recurrence_id, Some(at(2027, 4, 12, 13, 0)));
    assert_eq!(moved.title.as_deref(), Some("Moved"));
    let first = busy.iter().find(|b| b.uid == "weekly@example.com").unwrap();
    assert_eq!(
        first.title.as_deref(),
        Some("Standing appointment with the dentist")
    );
}

#[test]
fn all_day_and_floating_events_are_the_resource_s_local_time() {
    let busy = busy_times(CALENDAR, chrono_tz::Europe::Berlin, year_2027()).unwrap();
    let day_off = busy
        .iter()
        .find(|b| b.uid == "holiday@example.com")
        .unwrap();
    assert_eq!(day_off.range.starts_at, at(2027, 5, 2, 22, 0));
    assert_eq!(day_off.range.ends_at, at(2027, 5, 3, 22, 0));
    let floating = busy
        .iter()
        .find(|b| b.uid == "floating@example.com")
        .unwrap();
    assert_eq!(floating.range.starts_at, at(2027, 6, 3, 10, 0));
    assert_eq!(floating.range.ends_at, at(2027, 6, 3, 10, 30));
}

#[test]
fn transparent_and_cancelled_events_are_not_busy() {
    let busy = busy_times(CALENDAR, chrono_tz::UTC, year_2027()).unwrap();
    assert!(!busy.iter().any(|b| b.uid == "free@example.com"));
    assert!(!busy.iter().any(|b| b.uid == "off@example.com"));
}

#[test]
fn only_what_meets_the_window_is_expanded() {
    let window = TimeRange {
        starts_at: at(2027, 11, 1, 13, 30),
        ends_at: at(2027, 11, 9, 0, 0),
    };
    let busy = busy_times(CALENDAR, chrono_tz::UTC, window).unwrap();
    assert_eq!(
        weekly(&busy),
        [
            (at(2027, 11, 1, 13, 0), at(2027, 11, 1, 14, 0)),
            (at(2027, 11, 8, 14, 0), at(2027, 11, 8, 15, 0)),
        ]
    );
}

#[test]
fn a_prefixed_tzid_is_read_and_garbage_is_refused() {
    let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n\
DTSTART;TZID=/mozilla.org/20050126_1/America/New_York:20270705T090000\r\n\
DTEND;TZID=/mozilla.org/20050126_1/America/New_York:20270705T100000\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    let busy = busy_times(ics, chrono_tz::UTC, year_2027()).unwrap();
    assert_eq!(busy[0].range.starts_at, at(2027, 7, 5, 13, 0));
    // Not iCalendar, or cut off: refused. An event whose start cannot be
    // read is left out, the rest kept.
    for garbage in [
        "<html>not a calendar</html>",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
    ] {
        assert!(
            matches!(
                busy_times(garbage, chrono_tz::UTC, year_2027()),
                Err(CalendarError::Unreadable(_))
            ),
            "{garbage}"
        );
    }
    let odd = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:odd\r\nDTSTART:garbage\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:fine\r\nDTSTART:20270705T090000Z\r\nDTEND:20270705T100000Z\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";
    let kept = busy_times(odd, chrono_tz::UTC, year_2027()).unwrap();
    assert_eq!(
        kept.iter().map(|b| b.uid.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );
    let empty = busy_times(
        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        chrono_tz::UTC,
        year_2027(),
    );
    assert_eq!(empty, Ok(Vec::new()));
}
