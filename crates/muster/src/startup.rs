//! Wiring: database, HTTP listener, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use muster_api::{ApiConfig, AppState};
use muster_domain::TenantId;
use muster_jobs::{JobPolicies, JobQueue};
use muster_projections::{Projector, ReadSignals};
use muster_store::db::{Endpoints, PoolSettings};
use muster_store::secret::SecretKey;
use muster_store::{Role, Store, StoreError};
use muster_workers::{ClientReactor, Reactor, StartError, WorkerConfig, Workers};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::embedded::{EmbeddedPostgres, write_private};
use crate::progress::Progress;

/// Concurrent group-commit writers: enough to keep a batch in flight while
/// the next one forms, few enough to leave connections for other commands.
const WRITE_BATCHERS: usize = 4;

/// A built HTTP application: the listener is bound, so the port is known
/// before it serves (tests bind port 0).
pub struct Application {
    listener: TcpListener,
    state: AppState,
    store: Store,
    signals: ReadSignals,
    shutdown: CancellationToken,
    projector: Option<tokio::task::JoinHandle<()>>,
    workers: Option<tokio::task::JoinHandle<()>>,
}

/// The databases the API reads and writes.
#[derive(Debug, Clone)]
pub struct Databases {
    /// The primary: commands, the event store, everything that must be
    /// current.
    pub primary: Endpoints,
    /// A hot standby of it (`READ_DATABASE_URL`) for the query endpoints
    /// and the live tail, if any.
    pub replica: Option<PgConnectOptions>,
}

impl From<PgConnectOptions> for Databases {
    fn from(primary: PgConnectOptions) -> Self {
        Self {
            primary: primary.into(),
            replica: None,
        }
    }
}

impl Application {
    /// Binds `listen` and builds the router over pools for `databases`.
    ///
    /// With a replica, the query endpoints read the standby's read models
    /// (read-your-writes waits until the standby has the position) and the
    /// live tail reads its events there; commands, the event feed, the
    /// working set and the operators' views stay on the primary.
    pub async fn build(
        listen: SocketAddr,
        databases: impl Into<Databases>,
        pool: &PoolSettings,
        api: ApiConfig,
        policies: JobPolicies,
    ) -> anyhow::Result<Self> {
        let databases = databases.into();
        let replica = databases
            .replica
            .map(|options| muster_store::db::connect_lazy(options, pool));
        let store = Store::connect_lazy(databases.primary, pool);
        check_secret_key(&store).await?;
        let queue = JobQueue::new(store.pool().clone(), policies);
        let mut store = store
            .with_batching(WRITE_BATCHERS)
            .with_job_sink(Arc::new(queue.clone()));
        if let Some(replica) = &replica {
            store = store.with_replica(replica.clone());
        }
        tokio::spawn(muster_store::wakeup::run_notifier(
            store.pool().clone(),
            store.append_signal(),
            muster_store::wakeup::EVENTS_CHANNEL,
        ));
        tokio::spawn(muster_store::idempotency::purge_expired(
            store.clone(),
            api.idempotency_ttl,
        ));
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let shutdown = CancellationToken::new();
        // Stops with the process, before the pool closes under it.
        tokio::spawn(muster_app::holds::sweep_expired(
            muster_app::App::new(store.clone()),
            std::time::Duration::from_secs(1),
            shutdown.clone().cancelled_owned(),
        ));
        let signals = ReadSignals::start(store.sessions().clone(), shutdown.clone());
        // Offers freed capacity to waitlists; one process at a time holds
        // the lease, the others stand by.
        tokio::spawn(muster_app::waitlist::offer_freed(
            muster_app::App::new(store.clone()),
            signals.events(),
            shutdown.clone().cancelled_owned(),
        ));
        let mut state = AppState::new(store.clone(), queue, api, signals.clone(), shutdown.clone());
        if let Some(replica) = replica {
            let replica_signals = ReadSignals::start_on_replica(
                store.sessions().clone(),
                replica.clone(),
                shutdown.clone(),
            );
            let reads = state.reads.clone().on_replica(replica, replica_signals);
            state = state.with_reads(reads);
        }
        Ok(Self {
            listener,
            state,
            store,
            signals,
            shutdown,
            projector: None,
            workers: None,
        })
    }

    /// Runs the job workers and the notification reactor in this process
    /// too (`muster serve`). Fails, before anything runs, when `config`
    /// cannot work (an invalid `SMTP_URL`).
    pub fn with_workers(mut self, config: WorkerConfig) -> Result<Self, StartError> {
        let workers = Workers::new(self.store.clone(), config, self.shutdown.clone())?;
        self.workers = Some(tokio::spawn(run_workers(
            self.store.clone(),
            self.signals.clone(),
            workers,
            self.shutdown.clone(),
        )));
        Ok(self)
    }

