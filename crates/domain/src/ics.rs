//! A resource's calendar feed as iCalendar (RFC 5545): its reservations as
//! events in the resource's own time zone, with that zone's `VTIMEZONE`
//! so that calendar applications show them at the right local time across
//! DST changes. Events are built with the `icalendar` crate; the
//! `VTIMEZONE` (which that crate does not build) is derived here from
//! chrono-tz's transitions within the feed's window.
//!
//! Also a booking's invitation for its client (RFC 5546 `METHOD:REQUEST`
//! or `CANCEL`), with a `UID` stable per booking and a `SEQUENCE` that
//! grows with each change, so that a calendar application updates the one
//! entry it already has.

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use icalendar::{Calendar, CalendarDateTime, Component, Event, EventLike};
use uuid::Uuid;

use crate::time::TimeRange;

/// One reservation in a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// The reservation: the event's stable `UID`.
    pub reservation_id: Uuid,
    /// The booking's title.
    pub title: String,
    /// The booking's status (`requested` is shown as tentative).
    pub status: String,
    /// When it holds the resource.
    pub range: TimeRange,
}

/// The feed of resource `name` in zone `timezone` (an IANA name; UTC if
/// it names none): `entries` as events, the zone's definition over
/// `window`, stamped `stamp` (a stable instant, so that an unchanged feed
/// is byte for byte the same and its ETag holds).
pub fn calendar(
    name: &str,
    timezone: &str,
    window: &TimeRange,
    entries: &[FeedEntry],
    stamp: DateTime<Utc>,
) -> String {
    let tz: Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut calendar = Calendar::new();
    calendar.name(name).timezone(tz.name());
    for entry in entries {
        let event = Event::new()
            .uid(&format!("{}@muster", entry.reservation_id))
            .summary(&entry.title)
            .timestamp(stamp)
            .starts(CalendarDateTime::from_date_time(
                entry.range.starts_at.with_timezone(&tz),
            ))
            .ends(CalendarDateTime::from_date_time(
                entry.range.ends_at.with_timezone(&tz),
            ))
            .status(if entry.status == "requested" {
                icalendar::EventStatus::Tentative
            } else {
                icalendar::EventStatus::Confirmed
            })
            .done();
        calendar.push(event);
    }
    let text = calendar.done().to_string();
    // The zone's definition goes before the first component.
    let vtimezone = vtimezone(tz, window);
    match text.find("BEGIN:VEVENT") {
        Some(at) => format!("{}{}{}", &text[..at], vtimezone, &text[at..]),
        None => text.replace("END:VCALENDAR", &format!("{vtimezone}END:VCALENDAR")),
    }
}

/// One reservation as the calendar object muster writes to a resource's
/// own CalDAV calendar (SPEC §12): `UID` the reservation's id, `SEQUENCE`
/// one higher at each change, times as instants (UTC), stamped `stamp`,
/// and marked `X-MUSTER-RESERVATION` so that a sync never reads it back
/// as busy.
pub fn published_event(
    reservation_id: Uuid,
    title: &str,
    range: &TimeRange,
    sequence: u32,
    stamp: DateTime<Utc>,
) -> String {
    let id = reservation_id.to_string();
    let event = Event::new()
        .uid(&id)
        .summary(title)
        .timestamp(stamp)
        .sequence(sequence)
        .starts(range.starts_at)
        .ends(range.ends_at)
        .status(icalendar::EventStatus::Confirmed)
        .add_property(PUBLISHED_MARK, id.as_str())
        .done();
    let mut calendar = Calendar::new();
    calendar.push(event);
    calendar.done().to_string()
}

/// The property that marks an event muster published.
pub const PUBLISHED_MARK: &str = "X-MUSTER-RESERVATION";

