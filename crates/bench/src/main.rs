//! `muster-bench`: drives load against a running muster and measures a
//! baseline on the same database in the same run.
//!
//! Scenario `commands`: create-booking-with-one-reservation commands from N
//! concurrent clients for T seconds (closed loop), or at a fixed rate (open
//! loop, latency measured from each request's scheduled start so that a
//! stall is not hidden). The baseline is pgbench's single-row INSERT rate
//! with the same client count and duration on the same database.

mod api;
mod calendar;
mod jobs;
mod mixed;
mod pace;
mod personal;
mod pools;
mod progress;
mod reads;
mod statements;
mod waitlist;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeZone, Utc};

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

/// Benchmarks for muster.
#[derive(Debug, Parser)]
#[command(name = "muster-bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Create-booking-with-one-reservation commands, beside pgbench.
    Commands(CommandsArgs),
    /// The read side: GET booking, conflict check, projection lag, rebuild.
    #[command(flatten)]
    Reads(reads::ReadScenario),
    /// The async side: webhooks, reports.
    #[command(flatten)]
    Jobs(jobs::JobScenario),
    /// 80 % queries and 20 % commands from 200 clients, over one or more
    /// API processes.
    Mixed(mixed::MixedArgs),
    /// The SQL of create-booking commands run by pgbench without muster,
    /// beside the single-row insert: the ceiling the database sets.
    Statements(statements::StatementsArgs),
    /// Clients racing for one slot of a pool (every slot must go to
    /// exactly as many clients as the pool has members, each a different
    /// one), beside the same race for one named resource.
    PoolRace(pools::RaceArgs),
    /// POST /v1/find-time at a fixed rate (default 50/s): three
    /// requirements, one a 50-member pool, 14 days over the 1M seeded
    /// reservations on 10k resources.
    FindTime(reads::ReadArgs),
    /// From a cancel until the first waiting entry's offer hold exists,
    /// cancel after cancel (run `mixed` beside it for load), beside the
    /// cancel's own answer time.
    WaitlistOffer(waitlist::OfferArgs),
    /// A CalDAV collection on a Radicale started here, linked to a
    /// resource: the first sync, and syncs with one change, each beside a
    /// bare WebDAV client's same read.
    CalendarSync(calendar::SyncArgs),
    /// A client with 1,000 bookings erased (the answer waits for the read
    /// model), beside a client with none and the making of their bookings.
    Erasure(personal::ErasureArgs),
    /// A resource's schedule as of the middle of ~10,000 events of its
    /// bookings, beside the same schedule now from the read model.
    AsOf(personal::AsOfArgs),
}

#[derive(Debug, Args)]
struct CommandsArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (planner or admin); or use --key-file.
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// File holding the API key.
    #[arg(long, default_value = ".muster/admin.key")]
    key_file: PathBuf,
    /// The database muster uses, for the pgbench baseline.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Concurrent clients (closed loop), also pgbench's client count.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Unmeasured warm-up seconds before the muster run.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Open loop at this many commands per second instead of a closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// How many resources the bookings spread over.
    #[arg(long, default_value_t = 1000)]
    resources: usize,
    /// Skip the pgbench baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Send a unique Idempotency-Key with every command, as careful
    /// clients do.
    #[arg(long)]
    idempotency_keys: bool,
    /// Hold this many live streams (`/v1/subscribe`) open while the
    /// commands run (the server's per-key cap must allow them).
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// The streams' query: which events each one asks for (every booking
    /// event by default; `event_types=booking.cancelled` asks for one the
    /// commands never produce, as a dashboard watching for something rare).
    #[arg(long, default_value = "stream_types=booking")]
    subscriber_query: String,
    /// Fail (exit status 1) if the rate is below this percentage of the
    /// same-run pgbench baseline: the benchmark smoke's guard against a
    /// large regression (errors always fail).
    #[arg(long)]
    min_ratio: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Commands(args) => commands(args).await,
        Scenario::Reads(scenario) => reads::run(scenario).await,
        Scenario::Jobs(scenario) => jobs::run(scenario).await,
        Scenario::Mixed(args) => mixed::run(args).await,
        Scenario::Statements(args) => statements::run(args).await,
        Scenario::PoolRace(args) => pools::race(args).await,
        Scenario::FindTime(args) => pools::find_time(args).await,
        Scenario::WaitlistOffer(args) => waitlist::offer(args).await,
        Scenario::Erasure(args) => personal::erasure(args).await,
        Scenario::AsOf(args) => personal::as_of(args).await,
        Scenario::CalendarSync(args) => calendar::sync(args).await,
    }
}

