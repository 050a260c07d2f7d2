//! Recurring series: one booking per occurrence of an RFC 5545 RRULE in a
//! time zone, each keeping the first booking's local wall-clock times in
//! that zone across DST changes (a weekly 09:00 Europe/Berlin booking is
//! 08:00Z in winter and 07:00Z in summer).
//!
//! The Series aggregate records which bookings a series created (and which
//! occurrences it skipped) and from when it was cancelled; the bookings
//! themselves are ordinary bookings carrying the series id.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventDecodeError, decode, payload_of};
use crate::{Aggregate, DomainError, DomainEvent, FieldError};

/// Most occurrences one series may have.
pub const MAX_OCCURRENCES: usize = 500;
/// How far after the first occurrence the last may start.
pub const MAX_SPAN: Duration = Duration::days(731);
/// Most reservations a whole series may hold (occurrences × reservations).
pub const MAX_RESERVATIONS: usize = 5_000;

/// A recurrence: an RRULE (without DTSTART: the booking's start is it) and
/// the zone its wall-clock times are kept in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// `FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10`, as in RFC 5545.
    pub rule: String,
    /// IANA zone.
    pub timezone: String,
}

impl Recurrence {
    /// The starts of every occurrence of a series whose first booking
    /// starts at `first`, in order: at most [`MAX_OCCURRENCES`], within
    /// [`MAX_SPAN`] of `first`, or a validation error naming
    /// `recurrence.rule` or `recurrence.timezone`.
    pub fn occurrences(&self, first: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, DomainError> {
        let tz = self.zone()?;
        let rule = self.rule.trim();
        let invalid = |message: String| {
            DomainError::Invalid(vec![FieldError::new("recurrence.rule", message)])
        };
        if rule.is_empty() || rule.chars().count() > 1000 {
            return Err(invalid(
                "must be an RRULE of at most 1000 characters".into(),
            ));
        }
        let upper = rule.to_ascii_uppercase();
        if upper.contains("DTSTART") || upper.starts_with("RRULE:") || upper.contains('\n') {
            return Err(invalid(
                "the rule's parts only (FREQ=WEEKLY;COUNT=10): the booking's start is its DTSTART"
                    .into(),
            ));
        }
        let parsed: rrule::RRule<rrule::Unvalidated> = rule
            .parse()
            .map_err(|e| invalid(format!("not an RRULE: {e}")))?;
        let start = first.with_timezone(&rrule::Tz::Tz(tz));
        let set = parsed
            .build(start)
            .map_err(|e| invalid(format!("not a usable RRULE: {e}")))?;
        let limit = u16::try_from(MAX_OCCURRENCES + 1).unwrap_or(u16::MAX);
        let found = set.all(limit);
        if found.dates.len() > MAX_OCCURRENCES {
            return Err(invalid(format!(
                "has more than {MAX_OCCURRENCES} occurrences (bound it with COUNT or UNTIL)"
            )));
        }
        let starts: Vec<DateTime<Utc>> =
            found.dates.iter().map(|d| d.with_timezone(&Utc)).collect();
        if starts.is_empty() {
            return Err(invalid("has no occurrence".into()));
        }
        if starts.last().is_some_and(|last| *last - first > MAX_SPAN) {
            return Err(invalid(format!(
                "reaches more than {} days past the first occurrence",
                MAX_SPAN.num_days()
            )));
        }
        Ok(starts)
    }

    /// The zone, or a validation error naming `recurrence.timezone`.
    pub fn zone(&self) -> Result<Tz, DomainError> {
        self.timezone.parse().map_err(|_| {
            DomainError::Invalid(vec![FieldError::new(
                "recurrence.timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            )])
        })
    }
}

/// `t` moved by the wall-clock distance from `first` to `occurrence` in
/// `tz`: the same local time of day, however many DST changes lie between.
/// A local time the clocks skip moves to the first that exists; one they
/// repeat takes its first occurrence.
pub fn shift_local(
    tz: Tz,
    t: DateTime<Utc>,
    first: DateTime<Utc>,
    occurrence: DateTime<Utc>,
) -> DateTime<Utc> {
    let delta =
        occurrence.with_timezone(&tz).naive_local() - first.with_timezone(&tz).naive_local();
    let mut local: NaiveDateTime = t.with_timezone(&tz).naive_local() + delta;
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(at) => return at.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(early, _) => return early.with_timezone(&Utc),
            chrono::LocalResult::None => local += Duration::minutes(1),
        }
    }
    t + (occurrence - first)
}

/// One booking a series created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// The booking.
    pub booking_id: Uuid,
    /// Its start.
    pub starts_at: DateTime<Utc>,
    /// Its end.
    pub ends_at: DateTime<Utc>,
}

/// An occurrence a series left out (`on_conflict: skip`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedOccurrence {
    /// Its start.
    pub starts_at: DateTime<Utc>,
    /// Its end.
    pub ends_at: DateTime<Utc>,
    /// Why, as the problem type a booking would have met
    /// (`reservation-conflict`, `outside-working-hours`, …).
    pub reason: String,
    /// The reservations in the way, as the conflict check lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<serde_json::Value>,
}

