//! The live stream's shared tail: while any stream is open, one reader per
//! process follows every tenant's events below the safe position, once per
//! wake-up, and keeps the most recent ones in memory (their SSE frames and
//! what filters test, not their decoded payloads), bounded in number and
//! in bytes. With no stream open it reads nothing and keeps nothing.
//! Every `/v1/subscribe` stream of the process is served from that memory, so the database's cost of the live stream
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
use muster_store::{EventFilter, EventHead, RecordedEvent, Store};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Events kept in memory by default: about a minute of 1,000 events/s.
pub const DEFAULT_RETAINED: usize = 65_536;
/// Bytes those events may take by default (their frames and heads).
pub const DEFAULT_RETAINED_BYTES: usize = 32 << 20;

/// How much the tail keeps: the newest events, at most this many and this
/// many bytes.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most events.
    pub events: usize,
    /// Most bytes (frames and heads).
    pub bytes: usize,
}
/// Events read per tail query.
const TAIL_PAGE: i64 = 2_000;
/// Re-read this often even without a wake-up (a missed notification).
const POLL: Duration = Duration::from_secs(1);

/// An event as the live stream sends it: what filters test of it, and its
/// whole SSE frame (`id`, `event`, and the feed's JSON as `data`), built
/// once for every subscriber that gets it. The decoded payload is not kept:
/// the frame carries it, and a JSON tree took several times its size.
#[derive(Debug)]
pub struct LiveEvent {
    /// The event without its payload.
    pub head: EventHead,
    /// Its SSE frame, ready to write.
    pub frame: Bytes,
}

impl LiveEvent {
    /// Frames `event` for the stream.
    pub fn new(event: RecordedEvent) -> Self {
        let head = EventHead::of(&event);
        // Compact JSON has no line breaks, and event types have none
        // either, so each field is one line of the frame.
        let data = serde_json::to_string(&crate::feed::FeedEvent::from(event)).unwrap_or_default();
        let frame = format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            head.position, head.event_type
        );
        Self {
            head,
            frame: Bytes::from(frame),
        }
    }

    /// Roughly the bytes it keeps in memory.
    fn size(&self) -> usize {
        self.head.size() + self.frame.len() + std::mem::size_of::<Arc<Self>>()
    }
}

/// The process's tail of the event store.
#[derive(Clone)]
pub struct LiveTail {
    inner: Arc<RwLock<Retained>>,
    /// Raised when a stream joins: an idle tail starts following.
    joined: Arc<Notify>,
}

/// The recent events and how far they reach.
struct Retained {
    /// Events after `covered_after` up to `horizon`, in position order,
    /// every tenant's.
    events: VecDeque<Arc<LiveEvent>>,
    /// Bytes `events` keep.
    bytes: usize,
    /// Every event after this position (up to `horizon`) is in `events`
    /// (`i64::MAX` while the tail is idle: nothing is).
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
            .filter(|live| live.head.tenant.as_str() == tenant && filter.passes_head(&live.head))
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
    /// The tail is about to begin (a stream just joined an idle tail):
    /// wait for its change rather than read the store.
    Starting,
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
    /// Starts the tail. It follows the log only while some stream is
    /// open: it begins at the store's safe position when the first one
    /// joins (until then every subscriber reads the store), and forgets
    /// everything when the last one leaves. `wakeups` changes whenever
    /// events were appended (the LISTEN signal); the tail stops with
    /// `shutdown`.
    pub fn spawn(
        store: Store,
        retention: Retention,
        wakeups: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Arc::new(RwLock::new(Retained {
            events: VecDeque::new(),
            bytes: 0,
            covered_after: i64::MAX,
            horizon: 0,
            interests: HashMap::new(),
        }));
        let joined = Arc::new(Notify::new());
        tokio::spawn(follow(
            store,
            retention,
            inner.clone(),
            joined.clone(),
            wakeups,
            shutdown,
        ));
        Self { inner, joined }
    }

    /// Events and bytes the tail keeps now.
    pub fn retained(&self) -> (usize, usize) {
        let retained = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (retained.events.len(), retained.bytes)
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
        self.joined.notify_one();
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
        if retained.covered_after == i64::MAX {
            return Served::Starting;
        }
        if after < matches.covered_after {
            return Served::TooOld;
        }
        let start = matches.events.partition_point(|e| e.head.position <= after);
        let matching: Vec<_> = matches.events.range(start..).take(limit).cloned().collect();
        let next = match matching.last() {
            Some(last) if matching.len() == limit => last.head.position,
            _ => retained.horizon.max(after),
        };
        Served::Events(matching, next)
    }
}

