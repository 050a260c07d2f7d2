//! muster's async side: apalis workers on the apalis-postgres queue for
//! deployments, notifications (signed webhooks and email) and reports, and
//! the reactor that turns events into notification jobs.
//!
//! Postgres is the queue. Jobs that a command implies are pushed in the
//! command's transaction (see `muster_jobs::queue`); jobs that events imply
//! are pushed by the [`reactor::Reactor`], a projection whose pushes commit
//! with its checkpoint. Either way each trigger yields its job exactly
//! once; workers then run it at least once, with idempotent effects.

mod caldav;
mod calendar;
mod client_mail;
pub mod client_reactor;
mod deployment;
pub mod email;
mod failure;
mod handlers;
mod notification;
pub mod outbound;
mod queue;
pub mod reactor;
mod report;
mod retention;

use std::sync::Arc;
use std::time::Duration;

use muster_jobs::reports::Reports;
use muster_jobs::webhooks::Webhooks;
use muster_jobs::{JobKind, JobPolicies, JobQueue};
use muster_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

pub use client_reactor::ClientReactor;
pub use reactor::Reactor;

/// How the workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Attempts and backoff per job kind.
    pub policies: JobPolicies,
    /// The interval poll beside LISTEN/NOTIFY: it picks up delayed jobs
    /// (retries) and anything a lost notification missed.
    pub poll_interval: Duration,
    /// How often a worker proves it is alive.
    pub heartbeat: Duration,
    /// After how many missed heartbeats a worker counts as dead and its
    /// jobs are rescued: rescue happens within `heartbeat × (missed + 1)`.
    pub missed_heartbeats: u32,
    /// Jobs run at once per process: deployments.
    pub deployment_concurrency: usize,
    /// Jobs run at once per process: notifications.
    pub notification_concurrency: usize,
    /// Jobs run at once per process: reports.
    pub report_concurrency: usize,
    /// Timeout of every outbound HTTP call and SMTP exchange.
    pub outbound_timeout: Duration,
    /// Deliver to private and loopback addresses (off by default: SSRF).
    pub allow_private_targets: bool,
    /// `smtp://` or `smtps://` URL of the mail relay, which may carry
    /// credentials (hence a secret); email subscriptions fail (and
    /// dead-letter) without one.
    pub smtp_url: Option<SecretString>,
    /// Sender address of notification emails.
    pub smtp_from: String,
    /// How long finished jobs (and dead letters) are kept.
    pub job_history: Duration,
    /// How often finished jobs are cleaned up.
    pub cleanup_interval: Duration,
    /// A webhook endpoint failing every attempt this long is disabled.
    pub webhook_disable_after: Duration,
    /// How long finished reports (and their files) are kept.
    pub report_retention: Duration,
    /// How long finished webhook deliveries (and their attempts) are kept.
    pub delivery_retention: Duration,
    /// Clients whose last booking ended this long ago are erased by
    /// themselves (`MUSTER_CLIENT_RETENTION`); `None`: never.
    pub client_retention: Option<muster_domain::personal::Retention>,
    /// How often the clients past their retention are looked for.
    pub client_retention_every: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            policies: JobPolicies::default(),
            poll_interval: Duration::from_millis(100),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            deployment_concurrency: 8,
            notification_concurrency: 64,
            report_concurrency: 2,
            outbound_timeout: Duration::from_secs(10),
            allow_private_targets: false,
            smtp_url: None,
            smtp_from: "muster@localhost".to_owned(),
            job_history: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            webhook_disable_after: muster_jobs::webhooks::DEFAULT_DISABLE_AFTER,
            report_retention: Duration::from_secs(30 * 24 * 3600),
            delivery_retention: Duration::from_secs(30 * 24 * 3600),
            client_retention: None,
            client_retention_every: Duration::from_secs(3600),
        }
    }
}

/// What every job handler shares.
pub(crate) struct Runtime {
    pub(crate) app: muster_app::App,
    pub(crate) store: Store,
    pub(crate) queue: JobQueue,
    pub(crate) webhooks: Webhooks,
    pub(crate) client_messages: muster_jobs::client_messages::ClientMessages,
    pub(crate) reports: Reports,
    pub(crate) config: WorkerConfig,
    pub(crate) http: outbound::Outbound,
    pub(crate) mailer: Option<email::Mailer>,
    pub(crate) shutdown: CancellationToken,
}

/// Shared handle passed to job handlers as apalis `Data`.
pub(crate) type Shared = Arc<Runtime>;