/// What one load run measured.
struct Measured {
    ok: u64,
    conflicts: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Measured {
    fn new() -> Self {
        Self {
            ok: 0,
            conflicts: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        }
    }

    fn merge(&mut self, other: &Measured) {
        self.ok += other.ok;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        self.latency.add(&other.latency).expect("same bounds");
    }

    fn record(&mut self, status: Option<u16>, latency: Duration) {
        match status {
            Some(201) => self.ok += 1,
            Some(409) => self.conflicts += 1,
            _ => self.errors += 1,
        }
        self.latency.saturating_record(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }

    fn per_second(&self) -> f64 {
        (self.ok + self.conflicts) as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

async fn commands(args: CommandsArgs) -> anyhow::Result<()> {
    let key = match &args.key {
        Some(key) => key.clone(),
        None => std::fs::read_to_string(&args.key_file)
            .with_context(|| format!("reading the key from {}", args.key_file.display()))?
            .trim()
            .to_owned(),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients.max(256))
        .timeout(Duration::from_secs(30))
        .build()?;
    let target = Target {
        http,
        url: args.url.trim_end_matches('/').to_owned(),
        key,
        idempotency_keys: args.idempotency_keys,
    };
    eprintln!("registering {} resources", args.resources);
    let resources = Arc::new(target.register_resources(args.resources).await?);

    let baseline = if args.no_baseline {
        None
    } else {
        let url = args.database_url.as_deref().context(
            "the baseline needs --database-url (or DATABASE_URL); or pass --no-baseline",
        )?;
        Some(match args.rate {
            Some(rate) => {
                let _bar =
                    progress::timed(format!("pgbench baseline: {rate} inserts/s"), args.duration);
                Baseline::Latency(pgbench_insert_latency(url, rate, args.duration)?)
            }
            None => {
                let _bar = progress::timed(
                    format!("pgbench baseline: {} clients", args.clients),
                    args.duration,
                );
                Baseline::Rate(pgbench_insert_rate(url, args.clients, args.duration)?)
            }
        })
    };

    let target = Arc::new(target);
    let streams = open_streams(&target, args.subscribers, &args.subscriber_query).await?;
    if args.warmup > 0 {
        let _bar = progress::timed("warm-up".to_owned(), args.warmup);
        closed_loop(
            &target,
            &resources,
            args.clients,
            Duration::from_secs(args.warmup),
        )
        .await;
    }
    let duration = Duration::from_secs(args.duration);
    let measured = match args.rate {
        Some(rate) => {
            let _bar = progress::timed(format!("open loop at {rate}/s"), args.duration);
            open_loop(&target, &resources, rate, duration).await
        }
        None => {
            let _bar = progress::timed(
                format!("closed loop, {} clients", args.clients),
                args.duration,
            );
            closed_loop(&target, &resources, args.clients, duration).await
        }
    };

    let mode = args.rate.map_or_else(
        || format!("closed loop, {} clients", args.clients),
        |r| format!("open loop at {r}/s"),
    );
    println!(
        "scenario: commands (create booking with one reservation), {mode}, {} s",
        args.duration
    );
    println!(
        "muster:   {:.0} commands/s ({} created, {} conflicts, {} errors)",
        measured.per_second(),
        measured.ok,
        measured.conflicts,
        measured.errors
    );
    println!(
        "latency:  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        measured.ms(0.50),
        measured.ms(0.90),
        measured.ms(0.99),
        measured.latency.max() as f64 / 1000.0
    );
    if !streams.is_empty() {
        let received: Vec<u64> = streams
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        println!(
            "streams:  {} open while the commands ran; events received per stream: min {}, max {}",
            received.len(),
            received.iter().min().unwrap_or(&0),
            received.iter().max().unwrap_or(&0)
        );
    }
    let mut ratio = None;
    match baseline {
        Some(Baseline::Rate(rate)) => {
            println!(
                "pgbench:  {rate:.0} single-row inserts/s ({} clients, same database, same run)",
                args.clients
            );
            let percent = 100.0 * measured.per_second() / rate;
            println!("ratio:    {percent:.1} % of pgbench");
            ratio = Some(percent);
        }
        Some(Baseline::Latency(latency)) => {
            let ms = |q| latency.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "pgbench:  single-row inserts at the same rate: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                ms(0.50),
                ms(0.90),
                ms(0.99),
                latency.max() as f64 / 1000.0
            );
            println!(
                "ratio:    p99 {:.1}x pgbench's",
                measured.ms(0.99) / ms(0.99)
            );
        }
        None => {}
    }

    smoke_check(measured.errors, ratio, args.min_ratio)
}

/// The verdict of a run: any failed request fails it, and so does a rate
/// below `min_ratio` percent of the same-run baseline (when one is asked
/// for, there must be a baseline to compare with).
pub(crate) fn smoke_check(
    errors: u64,
    ratio: Option<f64>,
    min_ratio: Option<f64>,
) -> anyhow::Result<()> {
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    match (min_ratio, ratio) {
        (Some(floor), Some(ratio)) if ratio < floor => {
            bail!("{ratio:.1} % of the baseline is below the floor of {floor:.1} %")
        }
        (Some(_), None) => bail!("--min-ratio needs the baseline run"),
        _ => Ok(()),
    }
}

/// The server under test.
struct Target {
    http: reqwest::Client,
    url: String,
    key: String,
    idempotency_keys: bool,
}

impl Target {
    async fn register_resources(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let response = self
                .http
                .post(format!("{}/v1/resources", self.url))
                .bearer_auth(&self.key)
                .json(&json!({"name": format!("bench room {n}"), "kind": "room"}))
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "registering a resource: {} {}",
                    response.status(),
                    response.text().await?
                );
            }
            let body: serde_json::Value = response.json().await?;
            ids.push(body["id"].as_str().context("an id")?.to_owned());
        }
        Ok(ids)
    }

