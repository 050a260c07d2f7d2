//! Sending one message to a booking's client: a readable text and HTML
//! body and, for a confirmation, change or cancellation, the booking's
//! calendar invitation (`METHOD:REQUEST` or `CANCEL`). A reminder is
//! checked again at send time: it goes out only while the booking is
//! confirmed and still starts when the reminder was made for.

use chrono::{DateTime, Utc};
use muster_domain::aggregate::Aggregate;
use muster_domain::booking::{Booking, BookingStatus};
use muster_domain::client_message::MessageKind;
use muster_domain::ics::{Invitation, InvitationMethod, invitation};
use muster_domain::time::TimeRange;
use muster_domain::waitlist::WaitlistEntry;
use muster_jobs::NotificationJob;
use muster_jobs::client_messages::PendingMessage;
use tracing::Instrument;

use crate::Runtime;
use crate::email::{Letter, Mailer};
use crate::failure::{Cause, JobFailure};
use crate::queue::Attempt;

/// Runs one attempt of client message `job.delivery_id`.
pub(crate) async fn attempt_message(
    rt: &Runtime,
    job: &NotificationJob,
    book: &Attempt,
) -> Result<(), JobFailure> {
    let span = tracing::info_span!("job.client_message", message_id = %job.delivery_id, tenant = %job.tenant, attempt = book.number());
    send(rt, job, book).instrument(span).await
}

async fn send(rt: &Runtime, job: &NotificationJob, book: &Attempt) -> Result<(), JobFailure> {
    let messages = &rt.client_messages;
    let Some(message) = messages.pending(&job.tenant, job.delivery_id).await? else {
        return Err(JobFailure::Fatal(Cause::Missing("client message")));
    };
    if message.status == "sent" || message.status == "skipped" {
        return Ok(());
    }
    if message.kind == MessageKind::Offer {
        return send_offer(rt, job, book, &message).await;
    }
    let Some(booking_id) = message.booking_id else {
        return Err(JobFailure::Fatal(Cause::Missing("booking")));
    };
    let (booking, _) = rt.store.load::<Booking>(&job.tenant, booking_id).await?;
    if let Some(reason) = not_to_send(&message, &booking) {
        messages
            .record(&job.tenant, job.delivery_id, "skipped", Some(reason))
            .await?;
        metrics::counter!("muster_client_messages_total", "outcome" => "skipped").increment(1);
        return Ok(());
    }
    // The booking as the causing event left it: a confirmation sent late
    // still shows what was confirmed, with its own SEQUENCE.
    let mut conn = rt.store.pool().acquire().await?;
    let history = muster_store::event_store::history_until::<Booking>(
        &mut conn,
        rt.store.secret_key(),
        &job.tenant,
        booking_id,
        message.event_position,
    )
    .await?;
    drop(conn);
    let then = Booking::from_events(history.iter());
    let Some(details) = then.details.as_ref() else {
        return Err(JobFailure::Fatal(Cause::Missing("booking")));
    };
    let timezone = match then.reservations.first() {
        Some(r) => messages.timezone_of(&job.tenant, r.resource_id).await?,
        None => None,
    }
    .unwrap_or_else(|| "UTC".to_owned());
    let mailer = mailer(rt, job).await?;
    let range = TimeRange {
        starts_at: details.starts_at,
        ends_at: details.ends_at,
    };
    let from = message.sender.clone().unwrap_or_else(|| mailer.sender());
    let calendar = match message.kind {
        MessageKind::Reminder => None,
        kind => Some(invitation(
            &Invitation {
                booking_id,
                sequence: message.sequence,
                title: &details.title,
                range,
                timezone: &timezone,
                organizer: address_of(&from),
                attendee: &message.recipient,
                stamp: Utc::now(),
            },
            if kind == MessageKind::Cancellation {
                InvitationMethod::Cancel
            } else {
                InvitationMethod::Request
            },
        )),
    };
    let when = local_span(&range, &timezone);
    let (subject, lead) = match message.kind {
        MessageKind::Confirmation => ("Confirmed", "your booking is confirmed"),
        MessageKind::Change => ("Changed", "your booking has moved; it now takes place"),
        MessageKind::Cancellation => (
            "Cancelled",
            "your booking has been cancelled; it was to take place",
        ),
        MessageKind::Reminder => ("Reminder", "a reminder of your booking"),
        // Offers are about a waitlist entry and go out by `send_offer`.
        MessageKind::Offer => return Err(JobFailure::Fatal(Cause::Missing("booking"))),
    };
    let text = format!(
        "Hello {name},\n\n{lead}:\n\n  {title}\n  {when}\n\n— {from}\n",
        name = details.client.name,
        title = details.title,
    );
    let html = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>{lead}:</p>\
         <p><strong>{title}</strong><br>{when}</p><p>— {from}</p></body></html>",
        name = escape(&details.client.name),
        title = escape(&details.title),
        when = escape(&when),
        from = escape(&from),
    );
    let letter = Letter {
        from: &from,
        to: &message.recipient,
        subject: &format!("{subject}: {}", details.title),
        text,
        html,
        calendar: calendar.map(|ics| {
            let method = if message.kind == MessageKind::Cancellation {
                "CANCEL"
            } else {
                "REQUEST"
            };
            (method, ics)
        }),
    };
    deliver(rt, job, book, mailer, letter).await
}

