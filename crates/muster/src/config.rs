//! Typed configuration: every setting is a flag and an environment variable,
//! read once at boot; invalid values stop the process with one clear line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use muster_api::ApiConfig;
use muster_domain::TenantId;
use muster_jobs::{JobPolicies, RetryPolicy};
use muster_store::Role;
use muster_store::db::PoolSettings;
use muster_workers::WorkerConfig;
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;

/// muster: event-sourced scheduling of bookings on shared resources.
#[derive(Debug, Parser)]
#[command(name = "muster", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Database and data directory.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process (migrates first).
    Serve(HttpArgs),
    /// Run the HTTP API only (expects a migrated database).
    Api(HttpArgs),
    /// Run the projections only (expects a migrated database).
    Project(ProjectArgs),
    /// Run the job workers and the notification reactor only (expects a
    /// migrated database).
    Work(WorkArgs),
    /// Manage projections.
    Projections {
        /// What to do.
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
}

impl Command {
    /// The workers' settings of the roles that run workers.
    pub fn worker_config(&self) -> Option<WorkerConfig> {
        match self {
            Command::Serve(http) => Some(http.jobs.workers()),
            Command::Work(work) => Some(work.jobs.workers()),
            _ => None,
        }
    }
}

/// Key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// Tenant id (created if new): lower case letters, digits, `-`, `_`.
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// admin, planner or analyst.
        #[arg(long)]
        role: Role,
        /// What the key is for (shown in `keys list`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's keys (never their secrets).
    List {
        /// Tenant id.
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
    },
    /// Revoke a key: every process refuses it within two seconds.
    Revoke {
        /// Tenant id.
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// The key's id (from `keys list`).
        id: uuid::Uuid,
    },
    /// Re-seal everything sealed with the server's key with
    /// `MUSTER_SECRET_KEY`, opening it with that key or
    /// `MUSTER_EXTRA_SECRET_KEY` (the one being replaced); the servers
    /// keep running (docs/personal-data.md has the steps).
    RotateSecret,
}

/// Settings of `muster work`.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// Jobs and notifications.
    #[command(flatten)]
    pub jobs: JobArgs,
    /// Where to serve `/metrics` and `/healthz` (this role has no API).
    #[arg(long, env = "MUSTER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Settings of the projection runner.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Where to serve `/metrics` and `/healthz` (this role has no API).
    #[arg(long, env = "MUSTER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Most events one projection transaction applies while catching up.
    #[arg(long, env = "MUSTER_PROJECTION_BATCH", default_value_t = 2_000,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch: i64,
}

/// Projection subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild one projection from position 0 into fresh tables while the
    /// old ones keep serving, then swap them in.
    Rebuild {
        /// The projection: resources, bookings or deployments.
        #[arg(value_parser = parse_projection)]
        name: String,
        /// Events per transaction while loading; the swap also catches
        /// up at most about this many events while the live projector
        /// waits.
        #[arg(long, default_value_t = muster_projections::rebuild::DEFAULT_BATCH,
              value_parser = clap::value_parser!(i64).range(1..=100_000))]
        batch: i64,
    },
}

fn parse_projection(s: &str) -> Result<String, String> {
    muster_projections::ReadModel::named(s)
        .map(|m| m.name().to_owned())
        .ok_or_else(|| {
            let names: Vec<&str> = muster_projections::ReadModel::ALL
                .iter()
                .map(|m| m.name())
                .collect();
            format!("no projection {s:?}; there are: {}", names.join(", "))
        })
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A database URL, which may hold a password: never printed.
#[derive(Clone)]
pub struct DatabaseUrl(pub PgConnectOptions);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("not a valid postgres:// URL".to_owned());
        }
        PgConnectOptions::from_str(s)
            .map(DatabaseUrl)
            .map_err(|_| "not a valid postgres:// URL".to_owned())
    }
}

/// Where the data lives.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres to use; unset runs a private cluster under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<DatabaseUrl>,
    /// A hot standby of that database for the query endpoints (`muster api`
    /// and `serve`); read-your-writes still holds through `consistent_with`.
    #[arg(long, env = "READ_DATABASE_URL", hide_env_values = true, global = true)]
    pub read_database_url: Option<DatabaseUrl>,
    /// Postgres itself, when `DATABASE_URL` is a pooler in transaction mode
    /// (PgBouncer): leases, `LISTEN` and migrations need a session of their
    /// own and connect here. Unset: `DATABASE_URL` serves both.
    #[arg(
        long,
        env = "MUSTER_DIRECT_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub direct_database_url: Option<DatabaseUrl>,
    /// 32 random bytes in base64 (`openssl rand -base64 32`) that seal
    /// the secrets muster stores (clients' data keys, calendar URLs and
    /// credentials). Unset on the embedded default: one is generated under
    /// the data directory. A wrong one stops muster at boot.
    #[arg(long, env = "MUSTER_SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<String>,
    /// Another key that opens (never seals) what muster stores: the key
    /// being replaced while `MUSTER_SECRET_KEY` is rotated
    /// (docs/personal-data.md).
    #[arg(
        long,
        env = "MUSTER_EXTRA_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub extra_secret_key: Option<String>,
    /// Directory for the embedded cluster and the admin key.
    #[arg(
        long,
        env = "MUSTER_DATA_DIR",
        default_value = "./.muster",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Most database connections per process.
    #[arg(long, env = "MUSTER_DB_POOL_SIZE", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub pool_size: u32,
    /// How long a request waits for a database connection before a 503 (ms).
    #[arg(long, env = "MUSTER_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub acquire_timeout_ms: u64,
    /// Server-side statement timeout (ms).
    #[arg(long, env = "MUSTER_STATEMENT_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub statement_timeout_ms: u64,
}