    /// Runs the projections in this process too (`muster serve`).
    pub fn with_projections(mut self) -> Self {
        let projector = Projector::new(self.store.clone(), self.signals.clone());
        self.projector = Some(tokio::spawn(projector.run(self.shutdown.clone())));
        self
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The store it serves from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, "muster is listening");
        let token = self.shutdown.clone();
        // With the peer's address, which the rate limit of failed
        // authentications is keyed on.
        let service =
            muster_api::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Live streams end here; ordinary requests finish first.
                token.cancel();
            })
            .await?;
        self.shutdown.cancel();
        if let Some(projector) = self.projector {
            let _ = projector.await;
        }
        if let Some(workers) = self.workers {
            let _ = workers.await;
        }
        self.store.pool().close().await;
        Ok(())
    }
}

/// `muster project`: runs the projections until `shutdown`.
pub async fn run_projector(
    database: Endpoints,
    pool: &PoolSettings,
    batch: i64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect_lazy(database, pool);
    let token = CancellationToken::new();
    let signals = ReadSignals::start(store.sessions().clone(), token.clone());
    let projector = Projector::new(store.clone(), signals).with_batch(batch);
    let run = tokio::spawn(projector.run(token.clone()));
    tracing::info!("muster is projecting");
    shutdown.await;
    token.cancel();
    let _ = run.await;
    store.pool().close().await;
    Ok(())
}

/// The workers and the reactor until `shutdown` is cancelled; in-flight
/// jobs finish first.
async fn run_workers(
    store: Store,
    signals: ReadSignals,
    workers: Workers,
    shutdown: CancellationToken,
) {
    let reactor = Projector::new(store.clone(), signals).with_projections(vec![
        Arc::new(Reactor::new(workers.queue().clone())),
        Arc::new(ClientReactor::new(
            workers.queue().clone(),
            store.secret_key().cloned(),
        )),
    ]);
    let reactor = tokio::spawn(reactor.run(shutdown));
    workers.run().await;
    let _ = reactor.await;
}

/// `muster work`: runs the job workers and the reactor until `shutdown`.
pub async fn run_worker_role(
    database: Endpoints,
    pool: &PoolSettings,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect_lazy(database, pool);
    let queue = JobQueue::new(store.pool().clone(), config.policies);
    let store = store.with_job_sink(Arc::new(queue));
    let token = CancellationToken::new();
    let signals = ReadSignals::start(store.sessions().clone(), token.clone());
    let workers = Workers::new(store.clone(), config, token.clone())?;
    let run = tokio::spawn(run_workers(store.clone(), signals, workers, token.clone()));
    tracing::info!("muster is working");
    shutdown.await;
    token.cancel();
    let _ = run.await;
    store.pool().close().await;
    Ok(())
}

/// Serves `/metrics` (Prometheus) and `/healthz` on `listen` for the
/// roles without an API (`muster work`, `muster project`), until the
/// process ends.
pub async fn serve_metrics(listen: SocketAddr) -> anyhow::Result<()> {
    let handle = muster_api::observability::prometheus();
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for metrics"))?;
    tracing::info!(address = %listen, "serving /metrics");
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(())
}

/// `muster projections rebuild NAME`, printing progress to stderr.
pub async fn rebuild_projection(
    database: Endpoints,
    pool: &PoolSettings,
    name: &str,
    batch: i64,
) -> anyhow::Result<()> {
    let model = muster_projections::ReadModel::named(name)
        .with_context(|| format!("no projection {name:?}"))?;
    let store = Store::connect_lazy(database, pool);
    let progress = Progress::on_stderr(&format!("rebuild {name}"));
    let outcome = muster_projections::rebuild::rebuild(&store, model, batch, |p| {
        let rate = format!("{:.0} events/s", p.rate);
        let at = |v: i64| u64::try_from(v).unwrap_or(0);
        progress.report(at(p.position), at(p.head), &rate, || {
            let percent = if p.head > 0 {
                p.position as f64 * 100.0 / p.head as f64
            } else {
                100.0
            };
            let eta = p
                .eta
                .map_or_else(|| "-".to_owned(), |d| format!("{:.0}s", d.as_secs_f64()));
            format!(
                "rebuild {name}: position {}/{} ({percent:.1}%), {rate}, ETA {eta}",
                p.position, p.head
            )
        });
    })
    .await?;
    progress.finish(&format!(
        "rebuild {name}: swapped in at position {} after {} events in {:.1}s ({:.0} events/s)",
        outcome.position,
        outcome.events,
        outcome.elapsed.as_secs_f64(),
        outcome.events as f64 / outcome.elapsed.as_secs_f64().max(1e-3)
    ));
    store.pool().close().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the server is still starting is not lost (nor fatal).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        let wait = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => {},
            () = wait(terminate) => {},
        }
        tracing::info!("shutdown requested: finishing in-flight requests");
    }
}

/// The database a process uses: the configured one, or the embedded cluster.
pub struct Database {
    /// How to connect.
    pub options: PgConnectOptions,
    /// Postgres itself when `options` is a transaction pooler
    /// (`MUSTER_DIRECT_DATABASE_URL`).
    pub direct: Option<PgConnectOptions>,
    /// The embedded cluster, when there is one (stopped on drop of the process).
    pub embedded: Option<EmbeddedPostgres>,
    /// What seals stored secrets (`MUSTER_SECRET_KEY`, or the embedded
    /// default's own).
    pub secret_key: Option<SecretKey>,
}

