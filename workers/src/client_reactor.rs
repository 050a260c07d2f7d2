//! The client-notification reactor: a projection whose writes are messages
//! to bookings' clients and their jobs. For each booking event, the one
//! domain rule ([`muster_domain::client_message::messages_for`]) decides
//! which messages it calls for, from the booking's history up to that
//! event; they are recorded and queued in the transaction that moves the
//! reactor's checkpoint, so each is made exactly once whatever crashes
//! (and the table's unique key on the causing event makes a repeat
//! impossible even if the checkpoint logic were wrong). Reminders are
//! queued to run at their time. A waitlist entry's `waitlist.offered`
//! makes one offer message to its client the same way
//! ([`muster_domain::client_message::offer_message`]).

use std::collections::HashMap;

use muster_domain::booking::{Booking, BookingEvent};
use muster_domain::client_message::{
    ClientSettings, may_message, messages_for, offer_message, supersedes_reminders,
};
use muster_domain::erasure::{Erasure, ErasureEvent};
use muster_domain::waitlist::WaitlistEntry;
use muster_domain::{Aggregate, DomainEvent, TenantId};
use muster_jobs::client_messages::ClientMessages;
use muster_jobs::{JobQueue, NotificationJob};
use muster_projections::{ApplyFuture, Projection, ProjectionError};
use muster_store::RecordedEvent;
use muster_store::secret::SecretKey;
use sqlx::PgConnection;

use crate::reactor::reactor_error;

/// The client-notification reactor.
pub struct ClientReactor {
    queue: JobQueue,
    /// Opens the personal fields of the histories it reads.
    secret: Option<SecretKey>,
}

impl ClientReactor {
    /// A reactor pushing jobs on `queue`, reading histories with `secret`.
    pub fn new(queue: JobQueue, secret: Option<SecretKey>) -> Self {
        Self { queue, secret }
    }
}

/// Its checkpoint name.
pub const NAME: &str = "reactor.client-notifications";

impl Projection for ClientReactor {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut settings: HashMap<TenantId, ClientSettings> = HashMap::new();
            let mut jobs = Vec::new();
            for event in events {
                if event.stream_type == Erasure::STREAM_TYPE {
                    let ErasureEvent::Erased(erased) =
                        ErasureEvent::from_payload(&event.event_type, &event.payload)
                            .map_err(|e| ProjectionError::poison(event, e))?;
                    ClientMessages::scrub(
                        &mut *conn,
                        &event.tenant,
                        &erased.bookings,
                        &erased.waitlist_entries,
                    )
                    .await
                    .map_err(reactor_error)?;
                    continue;
                }
                if event.stream_type == WaitlistEntry::STREAM_TYPE
                    && event.event_type == "waitlist.offered"
                {
                    let rule = rule_of(&mut *conn, &mut settings, &event.tenant).await?;
                    let history = muster_store::event_store::history_until::<WaitlistEntry>(
                        &mut *conn,
                        self.secret.as_ref(),
                        &event.tenant,
                        event.stream_id,
                        event.position,
                    )
                    .await?;
                    let Some(offer) = offer_message(&history, event.recorded_at, &rule) else {
                        continue;
                    };
                    let made = ClientMessages::insert_offer(
                        &mut *conn,
                        &event.tenant,
                        event.stream_id,
                        event.position,
                        &offer.recipient,
                        offer.due_at,
                    )
                    .await
                    .map_err(reactor_error)?;
                    jobs.extend(made.into_iter().map(|m| {
                        NotificationJob::client_message(event.tenant.clone(), m.message_id, None)
                    }));
                    continue;
                }
                if event.stream_type != Booking::STREAM_TYPE {
                    continue;
                }
                // The domain says which events concern the client, by
                // their meaning rather than their names.
                let booking_event = BookingEvent::from_payload(&event.event_type, &event.payload)
                    .map_err(|e| ProjectionError::poison(event, e))?;
                if !may_message(&booking_event) {
                    continue;
                }
                let rule = rule_of(&mut *conn, &mut settings, &event.tenant).await?;
                if !rule.enabled {
                    continue;
                }
                let history = muster_store::event_store::history_until::<Booking>(
                    &mut *conn,
                    self.secret.as_ref(),
                    &event.tenant,
                    event.stream_id,
                    event.position,
                )
                .await?;
                let planned = messages_for(&history, event.recorded_at, &rule);
                let superseded = supersedes_reminders(&booking_event);
                // Before the new time's reminders are recorded: every
                // pending one is for a time that no longer holds.
                if let Some(why) = superseded {
                    ClientMessages::supersede_reminders(
                        &mut *conn,
                        &event.tenant,
                        event.stream_id,
                        event.position,
                        why,
                    )
                    .await
                    .map_err(reactor_error)?;
                }
                let made = ClientMessages::insert(
                    &mut *conn,
                    &event.tenant,
                    event.stream_id,
                    event.position,
                    &planned,
                )
                .await
                .map_err(reactor_error)?;
                jobs.extend(made.into_iter().map(|m| {
                    let later = (m.due_at > event.recorded_at).then_some(m.due_at);
                    NotificationJob::client_message(event.tenant.clone(), m.message_id, later)
                }));
            }
            if jobs.is_empty() {
                return Ok(());
            }
            self.queue
                .enqueue_many(conn, &jobs)
                .await
                .map_err(reactor_error)?;
            metrics::counter!("muster_client_messages_made_total").increment(jobs.len() as u64);
            Ok(())
        })
    }
}

/// `tenant`'s settings, read once per batch.
async fn rule_of(
    conn: &mut PgConnection,
    settings: &mut HashMap<TenantId, ClientSettings>,
    tenant: &TenantId,
) -> Result<ClientSettings, ProjectionError> {
    if let Some(rule) = settings.get(tenant) {
        return Ok(rule.clone());
    }
    let rule = ClientMessages::rule_on(conn, tenant)
        .await
        .map_err(reactor_error)?;
    settings.insert(tenant.clone(), rule.clone());
    Ok(rule)
}