/// `VTIMEZONE` for `tz` covering `window`: the offset in force at its start,
/// and one observance per change of offset within it (found hour by hour,
/// then to the minute).
fn vtimezone(tz: Tz, window: &TimeRange) -> String {
    let offset_at = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc());
    let mut out = format!("BEGIN:VTIMEZONE\r\nTZID:{}\r\n", tz.name());
    let first = offset_at(window.starts_at);
    let seconds = |o: &chrono_tz::TzOffset| o.fix().local_minus_utc();
    out.push_str(&observance(
        first.dst_offset().num_seconds() != 0,
        window.starts_at.naive_utc() + Duration::seconds(i64::from(seconds(&first))),
        seconds(&first),
        seconds(&first),
        first.abbreviation().unwrap_or(tz.name()),
    ));
    let mut t = window.starts_at;
    while t < window.ends_at {
        let next = t + Duration::hours(1);
        let (before, after) = (offset_at(t), offset_at(next));
        if seconds(&before) != seconds(&after) || before.abbreviation() != after.abbreviation() {
            // The first minute with the new offset.
            let (mut low, mut high) = (t, next);
            while high - low > Duration::minutes(1) {
                let mid = low + (high - low) / 2;
                if seconds(&offset_at(mid)) == seconds(&before)
                    && offset_at(mid).abbreviation() == before.abbreviation()
                {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            out.push_str(&observance(
                after.dst_offset().num_seconds() != 0,
                // Its onset in the local time in force before it.
                high.naive_utc() + Duration::seconds(i64::from(seconds(&before))),
                seconds(&before),
                seconds(&after),
                after.abbreviation().unwrap_or(tz.name()),
            ));
        }
        t = next;
    }
    out.push_str("END:VTIMEZONE\r\n");
    out
}

fn observance(daylight: bool, onset: NaiveDateTime, from: i32, to: i32, name: &str) -> String {
    let kind = if daylight { "DAYLIGHT" } else { "STANDARD" };
    format!(
        "BEGIN:{kind}\r\nDTSTART:{}\r\nTZOFFSETFROM:{}\r\nTZOFFSETTO:{}\r\nTZNAME:{name}\r\nEND:{kind}\r\n",
        onset.format("%Y%m%dT%H%M%S"),
        utc_offset(from),
        utc_offset(to)
    )
}

/// `+0100`, `-0430`.
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.abs() / 60;
    format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn berlin_feeds_carry_both_changes_and_local_times() {
        let window = TimeRange {
            starts_at: at("2027-01-01T00:00:00Z"),
            ends_at: at("2028-01-01T00:00:00Z"),
        };
        let entry = FeedEntry {
            reservation_id: Uuid::from_u128(7),
            title: "Smith wedding".into(),
            status: "confirmed".into(),
            range: TimeRange {
                starts_at: at("2027-06-12T12:00:00Z"),
                ends_at: at("2027-06-12T21:00:00Z"),
            },
        };
        let ics = calendar(
            "Hall A",
            "Europe/Berlin",
            &window,
            &[entry],
            at("2027-01-01T00:00:00Z"),
        );
        assert!(ics.contains("TZID:Europe/Berlin"));
        assert!(
            ics.contains("BEGIN:DAYLIGHT\r\nDTSTART:20270328T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST"),
            "{ics}"
        );
        assert!(
            ics.contains("BEGIN:STANDARD\r\nDTSTART:20271031T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET"),
            "{ics}"
        );
        assert!(
            ics.contains("DTSTART;TZID=Europe/Berlin:20270612T140000"),
            "{ics}"
        );
        assert!(ics.contains("UID:00000000-0000-0000-0000-000000000007@muster"));
        assert!(ics.find("BEGIN:VTIMEZONE") < ics.find("BEGIN:VEVENT"));
    }
}

/// What an invitation asks of the client's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationMethod {
    /// Add the booking, or update it to this `SEQUENCE`.
    Request,
    /// Remove it.
    Cancel,
}

impl InvitationMethod {
    /// The `METHOD` value.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationMethod::Request => "REQUEST",
            InvitationMethod::Cancel => "CANCEL",
        }
    }
}

/// A booking as its client's invitation shows it.
#[derive(Debug, Clone)]
pub struct Invitation<'a> {
    /// The booking: its `UID` is `{booking_id}@muster`, the same in every
    /// message about it.
    pub booking_id: Uuid,
    /// Grows with each reschedule and the cancellation.
    pub sequence: i32,
    /// The booking's title.
    pub title: &'a str,
    /// When it is.
    pub range: TimeRange,
    /// The IANA zone to show it in (its first resource's).
    pub timezone: &'a str,
    /// The sender's address (`ORGANIZER`).
    pub organizer: &'a str,
    /// The client's address (`ATTENDEE`).
    pub attendee: &'a str,
    /// `DTSTAMP`: when the message was made.
    pub stamp: DateTime<Utc>,
}

/// The invitation as an iCalendar object with `method`.
pub fn invitation(invitation: &Invitation<'_>, method: InvitationMethod) -> String {
    let tz: Tz = invitation.timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut calendar = Calendar::new();
    calendar.append_property(("METHOD", method.as_str()));
    let event = Event::new()
        .uid(&format!("{}@muster", invitation.booking_id))
        .summary(invitation.title)
        .timestamp(invitation.stamp)
        .starts(CalendarDateTime::from_date_time(
            invitation.range.starts_at.with_timezone(&tz),
        ))
        .ends(CalendarDateTime::from_date_time(
            invitation.range.ends_at.with_timezone(&tz),
        ))
        .add_property("SEQUENCE", invitation.sequence.to_string())
        .add_property("ORGANIZER", format!("mailto:{}", invitation.organizer))
        .add_property("ATTENDEE", format!("mailto:{}", invitation.attendee))
        .status(match method {
            InvitationMethod::Request => icalendar::EventStatus::Confirmed,
            InvitationMethod::Cancel => icalendar::EventStatus::Cancelled,
        })
        .done();
    calendar.push(event);
    let text = calendar.done().to_string();
    // A day either side: the zone's offsets over the booking itself.
    let window = TimeRange {
        starts_at: invitation.range.starts_at - Duration::days(1),
        ends_at: invitation.range.ends_at + Duration::days(1),
    };
    let vtimezone = vtimezone(tz, &window);
    match text.find("BEGIN:VEVENT") {
        Some(at) => format!("{}{}{}", &text[..at], vtimezone, &text[at..]),
        None => text,
    }
}
