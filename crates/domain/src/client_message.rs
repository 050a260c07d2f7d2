//! What a booking's client hears (SPEC §2): a confirmation, a change and a
//! cancellation, each with a calendar invitation, and reminders before a
//! confirmed booking starts. One rule decides, from a booking's event and
//! its state right after it, which messages that event calls for; the
//! reactor records them once per event, and the workers send them.

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;
use crate::booking::{Booking, BookingEvent, BookingStatus};
use crate::waitlist::{WaitlistEntry, WaitlistEvent};

/// Longest reminder offset: 30 days.
pub const MAX_REMINDER_OFFSET_SECS: i64 = 30 * 86_400;
/// Most reminders per booking.
pub const MAX_REMINDERS: usize = 5;

/// A kind of message to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// The booking was confirmed.
    Confirmation,
    /// A confirmed booking moved.
    Change,
    /// A confirmed booking was cancelled.
    Cancellation,
    /// A confirmed booking starts soon.
    Reminder,
    /// A waitlist entry is offered freed capacity (a hold until it runs
    /// out).
    Offer,
}

impl MessageKind {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Confirmation => "confirmation",
            MessageKind::Change => "change",
            MessageKind::Cancellation => "cancellation",
            MessageKind::Reminder => "reminder",
            MessageKind::Offer => "offer",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            MessageKind::Confirmation,
            MessageKind::Change,
            MessageKind::Cancellation,
            MessageKind::Reminder,
            MessageKind::Offer,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// A tenant's wishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// Whether clients hear anything.
    pub enabled: bool,
    /// When they were last turned on: events recorded before are not told
    /// (a reactor catching up must not mail clients about the past).
    pub enabled_since: Option<DateTime<Utc>>,
    /// Reminders this many seconds before the start.
    pub reminder_offsets: Vec<i64>,
}

/// One message an event calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMessage {
    /// What it says.
    pub kind: MessageKind,
    /// To whom.
    pub recipient: String,
    /// When it may go out.
    pub due_at: DateTime<Utc>,
    /// For a reminder: the start it reminds of (it is not sent if the
    /// booking no longer starts then, or is no longer confirmed).
    pub reminds_of: Option<DateTime<Utc>>,
    /// The invitation's `SEQUENCE`.
    pub sequence: i32,
}

/// The invitation's `SEQUENCE` after `history`: 0 at confirmation, one more
/// for each reschedule and for the cancellation.
pub fn sequence(history: &[BookingEvent]) -> i32 {
    history
        .iter()
        .filter(|e| {
            matches!(
                e,
                BookingEvent::Rescheduled { .. } | BookingEvent::Cancelled { .. }
            )
        })
        .count() as i32
}

/// Whether an event recorded at `at` may be told to clients under
/// `settings`: they are on, and were on when it happened.
fn tells(settings: &ClientSettings, at: DateTime<Utc>) -> bool {
    settings.enabled && settings.enabled_since.is_none_or(|since| at >= since)
}

/// The message that the last event of a waitlist entry's `history`
/// (recorded at `at`) calls for under `settings`: an offer to the entry's
/// client when the event is `waitlist.offered` and the client gave an
/// email address.
pub fn offer_message(
    history: &[WaitlistEvent],
    at: DateTime<Utc>,
    settings: &ClientSettings,
) -> Option<PlannedMessage> {
    if !tells(settings, at) || !matches!(history.last(), Some(WaitlistEvent::Offered(_))) {
        return None;
    }
    let entry = WaitlistEntry::from_events(history.iter());
    let recipient = entry.spec?.client.email.filter(|e| !e.trim().is_empty())?;
    Some(PlannedMessage {
        kind: MessageKind::Offer,
        recipient,
        due_at: at,
        reminds_of: None,
        sequence: 0,
    })
}

