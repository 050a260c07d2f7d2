//! Black-box tests of the HTTP API: each test spawns the app on port 0 with
//! its own database and drives it over HTTP.

mod auth;
mod bookings;
mod events;
mod helpers;
mod idempotency;
mod operations;
mod process;
mod projector;
mod reads;
mod resources;
mod subscribe;
mod two_processes;