/// The mailer, or the message dead for want of one.
async fn mailer<'r>(rt: &'r Runtime, job: &NotificationJob) -> Result<&'r Mailer, JobFailure> {
    match &rt.mailer {
        Some(mailer) => Ok(mailer),
        None => {
            let why = "email needs SMTP_URL, which is not configured";
            rt.client_messages
                .record(&job.tenant, job.delivery_id, "dead", Some(why))
                .await?;
            Err(JobFailure::Fatal(Cause::TargetRefused(why.into())))
        }
    }
}

/// Sends `letter` and records how it went (retried unless this was the
/// last attempt).
async fn deliver(
    rt: &Runtime,
    job: &NotificationJob,
    book: &Attempt,
    mailer: &Mailer,
    letter: Letter<'_>,
) -> Result<(), JobFailure> {
    let messages = &rt.client_messages;
    let outcome = mailer.send_letter(letter).await;
    let status = if outcome.succeeded() {
        "sent"
    } else if book.is_last() {
        "dead"
    } else {
        "pending"
    };
    messages
        .record(
            &job.tenant,
            job.delivery_id,
            status,
            outcome.error.as_deref(),
        )
        .await?;
    metrics::counter!("muster_client_messages_total", "outcome" => status).increment(1);
    match outcome.error {
        None => Ok(()),
        Some(e) => Err(JobFailure::Retry(Cause::Undelivered(e))),
    }
}

/// Tells a waitlist entry's client of the offer it holds: the range, and
/// until when it is held. An offer no longer open (booked, lapsed, left)
/// is skipped.
async fn send_offer(
    rt: &Runtime,
    job: &NotificationJob,
    book: &Attempt,
    message: &PendingMessage,
) -> Result<(), JobFailure> {
    let messages = &rt.client_messages;
    let Some(entry_id) = message.entry_id else {
        return Err(JobFailure::Fatal(Cause::Missing("waitlist entry")));
    };
    let (entry, _) = rt
        .store
        .load::<WaitlistEntry>(&job.tenant, entry_id)
        .await?;
    let open = entry.spec.as_ref().zip(entry.open_offer());
    let (Some((spec, offer)), true) = (open, message.enabled) else {
        let why = if message.enabled {
            "the offer is no longer open"
        } else {
            "client notifications were turned off"
        };
        messages
            .record(&job.tenant, job.delivery_id, "skipped", Some(why))
            .await?;
        metrics::counter!("muster_client_messages_total", "outcome" => "skipped").increment(1);
        return Ok(());
    };
    let mailer = mailer(rt, job).await?;
    let timezone = messages
        .timezone_of(&job.tenant, offer.resource_id)
        .await?
        .unwrap_or_else(|| "UTC".to_owned());
    let from = message.sender.clone().unwrap_or_else(|| mailer.sender());
    let when = local_span(&spec.range(), &timezone);
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let until = offer
        .expires_at
        .with_timezone(&tz)
        .format("%A %-d %B %Y, %H:%M")
        .to_string();
    let lead = "a time you are waiting for is free, and it is held for you";
    let text = format!(
        "Hello {name},\n\n{lead}:\n\n  {when}\n\nThe offer holds until {until} ({timezone}); \
         after that it goes to the next in line.\n\n— {from}\n",
        name = spec.client.name,
    );
    let html = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>{lead}:</p><p><strong>{when}</strong></p>\
         <p>The offer holds until {until} ({timezone}); after that it goes to the next in \
         line.</p><p>— {from}</p></body></html>",
        name = escape(&spec.client.name),
        when = escape(&when),
        until = escape(&until),
        timezone = escape(&timezone),
        from = escape(&from),
    );
    let letter = Letter {
        from: &from,
        to: &message.recipient,
        subject: &format!("A place is free for you: {when}"),
        text,
        html,
        calendar: None,
    };
    deliver(rt, job, book, mailer, letter).await
}

/// Why the message should not go out now, if it should not.
fn not_to_send(message: &PendingMessage, booking: &Booking) -> Option<&'static str> {
    if !message.enabled {
        return Some("client notifications were turned off");
    }
    if message.kind != MessageKind::Reminder {
        return None;
    }
    if message.reminds_of.is_some_and(|start| start <= Utc::now()) {
        return Some("the booking has started");
    }
    if booking.status != Some(BookingStatus::Confirmed) {
        return Some("the booking is no longer confirmed");
    }
    let starts_at: Option<DateTime<Utc>> = booking.details.as_ref().map(|d| d.starts_at);
    if starts_at != message.reminds_of {
        return Some("the booking has moved; a reminder for its new time is planned");
    }
    None
}

/// `Name <address>` → `address`.
fn address_of(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => &mailbox[open + 1..close],
        _ => mailbox.trim(),
    }
}

/// The booking's time as its client reads it: local date and times, and
/// the zone's name.
fn local_span(range: &TimeRange, timezone: &str) -> String {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let (start, end) = (
        range.starts_at.with_timezone(&tz),
        range.ends_at.with_timezone(&tz),
    );
    if start.date_naive() == end.date_naive() {
        format!(
            "{} – {} ({timezone})",
            start.format("%A %-d %B %Y, %H:%M"),
            end.format("%H:%M")
        )
    } else {
        format!(
            "{} – {} ({timezone})",
            start.format("%A %-d %B %Y, %H:%M"),
            end.format("%A %-d %B %Y, %H:%M")
        )
    }
}

/// Text as HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