/// The messages that the last event of `history` (recorded at `at`) calls
/// for under `settings`: none unless they are enabled and the client gave
/// an email address.
pub fn messages_for(
    history: &[BookingEvent],
    at: DateTime<Utc>,
    settings: &ClientSettings,
) -> Vec<PlannedMessage> {
    let Some((event, before)) = history.split_last() else {
        return Vec::new();
    };
    if !tells(settings, at) {
        return Vec::new();
    }
    let was = Booking::from_events(before.iter());
    let now = Booking::from_events(history.iter());
    let Some(details) = &now.details else {
        return Vec::new();
    };
    let Some(recipient) = details
        .client
        .email
        .clone()
        .filter(|e| !e.trim().is_empty())
    else {
        return Vec::new();
    };
    let sequence = sequence(history);
    let message = |kind, due_at, reminds_of| PlannedMessage {
        kind,
        recipient: recipient.clone(),
        due_at,
        reminds_of,
        sequence,
    };
    let reminders = |out: &mut Vec<PlannedMessage>| {
        for offset in settings.reminder_offsets.iter().take(MAX_REMINDERS) {
            let due_at = details.starts_at - chrono::Duration::seconds(*offset);
            if due_at > at {
                out.push(message(
                    MessageKind::Reminder,
                    due_at,
                    Some(details.starts_at),
                ));
            }
        }
    };
    let confirmed = |b: &Booking| b.status == Some(BookingStatus::Confirmed);
    let mut out = Vec::new();
    match event {
        BookingEvent::Confirmed => {
            out.push(message(MessageKind::Confirmation, at, None));
            reminders(&mut out);
        }
        BookingEvent::Rescheduled { .. } if confirmed(&now) => {
            out.push(message(MessageKind::Change, at, None));
            reminders(&mut out);
        }
        // Only a client who was told of the booking hears it is off.
        BookingEvent::Cancelled { .. } if confirmed(&was) => {
            out.push(message(MessageKind::Cancellation, at, None));
        }
        _ => {}
    }
    out
}

/// Whether a booking event may call for a message to the booking's
/// client: a reactor reads the booking's history only for these.
pub fn may_message(event: &BookingEvent) -> bool {
    matches!(
        event,
        BookingEvent::Confirmed | BookingEvent::Rescheduled { .. } | BookingEvent::Cancelled { .. }
    )
}

