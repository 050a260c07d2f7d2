//! The notification job: deliver one event to one subscription, as a
//! signed webhook POST or an email, logging every attempt.

use chrono::Utc;
use muster_domain::notification::WebhookTarget;
use muster_jobs::NotificationJob;
use muster_jobs::webhooks::{AttemptRecord, DeliveryStatus};
use tracing::Instrument;

use crate::Runtime;
use crate::failure::{Cause, JobFailure};
use crate::outbound::CallOutcome;
use crate::queue::Attempt;

/// Runs one attempt of a delivery.
pub(crate) async fn attempt_delivery(
    rt: &Runtime,
    job: &NotificationJob,
    book: &Attempt,
) -> Result<(), JobFailure> {
    let span = tracing::info_span!("job.notification", delivery_id = %job.delivery_id, tenant = %job.tenant, attempt = book.number());
    deliver(rt, job, book).instrument(span).await
}

/// How an attempt went.
enum Sent {
    /// A call was made (or an email sent); it may have failed.
    Called(CallOutcome),
    /// The target is not allowed (private, malformed, no SMTP relay): no
    /// attempt can succeed, so the delivery is dead at once.
    Refused(String),
}

async fn deliver(rt: &Runtime, job: &NotificationJob, book: &Attempt) -> Result<(), JobFailure> {
    if job.client {
        return crate::client_mail::attempt_message(rt, job, book).await;
    }
    let Some(d) = rt
        .webhooks
        .pending_delivery(&job.tenant, job.delivery_id)
        .await?
    else {
        return Err(JobFailure::Fatal(Cause::Missing("delivery")));
    };
    if d.status == DeliveryStatus::Delivered {
        // A re-run after a crash between the receiver's 2xx and our
        // record of it would have sent again; this one has nothing to do.
        return Ok(());
    }
    // Upcast by the event store's own conversion, so that the receiver
    // gets the payload the feed serves, never an old schema as stored.
    let event = d.event.into_recorded(rt.store.secret_key())?;
    let body = serde_json::json!({
        "delivery_id": job.delivery_id,
        "replay_of": d.replay_of,
        "tenant": job.tenant,
        "event": {
            "position": event.position,
            "type": event.event_type,
            "stream_type": event.stream_type,
            "stream_id": event.stream_id,
            "version": event.stream_version,
            "schema_version": event.schema_version,
            "recorded_at": event.recorded_at,
            "payload": event.payload,
        }
    });
    let started_at = Utc::now();
    let sent = match WebhookTarget::parse(&d.url, rt.config.allow_private_targets) {
        _ if d.held_back.is_some() => Sent::Refused(d.held_back.clone().unwrap_or_default()),
        Err(e) => Sent::Refused(format!("target refused: {}", e.message)),
        Ok(WebhookTarget::Http(url)) => {
            let mut headers = vec![
                ("x-muster-delivery", job.delivery_id.to_string()),
                ("x-muster-event", d.event_type.clone()),
            ];
            if let Some(replay) = d.replay_of {
                headers.push(("x-muster-replay", replay.to_string()));
            }
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let message_id = job.delivery_id.to_string();
            Sent::Called(
                rt.http
                    .post_signed(&url, &d.secret, &message_id, &headers, body)
                    .await,
            )
        }
        Ok(WebhookTarget::Email(to)) => match &rt.mailer {
            Some(mailer) => {
                let text = serde_json::to_string_pretty(&body).unwrap_or_default();
                Sent::Called(
                    mailer
                        .send(&to, &format!("[muster] {}", d.event_type), text)
                        .await,
                )
            }
            None => Sent::Refused("email needs SMTP_URL, which is not configured".into()),
        },
    };
    let (outcome, refused) = match sent {
        Sent::Called(outcome) => (outcome, false),
        Sent::Refused(reason) => (
            CallOutcome {
                status: None,
                latency: std::time::Duration::ZERO,
                error: Some(reason),
            },
            true,
        ),
    };
    let status = if outcome.succeeded() {
        DeliveryStatus::Delivered
    } else if refused || book.is_last() {
        DeliveryStatus::Dead
    } else {
        DeliveryStatus::Pending
    };
    let failing = rt
        .webhooks
        .record_attempt(
            &job.tenant,
            job.delivery_id,
            &AttemptRecord {
                started_at,
                status_code: outcome.status,
                latency: outcome.latency,
                error: outcome.error.as_deref(),
                status,
            },
        )
        .await?;
    let disabled = match failing {
        Some(failing) => {
            let gone = outcome.status == Some(410);
            rt.app
                .note_webhook_failure(&job.tenant, failing, job.delivery_id, gone)
                .await?
        }
        None => None,
    };
    metrics::counter!("muster_webhook_deliveries_total", "outcome" => status.name()).increment(1);
    match outcome.error {
        None => Ok(()),
        // Disabled by this attempt: retrying would only fail again.
        Some(e) if disabled.is_some() => Err(JobFailure::Fatal(Cause::TargetRefused(e))),
        Some(e) if refused => Err(JobFailure::Fatal(Cause::TargetRefused(e))),
        Some(e) => Err(JobFailure::Retry(Cause::Undelivered(e))),
    }
}
