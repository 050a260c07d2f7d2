//! The notification job: deliver one event to one subscription, as a
//! signed webhook POST or an email, logging every attempt.

use apalis::prelude::{Attempt as ApalisAttempt, BoxDynError, Data, TaskId};
use chrono::{DateTime, Utc};
use muster_domain::notification::WebhookTarget;
use muster_store::jobs::JobKind;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::Shared;
use crate::outbound::CallOutcome;
use crate::queue::{Attempt, JobFailure};

/// Arguments of a notification job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationJob {
    /// The tenant.
    pub tenant: String,
    /// The delivery (also the `X-Muster-Delivery` header).
    pub delivery_id: Uuid,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Delivery {
    status: String,
    event_type: String,
    url: String,
    secret: String,
    position: i64,
    stream_type: String,
    stream_id: Uuid,
    stream_version: i32,
    recorded_at: DateTime<Utc>,
    payload: serde_json::Value,
}

/// Runs one attempt of a delivery.
pub(crate) async fn run(
    job: NotificationJob,
    rt: Data<Shared>,
    id: TaskId,
    attempt: ApalisAttempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job.notification", delivery_id = %job.delivery_id, tenant = %job.tenant, attempt = attempt.current());
    let book = Attempt::begin(
        &rt,
        JobKind::Notification,
        &id,
        attempt.current(),
        job.enqueued_at,
    );
    let result = deliver(&rt, &job, &book).instrument(span).await;
    book.finish(result).await
}

async fn deliver(rt: &Shared, job: &NotificationJob, book: &Attempt<'_>) -> Result<(), JobFailure> {
    let pool = rt.store.pool();
    let Some(d) = sqlx::query_as::<_, Delivery>(
        "select d.status, d.event_type, w.url, w.secret, e.position, e.stream_type,
                e.stream_id, e.stream_version, e.recorded_at, e.payload
           from webhook_deliveries d
           join webhooks w on w.tenant_id = d.tenant_id and w.webhook_id = d.webhook_id
           join events e on e.tenant_id = d.tenant_id and e.position = d.event_position
          where d.tenant_id = $1 and d.delivery_id = $2",
    )
    .bind(&job.tenant)
    .bind(job.delivery_id)
    .fetch_optional(pool)
    .await?
    else {
        return Err(JobFailure::Fatal("the delivery does not exist".into()));
    };
    if d.status == "delivered" {
        // A re-run after a crash between the receiver's 2xx and our
        // record of it would have sent again; this one has nothing to do.
        return Ok(());
    }
    let body = serde_json::json!({
        "delivery_id": job.delivery_id,
        "tenant": job.tenant,
        "event": {
            "position": d.position,
            "type": d.event_type,
            "stream_type": d.stream_type,
            "stream_id": d.stream_id,
            "version": d.stream_version,
            "recorded_at": d.recorded_at,
            "payload": d.payload,
        }
    });
    let started_at = Utc::now();
    let outcome = match WebhookTarget::parse(&d.url, rt.config.allow_private_targets) {
        Err(e) => CallOutcome {
            status: None,
            latency: std::time::Duration::ZERO,
            error: Some(format!("target refused: {}", e.message)),
        },
        Ok(WebhookTarget::Http(url)) => {
            let headers = [
                ("x-muster-delivery", job.delivery_id.to_string()),
                ("x-muster-event", d.event_type.clone()),
            ];
            let body = serde_json::to_vec(&body).unwrap_or_default();
            rt.http.post_signed(&url, &d.secret, &headers, body).await
        }
        Ok(WebhookTarget::Email(to)) => match &rt.mailer {
            Some(mailer) => {
                let text = serde_json::to_string_pretty(&body).unwrap_or_default();
                mailer
                    .send(&to, &format!("[muster] {}", d.event_type), text)
                    .await
            }
            None => CallOutcome {
                status: None,
                latency: std::time::Duration::ZERO,
                error: Some("email needs SMTP_URL, which is not configured".into()),
            },
        },
    };
    let final_failure = !outcome.succeeded() && book.is_last();
    record(rt, job, started_at, &outcome, final_failure).await?;
    match outcome.error {
        None => Ok(()),
        Some(e) if e.starts_with("target refused") => Err(JobFailure::Fatal(e)),
        Some(e) => Err(JobFailure::Retry(e)),
    }
}

/// Logs the attempt and moves the delivery's status, atomically.
async fn record(
    rt: &Shared,
    job: &NotificationJob,
    started_at: DateTime<Utc>,
    outcome: &CallOutcome,
    final_failure: bool,
) -> Result<(), sqlx::Error> {
    let status = if outcome.succeeded() {
        "delivered"
    } else if final_failure
        || outcome
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("target refused"))
    {
        "dead"
    } else {
        "pending"
    };
    // One statement: the delivery's new state and its attempt log entry.
    // Committed without waiting for the WAL flush: the queue's own record
    // that the job is done commits after it and flushes it too, and if a
    // crash loses both, the job runs again (at least once, same delivery
    // id). Waiting here made every delivery wait for an fsync of its own.
    let mut tx = rt.store.pool().begin().await?;
    sqlx::query("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "with delivery as (
             update webhook_deliveries
                set attempts = attempts + 1, status = $3, last_status_code = $4, last_error = $5,
                    delivered_at = case when $3 = 'delivered' then now() end
              where tenant_id = $1 and delivery_id = $2
              returning tenant_id, delivery_id, attempts)
         insert into webhook_attempts
               (tenant_id, delivery_id, attempt, started_at, status_code, latency_ms, error)
         select tenant_id, delivery_id, attempts, $6, $4, $7, $5 from delivery",
    )
    .bind(&job.tenant)
    .bind(job.delivery_id)
    .bind(status)
    .bind(outcome.status.map(i32::from))
    .bind(outcome.error.as_deref())
    .bind(started_at)
    .bind(outcome.latency.as_secs_f64() * 1000.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("muster_webhook_deliveries_total", "outcome" => status).increment(1);
    Ok(())
}
