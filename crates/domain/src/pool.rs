//! Pools: named sets of interchangeable resources ("any barber", "a room
//! for 40"), by explicit members or by a selector evaluated when a
//! reservation is made, and the strategy that orders the free members when
//! one is picked (SPEC §12).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Validator;
use crate::event::{EventDecodeError, decode, payload_of};
use crate::resource::{MAX_KIND, MAX_NAME, MAX_TAG, MAX_TAGS, ResourceProfile};
use crate::{Aggregate, DomainError, DomainEvent};

/// Most explicit members of one pool.
pub const MAX_MEMBERS: usize = 500;

/// Who belongs to a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Members {
    /// These resources, in this order (the order `first` follows and ties
    /// of the other strategies fall back to).
    Explicit(Vec<Uuid>),
    /// Every resource that matches, in the order of their ids.
    Selector(Selector),
}

/// Which resources a selector takes; every part given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// With every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Seating at least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seats: Option<u32>,
    /// Holding at least this many bookings at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<u32>,
}

impl Selector {
    /// Whether a resource with `profile` matches.
    pub fn matches(&self, profile: &ResourceProfile) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == profile.kind)
            && self.tags.iter().all(|t| profile.tags.contains(t))
            && self
                .min_seats
                .is_none_or(|min| profile.seats.is_some_and(|s| s >= min))
            && self.min_capacity.is_none_or(|min| profile.capacity >= min)
    }

    fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.tags.is_empty()
            && self.min_seats.is_none()
            && self.min_capacity.is_none()
    }
}

/// How a pool orders its free members when it picks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The member with the fewest reserved minutes on the claim's local
    /// day first; ties in member order.
    #[default]
    LeastBooked,
    /// Member order.
    First,
    /// The member assigned longest ago (never: first); ties in member
    /// order.
    RoundRobin,
}

/// What the strategies weigh of one free member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLoad {
    /// The member.
    pub resource_id: Uuid,
    /// Minutes it has reserved on the claim's local day.
    pub booked_minutes: i64,
    /// When the pool last assigned it, if ever.
    pub last_assigned_at: Option<DateTime<Utc>>,
}

impl Strategy {
    /// `members` (free ones, in member order) in the order this strategy
    /// picks them.
    pub fn order(self, members: &[MemberLoad]) -> Vec<Uuid> {
        let mut ranked: Vec<(usize, &MemberLoad)> = members.iter().enumerate().collect();
        match self {
            Strategy::First => {}
            Strategy::LeastBooked => ranked.sort_by_key(|(i, m)| (m.booked_minutes, *i)),
            // `None` (never assigned) sorts before any instant.
            Strategy::RoundRobin => ranked.sort_by_key(|(i, m)| (m.last_assigned_at, *i)),
        }
        ranked.into_iter().map(|(_, m)| m.resource_id).collect()
    }
}

/// A pool's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Display name.
    pub name: String,
    /// Who belongs.
    pub members: Members,
    /// How free members are picked.
    #[serde(default)]
    pub strategy: Strategy,
}

/// Changes to a pool; parts left out stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolChanges {
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New members (replacing the old, explicit or selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
    /// A new strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// Commands on a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolCommand {
    /// Creates it.
    Create(PoolSpec),
    /// Changes it.
    Update(PoolChanges),
}

/// Events of a pool's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// `pool.created`
    Created(PoolSpec),
    /// `pool.updated`, with only what changed.
    Updated(PoolChanges),
}

/// A pool, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    /// `None` until created.
    pub spec: Option<PoolSpec>,
}

impl Aggregate for Pool {
    type Command = PoolCommand;
    type Event = PoolEvent;
    const STREAM_TYPE: &'static str = "pool";

    fn evolve(&mut self, event: &PoolEvent) {
        match event {
            PoolEvent::Created(spec) => self.spec = Some(spec.clone()),
            PoolEvent::Updated(changes) => {
                if let Some(spec) = &mut self.spec {
                    if let Some(name) = &changes.name {
                        spec.name.clone_from(name);
                    }
                    if let Some(members) = &changes.members {
                        spec.members = members.clone();
                    }
                    if let Some(strategy) = changes.strategy {
                        spec.strategy = strategy;
                    }
                }
            }
        }
    }

    fn decide(&self, command: PoolCommand) -> Result<Vec<PoolEvent>, DomainError> {
        match command {
            PoolCommand::Create(spec) => {
                if self.spec.is_some() {
                    return Err(DomainError::AlreadyExists("pool"));
                }
                let mut v = Validator::default();
                v.text(&spec.name, "name", MAX_NAME);
                validate_members(&mut v, &spec.members);
                v.finish()?;
                Ok(vec![PoolEvent::Created(PoolSpec {
                    name: spec.name.trim().to_owned(),
                    ..spec
                })])
            }
            PoolCommand::Update(changes) => {
                let current = self.spec.as_ref().ok_or(DomainError::NotFound("pool"))?;
                let mut v = Validator::default();
                if let Some(name) = &changes.name {
                    v.text(name, "name", MAX_NAME);
                }
                if let Some(members) = &changes.members {
                    validate_members(&mut v, members);
                }
                v.finish()?;
                let changes = PoolChanges {
                    name: changes
                        .name
                        .map(|n| n.trim().to_owned())
                        .filter(|n| *n != current.name),
                    members: changes.members.filter(|m| *m != current.members),
                    strategy: changes.strategy.filter(|s| *s != current.strategy),
                };
                if changes == PoolChanges::default() {
                    return Ok(Vec::new());
                }
                Ok(vec![PoolEvent::Updated(changes)])
            }
        }
    }
}

fn validate_members(v: &mut Validator, members: &Members) {
    match members {
        Members::Explicit(ids) => {
            v.check(
                (1..=MAX_MEMBERS).contains(&ids.len()),
                "members",
                format!("must name 1 to {MAX_MEMBERS} resources"),
            );
            for (i, id) in ids.iter().enumerate() {
                v.check(
                    !ids[..i].contains(id),
                    format!("members[{i}]"),
                    "the same resource twice",
                );
            }
        }
        Members::Selector(selector) => {
            v.check(
                !selector.is_empty(),
                "selector",
                "must name a kind, tags, min_seats or min_capacity",
            );
            if let Some(kind) = &selector.kind {
                v.text(kind, "selector.kind", MAX_KIND);
            }
            v.check(
                selector.tags.len() <= MAX_TAGS,
                "selector.tags",
                format!("at most {MAX_TAGS} tags"),
            );
            for (i, tag) in selector.tags.iter().enumerate() {
                v.text(tag, &format!("selector.tags[{i}]"), MAX_TAG);
            }
            v.check(
                selector.min_capacity.is_none_or(|c| c >= 1),
                "selector.min_capacity",
                "must be at least 1",
            );
        }
    }
}

impl DomainEvent for PoolEvent {
    fn event_type(&self) -> &'static str {
        match self {
            PoolEvent::Created(_) => "pool.created",
            PoolEvent::Updated(_) => "pool.updated",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            PoolEvent::Created(spec) => payload_of(spec),
            PoolEvent::Updated(changes) => payload_of(changes),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        Ok(match event_type {
            "pool.created" => PoolEvent::Created(decode(event_type, payload)?),
            "pool.updated" => PoolEvent::Updated(decode(event_type, payload)?),
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests;
