//! muster's read side.
//!
//! Projections fold the event store into read models in the `read` schema,
//! all one way (module `fold`): the domain aggregate's state moved on by its own
//! `evolve`, plus what only the event envelopes know.
//! Each has a stable name and a checkpoint row that commits in the same
//! transaction as its writes ([`runner`]); one process at a time applies it
//! (a lease), and [`rebuild`] replays it into fresh tables and swaps them
//! in. [`query`] holds the reads over those tables, [`ReadModels`] the one
//! facade the HTTP API reads them through, and [`signals`] the wake-ups
//! that keep readers prompt.
//!
//! The projections' writes name their tables without a schema and run
//! under `set local search_path`, so that one set of statements writes the
//! live `read` tables and, during a rebuild, the staging ones: those
//! statements are runtime-checked for that reason. Reads, checkpoints and
//! leases are compile-checked like the rest of muster's SQL.

mod bookings;
mod copy;
mod deployments;
mod fold;
pub mod query;
mod read_models;
pub mod rebuild;
mod resources;
pub mod runner;
pub mod signals;

use std::future::Future;
use std::pin::Pin;

use muster_store::RecordedEvent;
use sqlx::PgConnection;

pub use bookings::BookingDocument;
pub use deployments::{DeploymentDocument, StepAttempt, StepView};
pub use read_models::{ReadError, ReadModels};
pub use runner::Projector;
pub use signals::ReadSignals;

/// The read models, each kept by one projection of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// `read.resources`.
    Resources,
    /// `read.bookings` with its reservations (the resource schedules),
    /// tasks and status history.
    Bookings,
    /// `read.deployments`.
    Deployments,
}

/// The future a [`Projection`] returns for one batch.
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + 'a>>;

/// Something the runner keeps exactly once in step with the event store:
/// a read model, or a reactor whose writes are job pushes.
pub trait Projection: Send + Sync + 'static {
    /// Stable name: its checkpoint row and lease.
    fn name(&self) -> &'static str;

    /// Applies `events` (in position order, any stream type) in the
    /// caller's transaction, which then moves the checkpoint.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> ApplyFuture<'a>;
}

impl Projection for ReadModel {
    fn name(&self) -> &'static str {
        ReadModel::name(*self)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(ReadModel::apply(*self, conn, events))
    }
}

impl ReadModel {
    /// Every projection.
    pub const ALL: [ReadModel; 3] = [
        ReadModel::Resources,
        ReadModel::Bookings,
        ReadModel::Deployments,
    ];

    /// The projection's stable name (its checkpoint row).
    pub fn name(self) -> &'static str {
        match self {
            ReadModel::Resources => "resources",
            ReadModel::Bookings => "bookings",
            ReadModel::Deployments => "deployments",
        }
    }

    /// The projection named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The tables it owns in schema `read` (rebuilt and swapped together).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            ReadModel::Resources => &["resources"],
            ReadModel::Bookings => &[
                "bookings",
                "booking_reservations",
                "booking_tasks",
                "booking_status_history",
                "resource_bookings",
            ],
            ReadModel::Deployments => &["deployments"],
        }
    }

    /// The position it has applied up to, as its checkpoint says (read
    /// from the database, so from any process).
    pub async fn applied(self, store: &muster_store::Store) -> Result<i64, ProjectionError> {
        Ok(runner::checkpoint(store, self.name()).await?)
    }

    /// Applies `events` (in position order, any stream type) to its tables
    /// in the caller's transaction, whose `search_path` names the schema
    /// to write (`read` live, `read_rebuild` during a rebuild).
    pub(crate) async fn apply(
        self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        match self {
            ReadModel::Resources => resources::apply(conn, events).await,
            ReadModel::Bookings => bookings::apply(conn, events).await,
            ReadModel::Deployments => deployments::apply(conn, events).await,
        }
    }
}

/// Why a projection could not apply events.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be applied by this code (a poison event): the
    /// projection stops at it rather than skip it.
    #[error("event at position {position} cannot be applied: {reason}")]
    Poison {
        /// Its position.
        position: i64,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error("event store error: {0}")]
    Store(#[from] muster_store::StoreError),
    /// A reactor's side effect (queueing a job) was refused for a reason
    /// other than the database; the batch rolls back and runs again.
    #[error("side effect refused: {0}")]
    SideEffect(String),
}

impl ProjectionError {
    /// A poison stop at `event`, for `reason`.
    pub fn poison(event: &RecordedEvent, reason: impl std::fmt::Display) -> Self {
        Self::Poison {
            position: event.position,
            reason: format!(
                "{} {} v{}: {reason}",
                event.event_type, event.stream_id, event.stream_version
            ),
        }
    }

    /// Whether retrying later may succeed (the database is away or busy),
    /// as opposed to an error the same events will hit again.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Poison { .. } => false,
            ProjectionError::Database(e) => is_transient(e),
            ProjectionError::Store(muster_store::StoreError::Database(e)) => is_transient(e),
            ProjectionError::Store(muster_store::StoreError::Unavailable(_)) => true,
            ProjectionError::Store(_) | ProjectionError::SideEffect(_) => false,
        }
    }
}

/// Connection loss, pool exhaustion, serialisation failures, deadlocks,
/// timeouts and resource shortages pass; everything else repeats.
fn is_transient(error: &sqlx::Error) -> bool {
    if muster_store::db::is_unavailable(error) {
        return true;
    }
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            ["40", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
        })
}

/// Checks that `event` continues its stream right after `version`: a
/// projection that saw a gap or a repeat would be wrong forever, so it
/// stops instead.
pub(crate) fn expect_next(event: &RecordedEvent, version: i32) -> Result<(), ProjectionError> {
    if event.stream_version == version + 1 {
        Ok(())
    } else {
        Err(ProjectionError::poison(
            event,
            format!("the read model is at version {version}"),
        ))
    }
}