impl DatabaseArgs {
    /// Pool settings.
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.pool_size,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "MUSTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest request body (bytes).
    #[arg(long, env = "MUSTER_BODY_LIMIT", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub body_limit: u64,
    /// Requests per second per API key; 0 disables the limit.
    #[arg(long, env = "MUSTER_RATE_LIMIT", default_value_t = 100)]
    pub rate_limit: u32,
    /// Burst of the per-key rate limit.
    #[arg(long, env = "MUSTER_RATE_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Longest a request may take before it is answered 503 (ms).
    #[arg(long, env = "MUSTER_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Longest a client may take to send a request body before 408 (ms).
    #[arg(long, env = "MUSTER_BODY_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// How long the first answer to an Idempotency-Key is kept (hours).
    #[arg(long, env = "MUSTER_IDEMPOTENCY_TTL_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub idempotency_ttl_hours: u64,
    /// How long a query with `consistent_with` waits for the read models
    /// before answering 503 (ms).
    #[arg(long, env = "MUSTER_CONSISTENCY_WAIT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub consistency_wait_ms: u64,
    /// Live streams (`/v1/subscribe`) one API key may hold open at once.
    #[arg(long, env = "MUSTER_MAX_STREAMS_PER_KEY", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_streams_per_key: u64,
    /// Live streams one process serves at once.
    #[arg(long, env = "MUSTER_MAX_STREAMS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_streams: u64,
    /// Newest events kept in memory for the live streams; a stream that
    /// falls further behind is cut off and resumes with `Last-Event-ID`.
    #[arg(long, env = "MUSTER_LIVE_BUFFER", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1_000..=10_000_000))]
    pub live_buffer: u64,
    /// Bytes those events may take (their frames as sent, and what filters
    /// test); the oldest go first. Nothing is kept while no stream is open.
    #[arg(long, env = "MUSTER_LIVE_BUFFER_BYTES", default_value_t = 32 << 20,
          value_parser = clap::value_parser!(u64).range((1 << 20)..=(16 << 30)))]
    pub live_buffer_bytes: u64,
    /// Origins allowed to call the API from a browser (CORS),
    /// comma-separated (`https://planner.example.com`); unset: none.
    #[arg(long, env = "MUSTER_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// Jobs and notifications.
    #[command(flatten)]
    pub jobs: JobArgs,
}

/// Settings of jobs, workers and notifications.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Accept and deliver to webhook URLs on private or loopback addresses.
    #[arg(long, env = "MUSTER_ALLOW_PRIVATE_WEBHOOKS", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub allow_private_webhooks: bool,
    /// SMTP relay for email notifications (smtp://user:pass@host:port,
    /// smtps://…); unset: email subscriptions fail.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = parse_secret)]
    pub smtp_url: Option<SecretString>,
    /// Sender of notification emails.
    #[arg(long, env = "MUSTER_SMTP_FROM", default_value = "muster@localhost")]
    pub smtp_from: String,
    /// Interval poll of the queue beside LISTEN/NOTIFY (ms): picks up retries.
    #[arg(long, env = "MUSTER_JOB_POLL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub job_poll_ms: u64,
    /// Worker heartbeat (ms).
    #[arg(long, env = "MUSTER_JOB_HEARTBEAT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub job_heartbeat_ms: u64,
    /// Missed heartbeats after which a worker's jobs are rescued; rescue
    /// happens within heartbeat × (this + 1).
    #[arg(long, env = "MUSTER_JOB_MISSED_HEARTBEATS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_missed_heartbeats: u32,
    /// Attempts per deployment step.
    #[arg(long, env = "MUSTER_DEPLOYMENT_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub deployment_attempts: u32,
    /// Attempts per notification.
    #[arg(long, env = "MUSTER_NOTIFICATION_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notification_attempts: u32,
    /// Attempts per report.
    #[arg(long, env = "MUSTER_REPORT_ATTEMPTS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub report_attempts: u32,
    /// First retry delay of deployment steps (ms); doubles per failure.
    #[arg(long, env = "MUSTER_DEPLOYMENT_RETRY_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub deployment_retry_ms: u64,
    /// First retry delay of notifications (ms); doubles per failure.
    #[arg(long, env = "MUSTER_NOTIFICATION_RETRY_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub notification_retry_ms: u64,
    /// First retry delay of reports (ms); doubles per failure.
    #[arg(long, env = "MUSTER_REPORT_RETRY_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub report_retry_ms: u64,
    /// Longest retry delay of any job (ms).
    #[arg(long, env = "MUSTER_RETRY_MAX_MS", default_value_t = 3_600_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_max_ms: u64,
    /// Timeout of every outbound webhook call and email (ms).
    #[arg(long, env = "MUSTER_OUTBOUND_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub outbound_timeout_ms: u64,
    /// Notifications delivered at once per process.
    #[arg(long, env = "MUSTER_NOTIFICATION_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub notification_concurrency: u32,
    /// Deployments run at once per process.
    #[arg(long, env = "MUSTER_DEPLOYMENT_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub deployment_concurrency: u32,
    /// Reports built at once per process.
    #[arg(long, env = "MUSTER_REPORT_CONCURRENCY", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub report_concurrency: u32,
    /// How long finished jobs and dead letters are kept (hours).
    #[arg(long, env = "MUSTER_JOB_HISTORY_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub job_history_hours: u64,
    /// A webhook endpoint failing every attempt this long is disabled
    /// (ISO 8601, `P5D`; a 410 Gone disables it at once).
    #[arg(long, env = "MUSTER_WEBHOOK_DISABLE_AFTER", default_value = "P5D")]
    pub webhook_disable_after: muster_domain::duration::IsoDuration,
    /// How long finished reports and their files are kept (ISO 8601).
    #[arg(long, env = "MUSTER_REPORT_RETENTION", default_value = "P30D")]
    pub report_retention: muster_domain::duration::IsoDuration,
    /// How long finished webhook deliveries and their attempts are kept.
    #[arg(long, env = "MUSTER_DELIVERY_RETENTION", default_value = "P30D")]
    pub delivery_retention: muster_domain::duration::IsoDuration,
    /// Erase a client by themselves once their last booking ended this
    /// long ago (ISO 8601 years, months, days: `P3Y`); unset: never.
    #[arg(long, env = "MUSTER_CLIENT_RETENTION")]
    pub client_retention: Option<muster_domain::personal::Retention>,
}

