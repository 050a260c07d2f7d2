//! The calendar sync job (SPEC §12): read a link's calendar, turn what it
//! says is busy into instants (the domain's `busy_times`), and commit the
//! link's blocks through the one commit path. A calendar server that is
//! down or answers garbage never blocks a command: the link keeps its
//! blocks, shows the error, and the job is retried with backoff (and the
//! next periodic sync comes anyway).
//!
//! Periodic syncs are queued by [`schedule_periodic`], which every worker process
//! runs: each due link is claimed by one of them (`SKIP LOCKED`) in the
//! transaction that queues its job.

use std::time::Instant;

use chrono::Utc;
use chrono_tz::Tz;
use muster_app::Outcome;
use muster_app::calendars::{CalendarAccess, sync_window};
use muster_domain::calendar_link::CalendarKind;
use muster_domain::external::busy_times;
use muster_jobs::CalendarSyncJob;
use muster_store::Store;
use muster_store::calendars::{SyncReport, SyncTarget};
use tracing::Instrument;
use url::Url;

use crate::failure::{Cause, JobFailure};
use crate::outbound::Fetched;
use crate::queue::{Attempt, JobLease};
use crate::{Runtime, Shared};

/// Links claimed for their periodic sync per round.
const DUE_PER_ROUND: i64 = 100;
/// How often due links are looked for (an index probe when none is due).
const SCHEDULE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Syncs one link.
pub(crate) async fn sync_calendar(
    rt: &Runtime,
    job: &CalendarSyncJob,
    book: &mut Attempt,
) -> Result<(), JobFailure> {
    let span = tracing::info_span!("job.calendar_sync", calendar_id = %job.calendar_id,
        tenant = %job.tenant, attempt = book.number());
    let Some(lease) = JobLease::take(rt, format!("calendar:{}", job.calendar_id)).await? else {
        // Another worker syncs it right now; this request comes after.
        return Err(JobFailure::Retry(Cause::Leased("calendar")));
    };
    let started = Instant::now();
    let result = sync(rt, job).instrument(span).await;
    lease.release().await;
    let outcome = match &result {
        Ok(()) => "ok",
        Err(failure) => {
            let error = failure.cause().to_string();
            let report = SyncReport::Failed(error.clone());
            if let Err(e) = rt
                .store
                .record_sync(&job.tenant, job.calendar_id, &report)
                .await
            {
                tracing::warn!(calendar_id = %job.calendar_id, error = %e, "cannot record the sync's failure");
            }
            tracing::info!(calendar_id = %job.calendar_id, %error, "calendar sync failed");
            "failed"
        }
    };
    metrics::histogram!("muster_calendar_sync_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

async fn sync(rt: &Runtime, job: &CalendarSyncJob) -> Result<(), JobFailure> {
    let Some(target) = rt.store.sync_target(&job.tenant, job.calendar_id).await? else {
        // Unlinked since it was queued: nothing to sync.
        return Ok(());
    };
    let access = rt
        .app
        .calendar_access(&target.sealed)
        .map_err(|e| JobFailure::Fatal(Cause::TargetRefused(e.to_string())))?;
    let (document, etag) = match target.kind {
        CalendarKind::Ics => match read_ics(rt, &access, &target).await? {
            Some(read) => read,
            None => {
                let report = SyncReport::Read {
                    etag: target.etag.clone(),
                    sync_token: None,
                    changed: false,
                };
                rt.store
                    .record_sync(&job.tenant, job.calendar_id, &report)
                    .await?;
                metrics::counter!("muster_calendar_syncs_total", "result" => "not_modified")
                    .increment(1);
                return Ok(());
            }
        },
        CalendarKind::Caldav => {
            return Err(JobFailure::Fatal(Cause::TargetRefused(
                "CalDAV links are not read by this version".to_owned(),
            )));
        }
    };
    let zone: Tz = target.timezone.parse().unwrap_or(chrono_tz::UTC);
    let window = sync_window(Utc::now(), target.max_advance_secs);
    // Expanding recurrences of a large calendar is CPU work: off the
    // runtime's threads.
    let busy = tokio::task::spawn_blocking(move || busy_times(&document, zone, window))
        .await
        .map_err(|e| JobFailure::Retry(Cause::Undelivered(format!("the parse failed: {e}"))))?
        .map_err(|e| JobFailure::Retry(Cause::Undelivered(e.to_string())))?;
    let changed = match rt
        .app
        .sync_calendar(&job.tenant, job.calendar_id, busy, window)
        .await?
    {
        Outcome::Executed(executed) => !executed.events.is_empty(),
        Outcome::Refused(muster_app::Refusal::NotFound { .. }) => return Ok(()),
        Outcome::Refused(refusal) => return Err(JobFailure::Retry(Cause::Refused(refusal))),
        Outcome::Replayed(_) => false,
    };
    let report = SyncReport::Read {
        etag,
        sync_token: None,
        changed,
    };
    rt.store
        .record_sync(&job.tenant, job.calendar_id, &report)
        .await?;
    let result = if changed { "changed" } else { "unchanged" };
    metrics::counter!("muster_calendar_syncs_total", "result" => result).increment(1);
    Ok(())
}

/// The link's ICS document and its ETag; `None`: unchanged since the
/// last read.
async fn read_ics(
    rt: &Runtime,
    access: &CalendarAccess,
    target: &SyncTarget,
) -> Result<Option<(String, Option<String>)>, JobFailure> {
    let url = Url::parse(&access.url)
        .map_err(|_| JobFailure::Fatal(Cause::TargetRefused("the URL does not parse".into())))?;
    let basic = access.username.as_deref().zip(access.password.as_deref());
    match rt
        .http
        .get_calendar(&url, basic, target.etag.as_deref())
        .await
    {
        Ok(Fetched::Document { body, etag }) => Ok(Some((body, etag))),
        Ok(Fetched::NotModified) => Ok(None),
        Err(e) => Err(JobFailure::Retry(Cause::Undelivered(e))),
    }
}

/// Queues the periodic syncs as they fall due, until shutdown.
pub(crate) async fn schedule_periodic(rt: Shared) {
    loop {
        match queue_due(&rt).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(queued = n, "periodic calendar syncs queued"),
            Err(e) => tracing::warn!(error = %e.cause(), "cannot queue calendar syncs; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(SCHEDULE_EVERY) => {}
            () = rt.shutdown.cancelled() => return,
        }
    }
}

/// Queues the periodic syncs that are due; how many.
async fn queue_due(rt: &Runtime) -> Result<usize, JobFailure> {
    let mut tx = rt.store.pool().begin().await?;
    let due = Store::claim_due_calendars(&mut tx, DUE_PER_ROUND).await?;
    let jobs: Vec<CalendarSyncJob> = due
        .into_iter()
        .map(|(tenant, calendar_id)| CalendarSyncJob::new(tenant, calendar_id))
        .collect();
    rt.queue.enqueue_many(&mut tx, &jobs).await?;
    tx.commit().await?;
    Ok(jobs.len())
}
