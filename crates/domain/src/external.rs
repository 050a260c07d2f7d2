//! External calendars (SPEC §12): the busy time an iCalendar document
//! says a staff member or room has, as instants.
//!
//! A calendar link imports these as external blocks that count in every
//! check. What is busy follows RFC 5545: each `VEVENT` that is neither
//! cancelled (`STATUS:CANCELLED`) nor transparent (`TRANSP:TRANSPARENT`),
//! its recurrence (`RRULE`, `RDATE`, `EXDATE`) kept at its local time in
//! its own zone across DST changes, an overridden occurrence (a `VEVENT`
//! with the same `UID` and a `RECURRENCE-ID`) in place of the one it
//! overrides, and all-day events from midnight to midnight in the
//! resource's zone (as is floating time); events muster published itself
//! (marked `X-MUSTER-RESERVATION`) are never busy. Parsing is the `icalendar`
//! crate's, recurrence the `rrule` crate's; only the reading of the
//! parsed properties into instants is ours.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use icalendar::parser::{Component, Property, read_calendar, unfold};

use crate::duration::IsoDuration;
use crate::time::TimeRange;

/// The most blocks one calendar may expand to in a window.
pub const MAX_BLOCKS: usize = 20_000;
/// The most occurrences one recurring event may have in a window.
const MAX_OCCURRENCES: u16 = 5_000;

/// One busy range an external calendar holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The event's `UID`.
    pub uid: String,
    /// The occurrence's original start, for a recurring event's.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// When it is busy.
    pub range: TimeRange,
    /// Its `SUMMARY`, if any (shown only where the link allows).
    pub title: Option<String>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not iCalendar.
    #[error("not an iCalendar document: {0}")]
    Unreadable(String),
    /// More busy ranges in the window than a calendar may hold.
    #[error("the calendar holds more than {MAX_BLOCKS} busy ranges in the window")]
    TooMany,
}

/// The busy ranges `ics` holds that overlap `window`, in start order;
/// `zone` is the resource's, for all-day events and floating times.
/// Events it cannot read a start of are left out (a calendar server's
/// oddity never blocks the rest).
pub fn busy_times(ics: &str, zone: Tz, window: TimeRange) -> Result<Vec<Busy>, CalendarError> {
    let unfolded = unfold(ics);
    let calendar = read_calendar(&unfolded).map_err(|e| {
        CalendarError::Unreadable(
            e.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        )
    })?;
    let events: Vec<Event> = calendar
        .components
        .iter()
        .filter(|c| c.name == "VEVENT")
        .filter_map(|c| Event::read(c, zone))
        .collect();
    // Overrides by (UID, original start): they replace that occurrence.
    let overridden: HashMap<(&str, DateTime<Utc>), &Event> = events
        .iter()
        .filter_map(|e| e.recurrence_id.map(|at| ((e.uid.as_str(), at), e)))
        .collect();
    let mut busy = Vec::new();
    for event in events.iter().filter(|e| e.recurrence_id.is_none()) {
        for start in event.starts(zone, &window) {
            let recurring = event.recurs();
            let id = recurring.then_some(start);
            if recurring && overridden.contains_key(&(event.uid.as_str(), start)) {
                continue;
            }
            if event.busy {
                let range = event.range_from(start, zone);
                if range.ends_at > window.starts_at && range.starts_at < window.ends_at {
                    busy.push(event.block(id, range));
                }
            }
            if busy.len() > MAX_BLOCKS {
                return Err(CalendarError::TooMany);
            }
        }
    }
    for event in overridden.values().filter(|e| e.busy) {
        let range = event.range_from(event.start, zone);
        if range.ends_at > window.starts_at && range.starts_at < window.ends_at {
            busy.push(event.block(event.recurrence_id, range));
        }
    }
    if busy.len() > MAX_BLOCKS {
        return Err(CalendarError::TooMany);
    }
    busy.sort_by(|a, b| {
        (a.range.starts_at, &a.uid, a.recurrence_id).cmp(&(
            b.range.starts_at,
            &b.uid,
            b.recurrence_id,
        ))
    });
    busy.dedup();
    Ok(busy)
}

