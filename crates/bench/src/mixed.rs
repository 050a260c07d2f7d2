//! Scenario `mixed`: what a busy planning office sends at once. 200 clients
//! (closed loop) over one or more API processes, each request a query (80 %
//! by default: booking detail, booking list, a resource's week, availability)
//! or a command (a new booking). SPEC §9: p99 ≤ 50 ms with 0 errors.
//!
//! Its one SQL statement (`analyze`) is runtime-checked on purpose, like
//! the other scenarios' seeding: a utility statement on whatever database
//! is measured, not one of the product's checked queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;

/// Where and how hard.
#[derive(Debug, Args)]
pub struct MixedArgs {
    /// Base URL of a running `muster api` or `serve`; repeat it for several
    /// processes (clients spread over them in turn).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    urls: Vec<String>,
    /// API key (planner or admin).
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Concurrent clients (closed loop), or connections in flight at most
    /// (open loop).
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Open loop at this many requests per second instead of a closed
    /// loop: latency counts from each request's scheduled start.
    #[arg(long)]
    rate: Option<u64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Percentage of requests that are queries; the rest are commands.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    query_percent: u8,
    /// Resources the bookings spread over.
    #[arg(long, default_value_t = 50)]
    resources: usize,
    /// The database, for the baseline: pgbench with the same mix of
    /// primary-key lookups and single-row inserts. Unset: no baseline.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// pgbench's clients (Postgres' default `max_connections` is 100, and
    /// the muster processes keep their pools open).
    #[arg(long, default_value_t = 32)]
    baseline_clients: usize,
    /// Fail (exit status 1) if the rate is below this percentage of the
    /// same-run pgbench baseline: the benchmark smoke's guard against a
    /// large regression (errors always fail).
    #[arg(long)]
    min_ratio: Option<f64>,
}

const BASELINE_SETUP: &str = "do $$ begin
  if to_regclass('muster_bench_lookup') is null then
    create table muster_bench_lookup (id integer primary key, doc jsonb not null);
    insert into muster_bench_lookup
      select g, jsonb_build_object('n', g, 'pad', repeat('x', 600)) from generate_series(1, 10000) g;
  end if;
  create table if not exists muster_bench_baseline (id bigserial primary key, payload text not null);
end $$";

/// The same share of lookups and inserts as the muster run.
fn baseline_script(query_percent: u8) -> String {
    format!(
        "\\set r random(1, 100)\n\\set id random(1, 10000)\n\\if :r <= {query_percent}\n\
         select doc from muster_bench_lookup where id = :id;\n\\else\n\
         insert into muster_bench_baseline (payload) values ('x');\n\\endif\n"
    )
}

/// What one request was.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Detail,
    List,
    Schedule,
    Availability,
    Command,
}

const KINDS: [Kind; 5] = [
    Kind::Detail,
    Kind::List,
    Kind::Schedule,
    Kind::Availability,
    Kind::Command,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Detail => "GET /v1/bookings/{id}",
            Kind::List => "GET /v1/bookings",
            Kind::Schedule => "GET /v1/resources/{id}/schedule",
            Kind::Availability => "GET /v1/availability",
            Kind::Command => "POST /v1/bookings",
        }
    }
}

/// The data the queries ask about.
struct Seeded {
    resources: Vec<String>,
    bookings: Vec<String>,
}

/// Latencies and errors, per kind.
struct Tally {
    all: Histogram<u64>,
    by_kind: Vec<Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            all: histogram(),
            by_kind: KINDS.iter().map(|_| histogram()).collect(),
            errors: 0,
            first_error: None,
        }
    }

    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        self.all.add(&other.all)?;
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            mine.add(theirs)?;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A random half hour far in the future (capacity 10,000 resources, so
/// commands never conflict: every refusal would be an error here).
fn slot() -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let base = chrono::DateTime::parse_from_rfc3339("2040-01-01T00:00:00Z")
        .expect("a valid time")
        .to_utc();
    let start = base + chrono::Duration::minutes(30 * rand::rng().random_range(0..17_520));
    (start, start + chrono::Duration::minutes(30))
}

