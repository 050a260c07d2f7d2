//! muster's domain: aggregates, commands, events and the pure decisions
//! between them.
//!
//! Nothing here performs I/O. Every rule of the product that can be decided
//! from an aggregate's own history lives here and is tested without a
//! database; the store supplies history and enforces the cross-aggregate rules
//! (capacity across bookings) with the pure helpers in [`capacity`].

pub mod aggregate;
pub mod availability;
pub mod booking;
pub mod calendar_link;
pub mod capacity;
pub mod client_message;
pub mod deployment;
pub mod duration;
pub mod erasure;
pub mod error;
pub mod event;
pub mod external;
pub mod find_time;
pub mod hold;
pub mod ics;
pub mod notification;
pub mod personal;
pub mod policy;
pub mod pool;
pub mod quota;
pub mod resource;
pub mod series;
pub mod tenant;
pub mod time;
pub mod upcast;
pub mod waitlist;
pub mod webhook;
pub mod working_hours;

pub use aggregate::Aggregate;
pub use error::{DomainError, FieldError};
pub use event::DomainEvent;
pub use tenant::TenantId;
