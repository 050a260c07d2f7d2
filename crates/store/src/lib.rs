//! muster's Postgres store: the event store (append with optimistic
//! concurrency, gap-free reads), idempotency records, the reservation
//! working set that enforces capacity, tenants and API keys, and the command
//! executor that ties them into one transaction per command.

mod batch;
pub mod commands;
pub mod db;
pub mod error;
pub mod event_store;
pub mod idempotency;
pub mod implied_jobs;
pub mod keys;
pub mod reservations;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wakeup;

pub use commands::{CommandContext, CommandOutcome};
pub use error::{ReservationConflict, StoreError};
pub use event_store::{EventFilter, EventMetadata, EventPage, RecordedEvent};
pub use keys::{Principal, Role};

/// The store: a handle on the database pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: sqlx::PgPool,
    appended: wakeup::CommitSignal,
    batcher: Option<batch::Batcher>,
    job_sink: Option<std::sync::Arc<dyn implied_jobs::JobSink>>,
}

impl Store {
    /// A store on `pool`. Readers are woken only if
    /// [`wakeup::run_notifier`] runs with [`Store::append_signal`].
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            pool,
            appended: wakeup::CommitSignal::default(),
            batcher: None,
            job_sink: None,
        }
    }

    /// Writes stream-creating commands in batches (group commit) with
    /// `writers` concurrent batch writers. Needs a Tokio runtime.
    pub fn with_batching(mut self, writers: usize) -> Self {
        self.batcher = Some(batch::Batcher::start(self.pool.clone(), writers));
        self
    }

    /// Queues the jobs that commands imply through `sink`. Without one, a
    /// command that implies a job (a deployment request) is refused with
    /// [`StoreError::NoJobQueue`].
    pub fn with_job_sink(mut self, sink: std::sync::Arc<dyn implied_jobs::JobSink>) -> Self {
        self.job_sink = Some(sink);
        self
    }

    /// The signal raised after every committed append.
    pub fn append_signal(&self) -> wakeup::CommitSignal {
        self.appended.clone()
    }

    /// The pool, for readiness checks and metrics.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}
