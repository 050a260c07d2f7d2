//! Check-in, no-shows and approval that expires (SPEC §12). A resource's
//! `check_in_within` and `approval_timeout` put deadlines on the
//! reservations of the bookings that hold it; past one, those
//! reservations stop counting in every check at once (the write side
//! reads them as a hold's expiry). What is recorded afterwards
//! (`booking.no_show`, `booking.expired`, and the releases that go with
//! them) is the sweeper's: it runs every second beside the hold sweeper.

use chrono::Utc;
use muster_domain::booking::{Booking, BookingCommand};
use muster_store::CommandContext;
use muster_store::holds::Overdue;

use crate::decision::OnStream;
use crate::{Answer, App, AppError, Outcome};

impl App {
    /// Checks booking `id` in (from an hour before its start; refused past
    /// a resource's check-in deadline, when it no longer holds it).
    pub async fn check_in_booking(&self, ctx: &CommandContext, id: uuid::Uuid) -> Answer<Booking> {
        let command = BookingCommand::CheckIn { now: Utc::now() };
        let answer = self
            .on_booking(ctx, "booking.check_in", id, command)
            .await?;
        if answer.executed().is_some() {
            metrics::counter!("muster_check_ins_total").increment(1);
        }
        Ok(answer)
    }

    /// Records what the deadlines that passed a second ago mean: a booking
    /// still requested past its approval deadline expires (cancelled);
    /// one not checked in past its check-in deadline is a no-show. Each
    /// releases what it still holds, which offers it to the waitlist.
    /// Answers how many it recorded.
    pub async fn close_overdue_bookings(&self) -> Result<usize, AppError> {
        let mut closed = 0;
        for overdue in self.store.bookings_past_deadline().await? {
            let Overdue {
                tenant,
                booking_id,
                approval_passed,
                check_in_deadline,
            } = overdue;
            let ctx = crate::system_context(tenant, "system:deadline-sweeper");
            let now = Utc::now();
            let (name, command, outcome) = match (approval_passed, check_in_deadline) {
                (true, _) => ("booking.expire", BookingCommand::Expire { now }, "expired"),
                (false, Some(deadline)) => (
                    "booking.no_show",
                    BookingCommand::RecordNoShow { deadline, now },
                    "no_show",
                ),
                (false, None) => continue,
            };
            let decision = OnStream::<Booking> {
                name,
                stream_id: booking_id,
                command,
                resource_field: "resource_id",
            };
            match self.run(&ctx, decision).await? {
                Outcome::Executed(executed) if executed.outcome.appended > 0 => {
                    closed += 1;
                    metrics::counter!("muster_bookings_closed_total", "outcome" => outcome)
                        .increment(1);
                }
                Outcome::Refused(refusal) => {
                    tracing::warn!(%booking_id, %refusal, "an overdue booking could not be closed");
                }
                _ => {}
            }
        }
        Ok(closed)
    }
}
