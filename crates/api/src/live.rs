//! The live stream's shared tail: one reader per process follows every
//! tenant's events below the safe position, once per wake-up, and keeps the
//! most recent ones in memory. Every `/v1/subscribe` stream of the process
//! is served from that memory (tenant and filters applied there), so the
//! database's cost of the live stream does not grow with its subscribers.
//! A subscriber whose position is older than the memory (a resume after a
//! long disconnect) catches up from the store on its own, page by page,
//! then joins the tail.
//!
//! Streams are capped per key and per process ([`StreamCaps`]). With a hot
//! standby (`READ_DATABASE_URL`) the tail reads the events there, and asks
//! the primary only for the safe position, once per wake-up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use muster_store::{EventFilter, RecordedEvent, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Events kept in memory by default: about a minute of 1,000 events/s.
pub const DEFAULT_RETAINED: usize = 65_536;
/// Events read per tail query.
const TAIL_PAGE: i64 = 2_000;
/// Re-read this often even without a wake-up (a missed notification).
const POLL: Duration = Duration::from_secs(1);

/// An event as the live stream sends it: the event, and its whole SSE
/// frame (`id`, `event`, and the feed's JSON as `data`), built once for
/// every subscriber that gets it.
#[derive(Debug)]
pub struct LiveEvent {
    /// The event.
    pub event: RecordedEvent,
    /// Its SSE frame, ready to write.
    pub frame: Bytes,
}

impl LiveEvent {
    /// Frames `event` for the stream.
    pub fn new(event: RecordedEvent) -> Self {
        // Compact JSON has no line breaks, and event types have none
        // either, so each field is one line of the frame.
        let data = serde_json::to_string(&crate::routes::events::FeedEvent::from(event.clone()))
            .unwrap_or_default();
        let frame = format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            event.position, event.event_type
        );
        Self {
            event,
            frame: Bytes::from(frame),
        }
    }
}

/// The process's tail of the event store.
#[derive(Clone)]
pub struct LiveTail {
    inner: Arc<RwLock<Retained>>,
    horizon: watch::Receiver<i64>,
}

/// The recent events and how far they reach.
struct Retained {
    /// Events after `covered_after` up to `horizon`, in position order,
    /// every tenant's.
    events: VecDeque<Arc<LiveEvent>>,
    /// Every event after this position (up to `horizon`) is in `events`.
    covered_after: i64,
    /// Everything at or below it has been read (the safe position the last
    /// read stopped at).
    horizon: i64,
}

/// What a subscriber gets from the tail for its position.
pub enum Served {
    /// The matching events after the position (possibly none), and the
    /// position to go on from.
    Events(Vec<Arc<LiveEvent>>, i64),
    /// The position is older than what the tail retains: catch up from the
    /// store first (or, for a subscriber that was live, it fell behind).
    TooOld,
}

impl LiveTail {
    /// Starts the tail; it begins at the store's safe position when its
    /// first read succeeds (until then every subscriber reads the store).
    /// `wakeups` changes whenever events were appended (the LISTEN signal);
    /// the tail stops with `shutdown`.
    /// It keeps the newest `retained` events in memory.
    pub fn spawn(
        store: Store,
        retained: usize,
        wakeups: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Arc::new(RwLock::new(Retained {
            events: VecDeque::new(),
            covered_after: i64::MAX,
            horizon: 0,
        }));
        let (tx, horizon) = watch::channel(0);
        tokio::spawn(follow(
            store,
            retained,
            inner.clone(),
            tx,
            wakeups,
            shutdown,
        ));
        Self { inner, horizon }
    }

    /// A receiver that changes whenever the tail's horizon moves.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.horizon.clone()
    }

    /// `tenant`'s events after `after` that pass `filter`, at most `limit`.
    pub fn serve(&self, tenant: &str, filter: &EventFilter, after: i64, limit: usize) -> Served {
        let retained = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if after < retained.covered_after {
            return Served::TooOld;
        }
        let start = retained
            .events
            .partition_point(|e| e.event.position <= after);
        let mut matching = Vec::new();
        let mut next = retained.horizon.max(after);
        for live in retained.events.range(start..) {
            if live.event.tenant.as_str() != tenant || !filter.passes(&live.event) {
                continue;
            }
            matching.push(live.clone());
            if matching.len() == limit {
                next = live.event.position;
                break;
            }
        }
        Served::Events(matching, next)
    }
}

