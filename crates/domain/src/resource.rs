//! The Resource aggregate: something bookable (staff, room, equipment,
//! vehicle) with a capacity, a time zone and weekly working hours.

use serde::{Deserialize, Serialize};

use crate::error::Validator;
use crate::event::{EventDecodeError, decode, payload_of};
use crate::policy::{BookingPolicy, ResourceRules};
use crate::working_hours::{WorkingWindow, validate_working_hours};
use crate::{Aggregate, DomainError, DomainEvent};

/// Largest capacity a resource may declare.
pub const MAX_CAPACITY: u32 = 10_000;
/// Longest name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest kind, in characters.
pub const MAX_KIND: usize = 50;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 50;
/// Most tags.
pub const MAX_TAGS: usize = 50;
/// Most working-hours windows.
pub const MAX_WINDOWS: usize = 50;
/// Most seats a resource may declare.
pub const MAX_SEATS: u32 = 1_000_000;

/// The fields a resource is registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceProfile {
    /// Display name.
    pub name: String,
    /// `staff`, `room`, `equipment`, `vehicle`, or free text.
    pub kind: String,
    /// How many bookings it can hold at one instant.
    pub capacity: u32,
    /// IANA time zone its working hours are in.
    pub timezone: String,
    /// Weekly availability; empty means always available.
    pub working_hours: Vec<WorkingWindow>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// How many people it holds, if it says (a booking's headcount may
    /// not exceed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Buffers, notice and horizon.
    #[serde(default, skip_serializing_if = "BookingPolicy::is_empty")]
    pub policy: BookingPolicy,
}

impl ResourceProfile {
    /// The booking rule this profile sets for the resource.
    pub fn rules(&self) -> ResourceRules {
        ResourceRules {
            capacity: self.capacity,
            seats: self.seats,
            timezone: self.timezone.parse().unwrap_or(chrono_tz::UTC),
            working_hours: self.working_hours.clone(),
            policy: self.policy,
        }
    }
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChanges {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New tags (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// New capacity. The store refuses a decrease that existing reservations
    /// would exceed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// New working hours (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<Vec<WorkingWindow>>,
    /// New seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// A new booking policy, replacing the old one as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<BookingPolicy>,
}

impl ResourceChanges {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the write side's copy of the booking rule changes.
    pub fn changes_rules(&self) -> bool {
        self.capacity.is_some()
            || self.working_hours.is_some()
            || self.seats.is_some()
            || self.policy.is_some()
    }
}

/// Commands on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceCommand {
    /// Creates the resource.
    Register(ResourceProfile),
    /// Changes name, tags, capacity, working hours, seats or policy.
    Update(ResourceChanges),
    /// Withdraws it from service: it can no longer be reserved.
    Retire,
}

/// Events of a resource's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceEvent {
    /// `resource.registered`
    Registered(ResourceProfile),
    /// `resource.updated`: only the fields that changed.
    Updated(ResourceChanges),
    /// `resource.retired`
    Retired,
}

/// A resource's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// `None` until registered.
    pub profile: Option<ResourceProfile>,
    /// Whether it was retired.
    pub retired: bool,
}

impl Aggregate for Resource {
    type Command = ResourceCommand;
    type Event = ResourceEvent;
    const STREAM_TYPE: &'static str = "resource";

    fn evolve(&mut self, event: &ResourceEvent) {
        match event {
            ResourceEvent::Registered(profile) => self.profile = Some(profile.clone()),
            ResourceEvent::Updated(changes) => {
                if let Some(profile) = &mut self.profile {
                    if let Some(name) = &changes.name {
                        profile.name.clone_from(name);
                    }
                    if let Some(tags) = &changes.tags {
                        profile.tags.clone_from(tags);
                    }
                    if let Some(capacity) = changes.capacity {
                        profile.capacity = capacity;
                    }
                    if let Some(windows) = &changes.working_hours {
                        profile.working_hours.clone_from(windows);
                    }
                    if let Some(seats) = changes.seats {
                        profile.seats = Some(seats);
                    }
                    if let Some(policy) = changes.policy {
                        profile.policy = policy;
                    }
                }
            }
            ResourceEvent::Retired => self.retired = true,
        }
    }

    fn decide(&self, command: ResourceCommand) -> Result<Vec<ResourceEvent>, DomainError> {
        match command {
            ResourceCommand::Register(profile) => {
                if self.profile.is_some() {
                    return Err(DomainError::AlreadyExists("resource"));
                }
                validate_profile(&profile)?;
                Ok(vec![ResourceEvent::Registered(normalise(profile))])
            }
            ResourceCommand::Update(changes) => {
                let current = self.live_profile()?;
                validate_changes(&changes)?;
                let changes = only_differences(current, changes);
                if changes.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(vec![ResourceEvent::Updated(changes)])
            }
            ResourceCommand::Retire => {
                self.live_profile()?;
                Ok(vec![ResourceEvent::Retired])
            }
        }
    }
}

