//! The live stream's shared tail: one reader per process follows every
//! tenant's events below the safe position, once per wake-up, and keeps the
//! most recent ones in memory. Every `/v1/subscribe` stream of the process
//! is served from that memory, so the database's cost of the live stream
//! does not grow with its subscribers. Streams that ask for the same thing
//! (a tenant and a filter: an interest) share one filtered view of it: a
//! new event is tested once per interest, and only the streams of the
//! interests it matched are woken, so a stream costs nothing while nothing
//! it wants happens.
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
        let data =
            serde_json::to_string(&crate::feed::FeedEvent::from(event.clone())).unwrap_or_default();
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
    /// What the open streams ask for, by tenant and filter: each tail read
    /// tests a new event once per distinct filter of its tenant, not once
    /// per stream, and wakes only the streams it matched.
    interests: HashMap<String, HashMap<EventFilter, Matches>>,
}

/// The retained events of one interest (a tenant and a filter), shared by
/// every stream that asks for exactly that.
struct Matches {
    /// Its events after `covered_after`, in position order.
    events: VecDeque<Arc<LiveEvent>>,
    /// Every matching event after this position (up to the horizon) is in
    /// `events`: the streams after it lose nothing, however many other
    /// tenants' or types' events left the tail meanwhile.
    covered_after: i64,
    /// Streams following it; it goes with the last.
    streams: usize,
    /// Whether the read being added gave it events.
    grew: bool,
    /// Moves when `events` grows.
    grown: watch::Sender<i64>,
}

impl Matches {
    /// An interest's view of what the tail holds now.
    fn new(retained: &Retained, tenant: &str, filter: &EventFilter) -> Self {
        let events = retained
            .events
            .iter()
            .filter(|live| live.event.tenant.as_str() == tenant && filter.passes(&live.event))
            .cloned()
            .collect();
        Self {
            events,
            covered_after: retained.covered_after,
            streams: 0,
            grew: false,
            grown: watch::channel(retained.horizon).0,
        }
    }
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

/// A stream's membership in an interest: wakes when the interest's events
/// grow, and leaves it on drop.
pub struct Following {
    inner: Arc<RwLock<Retained>>,
    tenant: String,
    filter: EventFilter,
    grown: watch::Receiver<i64>,
}

impl Following {
    /// The filter the stream applies.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// A receiver that changes whenever events this stream wants arrive.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.grown.clone()
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut retained = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Some(of_tenant) = retained.interests.get_mut(&self.tenant) else {
            return;
        };
        if let Some(matches) = of_tenant.get_mut(&self.filter) {
            matches.streams = matches.streams.saturating_sub(1);
            if matches.streams == 0 {
                of_tenant.remove(&self.filter);
                metrics::gauge!("muster_live_interests").decrement(1.0);
            }
        }
        if of_tenant.is_empty() {
            retained.interests.remove(&self.tenant);
        }
    }
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
            interests: HashMap::new(),
        }));
        tokio::spawn(follow(store, retained, inner.clone(), wakeups, shutdown));
        Self { inner }
    }

    /// Joins the streams that want `tenant`'s events passing `filter`.
    pub fn follow(&self, tenant: &str, filter: EventFilter) -> Following {
        let mut retained = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let known = retained
            .interests
            .get(tenant)
            .is_some_and(|of_tenant| of_tenant.contains_key(&filter));
        // Only a new interest scans what the tail holds: a stream joining
        // one that exists costs a lookup.
        let fresh = (!known).then(|| Matches::new(&retained, tenant, &filter));
        let matches = retained
            .interests
            .entry(tenant.to_owned())
            .or_default()
            .entry(filter.clone())
            .or_insert_with(|| {
                metrics::gauge!("muster_live_interests").increment(1.0);
                fresh.expect("built above for a new interest")
            });
        matches.streams += 1;
        Following {
            grown: matches.grown.subscribe(),
            inner: self.inner.clone(),
            tenant: tenant.to_owned(),
            filter,
        }
    }

    /// The events after `after` that `following` wants, at most `limit`.
    pub fn serve(&self, following: &Following, after: i64, limit: usize) -> Served {
        let retained = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(matches) = retained
            .interests
            .get(&following.tenant)
            .and_then(|of_tenant| of_tenant.get(&following.filter))
        else {
            return Served::TooOld;
        };
        if after < matches.covered_after {
            return Served::TooOld;
        }
        let start = matches
            .events
            .partition_point(|e| e.event.position <= after);
        let matching: Vec<_> = matches.events.range(start..).take(limit).cloned().collect();
        let next = match matching.last() {
            Some(last) if matching.len() == limit => last.event.position,
            _ => retained.horizon.max(after),
        };
        Served::Events(matching, next)
    }
}

impl Retained {
    /// Adds a read's events up to `reached`, keeps the newest `keep`, and
    /// wakes the interests that got any.
    fn extend(&mut self, read: Vec<Arc<LiveEvent>>, reached: i64, keep: usize) {
        for live in &read {
            let Some(of_tenant) = self.interests.get_mut(live.event.tenant.as_str()) else {
                continue;
            };
            for (filter, matches) in of_tenant.iter_mut() {
                if filter.passes(&live.event) {
                    matches.events.push_back(live.clone());
                    matches.grew = true;
                }
            }
        }
        self.events.extend(read);
        while self.events.len() > keep {
            let Some(dropped) = self.events.pop_front() else {
                break;
            };
            self.covered_after = dropped.event.position;
            if let Some(of_tenant) = self.interests.get_mut(dropped.event.tenant.as_str()) {
                for matches in of_tenant.values_mut() {
                    if matches
                        .events
                        .front()
                        .is_some_and(|e| e.event.position == dropped.event.position)
                    {
                        matches.events.pop_front();
                        matches.covered_after = dropped.event.position;
                    }
                }
            }
        }
        self.horizon = reached;
        for matches in self.interests.values_mut().flat_map(|m| m.values_mut()) {
            if std::mem::take(&mut matches.grew) {
                matches.grown.send_replace(reached);
            }
        }
    }

    /// The tail begins at `start`: nothing older is retained.
    fn begin(&mut self, start: i64) {
        self.covered_after = start;
        self.horizon = start;
        for matches in self.interests.values_mut().flat_map(|m| m.values_mut()) {
            matches.covered_after = start;
        }
    }
}

/// Reads every new event below the safe position into `inner`, once per
/// wake-up (and at least once per [`POLL`]).
async fn follow(
    store: Store,
    keep: usize,
    inner: Arc<RwLock<Retained>>,
    mut wakeups: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    // Begin at the safe position: nothing older is retained.
    loop {
        match store.safe_position().await {
            Ok(start) => {
                inner
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .begin(start);
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
                retained.extend(serialized, reached, keep);
                metrics::gauge!("muster_live_tail_retained").set(retained.events.len() as f64);
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