impl Database {
    /// Uses `url`, or brings up the embedded cluster under `data_dir`.
    pub async fn open(
        url: Option<PgConnectOptions>,
        direct: Option<PgConnectOptions>,
        data_dir: &Path,
        secret_key: Option<&str>,
        extra_secret_key: Option<&str>,
    ) -> anyhow::Result<Self> {
        // A key that cannot work stops the process before anything runs.
        let secret_key = secret_key.map(SecretKey::from_base64).transpose()?;
        let extra = extra_secret_key
            .map(SecretKey::from_base64)
            .transpose()
            .context("MUSTER_EXTRA_SECRET_KEY")?;
        let with_extra = |key: SecretKey| match &extra {
            Some(extra) => key.also_opening(extra.clone()),
            None => key,
        };
        let secret_key = secret_key.map(with_extra);
        if let Some(options) = url {
            return Ok(Self {
                options,
                direct,
                embedded: None,
                secret_key,
            });
        }
        let dir = data_dir.to_owned();
        let embedded = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir)).await??;
        ensure_database(&embedded).await?;
        if direct.is_some() {
            anyhow::bail!("MUSTER_DIRECT_DATABASE_URL needs a DATABASE_URL (the pooler) beside it");
        }
        // The cluster made the data directory, private to this user.
        let secret_key = match secret_key {
            Some(key) => key,
            None => with_extra(embedded_secret_key(data_dir)?),
        };
        Ok(Self {
            options: embedded.connect_options(),
            direct: None,
            embedded: Some(embedded),
            secret_key: Some(secret_key),
        })
    }

    /// Where the roles connect: statements to `options`, sessions to
    /// `direct` if set.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            statements: self.options.clone(),
            direct: self.direct.clone(),
            secret_key: self.secret_key.clone(),
        }
    }

    /// Stops the embedded cluster if this process started it.
    pub async fn close(self) {
        if let Some(embedded) = self.embedded {
            let _ = tokio::task::spawn_blocking(move || embedded.stop()).await;
        }
    }
}

/// Stops the process (with one line) when its secret key cannot serve the
/// database: a wrong key, or none where sealed data exists.
pub async fn verify_secret_key(
    database: &Database,
    pool: &muster_store::db::PoolSettings,
) -> anyhow::Result<()> {
    let store = Store::connect_lazy(database.endpoints(), pool);
    let checked = check_secret_key(&store).await;
    store.pool().close().await;
    checked
}

/// A wrong key (or none where sealed data exists) stops the process before
/// it serves anything. A database that cannot be reached is no reason to
/// stop (a process serves 503s until it is back, and reports itself not
/// ready): the key is then left unchecked, and a wrong one fails every
/// read of sealed data loudly instead.
async fn check_secret_key(store: &Store) -> anyhow::Result<()> {
    match store.verify_secret_key().await {
        Err(muster_store::keyring::KeyCheckError::Store(StoreError::Unavailable(e))) => {
            tracing::warn!(error = %e, "the database is unavailable: MUSTER_SECRET_KEY is not checked");
            Ok(())
        }
        checked => Ok(checked?),
    }
}

/// Creates the cluster's `muster` database on first start.
async fn ensure_database(embedded: &EmbeddedPostgres) -> anyhow::Result<()> {
    let mut conn = embedded
        .connect_options_for("postgres")
        .connect()
        .await
        .context("connecting to the embedded cluster")?;
    // Runtime-checked on purpose: these run against the cluster's
    // maintenance database before muster's exists, and CREATE DATABASE
    // cannot be prepared; the offline query data has nothing to check them
    // against.
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = 'muster')")
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query("create database muster")
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

/// The embedded default's secret key: `$MUSTER_DATA_DIR/secret.key`
/// (mode 0600), generated on first start. Losing it loses what it sealed
/// (calendar links must be made again), as with any key.
fn embedded_secret_key(data_dir: &Path) -> anyhow::Result<SecretKey> {
    let path = data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return SecretKey::from_base64(&text)
            .with_context(|| format!("the secret key in {} is not usable", path.display()));
    }
    let (key, text) = SecretKey::generate();
    write_private(&path, &format!("{text}\n"))?;
    tracing::info!(path = %path.display(), "generated the secret key that seals stored secrets");
    Ok(key)
}

/// On the embedded default: tenant `default` with an admin key written to
/// `$MUSTER_DATA_DIR/admin.key` (mode 0600) on first start.
pub async fn ensure_admin_key(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("admin.key");
    if path.exists() {
        tracing::info!(path = %path.display(), "admin key of tenant 'default' is in this file");
        return Ok(());
    }
    let tenant = TenantId::parse("default").expect("a valid tenant id");
    let key = store.create_key(&tenant, Role::Admin).await?;
    write_private(&path, &format!("{key}\n"))?;
    tracing::info!(path = %path.display(), "created tenant 'default'; its admin key is in this file");
    Ok(())
}
