//! The one booking rule: whether a resource can take a claim on a range,
//! given what it already holds.
//!
//! The write side admits reservations and holds by it, and the conflict
//! check, availability and the free-resource search answer by it, so they
//! can never disagree. It combines the resource's seats, its booking
//! policy (buffers, minimum notice, booking horizon), its working hours in
//! its own time zone, and its capacity.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::availability::{subtract, working_periods};
use crate::capacity::{blocking_reservations, full_periods};
use crate::duration::IsoDuration;
use crate::error::Validator;
use crate::time::TimeRange;
use crate::working_hours::WorkingWindow;

/// The longest set-up or clean-up buffer.
pub const MAX_BUFFER: IsoDuration = IsoDuration::DAY;

/// A resource's booking policy; every part is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BookingPolicy {
    /// Set-up time: a reservation occupies the resource this long before
    /// its start (at most `P1D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_before: Option<IsoDuration>,
    /// Clean-up time: a reservation occupies the resource this long after
    /// its end (at most `P1D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_after: Option<IsoDuration>,
    /// A reservation may not start sooner than this from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_notice: Option<IsoDuration>,
    /// A reservation may not start later than this from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_advance: Option<IsoDuration>,
    /// A booking holding the resource must be checked in (from an hour
    /// before its start) by its start plus this; from then on its
    /// reservations here stop counting and it is recorded as a no-show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_within: Option<IsoDuration>,
    /// A booking holding the resource that is still `requested` this long
    /// after its reservation was made stops counting here and is
    /// cancelled (`booking.expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<IsoDuration>,
}

impl BookingPolicy {
    /// Whether no part is set (nothing to record).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn before(&self) -> Duration {
        self.buffer_before.unwrap_or_default().to_duration()
    }

    fn after(&self) -> Duration {
        self.buffer_after.unwrap_or_default().to_duration()
    }

    /// Validates the parts; errors name `policy.<part>`.
    pub fn validate(&self, v: &mut Validator) {
        for (value, name) in [
            (self.buffer_before, "buffer_before"),
            (self.buffer_after, "buffer_after"),
        ] {
            v.check(
                value.is_none_or(|d| d <= MAX_BUFFER),
                format!("policy.{name}"),
                "must be at most P1D",
            );
        }
        for (value, name) in [
            (self.check_in_within, "check_in_within"),
            (self.approval_timeout, "approval_timeout"),
        ] {
            v.check(
                value.is_none_or(|d| !d.is_zero()),
                format!("policy.{name}"),
                "must be longer than zero",
            );
        }
        if let (Some(notice), Some(advance)) = (self.min_notice, self.max_advance) {
            v.check(
                notice < advance,
                "policy.max_advance",
                "must be longer than min_notice",
            );
        }
    }
}

/// What the rule needs to know of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRules {
    /// Parallel reservations it can hold.
    pub capacity: u32,
    /// How many people it holds, if it says.
    pub seats: Option<u32>,
    /// The zone its working hours are in.
    pub timezone: Tz,
    /// Weekly working windows; empty means always available.
    pub working_hours: Vec<WorkingWindow>,
    /// Buffers, notice and horizon.
    pub policy: BookingPolicy,
}

/// A claim on a resource: a reservation (or a hold) that wants a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The range it wants, buffers not included.
    pub range: TimeRange,
    /// The booking's headcount, checked against the seats (holds have none).
    pub headcount: Option<u32>,
    /// A planner's override of the working hours, recorded in the event.
    pub outside_working_hours: bool,
}

/// Why a resource refuses a claim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The headcount exceeds the resource's seats.
    SeatsExceeded {
        /// The resource's seats.
        seats: u32,
        /// The booking's headcount.
        headcount: u32,
    },
    /// The claim starts sooner than the minimum notice allows.
    TooSoon {
        /// The earliest start allowed now.
        earliest: DateTime<Utc>,
    },
    /// The claim starts later than the booking horizon allows.
    TooFarAhead {
        /// The latest start allowed now.
        latest: DateTime<Utc>,
    },
    /// The claim leaves the resource's working hours.
    OutsideWorkingHours,
    /// The resource is full: the indexes of the existing ranges in the way.
    Full(Vec<usize>),
}

impl Refusal {
    /// The refusal's stable name, as every answer (a command's 409, the
    /// conflict check, a skipped occurrence of a series) gives it.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SeatsExceeded { .. } => "seats-exceeded",
            Refusal::TooSoon { .. } => "too-soon",
            Refusal::TooFarAhead { .. } => "too-far-ahead",
            Refusal::OutsideWorkingHours => "outside-working-hours",
            Refusal::Full(_) => "reservation-conflict",
        }
    }
}

impl ResourceRules {
    /// A resource with no policy, seats or working hours: only capacity.
    pub fn capacity_only(capacity: u32) -> Self {
        Self {
            capacity,
            seats: None,
            timezone: Tz::UTC,
            working_hours: Vec::new(),
            policy: BookingPolicy::default(),
        }
    }

