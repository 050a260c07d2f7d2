//! Calendar links (SPEC §12): a resource's own external calendar, whose
//! busy time ([`crate::external::busy_times`]) becomes external blocks
//! that count in every check, as a booking's reservations do.
//!
//! A link's stream records what it holds: `calendar.linked`, then one
//! `calendar.synced` per sync that changed something (blocks added and
//! removed), `calendar.conflict` for each booking a new block meets (the
//! booking stays; a planner decides), and `calendar.unlinked`. A sync is
//! decided here from what the calendar says now and what the link holds:
//! blocks keep their ids across syncs (derived from the event's `UID` and
//! occurrence), so an unchanged calendar changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Validator;
use crate::event::{EventDecodeError, decode, payload_of};
use crate::external::Busy;
use crate::time::TimeRange;
use crate::{Aggregate, DomainError, DomainEvent};

/// The shortest interval between periodic syncs.
pub const MIN_SYNC_EVERY_SECS: u32 = 60;
/// The longest interval between periodic syncs (a week).
pub const MAX_SYNC_EVERY_SECS: u32 = 7 * 86_400;
/// The interval when none is given (SPEC: PT5M).
pub const DEFAULT_SYNC_EVERY_SECS: u32 = 300;
/// The longest location (URL) a link may have.
pub const MAX_LOCATION: usize = 2_000;
/// The longest title a block keeps.
pub const MAX_TITLE: usize = 200;

/// What kind of calendar a link reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarKind {
    /// An iCalendar document at a URL (read only).
    Ics,
    /// A CalDAV collection (read, and written when the link publishes).
    Caldav,
}

impl CalendarKind {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarKind::Ics => "ics",
            CalendarKind::Caldav => "caldav",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [CalendarKind::Ics, CalendarKind::Caldav]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// A link's definition, as `calendar.linked` records it. The URL and the
/// credentials are sealed (encrypted with the server's secret key) and
/// never recorded in the clear; `location` is what may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    /// The resource whose time the calendar holds.
    pub resource_id: Uuid,
    /// What the URL is.
    pub kind: CalendarKind,
    /// The URL without credentials, query or fragment.
    pub location: String,
    /// The URL and credentials, sealed (base64).
    pub sealed: String,
    /// Whether muster writes the resource's reservations to the calendar.
    #[serde(default)]
    pub publish: bool,
    /// Whether the events' titles may be kept and shown.
    #[serde(default)]
    pub show_titles: bool,
    /// Seconds between periodic syncs.
    pub sync_every_secs: u32,
}

/// A busy range a link holds on its resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Stable across syncs: from the link, the event's `UID` and the
    /// occurrence.
    pub block_id: Uuid,
    /// From.
    pub starts_at: DateTime<Utc>,
    /// Until (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The event's title, only where the link shows titles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Block {
    /// The block `busy` makes on the link `calendar_id`; its title only
    /// when `show_titles`.
    pub fn from_busy(calendar_id: Uuid, busy: &Busy, show_titles: bool) -> Self {
        // One occurrence of one event: its original start for a recurring
        // event's, else its start (a calendar that repeats a UID without
        // RECURRENCE-ID still gives each copy a block of its own).
        let occurrence = busy.recurrence_id.unwrap_or(busy.range.starts_at);
        let name = format!("{}\u{0}{}", busy.uid, occurrence.timestamp_micros());
        Self {
            block_id: Uuid::new_v5(&calendar_id, name.as_bytes()),
            starts_at: busy.range.starts_at,
            ends_at: busy.range.ends_at,
            title: busy
                .title
                .as_ref()
                .filter(|_| show_titles)
                .map(|t| t.chars().take(MAX_TITLE).collect()),
        }
    }

    /// When it is busy.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// What one sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// Blocks that are new or changed (a changed one is also removed
    /// first, under its id).
    pub added: Vec<Block>,
    /// Ids of blocks that are gone or changed.
    pub removed: Vec<Uuid>,
}

impl Synced {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// A booking's reservation that a new block meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Met {
    /// The booking.
    pub booking_id: Uuid,
    /// Its reservation on the link's resource.
    pub reservation_id: Uuid,
    /// The reservation's start.
    pub starts_at: DateTime<Utc>,
    /// The reservation's end.
    pub ends_at: DateTime<Utc>,
}

/// `calendar.conflict`: a new block meets a booking that was already there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The link's resource.
    pub resource_id: Uuid,
    /// The block.
    pub block: Block,
    /// The booking's reservation it meets.
    pub booking: Met,
}

/// Commands on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarCommand {
    /// Links a calendar to a resource.
    Link(LinkSpec),
    /// Makes the link hold `blocks`: what its calendar says is busy in
    /// `window`. `meeting` is what the resource held, under its lock, that
    /// the blocks new to the link may meet (bookings' reservations).
    Sync {
        /// The busy ranges in the window, as blocks.
        blocks: Vec<Block>,
        /// What the calendar was read over.
        window: TimeRange,
        /// Bookings' reservations on the resource around the new blocks.
        meeting: Vec<Met>,
    },
    /// Removes the link and its blocks.
    Unlink,
}

/// Events of a link's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarEvent {
    /// `calendar.linked`
    Linked(LinkSpec),
    /// `calendar.synced`
    Synced(Synced),
    /// `calendar.conflict`
    Conflict(Conflict),
    /// `calendar.unlinked`
    Unlinked,
}

