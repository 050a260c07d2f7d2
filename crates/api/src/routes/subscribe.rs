//! `GET /v1/subscribe`: the tenant's events as Server-Sent Events, live.
//!
//! Each subscriber keeps its own cursor (the event id is the position),
//! below the safe position, so a resumed stream (`Last-Event-ID`) has no gap
//! and no duplicate. Events come from the process's shared tail
//! ([`crate::live`]), so a thousand subscribers cost the database what one
//! does, and each event's frame is built once for all of them. A subscriber
//! is only served as fast as it consumes, so a slow one holds back nobody
//! but itself. One that falls so far behind that its position leaves the
//! tail's memory (`MUSTER_LIVE_BUFFER` events, `MUSTER_LIVE_BUFFER_BYTES`
//! bytes) is cut off, rather than
//! served from the database, with a `muster.cut-off` event whose `id` is
//! where to resume (an `EventSource` reconnects there by itself).

use muster_domain::TenantId;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use muster_store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, READERS};
use crate::extract::QueryParams;
use crate::live::{CapReached, Following, LiveEvent, Served, StreamSlot};
use crate::read::invalid;
use crate::{ApiError, AppState};

/// The live stream route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(subscribe))
}

/// Events read per store query.
const PAGE: i64 = 500;
/// A comment line this often keeps an idle stream open through proxies.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// What to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    /// Only these stream types, comma-separated (`booking,resource`).
    stream_types: Option<String>,
    /// Only these event types, comma-separated (`booking.confirmed`).
    event_types: Option<String>,
    /// Start after this position (default: only new events). The
    /// `Last-Event-ID` header, sent by reconnecting clients, wins.
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// Stream the tenant's events live. Each SSE event has the position as
/// `id`, the event type as `event`, and the feed's event JSON as `data`.
#[utoipa::path(get, path = "/v1/subscribe", tag = "events", params(SubscribeQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position")),
    responses((status = 200, description = "An endless event stream",
        content_type = "text/event-stream", body = String)))]
async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    QueryParams(q): QueryParams<SubscribeQuery>,
) -> Result<Response, ApiError> {
    let principal = auth.require(READERS)?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| invalid("Last-Event-ID", "must be a position this stream sent"))?,
        ),
        None => None,
    };
    if q.after.is_some_and(|a| a < 0) {
        return Err(invalid("after", "must be at least 0"));
    }
    let after = match resume.or(q.after) {
        Some(after) => after,
        None => state.store.safe_position().await?,
    };
    let filter = EventFilter {
        stream_types: list(q.stream_types.as_deref()),
        event_types: list(q.event_types.as_deref()),
        ..EventFilter::default()
    };
    let slot = state.streams.open(principal.key_id).map_err(|cap| {
        metrics::counter!("muster_subscriber_rejections_total",
            "cap" => match cap { CapReached::Key(_) => "key", CapReached::Process(_) => "process" })
        .increment(1);
        ApiError::TooManyStreams(cap)
    })?;
    let following = state.tail.follow(principal.tenant.as_str(), filter);
    let cursor = Cursor {
        state,
        tenant: principal.tenant.clone(),
        following,
        after,
        buffer: VecDeque::new(),
        live: false,
        cut_off: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let chunk = cursor.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), cursor))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        // Fused, as every streamed answer: see the report download.
        Body::from_stream(stream.fuse()),
    )
        .into_response())
}

