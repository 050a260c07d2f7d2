//! Quotas: how much a client, a resource, a pool or an API key may book
//! per day, week or month in a time zone, by count or by hours.
//!
//! A quota is configuration (like a webhook), not a stream. What it limits
//! is decided here, purely: a booking's or hold's [`Charge`] (what it
//! counts for while it counts) becomes, under each quota, the
//! [`ChargeLine`]s it adds to a subject's period. The store counts the
//! lines already there under a lock of each (quota, subject, period), in
//! the command's transaction, and refuses the command whose lines would
//! pass a limit.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, FieldError};

/// The largest `max_bookings` a quota may set.
pub const MAX_BOOKINGS: u32 = 100_000;
/// The largest `max_hours` a quota may set.
pub const MAX_HOURS: f64 = 100_000.0;
/// The most subjects a quota may name.
pub const MAX_SUBJECTS: usize = 1_000;

/// Whose bookings a quota counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    /// A client, by email address (case-insensitive).
    Client,
    /// A resource: the bookings and holds reserving it.
    Resource,
    /// A pool: the reservations picked from it.
    Pool,
    /// An API key: the bookings and holds it made.
    Key,
}

impl QuotaScope {
    /// Its name in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaScope::Client => "client",
            QuotaScope::Resource => "resource",
            QuotaScope::Pool => "pool",
            QuotaScope::Key => "key",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Client, Self::Resource, Self::Pool, Self::Key]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// The calendar period a quota's limit applies to, in its time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// A local day, midnight to midnight.
    Day,
    /// A local ISO week, Monday to Monday.
    Week,
    /// A local calendar month.
    Month,
}

impl QuotaPeriod {
    /// Its name in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Week => "week",
            QuotaPeriod::Month => "month",
        }
    }

    /// The period named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Day, Self::Week, Self::Month]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    /// The period of this kind that contains `at` in `tz`, as instants
    /// `[start, end)`. Local midnights that a DST change skips start at
    /// the first instant after the gap.
    pub fn containing(self, at: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = at.with_timezone(&tz).date_naive();
        let (first, next) = match self {
            QuotaPeriod::Day => (day, day + Duration::days(1)),
            QuotaPeriod::Week => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            QuotaPeriod::Month => {
                let first = day.with_day(1).unwrap_or(day);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next.unwrap_or(first + Duration::days(31)))
            }
        };
        (local_midnight(first, tz), local_midnight(next, tz))
    }
}

/// The first instant of local date `date` in `tz`.
fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut time = date.and_time(NaiveTime::MIN);
    // A DST gap at midnight: the day starts when the clocks jump to.
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&time).earliest() {
            return t.with_timezone(&Utc);
        }
        time += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// What a quota allows per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaLimit {
    /// At most this many bookings (and holds).
    Bookings(u32),
    /// At most this many minutes booked.
    Minutes(i64),
}

/// A quota as defined: `PUT /v1/quotas/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSpec {
    /// Whose bookings it counts together.
    pub scope: QuotaScope,
    /// The period its limit applies to.
    pub period: QuotaPeriod,
    /// The limit.
    pub limit: QuotaLimit,
    /// The zone its periods are local to.
    pub timezone: Tz,
    /// The subjects it applies to (emails in lower case, resource, pool or
    /// key ids); empty: every subject of its scope.
    pub subjects: Vec<String>,
}

/// A quota definition as sent, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    /// `client`, `resource`, `pool` or `key`.
    pub scope: Option<String>,
    /// `day`, `week` or `month`.
    pub period: Option<String>,
    /// At most this many bookings per period.
    pub max_bookings: Option<i64>,
    /// At most this many hours booked per period.
    pub max_hours: Option<f64>,
    /// IANA zone of the periods (default UTC).
    pub timezone: Option<String>,
    /// Only these subjects (default: every subject of the scope).
    pub subjects: Option<Vec<String>>,
}

/// Whether `name` can name a quota: 1–64 letters, digits, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl QuotaInput {
    /// The quota it defines, or every field that is wrong. Subjects are
    /// checked for their form here; whether they exist is the caller's
    /// (they live in other aggregates).
    pub fn validate(self) -> Result<QuotaSpec, DomainError> {
        let mut errors = Vec::new();
        let scope = match self.scope.as_deref().map(QuotaScope::parse) {
            Some(Some(s)) => Some(s),
            Some(None) => {
                errors.push(FieldError::new(
                    "scope",
                    "must be client, resource, pool or key",
                ));
                None
            }
            None => {
                errors.push(FieldError::new("scope", "is required"));
                None
            }
        };
        let period = match self.period.as_deref().map(QuotaPeriod::parse) {
            Some(Some(p)) => Some(p),
            Some(None) => {
                errors.push(FieldError::new("period", "must be day, week or month"));
                None
            }
            None => {
                errors.push(FieldError::new("period", "is required"));
                None
            }
        };
        let limit = match (self.max_bookings, self.max_hours) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "max_hours",
                    "give max_bookings or max_hours, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(FieldError::new(
                    "max_bookings",
                    "give max_bookings or max_hours",
                ));
                None
            }
            (Some(n), None) => match u32::try_from(n) {
                Ok(n) if (1..=MAX_BOOKINGS).contains(&n) => Some(QuotaLimit::Bookings(n)),
                _ => {
                    errors.push(FieldError::new(
                        "max_bookings",
                        format!("must be between 1 and {MAX_BOOKINGS}"),
                    ));
                    None
                }
            },
            (None, Some(h)) => {
                let minutes = h * 60.0;
                if h.is_finite() && h > 0.0 && h <= MAX_HOURS && minutes.fract() == 0.0 {
                    Some(QuotaLimit::Minutes(minutes as i64))
                } else {
                    errors.push(FieldError::new(
                        "max_hours",
                        format!("must be more than 0 and at most {MAX_HOURS}, in whole minutes"),
                    ));
                    None
                }
            }
        };
        let timezone = match self.timezone.as_deref() {
            None => Some(chrono_tz::UTC),
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    errors.push(FieldError::new("timezone", "must be an IANA time zone"));
                    None
                }
            },
        };
        let mut subjects = self.subjects.unwrap_or_default();
        if subjects.len() > MAX_SUBJECTS {
            errors.push(FieldError::new(
                "subjects",
                format!("at most {MAX_SUBJECTS} subjects"),
            ));
        }
        if let Some(scope) = scope {
            for (i, subject) in subjects.iter_mut().enumerate() {
                match normal_subject(scope, subject) {
                    Some(s) => *subject = s,
                    None => errors.push(FieldError::new(
                        format!("subjects[{i}]"),
                        match scope {
                            QuotaScope::Client => "must be an email address",
                            QuotaScope::Resource => "must be a resource id",
                            QuotaScope::Pool => "must be a pool id",
                            QuotaScope::Key => "must be an API key id",
                        },
                    )),
                }
            }
        }
        subjects.sort();
        subjects.dedup();
        match (scope, period, limit, timezone) {
            (Some(scope), Some(period), Some(limit), Some(timezone)) if errors.is_empty() => {
                Ok(QuotaSpec {
                    scope,
                    period,
                    limit,
                    timezone,
                    subjects,
                })
            }
            _ => Err(DomainError::Invalid(errors)),
        }
    }
}