    /// Sends one booking with one reservation on a random resource and hour
    /// (among ten years of hours, so that conflicts stay rare).
    async fn book(&self, resources: &[String]) -> (Option<u16>, Duration) {
        let (resource, start) = {
            use rand::Rng;
            let mut rng = rand::rng();
            let hour = rng.random_range(0..24 * 3650);
            (
                &resources[rng.random_range(0..resources.len())],
                Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hour),
            )
        };
        let end = start + chrono::Duration::hours(1);
        let body = json!({
            "title": "bench", "client": {"name": "Bench Client"},
            "starts_at": start, "ends_at": end, "headcount": 2,
            "reservations": [{"resource_id": resource, "starts_at": start, "ends_at": end}]
        });
        let started = Instant::now();
        let mut request = self
            .http
            .post(format!("{}/v1/bookings", self.url))
            .bearer_auth(&self.key)
            .json(&body);
        if self.idempotency_keys {
            request = request.header("idempotency-key", uuid::Uuid::now_v7().to_string());
        }
        let status = request.send().await.ok().map(|r| r.status().as_u16());
        (status, started.elapsed())
    }
}

/// Opens `n` live streams that read (and count) events until the process
/// ends; fails when one is refused.
async fn open_streams(
    target: &Arc<Target>,
    n: usize,
    query: &str,
) -> anyhow::Result<Vec<Arc<std::sync::atomic::AtomicU64>>> {
    if n > 0 {
        eprintln!("opening {n} live streams");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()?;
    let mut counters = Vec::with_capacity(n);
    for _ in 0..n {
        let mut response = client
            .get(format!("{}/v1/subscribe?{query}", target.url))
            .bearer_auth(&target.key)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "a live stream was refused: {} (raise MUSTER_MAX_STREAMS_PER_KEY)",
            response.status()
        );
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = counter.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = response.chunk().await {
                let events = chunk.windows(3).filter(|w| w == b"id:").count() as u64;
                seen.fetch_add(events, std::sync::atomic::Ordering::Relaxed);
            }
        });
        counters.push(counter);
    }
    Ok(counters)
}