impl WorkerConfig {
    /// Checks what can be checked before anything starts (the SMTP URL,
    /// the sender, the HTTP client), so that a bad setting stops the
    /// process at boot instead of leaving its jobs queued for ever.
    pub fn validate(&self) -> Result<(), StartError> {
        self.clients().map(|_| ())
    }

    /// These settings with the deployments and reports run at once
    /// lowered, if need be, to what a pool of `pool_size` connections can
    /// carry: each running one holds a pooled connection for its lease and
    /// needs another for its work, so if their leases could take the whole
    /// pool, every one of them would wait for a connection for ever. At
    /// most half the pool holds leases.
    pub fn fitted_to(mut self, pool_size: usize) -> Self {
        let room = (pool_size / 2).max(2);
        let wanted = self.deployment_concurrency + self.report_concurrency;
        if wanted > room {
            let deployments = (room * self.deployment_concurrency / wanted).max(1);
            let reports = room.saturating_sub(deployments).max(1);
            tracing::warn!(
                pool_size,
                deployment_concurrency = deployments,
                report_concurrency = reports,
                "MUSTER_DB_POOL_SIZE is too small for the configured deployment and report \
                 concurrency (each running one holds a connection for its lease); running fewer"
            );
            self.deployment_concurrency = deployments;
            self.report_concurrency = reports;
        }
        self
    }

    /// Jobs run at once per process of `kind`.
    pub fn concurrency(&self, kind: JobKind) -> usize {
        match kind {
            JobKind::Deployment => self.deployment_concurrency,
            JobKind::Notification => self.notification_concurrency,
            JobKind::Report => self.report_concurrency,
            // Syncs wait on calendar servers, not on the pool: a few at
            // once keeps one slow server from holding up the rest.
            JobKind::Calendar => 4,
        }
    }

    fn clients(&self) -> Result<(outbound::Outbound, Option<email::Mailer>), StartError> {
        let http = outbound::Outbound::new(self.outbound_timeout, self.allow_private_targets)?;
        let mailer = self
            .smtp_url
            .as_ref()
            .map(|url| {
                email::Mailer::new(url.expose_secret(), &self.smtp_from, self.outbound_timeout)
            })
            .transpose()?;
        Ok((http, mailer))
    }
}

/// The job workers with their clients built, ready to run.
pub struct Workers {
    rt: Shared,
}

impl Workers {
    /// Workers on `store` with `config`, stopping at `shutdown`; fails when
    /// `config` cannot work (see [`WorkerConfig::validate`]).
    pub fn new(
        store: Store,
        config: WorkerConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let (http, mailer) = config.clients()?;
        let config = config.fitted_to(store.pool().options().get_max_connections() as usize);
        let queue = JobQueue::new(store.pool().clone(), config.policies);
        Ok(Self {
            rt: Arc::new(Runtime {
                webhooks: Webhooks::new(store.pool().clone())
                    .with_disable_after(config.webhook_disable_after),
                reports: Reports::new(store.pool().clone(), queue.clone()),
                client_messages: muster_jobs::client_messages::ClientMessages::new(
                    store.pool().clone(),
                ),
                queue,
                app: muster_app::App::new(store.clone())
                    .with_webhook_disable_after(config.webhook_disable_after),
                store,
                config,
                http,
                mailer,
                shutdown,
            }),
        })
    }

    /// The queue the workers take their jobs from.
    pub fn queue(&self) -> &JobQueue {
        &self.rt.queue
    }

    /// Runs the deployment, notification, report and calendar workers, the
    /// periodic calendar syncs, the cleanup and the queue gauges until
    /// shutdown; in-flight jobs finish first.
    pub async fn run(self) {
        let schedule = tokio::spawn(calendar::schedule_periodic(self.rt.clone()));
        let retention = tokio::spawn(retention::erase_past_retention(self.rt.clone()));
        queue::run_workers(self.rt).await;
        let _ = schedule.await;
        let _ = retention.await;
    }
}

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `SMTP_URL` is not a usable SMTP URL.
    #[error("SMTP_URL is invalid: {0}")]
    Smtp(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

#[cfg(test)]
mod fitting {
    use super::WorkerConfig;

    #[test]
    fn leases_never_take_more_than_half_the_pool() {
        let config = WorkerConfig::default().fitted_to(6);
        assert_eq!(
            (config.deployment_concurrency, config.report_concurrency),
            (2, 1)
        );
        let roomy = WorkerConfig::default().fitted_to(32);
        assert_eq!(
            (roomy.deployment_concurrency, roomy.report_concurrency),
            (8, 2)
        );
        let tiny = WorkerConfig::default().fitted_to(1);
        assert!(tiny.deployment_concurrency >= 1 && tiny.report_concurrency >= 1);
    }
}