/// A `VEVENT` as read.
#[derive(Debug)]
struct Event {
    uid: String,
    title: Option<String>,
    /// Its start, as an instant.
    start: DateTime<Utc>,
    /// Its start as written: a local date (all-day) or a time in a zone.
    start_as: Written,
    /// How long each occurrence is.
    length: Length,
    /// Whether it makes the resource busy (not cancelled, not transparent).
    busy: bool,
    rrule: Option<String>,
    rdates: Vec<DateTime<Utc>>,
    exdates: Vec<DateTime<Utc>>,
    recurrence_id: Option<DateTime<Utc>>,
}

/// How a start was written.
#[derive(Debug, Clone, Copy)]
enum Written {
    /// A date: the event is all-day.
    Date(NaiveDate),
    /// A local time in a zone (floating times are the resource's).
    Local(Tz),
    /// An instant (`Z`).
    Utc,
}

/// How long each occurrence lasts.
#[derive(Debug, Clone, Copy)]
enum Length {
    /// Whole days, from local midnight to local midnight.
    Days(i64),
    /// An exact duration.
    Exact(Duration),
}

impl Event {
    fn read(c: &Component<'_>, zone: Tz) -> Option<Self> {
        let text = |name: &str| c.find_prop(name).map(|p| p.val.as_str().trim().to_owned());
        let dtstart = c.find_prop("DTSTART")?;
        let (start, start_as) = read_time(dtstart, zone)?;
        let length = match (c.find_prop("DTEND"), text("DURATION")) {
            (Some(end), _) => {
                let (end, end_as) = read_time(end, zone)?;
                match (start_as, end_as) {
                    (Written::Date(a), Written::Date(b)) => Length::Days((b - a).num_days().max(0)),
                    _ => Length::Exact(end - start),
                }
            }
            (None, Some(d)) => match d.parse::<IsoDuration>() {
                Ok(d) if matches!(start_as, Written::Date(_)) && d.seconds() % 86_400 == 0 => {
                    Length::Days(d.seconds() / 86_400)
                }
                Ok(d) => Length::Exact(d.to_duration()),
                Err(_) => return None,
            },
            // RFC 5545: a date alone is one day; a time alone, an instant.
            (None, None) => match start_as {
                Written::Date(_) => Length::Days(1),
                _ => Length::Exact(Duration::zero()),
            },
        };
        let upper = |name: &str| text(name).map(|v| v.to_ascii_uppercase());
        // muster's own published reservations are never read back as busy.
        let busy = upper("STATUS").as_deref() != Some("CANCELLED")
            && upper("TRANSP").as_deref() != Some("TRANSPARENT")
            && c.find_prop(crate::ics::PUBLISHED_MARK).is_none();
        let times = |name: &str| -> Vec<DateTime<Utc>> {
            c.properties
                .iter()
                .filter(|p| p.name == name)
                .flat_map(|p| read_times(p, zone))
                .collect()
        };
        Some(Self {
            uid: text("UID").unwrap_or_default(),
            title: text("SUMMARY").filter(|s| !s.is_empty()),
            start,
            start_as,
            length,
            busy,
            rrule: text("RRULE"),
            rdates: times("RDATE"),
            exdates: times("EXDATE"),
            recurrence_id: c
                .find_prop("RECURRENCE-ID")
                .and_then(|p| read_time(p, zone))
                .map(|(t, _)| t),
        })
    }

    fn recurs(&self) -> bool {
        self.rrule.is_some() || !self.rdates.is_empty()
    }