/// Reads every new event below the safe position into `inner`, once per
/// wake-up (and at least once per [`POLL`]).
async fn follow(
    store: Store,
    keep: usize,
    inner: Arc<RwLock<Retained>>,
    horizon: watch::Sender<i64>,
    mut wakeups: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    // Begin at the safe position: nothing older is retained.
    loop {
        match store.safe_position().await {
            Ok(start) => {
                let mut retained = inner.write().unwrap_or_else(|e| e.into_inner());
                retained.covered_after = start;
                retained.horizon = start;
                break;
            }
            Err(e) => tracing::warn!(error = %e, "the live tail cannot start yet; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
    }
    loop {
        wakeups.borrow_and_update();
        let after = inner.read().unwrap_or_else(|e| e.into_inner()).horizon;
        // From the standby when there is one (READ_DATABASE_URL).
        let full = match store.read_page_from_replica(after, TAIL_PAGE).await {
            Ok(page) => {
                metrics::counter!("muster_live_tail_reads_total").increment(1);
                let full = page.events.len() as i64 == TAIL_PAGE;
                let reached = match page.events.last() {
                    Some(last) if full => last.position,
                    _ => page.horizon.max(after),
                };
                // Serialized once here, outside the lock, for every stream.
                let serialized: Vec<Arc<LiveEvent>> = page
                    .events
                    .into_iter()
                    .map(|e| Arc::new(LiveEvent::new(e)))
                    .collect();
                let mut retained = inner.write().unwrap_or_else(|e| e.into_inner());
                retained.events.extend(serialized);
                while retained.events.len() > keep {
                    if let Some(dropped) = retained.events.pop_front() {
                        retained.covered_after = dropped.event.position;
                    }
                }
                retained.horizon = reached;
                metrics::gauge!("muster_live_tail_retained").set(retained.events.len() as f64);
                drop(retained);
                // Only a moved horizon wakes the streams: an idle poll
                // would wake every one of them each second for nothing.
                horizon.send_if_modified(|h| {
                    let moved = *h != reached;
                    *h = reached;
                    moved
                });
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "the live tail could not read; retrying");
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = wakeups.changed() => {}
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Caps on open streams, per key and per process.
pub struct StreamCaps {
    per_key: usize,
    per_process: usize,
    open: Mutex<(usize, HashMap<Uuid, usize>)>,
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReached {
    /// This key has as many streams open as it may.
    Key(usize),
    /// This process serves as many streams as it may.
    Process(usize),
}

impl StreamCaps {
    /// At most `per_key` streams per API key and `per_process` in all.
    pub fn new(per_key: usize, per_process: usize) -> Self {
        Self {
            per_key,
            per_process,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Opens a stream for `key`, or says which cap it would break. The
    /// stream counts until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, key: Uuid) -> Result<StreamSlot, CapReached> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.per_process {
            return Err(CapReached::Process(self.per_process));
        }
        let of_key = open.1.entry(key).or_default();
        if *of_key >= self.per_key {
            return Err(CapReached::Key(self.per_key));
        }
        *of_key += 1;
        open.0 += 1;
        metrics::gauge!("muster_subscribers").increment(1.0);
        Ok(StreamSlot {
            caps: self.clone(),
            key,
        })
    }
}

/// One open stream, counted against the caps while it lives.
pub struct StreamSlot {
    caps: Arc<StreamCaps>,
    key: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(of_key) = open.1.get_mut(&self.key) {
            *of_key = of_key.saturating_sub(1);
            if *of_key == 0 {
                open.1.remove(&self.key);
            }
        }
        metrics::gauge!("muster_subscribers").decrement(1.0);
    }
}
