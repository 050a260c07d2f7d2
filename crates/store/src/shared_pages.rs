//! Pages of the event log read once for every follower in the process.
//!
//! `muster serve` runs five followers of the log (three read models and two
//! reactors). When they keep up they want the same pages, and each read
//! costs Postgres a scan and the printing of every payload, and muster the
//! decoding of it: the ninth session's profile of `serve` under commands
//! found reading events the largest single cost of keeping the read models.
//! An event at or below the safe position never changes and no event can
//! appear before it, so a page read earlier answers a later read of any
//! position inside it as well as a fresh read would.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::event_store::RecordedEvent;
use crate::{Store, StoreError};

/// How many recent pages are kept. Followers that keep up sit within the
/// last one or two; one that lags reads pages of its own.
const KEPT: usize = 8;

/// Part of a page of events shared with the other followers, in position
/// order.
#[derive(Debug, Clone)]
pub struct SharedPage {
    page: Arc<[RecordedEvent]>,
    start: usize,
    end: usize,
    /// No event at or below it that follows the read position is missing
    /// from [`SharedPage::events`]: the safe position the read stopped at,
    /// or the last event's when the page was cut at its limit.
    pub horizon: i64,
}

impl SharedPage {
    /// The events.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.page[self.start..self.end]
    }

    /// `limit` events of `read` after `after`, if `after` falls inside it.
    fn within(read: &Read, after: i64, limit: usize) -> Option<Self> {
        let last = read.events.last()?.position;
        if after < read.after || after >= last {
            return None;
        }
        let start = read.events.partition_point(|e| e.position <= after);
        let end = read.events.len().min(start + limit);
        let horizon = if end < read.events.len() {
            read.events[end - 1].position
        } else {
            read.complete_to
        };
        Some(Self {
            page: read.events.clone(),
            start,
            end,
            horizon,
        })
    }
}

/// The pages read recently, newest last.
#[derive(Debug, Default)]
pub(crate) struct RecentPages {
    // An async mutex held across the read on purpose: followers woken by
    // the same commit queue behind the first, which reads the page they
    // all want, instead of all reading it at once.
    reads: Mutex<VecDeque<Read>>,
}

/// One read of the log: every event in `(after, complete_to]`.
#[derive(Debug)]
struct Read {
    after: i64,
    complete_to: i64,
    events: Arc<[RecordedEvent]>,
}

impl Store {
    /// Like [`Store::read_page`], from a page another follower in this
    /// process read already when one holds the position: at most `limit`
    /// events after `after`, never past the safe position.
    pub async fn read_shared_page(&self, after: i64, limit: i64) -> Result<SharedPage, StoreError> {
        let wanted = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let mut reads = self.recent_pages.reads.lock().await;
        if let Some(page) = reads
            .iter()
            .rev()
            .find_map(|read| SharedPage::within(read, after, wanted))
        {
            metrics::counter!("muster_event_pages_shared_total").increment(1);
            return Ok(page);
        }
        let page = self.read_page(after, limit).await?;
        metrics::counter!("muster_event_pages_read_total").increment(1);
        let full = page.events.len() >= wanted;
        let read = Read {
            after,
            complete_to: match page.events.last() {
                Some(last) if full => last.position,
                _ => page.horizon,
            },
            events: page.events.into(),
        };
        let shared = SharedPage {
            page: read.events.clone(),
            start: 0,
            end: read.events.len(),
            horizon: read.complete_to,
        };
        if !read.events.is_empty() {
            if reads.len() == KEPT {
                reads.pop_front();
            }
            reads.push_back(read);
        }
        Ok(shared)
    }
}