/// Payload of `series.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesCreated {
    /// The rule and zone.
    pub recurrence: Recurrence,
    /// The first booking's title.
    pub title: String,
    /// The bookings created, in order.
    pub bookings: Vec<Occurrence>,
    /// The occurrences left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedOccurrence>,
}

/// Commands on a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesCommand {
    /// Records the series (its bookings are linked commands of the same
    /// transaction).
    Create(SeriesCreated),
    /// Records that the series is cancelled from `from` on (its bookings
    /// starting then or later are cancelled in the same transaction).
    Cancel {
        /// The instant.
        from: DateTime<Utc>,
    },
}

/// Events of a series' stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesEvent {
    /// `series.created`
    Created(SeriesCreated),
    /// `series.cancelled`
    Cancelled {
        /// From when.
        from: DateTime<Utc>,
    },
}

/// A series' state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    /// `None` until created.
    pub created: Option<SeriesCreated>,
    /// The earliest instant it was cancelled from, if it was.
    pub cancelled_from: Option<DateTime<Utc>>,
}

impl Aggregate for Series {
    type Command = SeriesCommand;
    type Event = SeriesEvent;
    const STREAM_TYPE: &'static str = "series";

    fn evolve(&mut self, event: &SeriesEvent) {
        match event {
            SeriesEvent::Created(created) => self.created = Some(created.clone()),
            SeriesEvent::Cancelled { from } => {
                self.cancelled_from = Some(self.cancelled_from.map_or(*from, |f| f.min(*from)));
            }
        }
    }

    fn decide(&self, command: SeriesCommand) -> Result<Vec<SeriesEvent>, DomainError> {
        match command {
            SeriesCommand::Create(created) => {
                if self.created.is_some() {
                    return Err(DomainError::AlreadyExists("series"));
                }
                Ok(vec![SeriesEvent::Created(created)])
            }
            SeriesCommand::Cancel { from } => {
                self.created
                    .as_ref()
                    .ok_or(DomainError::NotFound("series"))?;
                if self.cancelled_from.is_some_and(|f| f <= from) {
                    return Ok(Vec::new());
                }
                Ok(vec![SeriesEvent::Cancelled { from }])
            }
        }
    }
}