impl Resource {
    /// The profile of a registered, not retired resource.
    fn live_profile(&self) -> Result<&ResourceProfile, DomainError> {
        let profile = self
            .profile
            .as_ref()
            .ok_or(DomainError::NotFound("resource"))?;
        if self.retired {
            return Err(DomainError::InvalidTransition(
                "the resource is retired".into(),
            ));
        }
        Ok(profile)
    }
}

fn validate_profile(p: &ResourceProfile) -> Result<(), DomainError> {
    let mut v = Validator::default();
    v.text(&p.name, "name", MAX_NAME);
    v.text(&p.kind, "kind", MAX_KIND);
    check_capacity(&mut v, p.capacity);
    v.check(
        p.timezone.parse::<chrono_tz::Tz>().is_ok(),
        "timezone",
        format!("{:?} is not an IANA time zone", p.timezone),
    );
    check_tags(&mut v, &p.tags);
    check_windows(&mut v, &p.working_hours);
    if let Some(seats) = p.seats {
        check_seats(&mut v, seats);
    }
    p.policy.validate(&mut v);
    v.finish()
}

fn validate_changes(c: &ResourceChanges) -> Result<(), DomainError> {
    // Naming nothing to change changes nothing (as for a booking): the
    // answer is the current version.
    let mut v = Validator::default();
    if let Some(name) = &c.name {
        v.text(name, "name", MAX_NAME);
    }
    if let Some(capacity) = c.capacity {
        check_capacity(&mut v, capacity);
    }
    if let Some(tags) = &c.tags {
        check_tags(&mut v, tags);
    }
    if let Some(windows) = &c.working_hours {
        check_windows(&mut v, windows);
    }
    if let Some(seats) = c.seats {
        check_seats(&mut v, seats);
    }
    if let Some(policy) = &c.policy {
        policy.validate(&mut v);
    }
    v.finish()
}

fn check_seats(v: &mut Validator, seats: u32) {
    v.check(
        (1..=MAX_SEATS).contains(&seats),
        "seats",
        format!("must be between 1 and {MAX_SEATS}"),
    );
}

fn check_capacity(v: &mut Validator, capacity: u32) {
    v.check(
        (1..=MAX_CAPACITY).contains(&capacity),
        "capacity",
        format!("must be between 1 and {MAX_CAPACITY}"),
    );
}

fn check_tags(v: &mut Validator, tags: &[String]) {
    v.check(
        tags.len() <= MAX_TAGS,
        "tags",
        format!("at most {MAX_TAGS} tags"),
    );
    for (i, tag) in tags.iter().enumerate() {
        v.text(tag, &format!("tags[{i}]"), MAX_TAG);
    }
}

fn check_windows(v: &mut Validator, windows: &[WorkingWindow]) {
    v.check(
        windows.len() <= MAX_WINDOWS,
        "working_hours",
        format!("at most {MAX_WINDOWS} windows"),
    );
    for error in validate_working_hours(windows) {
        v.push(error);
    }
}

/// Trims names and drops duplicate tags so that read models and filters see
/// one spelling.
fn normalise(mut p: ResourceProfile) -> ResourceProfile {
    p.name = p.name.trim().to_owned();
    p.kind = p.kind.trim().to_owned();
    p.tags = dedup_tags(p.tags);
    p
}

fn dedup_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_owned();
        if !seen.contains(&tag) {
            seen.push(tag);
        }
    }
    seen
}

/// Keeps only the fields that really change, so that a repeated PATCH
/// records nothing.
fn only_differences(current: &ResourceProfile, changes: ResourceChanges) -> ResourceChanges {
    ResourceChanges {
        name: changes
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| *n != current.name),
        tags: changes.tags.map(dedup_tags).filter(|t| *t != current.tags),
        capacity: changes.capacity.filter(|c| *c != current.capacity),
        working_hours: changes
            .working_hours
            .filter(|w| *w != current.working_hours),
        seats: changes.seats.filter(|s| Some(*s) != current.seats),
        policy: changes.policy.filter(|p| *p != current.policy),
    }
}

impl DomainEvent for ResourceEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ResourceEvent::Registered(_) => "resource.registered",
            ResourceEvent::Updated(_) => "resource.updated",
            ResourceEvent::Retired => "resource.retired",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            ResourceEvent::Registered(p) => payload_of(p),
            ResourceEvent::Updated(c) => payload_of(c),
            ResourceEvent::Retired => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        Ok(match event_type {
            "resource.registered" => ResourceEvent::Registered(decode(event_type, payload)?),
            "resource.updated" => ResourceEvent::Updated(decode(event_type, payload)?),
            "resource.retired" => ResourceEvent::Retired,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests;