/// Why a booking event makes the booking's pending reminders moot, if it
/// does: they are superseded before the messages it calls for are made.
pub fn supersedes_reminders(event: &BookingEvent) -> Option<&'static str> {
    match event {
        BookingEvent::Rescheduled { .. } => {
            Some("the booking moved; reminders for its new time replace it")
        }
        BookingEvent::Cancelled { .. } => Some("the booking was cancelled"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::{BookingDetails, Client};

    fn requested(email: Option<&str>, starts_at: DateTime<Utc>) -> BookingEvent {
        BookingEvent::Requested(BookingDetails {
            title: "Wedding".into(),
            client: Client {
                name: "Ann".into(),
                email: email.map(str::to_owned),
                phone: None,
                erased: false,
            },
            starts_at,
            ends_at: starts_at + chrono::Duration::hours(2),
            headcount: 10,
            notes: None,
            series_id: None,
        })
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-06-01T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(h)
    }

    fn on(offsets: &[i64]) -> ClientSettings {
        ClientSettings {
            enabled: true,
            enabled_since: Some(at(-1)),
            reminder_offsets: offsets.to_vec(),
        }
    }

    #[test]
    fn a_confirmation_comes_with_its_future_reminders() {
        let history = [
            requested(Some("ann@example.com"), at(48)),
            BookingEvent::Confirmed,
        ];
        let planned = messages_for(&history, at(0), &on(&[86_400, 72 * 3_600]));
        let kinds: Vec<_> = planned.iter().map(|m| (m.kind, m.due_at)).collect();
        // The 72 h reminder would be in the past: it is not made.
        assert_eq!(
            kinds,
            [
                (MessageKind::Confirmation, at(0)),
                (MessageKind::Reminder, at(24))
            ]
        );
        assert!(planned.iter().all(|m| m.sequence == 0));
        assert_eq!(planned[1].reminds_of, Some(at(48)));
    }

    #[test]
    fn a_reschedule_of_a_confirmed_booking_is_a_change_with_a_higher_sequence() {
        let history = [
            requested(Some("ann@example.com"), at(48)),
            BookingEvent::Confirmed,
            BookingEvent::Rescheduled {
                starts_at: at(96),
                ends_at: at(98),
            },
        ];
        let planned = messages_for(&history, at(1), &on(&[3_600]));
        assert_eq!(planned[0].kind, MessageKind::Change);
        assert_eq!(planned[0].sequence, 1);
        assert_eq!(planned[1].due_at, at(95));
        assert_eq!(planned[1].reminds_of, Some(at(96)));
    }

    #[test]
    fn only_a_client_told_of_the_booking_hears_of_its_cancellation() {
        let cancelled = BookingEvent::Cancelled { reason: None };
        let told = [
            requested(Some("ann@example.com"), at(48)),
            BookingEvent::Confirmed,
            cancelled.clone(),
        ];
        let planned = messages_for(&told, at(1), &on(&[]));
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].kind, MessageKind::Cancellation);
        assert_eq!(planned[0].sequence, 1);
        let never_told = [requested(Some("ann@example.com"), at(48)), cancelled];
        assert!(messages_for(&never_told, at(1), &on(&[])).is_empty());
    }

    #[test]
    fn events_from_before_notifications_were_turned_on_are_not_told() {
        let history = [
            requested(Some("ann@example.com"), at(48)),
            BookingEvent::Confirmed,
        ];
        let mut settings = on(&[3_600]);
        settings.enabled_since = Some(at(2));
        assert!(messages_for(&history, at(1), &settings).is_empty());
        assert_eq!(messages_for(&history, at(3), &settings).len(), 2);
    }

    #[test]
    fn nothing_without_an_address_or_when_disabled() {
        let no_email = [requested(None, at(48)), BookingEvent::Confirmed];
        assert!(messages_for(&no_email, at(0), &on(&[3_600])).is_empty());
        let history = [
            requested(Some("ann@example.com"), at(48)),
            BookingEvent::Confirmed,
        ];
        assert!(messages_for(&history, at(0), &ClientSettings::default()).is_empty());
    }

    #[test]
    fn an_offer_is_told_to_a_waiting_client_with_an_address_and_nothing_else_is() {
        use crate::duration::IsoDuration;
        use crate::waitlist::{EntrySpec, Offer, Target};
        let joined = |email: Option<&str>| {
            WaitlistEvent::Joined(EntrySpec {
                target: Target::Resource {
                    resource_id: uuid::Uuid::from_u128(1),
                },
                starts_at: at(24),
                ends_at: at(25),
                client: Client {
                    name: "Wes".into(),
                    email: email.map(str::to_owned),
                    phone: None,
                    erased: false,
                },
                offer_ttl: IsoDuration::from_seconds(600),
                priority: 0,
            })
        };
        let offered = WaitlistEvent::Offered(Offer {
            hold_id: uuid::Uuid::from_u128(2),
            resource_id: uuid::Uuid::from_u128(1),
            expires_at: at(1),
        });
        let told = offer_message(
            &[joined(Some("wes@example.com")), offered.clone()],
            at(0),
            &on(&[]),
        )
        .expect("an offer message");
        assert_eq!(
            (told.kind, told.recipient.as_str()),
            (MessageKind::Offer, "wes@example.com")
        );
        assert_eq!(told.due_at, at(0));
        assert!(offer_message(&[joined(None), offered.clone()], at(0), &on(&[])).is_none());
        assert!(offer_message(&[joined(Some("wes@example.com"))], at(0), &on(&[])).is_none());
        let off = ClientSettings::default();
        assert!(
            offer_message(
                &[joined(Some("wes@example.com")), offered.clone()],
                at(0),
                &off
            )
            .is_none()
        );
        // Offered before notifications were turned on: not told.
        assert!(
            offer_message(
                &[joined(Some("wes@example.com")), offered],
                at(-2),
                &on(&[])
            )
            .is_none()
        );
    }
}