impl DomainEvent for SeriesEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SeriesEvent::Created(_) => "series.created",
            SeriesEvent::Cancelled { .. } => "series.cancelled",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            SeriesEvent::Created(created) => payload_of(created),
            SeriesEvent::Cancelled { from } => serde_json::json!({ "from": from }),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Cancelled {
            from: DateTime<Utc>,
        }
        Ok(match event_type {
            "series.created" => SeriesEvent::Created(decode(event_type, payload)?),
            "series.cancelled" => {
                let c: Cancelled = decode(event_type, payload)?;
                SeriesEvent::Cancelled { from: c.from }
            }
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekly(rule: &str, zone: &str) -> Recurrence {
        Recurrence {
            rule: rule.into(),
            timezone: zone.into(),
        }
    }

    #[test]
    fn a_weekly_berlin_booking_keeps_nine_oclock_across_both_dst_changes() {
        // Monday 2027-03-22 09:00 CET (08:00Z); clocks go forward on
        // 2027-03-28 and back on 2027-10-31.
        let first = at("2027-03-22T08:00:00Z");
        let starts = weekly("FREQ=WEEKLY;COUNT=33", "Europe/Berlin")
            .occurrences(first)
            .unwrap();
        assert_eq!(starts.len(), 33);
        assert_eq!(starts[0], first);
        assert_eq!(starts[1], at("2027-03-29T07:00:00Z"), "summer: 09:00 CEST");
        assert_eq!(starts[31], at("2027-10-25T07:00:00Z"), "still summer");
        assert_eq!(
            starts[32],
            at("2027-11-01T08:00:00Z"),
            "winter again: 09:00 CET"
        );
        // The end of a booking and its reservations follow the same way.
        let end = at("2027-03-22T09:30:00Z");
        assert_eq!(
            shift_local(chrono_tz::Europe::Berlin, end, first, starts[1]),
            at("2027-03-29T08:30:00Z")
        );
    }

    #[test]
    fn new_york_changes_on_other_days_and_is_kept_too() {
        // Thursday 2027-03-11 18:00 EST (23:00Z); US clocks go forward on
        // 2027-03-14 and back on 2027-11-07.
        let first = at("2027-03-11T23:00:00Z");
        let starts = weekly(
            "FREQ=WEEKLY;BYDAY=TH;UNTIL=20271112T000000Z",
            "America/New_York",
        )
        .occurrences(first)
        .unwrap();
        assert_eq!(starts[1], at("2027-03-18T22:00:00Z"));
        assert_eq!(*starts.last().unwrap(), at("2027-11-11T23:00:00Z"));
    }

    #[test]
    fn rules_must_be_bounded_parseable_and_without_dtstart() {
        let first = at("2027-01-04T09:00:00Z");
        for rule in [
            "FREQ=DAILY",
            "FREQ=DAILY;COUNT=501",
            "FREQ=WEEKLY;UNTIL=20300101T000000Z",
            "FREQ=SOMETIMES",
            "DTSTART:20270104T090000Z\nRRULE:FREQ=DAILY;COUNT=2",
            "",
        ] {
            let error = weekly(rule, "UTC").occurrences(first).unwrap_err();
            assert!(matches!(error, DomainError::Invalid(_)), "{rule}");
        }
        assert!(
            weekly("FREQ=DAILY;COUNT=500", "UTC")
                .occurrences(first)
                .is_ok()
        );
        assert!(
            weekly("FREQ=DAILY;COUNT=2", "Mars/Olympus")
                .occurrences(first)
                .is_err()
        );
    }

    #[test]
    fn cancelling_keeps_the_earliest_instant() {
        let mut series = Series::default();
        series.evolve(&SeriesEvent::Created(SeriesCreated {
            recurrence: weekly("FREQ=DAILY;COUNT=2", "UTC"),
            title: "Class".into(),
            bookings: Vec::new(),
            skipped: Vec::new(),
        }));
        let later = at("2027-02-01T00:00:00Z");
        let events = series
            .decide(SeriesCommand::Cancel { from: later })
            .unwrap();
        series.evolve(&events[0]);
        assert!(
            series
                .decide(SeriesCommand::Cancel {
                    from: at("2027-03-01T00:00:00Z")
                })
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            series
                .decide(SeriesCommand::Cancel {
                    from: at("2027-01-01T00:00:00Z")
                })
                .unwrap()
                .len(),
            1
        );
    }
}