/// `subject` as a quota of `scope` stores it, or `None`: not a subject
/// of that scope. Emails compare case-insensitively, so they are kept in
/// lower case; ids are kept in their canonical form.
pub fn normal_subject(scope: QuotaScope, subject: &str) -> Option<String> {
    match scope {
        QuotaScope::Client => {
            let s = subject.trim();
            (s.contains('@')
                && s.len() <= 254
                && !s.chars().any(|c| c.is_whitespace() || c.is_control()))
            .then(|| s.to_lowercase())
        }
        QuotaScope::Resource | QuotaScope::Pool | QuotaScope::Key => {
            Uuid::parse_str(subject).ok().map(|id| id.to_string())
        }
    }
}

/// One reservation a charge counts (its resource and, when a pool picked
/// it, the pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedReservation {
    /// The reserved resource.
    pub resource_id: Uuid,
    /// The pool it was picked from.
    pub pool_id: Option<Uuid>,
    /// Its start.
    pub starts_at: DateTime<Utc>,
    /// Its end.
    pub ends_at: DateTime<Utc>,
}

/// What a booking or a hold counts for while it counts: its client, its
/// range and its reservations. Holds have no client and stop counting at
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The client's email in lower case, if the booking has one.
    pub client: Option<String>,
    /// Start of the booking (or hold).
    pub starts_at: DateTime<Utc>,
    /// Its end.
    pub ends_at: DateTime<Utc>,
    /// What it reserves.
    pub reservations: Vec<ChargedReservation>,
    /// A hold's expiry: it stops counting then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a charge adds to one subject's period under one quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeLine {
    /// The subject (as [`normal_subject`] keeps it).
    pub subject: String,
    /// The first instant of the period.
    pub period_start: DateTime<Utc>,
    /// Minutes it books in that subject's name.
    pub minutes: i64,
}

impl QuotaSpec {
    /// The lines `charge` adds under this quota; `key` is the API key the
    /// charge is made in the name of. A client quota counts the booking's
    /// own range in the period it starts in; a resource or pool quota the
    /// reservations on each resource (or from each pool), in the period the
    /// first of them starts in.
    pub fn lines(&self, charge: &Charge, key: &str) -> Vec<ChargeLine> {
        let whole = |subject: String| ChargeLine {
            subject,
            period_start: self.period.containing(charge.starts_at, self.timezone).0,
            minutes: (charge.ends_at - charge.starts_at).num_minutes().max(0),
        };
        let mut lines: Vec<ChargeLine> = match self.scope {
            QuotaScope::Client => charge.client.clone().map(whole).into_iter().collect(),
            QuotaScope::Key => vec![whole(key.to_owned())],
            QuotaScope::Resource | QuotaScope::Pool => {
                let mut by_subject: Vec<(String, DateTime<Utc>, i64)> = Vec::new();
                for r in &charge.reservations {
                    let subject = match self.scope {
                        QuotaScope::Resource => r.resource_id,
                        _ => match r.pool_id {
                            Some(pool) => pool,
                            None => continue,
                        },
                    }
                    .to_string();
                    let minutes = (r.ends_at - r.starts_at).num_minutes().max(0);
                    match by_subject.iter_mut().find(|(s, _, _)| *s == subject) {
                        Some((_, first, total)) => {
                            *first = (*first).min(r.starts_at);
                            *total += minutes;
                        }
                        None => by_subject.push((subject, r.starts_at, minutes)),
                    }
                }
                by_subject
                    .into_iter()
                    .map(|(subject, first, minutes)| ChargeLine {
                        subject,
                        period_start: self.period.containing(first, self.timezone).0,
                        minutes,
                    })
                    .collect()
            }
        };
        if !self.subjects.is_empty() {
            lines.retain(|l| self.subjects.binary_search(&l.subject).is_ok());
        }
        lines
    }

    /// Whether a period with `used` bookings and `used_minutes` minutes
    /// may take `line` too.
    pub fn admits(&self, used: i64, used_minutes: i64, line: &ChargeLine) -> bool {
        match self.limit {
            QuotaLimit::Bookings(max) => used < i64::from(max),
            QuotaLimit::Minutes(max) => used_minutes + line.minutes <= max,
        }
    }
}

#[cfg(test)]
mod tests;
