//! The reads over the read models, which the HTTP API reaches through
//! [`crate::ReadModels`] and the report worker calls directly. Every
//! function is scoped to one tenant (except the projection status, which
//! spans them).

pub mod analytics;
pub mod bookings;
pub mod deployments;
pub mod occupancy;
pub mod resources;
pub mod status;

pub use analytics::{DayUtilization, ResourceUtilization, StatusCount};
pub use bookings::{
    BookingFilter, BookingSummary, ClientHistory, ResourceScheduleEntry, ScheduleEntry,
    ScheduleFilter,
};
pub use occupancy::Occupancy;
pub use resources::{ResourceFilter, ResourceView};
pub use status::ProjectionStatus;