impl JobArgs {
    /// Attempts and backoff per job kind.
    pub fn policies(&self) -> JobPolicies {
        let max_delay = Duration::from_millis(self.retry_max_ms);
        let policy = |attempts, base_ms| RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(base_ms),
            max_delay,
        };
        JobPolicies {
            deployment: policy(self.deployment_attempts, self.deployment_retry_ms),
            notification: policy(self.notification_attempts, self.notification_retry_ms),
            report: policy(self.report_attempts, self.report_retry_ms),
            calendar: JobPolicies::default().calendar,
        }
    }

    /// The workers' settings.
    pub fn workers(&self) -> WorkerConfig {
        WorkerConfig {
            policies: self.policies(),
            poll_interval: Duration::from_millis(self.job_poll_ms),
            heartbeat: Duration::from_millis(self.job_heartbeat_ms),
            missed_heartbeats: self.job_missed_heartbeats,
            deployment_concurrency: self.deployment_concurrency as usize,
            notification_concurrency: self.notification_concurrency as usize,
            report_concurrency: self.report_concurrency as usize,
            outbound_timeout: Duration::from_millis(self.outbound_timeout_ms),
            allow_private_targets: self.allow_private_webhooks,
            smtp_url: self.smtp_url.clone(),
            smtp_from: self.smtp_from.clone(),
            job_history: Duration::from_secs(self.job_history_hours * 3600),
            webhook_disable_after: seconds(self.webhook_disable_after),
            report_retention: seconds(self.report_retention),
            delivery_retention: seconds(self.delivery_retention),
            client_retention: self.client_retention,
            ..WorkerConfig::default()
        }
    }
}

impl HttpArgs {
    /// The API layer's limits.
    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            body_limit: usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_hours * 3600),
            consistency_wait: Duration::from_millis(self.consistency_wait_ms),
            allow_private_webhooks: self.jobs.allow_private_webhooks,
            max_streams_per_key: usize::try_from(self.max_streams_per_key).unwrap_or(usize::MAX),
            max_streams: usize::try_from(self.max_streams).unwrap_or(usize::MAX),
            live_buffer: usize::try_from(self.live_buffer).unwrap_or(usize::MAX),
            live_buffer_bytes: usize::try_from(self.live_buffer_bytes).unwrap_or(usize::MAX),
            cors_origins: self.cors_origins.clone(),
        }
    }
}

/// An ISO 8601 duration as a `Duration`.
fn seconds(d: muster_domain::duration::IsoDuration) -> Duration {
    Duration::from_secs(u64::try_from(d.seconds()).unwrap_or(0))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn parse_origin(s: &str) -> Result<axum::http::HeaderValue, String> {
    let s = s.trim();
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not an origin: {e}"))?;
    let valid = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && !s.ends_with('/')
        && url.query().is_none()
        && url.username().is_empty();
    if !valid {
        return Err(format!("{s:?} is not an origin (scheme://host[:port])"));
    }
    axum::http::HeaderValue::from_str(s).map_err(|e| e.to_string())
}

fn parse_tenant(s: &str) -> Result<TenantId, String> {
    TenantId::parse(s).map_err(|e| e.to_string())
}

/// A credential-bearing setting, kept out of `Debug` and error messages.
fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}