    /// The starts of its occurrences that may overlap `window`.
    fn starts(&self, zone: Tz, window: &TimeRange) -> Vec<DateTime<Utc>> {
        if !self.recurs() {
            return vec![self.start];
        }
        let tz = match self.start_as {
            Written::Local(tz) => tz,
            Written::Date(_) => zone,
            Written::Utc => chrono_tz::UTC,
        };
        let first = self.start.with_timezone(&rrule::Tz::Tz(tz));
        let mut starts: Vec<DateTime<Utc>> = vec![self.start];
        if let Some(rule) = &self.rrule
            && let Ok(parsed) = rule.parse::<rrule::RRule<rrule::Unvalidated>>()
            && let Ok(set) = parsed.build(first)
        {
            // Occurrences that end after the window starts: back by the
            // longest an occurrence can be.
            let reach = match self.length {
                Length::Days(d) => Duration::days(d + 1),
                Length::Exact(d) => d,
            };
            let after = (window.starts_at - reach).with_timezone(&rrule::Tz::Tz(tz));
            let before = window.ends_at.with_timezone(&rrule::Tz::Tz(tz));
            let found = set.after(after).before(before).all(MAX_OCCURRENCES);
            starts.extend(found.dates.iter().map(|d| d.with_timezone(&Utc)));
        }
        starts.extend(self.rdates.iter().copied());
        starts.retain(|s| !self.exdates.contains(s));
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// An occurrence starting at `start`: its range. All-day ones run from
    /// local midnight to local midnight in the resource's zone.
    fn range_from(&self, start: DateTime<Utc>, zone: Tz) -> TimeRange {
        match self.length {
            Length::Days(days) => {
                let day = start.with_timezone(&zone).date_naive();
                TimeRange {
                    starts_at: midnight(day, zone),
                    ends_at: midnight(day + Duration::days(days.max(1)), zone),
                }
            }
            Length::Exact(d) => TimeRange {
                starts_at: start,
                ends_at: start + d,
            },
        }
    }

    fn block(&self, recurrence_id: Option<DateTime<Utc>>, range: TimeRange) -> Busy {
        Busy {
            uid: self.uid.clone(),
            recurrence_id,
            range,
            title: self.title.clone(),
        }
    }
}

/// A `DTSTART`-like property as an instant and how it was written.
/// Floating times and dates are the resource's zone's.
fn read_time(p: &Property<'_>, zone: Tz) -> Option<(DateTime<Utc>, Written)> {
    let value = p.val.as_str().trim();
    let param = |key: &str| {
        p.params
            .iter()
            .find(|q| q.key.as_str().eq_ignore_ascii_case(key))
            .and_then(|q| q.val.as_ref())
            .map(|v| v.as_str().trim_matches('"').to_owned())
    };
    read_value(value, param("TZID").as_deref(), zone)
}

/// Every instant a (comma-separated) `EXDATE`/`RDATE` property names.
fn read_times(p: &Property<'_>, zone: Tz) -> Vec<DateTime<Utc>> {
    let tzid = p
        .params
        .iter()
        .find(|q| q.key.as_str().eq_ignore_ascii_case("TZID"))
        .and_then(|q| q.val.as_ref())
        .map(|v| v.as_str().trim_matches('"').to_owned());
    p.val
        .as_str()
        .split(',')
        .filter_map(|v| read_value(v.trim(), tzid.as_deref(), zone).map(|(t, _)| t))
        .collect()
}

fn read_value(value: &str, tzid: Option<&str>, zone: Tz) -> Option<(DateTime<Utc>, Written)> {
    if value.len() == 8 {
        let date = NaiveDate::parse_from_str(value, "%Y%m%d").ok()?;
        return Some((midnight(date, zone), Written::Date(date)));
    }
    if let Some(utc) = value.strip_suffix('Z') {
        let t = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").ok()?;
        return Some((Utc.from_utc_datetime(&t), Written::Utc));
    }
    let local = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok()?;
    let tz = tzid.and_then(zone_named).unwrap_or(zone);
    Some((local_instant(local, tz), Written::Local(tz)))
}

/// The IANA zone a `TZID` names, also in the prefixed forms some servers
/// write (`/mozilla.org/20050126_1/America/New_York`). A zone known only
/// by its `VTIMEZONE` (an Outlook name) is not resolved: the caller falls
/// back to the resource's zone.
fn zone_named(tzid: &str) -> Option<Tz> {
    if let Ok(tz) = tzid.parse::<Tz>() {
        return Some(tz);
    }
    let parts: Vec<&str> = tzid.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).find_map(|i| parts[i..].join("/").parse::<Tz>().ok())
}

/// `local` in `tz`: a time the clocks skip is read after the gap (as RFC
/// 5545 says), one they repeat at its first occurrence.
fn local_instant(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        chrono::LocalResult::None => {
            let later = local + Duration::hours(1);
            tz.from_local_datetime(&later)
                .earliest()
                .map_or_else(|| Utc.from_utc_datetime(&local), |t| t.with_timezone(&Utc))
        }
    }
}

/// The first instant of local date `day` in `zone`.
fn midnight(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    local_instant(day.and_time(NaiveTime::MIN), zone)
}

#[cfg(test)]
mod tests;
