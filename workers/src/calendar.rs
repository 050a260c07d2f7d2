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

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use chrono_tz::Tz;
use muster_app::Outcome;
use muster_app::calendars::{CalendarAccess, sync_window};
use muster_domain::calendar_link::CalendarKind;
use muster_domain::external::{CalendarError, MAX_BLOCKS, busy_times};
use muster_domain::ics::published_event;
use muster_jobs::CalendarSyncJob;
use muster_store::Store;
use muster_store::calendars::{Published, StoredObject, SyncReport, SyncTarget};
use tracing::Instrument;
use url::Url;
use uuid::Uuid;

use crate::caldav::Collection;
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
    let collection = match target.kind {
        CalendarKind::Caldav => Some(
            Collection::new(&rt.http, &access)
                .map_err(|e| JobFailure::Fatal(Cause::TargetRefused(e)))?,
        ),
        CalendarKind::Ics => None,
    };
    let read = match &collection {
        None => read_ics(rt, &access, &target).await?,
        Some(collection) => read_caldav(rt, job, &target, collection).await?,
    };
    let changed = match read.documents {
        Some(documents) => commit_busy(rt, job, &target, documents).await?,
        None => false,
    };
    let report = SyncReport::Read {
        etag: read.etag,
        sync_token: read.sync_token,
        changed,
    };
    rt.store
        .record_sync(&job.tenant, job.calendar_id, &report)
        .await?;
    let result = match (read.modified, changed) {
        (false, _) => "not_modified",
        (true, true) => "changed",
        (true, false) => "unchanged",
    };
    metrics::counter!("muster_calendar_syncs_total", "result" => result).increment(1);
    if let (Some(collection), true) = (&collection, target.publish) {
        publish(rt, job, &target, collection)
            .instrument(tracing::info_span!("calendar.publish"))
            .await?;
    }
    Ok(())
}

/// What reading a calendar found.
struct Read {
    /// Its iCalendar documents, when something changed since the last
    /// read (an ICS link has one, a CalDAV collection one per object).
    documents: Option<Vec<String>>,
    /// Whether the server had anything new.
    modified: bool,
    /// The ICS document's ETag now.
    etag: Option<String>,
    /// The collection's sync token now.
    sync_token: Option<String>,
}

/// Makes the link's blocks what `documents` say is busy; whether that
/// changed them.
async fn commit_busy(
    rt: &Runtime,
    job: &CalendarSyncJob,
    target: &SyncTarget,
    documents: Vec<String>,
) -> Result<bool, JobFailure> {
    let zone: Tz = target.timezone.parse().unwrap_or(chrono_tz::UTC);
    let window = sync_window(Utc::now(), target.max_advance_secs);
    let single = documents.len() == 1;
    // Expanding recurrences of a large calendar is CPU work: off the
    // runtime's threads.
    let busy = tokio::task::spawn_blocking(move || {
        let mut busy = Vec::new();
        let mut unreadable = 0usize;
        for document in &documents {
            match busy_times(document, zone, window) {
                Ok(found) => busy.extend(found),
                // One object a collection cannot read never hides the
                // rest; a whole calendar that cannot be read is an error.
                Err(e) if single => return Err(e),
                Err(_) => unreadable += 1,
            }
            if busy.len() > MAX_BLOCKS {
                return Err(CalendarError::TooMany);
            }
        }
        if unreadable > 0 {
            metrics::counter!("muster_calendar_unreadable_objects_total")
                .increment(unreadable as u64);
        }
        Ok(busy)
    })
    .await
    .map_err(|e| JobFailure::Retry(Cause::Undelivered(format!("the parse failed: {e}"))))?
    .map_err(|e| JobFailure::Retry(Cause::Undelivered(e.to_string())))?;
    match rt
        .app
        .sync_calendar(&job.tenant, job.calendar_id, busy, window)
        .await?
    {
        Outcome::Executed(executed) => Ok(!executed.events.is_empty()),
        Outcome::Refused(muster_app::Refusal::NotFound { .. }) | Outcome::Replayed(_) => Ok(false),
        Outcome::Refused(refusal) => Err(JobFailure::Retry(Cause::Refused(refusal))),
    }
}

/// The link's ICS document, unless it has not changed since the last read
/// (If-None-Match).
async fn read_ics(
    rt: &Runtime,
    access: &CalendarAccess,
    target: &SyncTarget,
) -> Result<Read, JobFailure> {
    let url = Url::parse(&access.url)
        .map_err(|_| JobFailure::Fatal(Cause::TargetRefused("the URL does not parse".into())))?;
    let basic = access.username.as_deref().zip(access.password.as_deref());
    match rt
        .http
        .get_calendar(&url, basic, target.etag.as_deref())
        .await
    {
        Ok(Fetched::Document { body, etag }) => Ok(Read {
            documents: Some(vec![body]),
            modified: true,
            etag,
            sync_token: None,
        }),
        Ok(Fetched::NotModified) => Ok(Read {
            documents: None,
            modified: false,
            etag: target.etag.clone(),
            sync_token: None,
        }),
        Err(e) => Err(JobFailure::Retry(Cause::Undelivered(e))),
    }
}

/// Whether `href` is an object muster published (never read back).
fn is_published(href: &str) -> bool {
    href.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("muster-"))
}

