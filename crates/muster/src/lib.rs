//! The muster binary's library: configuration, the embedded Postgres
//! default, and the wiring of the application and its shutdown.

pub mod config;
pub mod embedded;
pub mod progress;
pub mod startup;

pub use startup::{Application, Databases};