/// Runs the scenario.
pub async fn run(args: MixedArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let seeded = Arc::new(seed(&http, &args).await?);
    if let Some(url) = &args.database_url {
        // As autovacuum would within its first minute: on a fresh
        // database without statistics, the planner's generic plan for the
        // booking list scans and sorts the tenant's every booking.
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query("analyze").execute(&pool).await?;
        pool.close().await;
    }
    let started = Instant::now();
    let bar = crate::progress::timed(
        format!("mixed load over {} API process(es)", args.urls.len()),
        args.duration,
    );
    let tally = match args.rate {
        None => closed_loop(&args, &http, &seeded).await?,
        Some(rate) => open_loop(&args, rate, &http, &seeded).await?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    drop(bar);
    let shape = match args.rate {
        None => format!("{} clients", args.clients),
        Some(rate) => format!("{rate}/s open loop, at most {} in flight", args.clients),
    };
    println!(
        "mixed load, {shape} over {} API process(es), {}% queries, {}s: {:.0} requests/s, \
         p50 {:.2} ms, p99 {:.2} ms, {} errors",
        args.urls.len(),
        args.query_percent,
        args.duration,
        tally.all.len() as f64 / elapsed,
        ms(&tally.all, 0.5),
        ms(&tally.all, 0.99),
        tally.errors
    );
    for (kind, h) in KINDS.iter().zip(&tally.by_kind) {
        println!(
            "  {:<34} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            kind.name(),
            h.len() as f64 / elapsed,
            ms(h, 0.5),
            ms(h, 0.99)
        );
    }
    if let Some(error) = tally.first_error {
        println!("  first error: {error}");
    }
    let mut ratio = None;
    if let Some(url) = &args.database_url {
        let (out, dir) = crate::pgbench_script(
            url,
            BASELINE_SETUP,
            &baseline_script(args.query_percent),
            &crate::strings(&[
                "-c",
                &args.baseline_clients.to_string(),
                "-j",
                "2",
                "-T",
                &args.duration.to_string(),
            ]),
        )?;
        let _ = std::fs::remove_dir_all(dir);
        let field = |prefix: &str| {
            out.lines()
                .find_map(|l| {
                    l.strip_prefix(prefix)?
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        let tps = field("tps = ");
        let percent = tally.all.len() as f64 / elapsed * 100.0 / tps.max(1.0);
        println!(
            "  baseline, pgbench {}% primary-key lookups / {}% single-row inserts, {} clients: \
             {tps:.0}/s (latency average {:.2} ms); muster: {percent:.0}% of it",
            args.query_percent,
            100 - args.query_percent,
            args.baseline_clients,
            field("latency average = "),
        );
        ratio = Some(percent);
    }
    crate::smoke_check(tally.errors, ratio, args.min_ratio)
}

/// A query (of a random kind) or a command, in the configured shares.
fn pick_kind(query_percent: u8) -> Kind {
    let mut rng = rand::rng();
    if rng.random_range(0..100) < query_percent {
        KINDS[rng.random_range(0..4)]
    } else {
        Kind::Command
    }
}

/// Sends one request and records it, its latency counted from `since`.
async fn measure(
    tally: &mut Tally,
    since: Instant,
    request: impl std::future::Future<Output = anyhow::Result<()>>,
    kind: Kind,
) {
    match request.await {
        Ok(()) => {
            let us = since.elapsed().as_micros().max(1) as u64;
            tally.all.saturating_record(us);
            tally.by_kind[kind as usize].saturating_record(us);
        }
        Err(e) => {
            tally.errors += 1;
            tally.first_error.get_or_insert(e.to_string());
        }
    }
}

/// `args.clients` clients, each sending its next request when the last
/// one is answered.
async fn closed_loop(
    args: &MixedArgs,
    http: &reqwest::Client,
    seeded: &Arc<Seeded>,
) -> anyhow::Result<Tally> {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| {
            let url = args.urls[n % args.urls.len()].clone();
            let (http, key, seeded) = (http.clone(), args.key.clone(), seeded.clone());
            let query_percent = args.query_percent;
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let kind = pick_kind(query_percent);
                    let request = send(&http, &url, &key, &seeded, kind);
                    measure(&mut tally, Instant::now(), request, kind).await;
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::new();
    for task in tasks {
        tally.add(task.await?)?;
    }
    Ok(tally)
}

/// Requests at `rate` per second whatever the answers' pace, at most
/// `args.clients` in flight (a request beyond that waits, and its wait
/// counts).
async fn open_loop(
    args: &MixedArgs,
    rate: u64,
    http: &reqwest::Client,
    seeded: &Arc<Seeded>,
) -> anyhow::Result<Tally> {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.clients));
    let total = (rate * args.duration) as usize;
    let mut tasks = Vec::with_capacity(total);
    let mut arrivals = crate::pace::arrivals(rate, total);
    while let Some((i, scheduled)) = arrivals.next().await {
        let url = args.urls[i % args.urls.len()].clone();
        let (http, key, seeded, in_flight) = (
            http.clone(),
            args.key.clone(),
            seeded.clone(),
            in_flight.clone(),
        );
        let kind = pick_kind(args.query_percent);
        tasks.push(tokio::spawn(async move {
            let _permit = in_flight.acquire_owned().await;
            let answer = send(&http, &url, &key, &seeded, kind).await;
            (kind, answer.map(|()| scheduled.elapsed()))
        }));
    }
    arrivals.report();
    let mut tally = Tally::new();
    for task in tasks {
        match task.await? {
            (kind, Ok(latency)) => {
                let us = latency.as_micros().max(1) as u64;
                tally.all.saturating_record(us);
                tally.by_kind[kind as usize].saturating_record(us);
            }
            (_, Err(e)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e.to_string());
            }
        }
    }
    Ok(tally)
}

/// Resources and some bookings to ask about, made through the API.
async fn seed(http: &reqwest::Client, args: &MixedArgs) -> anyhow::Result<Seeded> {
    let url = &args.urls[0];
    let mut resources = Vec::with_capacity(args.resources);
    for n in 0..args.resources {
        let r = http
            .post(format!("{url}/v1/resources"))
            .bearer_auth(&args.key)
            .json(&json!({"name": format!("mixed room {n}"), "kind": "room", "capacity": 10_000}))
            .send()
            .await?;
        if r.status() != 201 {
            bail!("registering a resource: {} {}", r.status(), r.text().await?);
        }
        let body: serde_json::Value = r.json().await?;
        resources.push(body["id"].as_str().context("an id")?.to_owned());
    }
    let mut seeded = Seeded {
        resources,
        bookings: Vec::new(),
    };
    let mut last = 0;
    for _ in 0..500 {
        let (id, position) = book(http, url, &args.key, &seeded).await?;
        seeded.bookings.push(id);
        last = position;
    }
    // Start once the read models have the seed.
    let check = http
        .get(format!(
            "{url}/v1/bookings/{}?consistent_with={last}",
            seeded.bookings[0]
        ))
        .bearer_auth(&args.key)
        .send()
        .await?;
    if !check.status().is_success() {
        bail!("the read models did not catch up: {}", check.status());
    }
    Ok(seeded)
}

async fn book(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    seeded: &Seeded,
) -> anyhow::Result<(String, i64)> {
    let resource = &seeded.resources[rand::rng().random_range(0..seeded.resources.len())];
    let (start, end) = slot();
    let r = http
        .post(format!("{url}/v1/bookings"))
        .bearer_auth(key)
        .json(&json!({
            "title": "mixed", "client": {"name": "Bench Client"},
            "starts_at": start, "ends_at": end, "headcount": 2,
            "reservations": [{"resource_id": resource, "starts_at": start, "ends_at": end}]
        }))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("POST /v1/bookings: {} {}", r.status(), r.text().await?);
    }
    let body: serde_json::Value = r.json().await?;
    Ok((
        body["id"].as_str().context("an id")?.to_owned(),
        body["position"].as_i64().context("a position")?,
    ))
}

/// One request of `kind`; an error for a transport failure or any answer
/// but the expected success.
async fn send(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    seeded: &Seeded,
    kind: Kind,
) -> anyhow::Result<()> {
    let pick = |items: &[String]| items[rand::rng().random_range(0..items.len())].clone();
    let request = match kind {
        Kind::Command => return book(http, url, key, seeded).await.map(|_| ()),
        Kind::Detail => http.get(format!("{url}/v1/bookings/{}", pick(&seeded.bookings))),
        Kind::List => http.get(format!("{url}/v1/bookings?limit=20")),
        Kind::Schedule => {
            let (start, _) = slot();
            http.get(format!(
                "{url}/v1/resources/{}/schedule",
                pick(&seeded.resources)
            ))
            .query(&[
                ("from", start.to_rfc3339()),
                ("to", (start + chrono::Duration::days(7)).to_rfc3339()),
            ])
        }
        Kind::Availability => {
            let (start, _) = slot();
            http.get(format!("{url}/v1/availability")).query(&[
                ("resource_ids", pick(&seeded.resources)),
                ("from", start.to_rfc3339()),
                ("to", (start + chrono::Duration::days(1)).to_rfc3339()),
                ("duration", "PT30M".to_owned()),
            ])
        }
    };
    let r = request.bearer_auth(key).send().await?;
    if !r.status().is_success() {
        bail!("{}: {} {}", kind.name(), r.status(), r.text().await?);
    }
    // Read the body, as a client does.
    r.bytes().await?;
    Ok(())
}
