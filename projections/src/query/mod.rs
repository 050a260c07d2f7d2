//! The reads the HTTP API serves from the read models. Every function is
//! scoped to one tenant (except the projection status, which spans them).

pub mod analytics;
pub mod bookings;
pub mod deployments;
pub mod occupancy;
pub mod resources;
pub mod status;

pub use analytics::{DayUtilization, ResourceUtilization, StatusCount};
pub use bookings::{BookingFilter, BookingSummary, ScheduleEntry};
pub use occupancy::{FreeSlots, Occupancy};
pub use resources::{ResourceFilter, ResourceView};
pub use status::ProjectionStatus;