/// The listed names, sorted and without repeats: streams asking for the
/// same set share one interest of the tail however they spell it.
fn list(raw: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = raw
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The last frame of a stream cut off for falling behind: its `id` is the
/// position to resume after (everything up to it was sent).
fn cut_off_frame(resume_after: i64) -> Bytes {
    Bytes::from(format!(
        "id: {resume_after}\nevent: muster.cut-off\ndata: {}\n\n",
        serde_json::json!({
            "resume_after": resume_after,
            "reason": "this stream fell too far behind the live events; \
                       reconnect with Last-Event-ID to resume where it stopped",
        })
    ))
}

/// One subscriber's position in the tenant's events.
struct Cursor {
    state: AppState,
    tenant: TenantId,
    /// Its interest in the tail: wakes it only for events it wants.
    following: Following,
    after: i64,
    buffer: VecDeque<Arc<LiveEvent>>,
    /// Whether it has caught up with the tail at least once: only then can
    /// it fall behind (a resume from further back catches up instead).
    live: bool,
    /// Whether the cut-off frame has been sent: the stream ends.
    cut_off: bool,
    _slot: StreamSlot,
}

impl Cursor {
    /// The next frames to write (every buffered event in one chunk, so a
    /// busy stream costs one write per batch), a keep-alive comment after
    /// [`KEEP_ALIVE`] without events, or the cut-off frame; `None` ends the
    /// stream (shutdown, cut off, or the store failed: the client resumes
    /// with `Last-Event-ID`).
    ///
    /// Served from the process's shared tail; only a position older than
    /// what the tail retains reads the store, until it has caught up.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let mut changes = self.following.changes();
        // Kept alive from the last write, however often the tail moves for
        // events this stream does not want.
        let quiet_until = tokio::time::Instant::now() + KEEP_ALIVE;
        loop {
            if !self.buffer.is_empty() {
                let size = self.buffer.iter().map(|e| e.frame.len()).sum();
                let mut chunk = Vec::with_capacity(size);
                for event in self.buffer.drain(..) {
                    chunk.extend_from_slice(&event.frame);
                }
                return Some(Bytes::from(chunk));
            }
            if self.state.shutdown.is_cancelled() || self.cut_off {
                return None;
            }
            changes.borrow_and_update();
            match self
                .state
                .tail
                .serve(&self.following, self.after, PAGE as usize)
            {
                Served::Events(events, next) => {
                    self.after = next;
                    if events.len() < PAGE as usize {
                        self.live = true;
                    }
                    if events.is_empty() {
                        tokio::select! {
                            _ = changes.changed() => {}
                            () = tokio::time::sleep_until(quiet_until) => {
                                return Some(Bytes::from_static(b":\n\n"));
                            }
                            () = self.state.shutdown.cancelled() => return None,
                        }
                    }
                    self.buffer.extend(events);
                }
                Served::Starting => {
                    tokio::select! {
                        _ = changes.changed() => {}
                        () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                        () = self.state.shutdown.cancelled() => return None,
                    }
                }
                Served::TooOld if self.live => {
                    metrics::counter!("muster_subscriber_cutoffs_total").increment(1);
                    tracing::info!(
                        resume_after = self.after,
                        "a live stream fell behind; cut off"
                    );
                    self.cut_off = true;
                    return Some(cut_off_frame(self.after));
                }
                Served::TooOld => {
                    if !self.catch_up().await {
                        return None;
                    }
                    if self.buffer.is_empty() {
                        // Caught up while the tail has not started (or
                        // retains less): wait rather than read again at once.
                        tokio::select! {
                            _ = changes.changed() => {}
                            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                            () = self.state.shutdown.cancelled() => return None,
                        }
                    }
                }
            }
        }
    }

    /// Reads one page from the store after the cursor (a resume from
    /// further back than the tail retains); `false` when the store failed.
    async fn catch_up(&mut self) -> bool {
        metrics::counter!("muster_live_catch_up_reads_total").increment(1);
        let page = match self
            .state
            .store
            .read_tenant_page(&self.tenant, self.following.filter(), self.after, PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "live stream ends: the store failed");
                return false;
            }
        };
        // A page that is not full has seen everything up to the horizon
        // (filtered-out events included), so the cursor may jump there.
        self.after = match page.events.last() {
            Some(last) if page.events.len() as i64 == PAGE => last.position,
            _ => page.horizon.max(self.after),
        };
        self.buffer
            .extend(page.events.into_iter().map(|e| Arc::new(LiveEvent::new(e))));
        true
    }
}