/// What changed in the link's CalDAV collection since its sync token:
/// only new and changed objects are fetched (calendar-multiget); the rest
/// come from what the last syncs kept.
async fn read_caldav(
    rt: &Runtime,
    job: &CalendarSyncJob,
    target: &SyncTarget,
    collection: &Collection,
) -> Result<Read, JobFailure> {
    let retry = |e: String| JobFailure::Retry(Cause::Undelivered(e));
    let changes = collection
        .changes(target.sync_token.as_deref())
        .await
        .map_err(retry)?;
    let known = rt
        .store
        .calendar_objects(&job.tenant, job.calendar_id)
        .await?;
    let known_etags: HashMap<&str, Option<&str>> = known
        .iter()
        .map(|o| (o.href.as_str(), o.etag.as_deref()))
        .collect();
    let listed: Vec<String> = changes
        .changed
        .iter()
        .filter(|(href, _)| !is_published(href))
        .map(|(href, _)| href.clone())
        .collect();
    let wanted: Vec<String> = changes
        .changed
        .iter()
        .filter(|(href, etag)| {
            !is_published(href)
                && (etag.is_none() || known_etags.get(href.as_str()) != Some(&etag.as_deref()))
        })
        .map(|(href, _)| href.clone())
        .collect();
    let fetched: Vec<StoredObject> = collection
        .fetch(&wanted)
        .await
        .map_err(retry)?
        .into_iter()
        .map(|o| StoredObject {
            href: o.href,
            etag: Some(o.etag),
            ics: o.ics,
        })
        .collect();
    let dropped = if changes.full {
        known.iter().filter(|o| !listed.contains(&o.href)).count()
    } else {
        changes
            .deleted
            .iter()
            .filter(|href| known_etags.contains_key(href.as_str()))
            .count()
    };
    let modified = !fetched.is_empty() || dropped > 0 || target.sync_token.is_none();
    if modified {
        rt.store
            .save_calendar_objects(
                &job.tenant,
                job.calendar_id,
                &fetched,
                &changes.deleted,
                changes.full.then_some(listed.as_slice()),
            )
            .await?;
    }
    let documents = if modified {
        let objects = rt
            .store
            .calendar_objects(&job.tenant, job.calendar_id)
            .await?;
        Some(objects.into_iter().map(|o| o.ics).collect())
    } else {
        None
    };
    Ok(Read {
        documents,
        modified,
        etag: None,
        sync_token: changes.token,
    })
}

/// Writes the resource's reservations to the link's collection: each new
/// one as an event (`UID` its id), a moved one again with `SEQUENCE` one
/// higher, a released one deleted. Idempotent: what is written is
/// recorded one by one, so a retry picks up where a failure stopped.
async fn publish(
    rt: &Runtime,
    job: &CalendarSyncJob,
    target: &SyncTarget,
    collection: &Collection,
) -> Result<(), JobFailure> {
    let retry = |e: String| JobFailure::Retry(Cause::Undelivered(e));
    let (tenant, calendar_id) = (&job.tenant, job.calendar_id);
    let (wanted, digest) = rt.store.publishable(tenant, target.resource_id).await?;
    let published: HashMap<Uuid, Published> = rt
        .store
        .published(tenant, calendar_id)
        .await?
        .into_iter()
        .map(|p| (p.reservation_id, p))
        .collect();
    let now = Utc::now();
    let mut written = 0u64;
    for reservation in &wanted {
        let earlier = published.get(&reservation.reservation_id);
        if earlier.is_some_and(|p| p.range == reservation.range) {
            continue;
        }
        let sequence = earlier.map_or(0, |p| p.sequence + 1);
        let title = reservation.label.as_deref().unwrap_or("Reserved");
        let ics = published_event(
            reservation.reservation_id,
            title,
            &reservation.range,
            u32::try_from(sequence).unwrap_or(0),
            now,
        );
        let href = earlier.map_or_else(
            || collection.href_of(reservation.reservation_id),
            |p| p.href.clone(),
        );
        let etag = earlier.and_then(|p| p.etag.as_deref());
        let new_etag = match collection.put(&href, ics.clone(), etag).await {
            Ok(etag) => etag,
            // Changed or written meanwhile (a retry after a write whose
            // record was lost): muster's event is muster's to replace.
            Err(_) => {
                collection.delete(&href).await.map_err(retry)?;
                collection.put(&href, ics, None).await.map_err(retry)?
            }
        };
        rt.store
            .record_published(
                tenant,
                calendar_id,
                &Published {
                    reservation_id: reservation.reservation_id,
                    href,
                    etag: new_etag,
                    sequence,
                    range: reservation.range,
                },
            )
            .await?;
        written += 1;
    }
    let kept: std::collections::HashSet<Uuid> = wanted.iter().map(|r| r.reservation_id).collect();
    let history = now - chrono::Duration::days(1);
    for p in published
        .values()
        .filter(|p| !kept.contains(&p.reservation_id))
    {
        // A reservation that ended a day ago stays in the calendar as
        // history; one released is deleted.
        if p.range.ends_at > history {
            collection.delete(&p.href).await.map_err(retry)?;
            written += 1;
        }
        rt.store
            .forget_published(tenant, calendar_id, p.reservation_id)
            .await?;
    }
    rt.store
        .set_published_digest(tenant, calendar_id, &digest)
        .await?;
    metrics::counter!("muster_calendar_published_total").increment(written);
    Ok(())
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
    let mut jobs: Vec<CalendarSyncJob> = due
        .into_iter()
        .map(|(tenant, calendar_id)| CalendarSyncJob::new(tenant, calendar_id))
        .collect();
    // Publishing links whose resource changed since they last wrote: one
    // job per change (the key), however often it is seen.
    jobs.extend(
        rt.store
            .stale_publications()
            .await?
            .into_iter()
            .map(|(tenant, calendar_id, key)| CalendarSyncJob::keyed(tenant, calendar_id, &key)),
    );
    rt.queue.enqueue_many(&mut tx, &jobs).await?;
    tx.commit().await?;
    Ok(jobs.len())
}
