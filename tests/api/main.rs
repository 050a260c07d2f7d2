//! Black-box tests of the HTTP API: each test spawns the app on port 0 with
//! its own database and drives it over HTTP.

mod auth;
mod bookings;
mod client_notifications;
mod cluster;
mod dashboard;
mod deployments;
mod events;
mod faults;
mod feeds;
mod find_time;
mod free;
mod helpers;
mod holds;
mod idempotency;
mod keys;
mod moves;
mod notifications;
mod operations;
mod pgbouncer;
mod policy;
mod pools;
mod process;
mod projector;
mod reads;
mod receiver;
mod replica;
mod reports;
mod resources;
mod schema;
mod series;
mod subscribe;
mod topology;
mod two_processes;
mod wakeup;
mod worker_processes;