/// A link, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarLink {
    /// `None` until linked.
    pub spec: Option<LinkSpec>,
    /// The blocks it holds, by id.
    pub blocks: BTreeMap<Uuid, Block>,
    /// Whether it was unlinked.
    pub unlinked: bool,
}

impl CalendarLink {
    /// What making the link hold `blocks` (the calendar's busy time in
    /// `window`) changes. Blocks that ended before the window are dropped
    /// with any other change, so that what a link holds stays bounded
    /// without a sync that changes nothing else recording anything.
    pub fn changes(&self, blocks: &[Block], window: &TimeRange) -> Synced {
        let wanted: BTreeMap<Uuid, &Block> = blocks.iter().map(|b| (b.block_id, b)).collect();
        let mut synced = Synced::default();
        for (id, held) in &self.blocks {
            let in_window = held.ends_at > window.starts_at && held.starts_at < window.ends_at;
            match wanted.get(id) {
                Some(block) if *block == held => {}
                Some(_) => synced.removed.push(*id),
                None if in_window => synced.removed.push(*id),
                None => {}
            }
        }
        for (id, block) in &wanted {
            if self.blocks.get(id) != Some(*block) {
                synced.added.push((*block).clone());
            }
        }
        if !synced.is_empty() {
            let past = self
                .blocks
                .iter()
                .filter(|(id, b)| b.ends_at <= window.starts_at && !wanted.contains_key(id))
                .map(|(id, _)| *id);
            synced.removed.extend(past);
        }
        synced.added.sort_by_key(|b| (b.starts_at, b.block_id));
        synced.removed.sort_unstable();
        synced
    }

    fn spec(&self) -> Result<&LinkSpec, DomainError> {
        match &self.spec {
            Some(spec) if !self.unlinked => Ok(spec),
            _ => Err(DomainError::NotFound("calendar")),
        }
    }
}

impl Aggregate for CalendarLink {
    type Command = CalendarCommand;
    type Event = CalendarEvent;
    const STREAM_TYPE: &'static str = "calendar";

    fn evolve(&mut self, event: &CalendarEvent) {
        match event {
            CalendarEvent::Linked(spec) => self.spec = Some(spec.clone()),
            CalendarEvent::Synced(synced) => {
                for id in &synced.removed {
                    self.blocks.remove(id);
                }
                for block in &synced.added {
                    self.blocks.insert(block.block_id, block.clone());
                }
            }
            CalendarEvent::Conflict(_) => {}
            CalendarEvent::Unlinked => {
                self.unlinked = true;
                self.blocks.clear();
            }
        }
    }

    fn decide(&self, command: CalendarCommand) -> Result<Vec<CalendarEvent>, DomainError> {
        match command {
            CalendarCommand::Link(spec) => {
                if self.spec.is_some() {
                    return Err(DomainError::AlreadyExists("calendar"));
                }
                let mut v = Validator::default();
                v.text(&spec.location, "url", MAX_LOCATION);
                v.check(
                    (MIN_SYNC_EVERY_SECS..=MAX_SYNC_EVERY_SECS).contains(&spec.sync_every_secs),
                    "sync_every",
                    "must be from PT1M to P7D",
                );
                v.check(
                    !spec.publish || spec.kind == CalendarKind::Caldav,
                    "publish",
                    "only a CalDAV calendar can be published to",
                );
                v.finish()?;
                Ok(vec![CalendarEvent::Linked(spec)])
            }
            CalendarCommand::Sync {
                blocks,
                window,
                meeting,
            } => {
                let spec = self.spec()?;
                let synced = self.changes(&blocks, &window);
                if synced.is_empty() {
                    return Ok(Vec::new());
                }
                let conflicts: Vec<CalendarEvent> = synced
                    .added
                    .iter()
                    .flat_map(|block| {
                        meeting
                            .iter()
                            .filter(|m| m.starts_at < block.ends_at && block.starts_at < m.ends_at)
                            .map(|m| {
                                CalendarEvent::Conflict(Conflict {
                                    resource_id: spec.resource_id,
                                    block: block.clone(),
                                    booking: m.clone(),
                                })
                            })
                    })
                    .collect();
                let mut events = vec![CalendarEvent::Synced(synced)];
                events.extend(conflicts);
                Ok(events)
            }
            CalendarCommand::Unlink => {
                self.spec()?;
                Ok(vec![CalendarEvent::Unlinked])
            }
        }
    }
}

impl DomainEvent for CalendarEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CalendarEvent::Linked(_) => "calendar.linked",
            CalendarEvent::Synced(_) => "calendar.synced",
            CalendarEvent::Conflict(_) => "calendar.conflict",
            CalendarEvent::Unlinked => "calendar.unlinked",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            CalendarEvent::Linked(spec) => payload_of(spec),
            CalendarEvent::Synced(synced) => payload_of(synced),
            CalendarEvent::Conflict(conflict) => payload_of(conflict),
            CalendarEvent::Unlinked => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        Ok(match event_type {
            "calendar.linked" => CalendarEvent::Linked(decode(event_type, payload)?),
            "calendar.synced" => CalendarEvent::Synced(decode(event_type, payload)?),
            "calendar.conflict" => CalendarEvent::Conflict(decode(event_type, payload)?),
            "calendar.unlinked" => CalendarEvent::Unlinked,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests;
