//! Recurring series: book one booking per occurrence of a rule in one
//! commit (all or nothing, or skipping the occurrences that cannot be
//! booked), and cancel a series from an instant on.

use chrono::{DateTime, Utc};
use muster_domain::booking::{
    Booking, BookingCommand, BookingDetails, BookingStatus, Reservation, charge_of,
};
use muster_domain::policy::Claim;
use muster_domain::quota::Charge;
use muster_domain::series::{
    MAX_RESERVATIONS, Occurrence, Recurrence, Series, SeriesCommand, SeriesCreated,
    SkippedOccurrence, shift_local,
};
use muster_domain::time::TimeRange;
use muster_store::CommandContext;
use muster_store::QuotaExceeded;
use muster_store::ledger::Availability;
use muster_store::quotas::QuotaBook;
use uuid::Uuid;

use crate::bookings::{Claimed, ReservationRequest};
use crate::decision::{Decision, Plan, Query, Read};
use crate::{Answer, App, Refusal};

/// What a series does with occurrences that cannot be booked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Nothing is booked; the refusal lists them.
    #[default]
    Fail,
    /// The others are booked; the answer lists them as skipped.
    Skip,
}

/// One occurrence as it would be booked.
struct Planned {
    booking_id: Uuid,
    details: BookingDetails,
    reservations: Vec<Reservation>,
}

/// Books a series: every occurrence gets a booking like the template, its
/// times (and its reservations') shifted to that occurrence in the
/// recurrence's zone. The write side's rule is asked about every
/// occurrence first (one read), which decides what to skip or whether to
/// refuse; the commit checks each reservation again under its resource's
/// lock, so a race lost between the two refuses the whole series.
struct RequestSeries {
    series_id: Uuid,
    recurrence: Recurrence,
    title: String,
    planned: Vec<Planned>,
    on_conflict: OnConflict,
    /// The tenant's quotas and what they count now in the periods the
    /// occurrences fall in (empty: no quotas); the commit checks again.
    quotas: QuotaBook,
    /// The API key the occurrences are booked in the name of.
    key: String,
}

impl RequestSeries {
    fn plan(
        template: BookingDetails,
        reservations: Vec<ReservationRequest>,
        recurrence: Recurrence,
        on_conflict: OnConflict,
    ) -> Result<Self, Refusal> {
        let mut shapes = Vec::with_capacity(reservations.len());
        for r in reservations {
            match r.claimed {
                Claimed::Range {
                    resource_id,
                    starts_at,
                    ends_at,
                } => shapes.push(Reservation {
                    reservation_id: Uuid::nil(),
                    resource_id,
                    starts_at,
                    ends_at,
                    label: r.label,
                    outside_working_hours: r.outside_working_hours,
                    hold_id: None,
                    pool_id: None,
                }),
                Claimed::Hold(_) => {
                    return Err(Refusal::invalid(
                        "recurrence",
                        "a series cannot convert holds",
                    ));
                }
                Claimed::Pick(_) => {
                    return Err(Refusal::invalid(
                        "recurrence",
                        "a series names its resources: pools and any_of are for single bookings",
                    ));
                }
            }
        }
        TimeRange::new(template.starts_at, template.ends_at, "")
            .map_err(|e| Refusal::Invalid { errors: vec![e] })?;
        let starts = recurrence.occurrences(template.starts_at)?;
        if starts.len() * shapes.len().max(1) > MAX_RESERVATIONS {
            return Err(Refusal::invalid(
                "recurrence.rule",
                format!(
                    "a series holds at most {MAX_RESERVATIONS} reservations in all ({} occurrences × {} reservations)",
                    starts.len(),
                    shapes.len()
                ),
            ));
        }
        let tz = recurrence.zone()?;
        let series_id = Uuid::now_v7();
        let first = template.starts_at;
        let planned = starts
            .iter()
            .map(|&start| Planned {
                booking_id: Uuid::now_v7(),
                details: BookingDetails {
                    starts_at: shift_local(tz, template.starts_at, first, start),
                    ends_at: shift_local(tz, template.ends_at, first, start),
                    series_id: Some(series_id),
                    ..template.clone()
                },
                reservations: shapes
                    .iter()
                    .map(|r| Reservation {
                        reservation_id: Uuid::now_v7(),
                        starts_at: shift_local(tz, r.starts_at, first, start),
                        ends_at: shift_local(tz, r.ends_at, first, start),
                        ..r.clone()
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            series_id,
            title: template.title,
            recurrence,
            planned,
            on_conflict,
            quotas: QuotaBook::default(),
            key: String::new(),
        })
    }

    /// Every reservation of every occurrence as a claim, in order.
    fn claims(&self) -> impl Iterator<Item = (usize, &Reservation, Claim)> {
        self.planned.iter().enumerate().flat_map(|(i, p)| {
            p.reservations.iter().map(move |r| {
                (
                    i,
                    r,
                    Claim {
                        range: r.range(),
                        headcount: Some(p.details.headcount),
                        outside_working_hours: r.outside_working_hours,
                    },
                )
            })
        })
    }

    /// The occurrences (by index) the write side's rule refuses, with why.
    fn blocked(&self, read: &Read) -> Result<Vec<(usize, SkippedOccurrence)>, Refusal> {
        let mut blocked: Vec<(usize, SkippedOccurrence)> = Vec::new();
        for ((i, reservation, _), (resource_id, availability)) in
            self.claims().zip(read.availability())
        {
            let (reason, conflicts) = match availability {
                Availability::Free => continue,
                Availability::Conflicts(c) => ("reservation-conflict", c.as_slice()),
                Availability::Refused(refusal) => (refusal.reason(), &[][..]),
                Availability::Retired => ("resource-retired", &[][..]),
                Availability::Unknown => {
                    let at = self.planned[i]
                        .reservations
                        .iter()
                        .position(|r| r.reservation_id == reservation.reservation_id)
                        .unwrap_or(0);
                    return Err(Refusal::invalid(
                        format!("reservations[{at}].resource_id"),
                        format!("no resource {resource_id}"),
                    ));
                }
            };
            let conflicts = conflicts
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or_default());
            match blocked.last_mut() {
                Some((last, skipped)) if *last == i => skipped.conflicts.extend(conflicts),
                _ => blocked.push((
                    i,
                    SkippedOccurrence {
                        starts_at: self.planned[i].details.starts_at,
                        ends_at: self.planned[i].details.ends_at,
                        reason: reason.to_owned(),
                        conflicts: conflicts.collect(),
                    },
                )),
            }
        }
        Ok(blocked)
    }

    /// What each occurrence counts for under quotas.
    fn charges(&self) -> impl Iterator<Item = (Uuid, Charge)> + '_ {
        self.planned
            .iter()
            .map(|p| (p.booking_id, charge_of(&p.details, &p.reservations)))
    }