async fn closed_loop(
    target: &Arc<Target>,
    resources: &Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, resources) = (target.clone(), resources.clone());
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            while Instant::now() < deadline {
                let (status, latency) = target.book(&resources).await;
                measured.record(status, latency);
            }
            measured
        }));
    }
    let mut total = Measured::new();
    for task in tasks {
        if let Ok(m) = task.await {
            total.merge(&m);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Fixed-rate arrivals; latency counts from the scheduled start.
async fn open_loop(
    target: &Arc<Target>,
    resources: &Arc<Vec<String>>,
    rate: u64,
    duration: Duration,
) -> Measured {
    let started = Instant::now();
    let total = (rate * duration.as_secs()) as usize;
    // Bounds in-flight requests so that an overloaded server shows as
    // latency, not as unbounded memory here.
    let in_flight = Arc::new(Semaphore::new(4096));
    let mut tasks = Vec::with_capacity(total);
    let mut arrivals = pace::arrivals(rate, total);
    while let Some((_, scheduled)) = arrivals.next().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (target, resources) = (target.clone(), resources.clone());
        tasks.push(tokio::spawn(async move {
            let (status, _) = target.book(&resources).await;
            drop(permit);
            (status, scheduled.elapsed())
        }));
    }
    arrivals.report();
    let mut measured = Measured::new();
    for task in tasks {
        if let Ok((status, latency)) = task.await {
            measured.record(status, latency);
        }
    }
    measured.elapsed = started.elapsed();
    measured
}

/// What the same run measured of Postgres alone.
enum Baseline {
    /// Closed loop: single-row INSERT transactions per second.
    Rate(f64),
    /// Open loop: latency of single-row INSERTs at the same rate.
    Latency(Histogram<u64>),
}

/// The baseline's table and its single-row INSERT.
const BASELINE_SETUP: &str = "create table if not exists muster_bench_baseline (id bigserial primary key, payload text not null)";
const BASELINE_INSERT: &str = "insert into muster_bench_baseline (payload) values ('x');\n";

/// Runs pgbench with `script` after `setup` (psql) on `url`.
fn pgbench_script(
    url: &str,
    setup: &str,
    script_text: &str,
    options: &[String],
) -> anyhow::Result<(String, PathBuf)> {
    let pgbench = find_tool("pgbench").context("pgbench not found (Debian: postgresql)")?;
    let psql = find_tool("psql").context("psql not found")?;
    let status = Command::new(psql)
        // Without the setup's "already exists, skipping" notices.
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .args([url, "-q", "-c"])
        .arg(setup)
        .status()?;
    if !status.success() {
        bail!("could not set up the baseline table");
    }
    let dir = std::env::temp_dir().join(format!("muster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("script.sql");
    std::fs::write(&script, script_text)?;
    let output = Command::new(pgbench)
        .current_dir(&dir)
        .arg("-n")
        .args(options)
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((text, dir))
}

/// pgbench's latency of single-row INSERTs at `rate` per second, from its
/// per-transaction log with the schedule lag added, so that it counts from
/// each transaction's scheduled start like the open loop here.
fn pgbench_insert_latency(url: &str, rate: u64, seconds: u64) -> anyhow::Result<Histogram<u64>> {
    pgbench_latency(url, BASELINE_SETUP, BASELINE_INSERT, rate, seconds)
}

/// pgbench's latency of `script` at `rate` per second (see
/// [`pgbench_insert_latency`]).
fn pgbench_latency(
    url: &str,
    setup: &str,
    script: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Histogram<u64>> {
    let options = strings(&[
        "-c",
        "16",
        "-j",
        "2",
        "-R",
        &rate.to_string(),
        "-T",
        &seconds.to_string(),
        "-l",
    ]);
    let (_, dir) = pgbench_script(url, setup, script, &options)?;
    let mut latency = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    for entry in std::fs::read_dir(&dir)?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            continue;
        }
        // client, transaction, time (us), script, epoch, us, schedule lag (us)
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let micros: u64 = fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0);
            let lag: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
            latency.saturating_record((micros + lag).max(1));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if latency.is_empty() {
        bail!("pgbench wrote no per-transaction log");
    }
    Ok(latency)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// pgbench's rate of single-row INSERT transactions on `url`.
fn pgbench_insert_rate(url: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let options = strings(&[
        "-c",
        &clients.to_string(),
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
    ]);
    pgbench_rate(url, BASELINE_SETUP, BASELINE_INSERT, &options)
}

/// pgbench's rate of `script` transactions on `url` with `options`.
fn pgbench_rate(url: &str, setup: &str, script: &str, options: &[String]) -> anyhow::Result<f64> {
    let (text, dir) = pgbench_script(url, setup, script, options)?;
    let _ = std::fs::remove_dir_all(&dir);
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .context("no tps line in pgbench's output")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    debian.sort();
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
