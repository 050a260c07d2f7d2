//! muster's Postgres store: the event store (append with optimistic
//! concurrency, gap-free reads), idempotency records, the reservation
//! ledger and working set that enforce capacity, tenants and API keys, and
//! the command executor with the one commit path that ties them into one
//! transaction per command (or per group-commit batch).

mod around;
mod batch;
pub mod calendars;
mod commit;
pub mod db;
pub mod effects;
pub mod erasure;
pub mod error;
pub mod event_store;
pub mod executor;
pub mod feeds;
pub mod free;
pub mod health;
pub mod holds;
pub mod idempotency;
pub mod implied_jobs;
pub mod keyring;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod locked;
mod outcome;
mod personal;
mod pick_batch;
pub mod pools;
pub mod quotas;
mod rules;
pub mod secret;
mod shared_pages;
#[cfg(feature = "testing")]
pub mod testing;
pub mod waitlist;
pub mod wakeup;
mod webhook_health;
mod working_set;

pub use commit::Decided;
pub use error::{QuotaExceeded, ReservationConflict, StoreError};
pub use event_store::{EventFilter, EventHead, EventMetadata, EventPage, EventRow, RecordedEvent};
pub use executor::{CommandContext, Executed, Loaded};
pub use keys::{Principal, Role};
pub use locked::{LockRequest, Locked};
pub use outcome::CommandOutcome;
pub use shared_pages::SharedPage;

/// The store: a handle on the database pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: sqlx::PgPool,
    /// Connections that keep a session (leases, LISTEN): `pool` itself,
    /// unless `pool` goes through a transaction pooler.
    sessions: sqlx::PgPool,
    /// A hot standby's pool (`READ_DATABASE_URL`), for reads that may lag.
    replica: Option<sqlx::PgPool>,
    appended: wakeup::CommitSignal,
    batcher: Option<batch::Batcher>,
    /// Picks decided together, when batching is on.
    pick_batcher: Option<pick_batch::PickBatcher>,
    batch_writers: usize,
    job_sink: Option<std::sync::Arc<dyn implied_jobs::JobSink>>,
    /// Pages of the log read for one follower, kept for the others.
    recent_pages: std::sync::Arc<shared_pages::RecentPages>,
    /// What seals stored secrets, if the process has a key.
    secret_key: Option<secret::SecretKey>,
}

impl Store {
    /// A store on `pool`. Readers are woken only if
    /// [`wakeup::run_notifier`] runs with [`Store::append_signal`].
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            sessions: pool.clone(),
            pool,
            replica: None,
            appended: wakeup::CommitSignal::default(),
            batcher: None,
            pick_batcher: None,
            batch_writers: 0,
            job_sink: None,
            recent_pages: Default::default(),
            secret_key: None,
        }
    }

    /// A store on lazily opened pools for `endpoints`: statements through
    /// `DATABASE_URL`, sessions through the direct URL when there is one.
    pub fn connect_lazy(endpoints: impl Into<db::Endpoints>, settings: &db::PoolSettings) -> Self {
        let endpoints = endpoints.into();
        let pools = db::Pools::connect_lazy(&endpoints, settings);
        Self {
            sessions: pools.sessions,
            secret_key: endpoints.secret_key,
            ..Self::new(pools.statements)
        }
    }

    /// The same store sealing stored secrets with `key`.
    pub fn with_secret_key(mut self, key: secret::SecretKey) -> Self {
        self.secret_key = Some(key);
        self
    }

    /// What seals stored secrets (`MUSTER_SECRET_KEY`), if configured.
    pub fn secret_key(&self) -> Option<&secret::SecretKey> {
        self.secret_key.as_ref()
    }

    /// Writes stream-creating commands in batches (group commit) with
    /// `writers` concurrent batch writers. Needs a Tokio runtime.
    pub fn with_batching(mut self, writers: usize) -> Self {
        self.batch_writers = writers;
        self.start_batcher();
        self
    }

    /// (Re)starts the batch writers with the current job sink; writers of
    /// an earlier batcher stop once its queue is dropped.
    fn start_batcher(&mut self) {
        if self.batch_writers > 0 {
            self.batcher = Some(batch::Batcher::start(
                self.pool.clone(),
                self.job_sink.clone(),
                self.batch_writers,
            ));
            self.pick_batcher = Some(pick_batch::PickBatcher::start(
                self.pool.clone(),
                self.job_sink.clone(),
            ));
        }
    }

    /// Queues the jobs that commands imply through `sink`. Without one, a
    /// command that implies a job (a deployment request) is refused with
    /// [`StoreError::NoJobQueue`].
    pub fn with_job_sink(mut self, sink: std::sync::Arc<dyn implied_jobs::JobSink>) -> Self {
        self.job_sink = Some(sink);
        self.start_batcher();
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

    /// Connections that keep a session of their own: advisory-lock leases,
    /// `LISTEN`, migrations. The same pool as [`Store::pool`] unless that
    /// goes through a transaction pooler (`MUSTER_DIRECT_DATABASE_URL`).
    pub fn sessions(&self) -> &sqlx::PgPool {
        &self.sessions
    }

    /// Serves the reads that may lag (the read models' queries, the live
    /// tail) from a hot standby of the database, on `replica`.
    pub fn with_replica(mut self, replica: sqlx::PgPool) -> Self {
        self.replica = Some(replica);
        self
    }

    /// The standby's pool, if reads that may lag go there.
    pub fn replica(&self) -> Option<&sqlx::PgPool> {
        self.replica.as_ref()
    }
}