    /// Adds to `blocked` (in occurrence order) the occurrences that a
    /// quota refuses, counting the ones booked before each; answers the
    /// first quota passed.
    fn over_quota(
        &self,
        blocked: &mut Vec<(usize, SkippedOccurrence)>,
    ) -> Option<Box<QuotaExceeded>> {
        let mut first = None;
        if self.quotas.is_empty() {
            return first;
        }
        let mut book = self.quotas.clone();
        for (i, (booking_id, charge)) in self.charges().enumerate() {
            if blocked.iter().any(|(b, _)| *b == i) {
                continue;
            }
            if let Err(exceeded) = book.admit(booking_id, &charge, &self.key) {
                let at = blocked.partition_point(|(b, _)| *b < i);
                blocked.insert(
                    at,
                    (
                        i,
                        SkippedOccurrence {
                            starts_at: self.planned[i].details.starts_at,
                            ends_at: self.planned[i].details.ends_at,
                            reason: "quota-exceeded".to_owned(),
                            conflicts: vec![serde_json::to_value(&exceeded).unwrap_or_default()],
                        },
                    ),
                );
                first.get_or_insert(exceeded);
            }
        }
        first
    }
}

impl Decision for RequestSeries {
    type On = Series;

    fn name(&self) -> &'static str {
        "series.request"
    }

    fn stream_id(&self) -> Uuid {
        self.series_id
    }

    fn query(&self, _: &Read) -> Query {
        Query::default().claims(
            self.claims()
                .map(|(_, r, claim)| (r.resource_id, claim))
                .collect(),
        )
    }

    fn decide(&self, read: &Read) -> Result<Plan<Series>, Refusal> {
        let mut blocked = self.blocked(read)?;
        let in_the_way = blocked.len();
        let over_quota = self.over_quota(&mut blocked);
        if (self.on_conflict == OnConflict::Fail && !blocked.is_empty())
            || blocked.len() == self.planned.len()
        {
            // Only quotas in the way: the refusal is the first quota's.
            if in_the_way == 0
                && let Some(exceeded) = over_quota
            {
                return Err(Refusal::QuotaExceeded(exceeded));
            }
            return Err(Refusal::SeriesConflict {
                occurrences: blocked.into_iter().map(|(_, s)| s).collect(),
            });
        }
        let (skipped_at, skipped): (Vec<usize>, Vec<SkippedOccurrence>) =
            blocked.into_iter().unzip();
        let booked: Vec<&Planned> = self
            .planned
            .iter()
            .enumerate()
            .filter(|(i, _)| !skipped_at.contains(i))
            .map(|(_, p)| p)
            .collect();
        let created = SeriesCreated {
            recurrence: self.recurrence.clone(),
            title: self.title.clone(),
            bookings: booked
                .iter()
                .map(|p| Occurrence {
                    booking_id: p.booking_id,
                    starts_at: p.details.starts_at,
                    ends_at: p.details.ends_at,
                })
                .collect(),
            skipped,
        };
        Ok(booked
            .into_iter()
            .fold(Plan::new(SeriesCommand::Create(created)), |plan, p| {
                plan.link::<Booking>(
                    p.booking_id,
                    BookingCommand::Request {
                        details: p.details.clone(),
                        reservations: p.reservations.clone(),
                    },
                )
            }))
    }

    fn resource_field(&self, _: Uuid) -> String {
        "reservations".to_owned()
    }
}