    /// What a reservation of `range` occupies for capacity: its range with
    /// the set-up and clean-up buffers around it.
    pub fn occupied(&self, range: &TimeRange) -> TimeRange {
        TimeRange {
            starts_at: range.starts_at - self.policy.before(),
            ends_at: range.ends_at + self.policy.after(),
        }
    }

    /// When a booking starting at `booking_start` must be checked in by,
    /// for its reservations here to keep counting; `None`: never.
    pub fn check_in_by(&self, booking_start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.policy
            .check_in_within
            .map(|d| booking_start + d.to_duration())
    }

    /// When a reservation made at `now` of a booking still awaiting
    /// approval stops counting here unless the booking is confirmed;
    /// `None`: never.
    pub fn approve_by(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.policy.approval_timeout.map(|d| now + d.to_duration())
    }

    /// How far outside a claim's range another reservation can start or
    /// end and still compete with it: both buffers.
    pub fn reach(&self) -> Duration {
        self.policy.before() + self.policy.after()
    }

    /// Whether the resource takes `claim` at `now`, given the ranges it
    /// already holds (`existing`, buffers not included; any of them, those
    /// far from the claim are ignored).
    pub fn admits(
        &self,
        claim: &Claim,
        existing: &[TimeRange],
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        self.admits_range(claim, now)?;
        let occupied: Vec<TimeRange> = existing.iter().map(|r| self.occupied(r)).collect();
        let blocking =
            blocking_reservations(&occupied, &self.occupied(&claim.range), self.capacity);
        if blocking.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Full(blocking))
        }
    }

    /// The parts of the rule that do not depend on other reservations:
    /// seats, notice, horizon and working hours.
    pub fn admits_range(&self, claim: &Claim, now: DateTime<Utc>) -> Result<(), Refusal> {
        if let (Some(seats), Some(headcount)) = (self.seats, claim.headcount)
            && headcount > seats
        {
            return Err(Refusal::SeatsExceeded { seats, headcount });
        }
        let starts_at = claim.range.starts_at;
        if let Some(notice) = self.policy.min_notice {
            let earliest = now + notice.to_duration();
            if starts_at < earliest {
                return Err(Refusal::TooSoon { earliest });
            }
        }
        if let Some(advance) = self.policy.max_advance {
            let latest = now + advance.to_duration();
            if starts_at > latest {
                return Err(Refusal::TooFarAhead { latest });
            }
        }
        if !claim.outside_working_hours && !self.within_working_hours(&claim.range) {
            return Err(Refusal::OutsideWorkingHours);
        }
        Ok(())
    }

    /// Whether `range` lies within the working hours (windows that join,
    /// such as 18:00–24:00 and 00:00–06:00 the next day, count as one).
    pub fn within_working_hours(&self, range: &TimeRange) -> bool {
        if self.working_hours.is_empty() {
            return true;
        }
        matches!(
            working_periods(self.timezone, &self.working_hours, range).as_slice(),
            [only] if only == range
        )
    }

    /// The maximal ranges within `window` in which a claim of `duration`
    /// may start and be admitted at `now`, given `existing`: any start in
    /// `[slot.starts_at, slot.ends_at - duration]` fits (seats aside).
    ///
    /// It is [`ResourceRules::admits`] turned around: working hours (the
    /// claim itself must lie in them), notice and horizon (they bound the
    /// start), and capacity with buffers (a claim must stay clear of the
    /// full periods widened by the buffers on the facing sides).
    pub fn free_slots(
        &self,
        existing: &[TimeRange],
        window: &TimeRange,
        duration: Duration,
        now: DateTime<Utc>,
    ) -> Vec<TimeRange> {
        let mut bounds = *window;
        if let Some(notice) = self.policy.min_notice {
            bounds.starts_at = bounds.starts_at.max(now + notice.to_duration());
        }
        if let Some(advance) = self.policy.max_advance {
            bounds.ends_at = bounds.ends_at.min(now + advance.to_duration() + duration);
        }
        if bounds.starts_at >= bounds.ends_at {
            return Vec::new();
        }
        let open = if self.working_hours.is_empty() {
            vec![bounds]
        } else {
            working_periods(self.timezone, &self.working_hours, &bounds)
        };
        // A claim's occupied range [s - before, e + after) must miss every
        // full period F, so its own range must miss [F.start - after,
        // F.end + before).
        let occupied: Vec<TimeRange> = existing.iter().map(|r| self.occupied(r)).collect();
        let reach = self.occupied(&bounds);
        let avoid: Vec<TimeRange> = full_periods(&occupied, &reach, self.capacity)
            .into_iter()
            .map(|f| TimeRange {
                starts_at: f.starts_at - self.policy.after(),
                ends_at: f.ends_at + self.policy.before(),
            })
            .collect();
        subtract(&open, &avoid)
            .into_iter()
            .filter(|slot| slot.ends_at - slot.starts_at >= duration)
            .collect()
    }
}

#[cfg(test)]
mod tests;