impl Retained {
    /// Adds a read's events up to `reached`, keeps the newest within
    /// `keep`, and wakes the interests that got any.
    fn extend(&mut self, read: Vec<Arc<LiveEvent>>, reached: i64, keep: Retention) {
        for live in &read {
            self.bytes += live.size();
            let Some(of_tenant) = self.interests.get_mut(live.head.tenant.as_str()) else {
                continue;
            };
            for (filter, matches) in of_tenant.iter_mut() {
                if filter.passes_head(&live.head) {
                    matches.events.push_back(live.clone());
                    matches.grew = true;
                }
            }
        }
        self.events.extend(read);
        while self.events.len() > keep.events || self.bytes > keep.bytes {
            let Some(dropped) = self.events.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(dropped.size());
            self.covered_after = dropped.head.position;
            if let Some(of_tenant) = self.interests.get_mut(dropped.head.tenant.as_str()) {
                for matches in of_tenant.values_mut() {
                    if matches
                        .events
                        .front()
                        .is_some_and(|e| e.head.position == dropped.head.position)
                    {
                        matches.events.pop_front();
                        matches.covered_after = dropped.head.position;
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

    /// No stream is open: forget every event (what joins later begins
    /// again at the safe position).
    fn idle(&mut self) {
        self.events = VecDeque::new();
        self.bytes = 0;
        self.covered_after = i64::MAX;
    }

    /// The tail begins at `start`: nothing older is retained. The streams
    /// waiting for it to begin are woken.
    fn begin(&mut self, start: i64) {
        self.covered_after = start;
        self.horizon = start;
        for matches in self.interests.values_mut().flat_map(|m| m.values_mut()) {
            matches.covered_after = start;
            matches.grown.send_replace(start);
        }
    }
}

/// While some stream is open, reads every new event below the safe
/// position into `inner`, once per wake-up (and at least once per
/// [`POLL`]); while none is, reads nothing.
async fn follow(
    store: Store,
    keep: Retention,
    inner: Arc<RwLock<Retained>>,
    joined: Arc<Notify>,
    mut wakeups: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        // Idle until a stream joins: nothing to read for nobody.
        let idle = {
            let mut retained = inner.write().unwrap_or_else(|e| e.into_inner());
            let idle = retained.interests.is_empty();
            if idle && retained.covered_after != i64::MAX {
                retained.idle();
                metrics::gauge!("muster_live_tail_retained").set(0.0);
                metrics::gauge!("muster_live_tail_retained_bytes").set(0.0);
            }
            idle
        };
        if idle {
            tokio::select! {
                () = joined.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        if inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .covered_after
            == i64::MAX
        {
            // Begin at the safe position: nothing older is retained.
            match store.safe_position().await {
                Ok(start) => inner
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .begin(start),
                Err(e) => {
                    tracing::warn!(error = %e, "the live tail cannot start yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            continue;
        }
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
                // Framed once here, outside the lock, for every stream.
                let framed: Vec<Arc<LiveEvent>> = page
                    .events
                    .into_iter()
                    .map(|e| Arc::new(LiveEvent::new(e)))
                    .collect();
                let mut retained = inner.write().unwrap_or_else(|e| e.into_inner());
                retained.extend(framed, reached, keep);
                metrics::gauge!("muster_live_tail_retained").set(retained.events.len() as f64);
                metrics::gauge!("muster_live_tail_retained_bytes").set(retained.bytes as f64);
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
            () = joined.notified() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, payload_bytes: usize) -> Arc<LiveEvent> {
        Arc::new(LiveEvent::new(RecordedEvent {
            tenant: "acme".parse().unwrap(),
            position,
            stream_type: "booking".into(),
            stream_id: Uuid::nil(),
            stream_version: 1,
            event_type: "booking.requested".into(),
            schema_version: 2,
            payload: serde_json::json!({ "notes": "x".repeat(payload_bytes) }),
            metadata: serde_json::json!({ "actor": "k" }),
            recorded_at: chrono::Utc::now(),
        }))
    }

    fn retained() -> Retained {
        let mut retained = Retained {
            events: VecDeque::new(),
            bytes: 0,
            covered_after: i64::MAX,
            horizon: 0,
            interests: HashMap::new(),
        };
        retained.begin(0);
        retained
    }

    #[test]
    fn the_tail_keeps_the_newest_events_within_its_bytes() {
        let mut tail = retained();
        let one = event(1, 10_000).size();
        let keep = Retention {
            events: 1_000,
            bytes: one * 3 + one / 2,
        };
        tail.extend((1..=10).map(|p| event(p, 10_000)).collect(), 10, keep);
        let kept: Vec<i64> = tail.events.iter().map(|e| e.head.position).collect();
        assert_eq!(kept, [8, 9, 10]);
        assert!(tail.bytes <= keep.bytes, "{} > {}", tail.bytes, keep.bytes);
        assert_eq!(tail.covered_after, 7);
        // And within its count.
        let mut tail = retained();
        let keep = Retention {
            events: 2,
            bytes: usize::MAX,
        };
        tail.extend((1..=5).map(|p| event(p, 10)).collect(), 5, keep);
        assert_eq!(tail.events.len(), 2);
        assert_eq!(tail.covered_after, 3);
    }

    #[test]
    fn an_idle_tail_keeps_nothing_and_covers_nothing() {
        let mut tail = retained();
        let keep = Retention {
            events: 100,
            bytes: usize::MAX,
        };
        tail.extend((1..=5).map(|p| event(p, 10)).collect(), 5, keep);
        tail.idle();
        assert!(tail.events.is_empty());
        assert_eq!(tail.bytes, 0);
        assert_eq!(tail.covered_after, i64::MAX);
    }
}