/// Cancels a series from an instant on: its bookings starting then or
/// later that are still requested or confirmed, with `series.cancelled`.
struct CancelSeries {
    series_id: Uuid,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
}

impl CancelSeries {
    fn bookings<'r>(&self, read: &'r Read) -> impl Iterator<Item = Uuid> + 'r {
        let from = self.from;
        read.state::<Series>(self.series_id)
            .and_then(|s| s.created.as_ref())
            .into_iter()
            .flat_map(move |c| c.bookings.iter().filter(move |o| o.starts_at >= from))
            .map(|o| o.booking_id)
    }
}

impl Decision for CancelSeries {
    type On = Series;

    fn name(&self) -> &'static str {
        "series.cancel"
    }

    fn stream_id(&self) -> Uuid {
        self.series_id
    }

    fn query(&self, read: &Read) -> Query {
        Query::default()
            .stream::<Series>(self.series_id)
            .streams::<Booking>(self.bookings(read))
    }

    fn decide(&self, read: &Read) -> Result<Plan<Series>, Refusal> {
        if read
            .state::<Series>(self.series_id)
            .and_then(|s| s.created.as_ref())
            .is_none()
        {
            return Err(Refusal::NotFound {
                what: "series".into(),
            });
        }
        let open = self.bookings(read).filter(|&id| {
            matches!(
                read.state::<Booking>(id).and_then(|b| b.status),
                Some(BookingStatus::Requested | BookingStatus::Confirmed)
            )
        });
        Ok(open.fold(
            Plan::new(SeriesCommand::Cancel { from: self.from }),
            |plan, id| {
                plan.link::<Booking>(
                    id,
                    BookingCommand::Cancel {
                        reason: Some("the series was cancelled".into()),
                        now: self.now,
                    },
                )
            },
        ))
    }

    fn resource_field(&self, _: Uuid) -> String {
        "from".to_owned()
    }
}

impl App {
    /// Books a series: one booking like `template` per occurrence of
    /// `recurrence`, each with `reservations` shifted to it, in one commit
    /// with `series.created`. With [`OnConflict::Fail`] any occurrence the
    /// write side's rule refuses refuses the series (listing each); with
    /// [`OnConflict::Skip`] those are left out and listed.
    pub async fn request_series(
        &self,
        ctx: &CommandContext,
        template: BookingDetails,
        reservations: Vec<ReservationRequest>,
        recurrence: Recurrence,
        on_conflict: OnConflict,
    ) -> Answer<Series> {
        let decision = match RequestSeries::plan(template, reservations, recurrence, on_conflict) {
            Ok(mut series) => {
                let charges: Vec<(Uuid, Charge)> = series.charges().collect();
                let charges: Vec<&Charge> = charges.iter().map(|(_, c)| c).collect();
                series.quotas = self
                    .store
                    .quota_book(&ctx.tenant, &ctx.actor, &charges)
                    .await?;
                series.key.clone_from(&ctx.actor);
                Ok(series)
            }
            Err(refusal) => Err(refusal),
        };
        let answer = self.run_or_refuse(ctx, decision).await?;
        let outcome = if answer.executed().is_some() {
            "created"
        } else {
            "refused"
        };
        metrics::counter!("muster_series_total", "outcome" => outcome).increment(1);
        Ok(answer)
    }

    /// Cancels series `id` from `from` on.
    pub async fn cancel_series(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        from: DateTime<Utc>,
    ) -> Answer<Series> {
        let decision = CancelSeries {
            series_id: id,
            from,
            now: Utc::now(),
        };
        self.run(ctx, decision).await
    }
}
