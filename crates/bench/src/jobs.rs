//! Async-side scenarios: webhook notifications end to end to a local
//! receiver (throughput, and enqueue→start latency at a fixed rate), and
//! the utilization report over 1M reservations (time and server RSS).
//! Each reports beside a baseline from the same run.
//!
//! Its SQL is runtime-checked on purpose: it seeds other modules' tables
//! straight (a million rows without the write path) and creates pgbench's
//! own scratch table, neither of which belongs in the product's checked
//! queries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::PgPool;

use crate::reads::ReadArgs;

/// An async-side scenario.
#[derive(Debug, Subcommand)]
pub enum JobScenario {
    /// Webhook deliveries to a receiver in this process: deliveries/s
    /// under a burst of events, then enqueue→start at `--rate` events/s.
    /// The server must run with MUSTER_ALLOW_PRIVATE_WEBHOOKS=true.
    Webhooks(WebhookArgs),
    /// The utilization report over 1M reservations on 10k resources
    /// (seeded into the read models once): build time and peak server RSS.
    Report(ReportArgs),
}

/// The webhook scenario's settings.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Events in the backlog of the throughput run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
}

/// The report scenario's settings.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// The server's pid, to sample its RSS while it builds the report.
    #[arg(long)]
    server_pid: u32,
}

/// Runs `scenario`.
pub async fn run(scenario: JobScenario) -> anyhow::Result<()> {
    match scenario {
        JobScenario::Webhooks(args) => webhooks(args).await,
        JobScenario::Report(args) => report(args).await,
    }
}

/// Arrival times at the receiver.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// A receiver answering 204 to every POST, recording arrival times.
async fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let log = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(Instant::now());
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr()?.port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, arrivals))
}

async fn register(http: &reqwest::Client, url: &str, key: &str) -> bool {
    http.post(format!("{url}/v1/resources"))
        .bearer_auth(key)
        .json(&json!({"name": "bench hook", "kind": "room"}))
        .send()
        .await
        .is_ok_and(|r| r.status() == 201)
}

async fn webhooks(args: WebhookArgs) -> anyhow::Result<()> {
    let WebhookArgs { read: args, events } = args;
    let key = args.key()?;
    let http = reqwest::Client::new();
    let pool = PgPool::connect(&args.database_url).await?;
    let (hook_url, arrivals) = receiver().await?;

    // Baseline: the same receiver, POSTed to straight from here.
    let baseline = {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let tasks: Vec<_> = (0..args.clients)
            .map(|_| {
                let (http, url, sent) = (http.clone(), hook_url.clone(), sent.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        if http.post(&url).body("{}").send().await.is_ok() {
                            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / 5.0
    };
    arrivals.lock().unwrap().clear();

    let subscribed = http
        .post(format!("{}/v1/webhooks", args.url))
        .bearer_auth(&key)
        .json(
            &json!({"url": hook_url, "event_types": ["resource.registered"],
                      "secret": "bench-secret-0123456789"}),
        )
        .send()
        .await?;
    if subscribed.status() != 201 {
        bail!(
            "subscribing: {} (is MUSTER_ALLOW_PRIVATE_WEBHOOKS=true set?)",
            subscribed.status()
        );
    }
    let webhook: serde_json::Value = subscribed.json().await?;
    let webhook_id = webhook["id"].as_str().context("a webhook id")?.to_owned();

    // Throughput: a backlog of events committed at once (straight into
    // the event store, so that command throughput does not limit it),
    // then the time from that commit to the last delivery.
    let tenant = key
        .split('.')
        .nth(1)
        .context("a key of the form mk.<tenant>.<secret>")?;
    let committed = Instant::now();
    sqlx::query(
        "insert into events (tenant_id, stream_id, stream_version, stream_type, event_type,
                             schema_version, payload, metadata)
         select $1, gen_random_uuid(), 1, 'resource', 'resource.registered', 1,
                jsonb_build_object('name', 'hook ' || g, 'kind', 'room', 'capacity', 1,
                                   'timezone', 'Europe/Berlin', 'working_hours', '[]'::jsonb,
                                   'tags', '[]'::jsonb),
                '{}'::jsonb
           from generate_series(1, $2) g",
    )
    .bind(tenant)
    .bind(events as i64)
    .execute(&pool)
    .await?;
    let committed = committed + (Instant::now() - committed) / 2;
    wait_for_arrivals(&arrivals, events, Duration::from_secs(600)).await?;
    let (first, last) = {
        let a = arrivals.lock().unwrap();
        (a[0], a[events - 1])
    };
    let rate = events as f64 / (last - committed).as_secs_f64().max(1e-3);
    println!(
        "webhooks, backlog of {events} events: {rate:.0} deliveries/s from commit to last delivery \
         (first after {:.0} ms, last after {:.1} s); baseline POSTs to the same receiver from {} \
         clients: {baseline:.0}/s",
        (first - committed).as_secs_f64() * 1000.0,
        (last - committed).as_secs_f64(),
        args.clients,
    );

    // Latency: events at a fixed rate; enqueue→start from each job's
    // enqueue time (ms, in its arguments) to the worker taking it.
    let rate = args.rate.unwrap_or(200);
    let since = chrono::Utc::now().timestamp_millis();
    arrivals.lock().unwrap().clear();
    let total = (rate * args.duration) as usize;
    let mut tasks = Vec::with_capacity(total);
    let mut events = crate::pace::arrivals(rate, total);
    while events.next().await.is_some() {
        let (http, url, key) = (http.clone(), args.url.clone(), key.clone());
        tasks.push(tokio::spawn(
            async move { register(&http, &url, &key).await },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await?);
    }
    wait_for_arrivals(&arrivals, ok, Duration::from_secs(120)).await?;
    let waits: Vec<(f64,)> = sqlx::query_as(
        "select extract(epoch from lock_at) * 1000 - (convert_from(job, 'UTF8')::jsonb->>'enqueued_at')::float8
           from apalis.jobs
          where job_type = 'muster.notification' and lock_at is not null
            and (convert_from(job, 'UTF8')::jsonb->>'enqueued_at')::int8 >= $1",
    )
    .bind(since)
    .fetch_all(&pool)
    .await?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for (ms,) in &waits {
        h.saturating_record((ms * 1000.0).max(1.0) as u64);
    }
    println!(
        "webhooks at {rate} events/s for {}s: {} jobs, enqueue→start p50 {:.1} ms, p99 {:.1} ms",
        args.duration,
        waits.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
    let _ = http
        .delete(format!("{}/v1/webhooks/{webhook_id}", args.url))
        .bearer_auth(&key)
        .send()
        .await;
    Ok(())
}

async fn wait_for_arrivals(arrivals: &Arrivals, n: usize, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let got = arrivals.lock().unwrap().len();
        if got >= n {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!("only {got} of {n} deliveries arrived");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WINDOW_FROM: &str = "2035-01-01T00:00:00Z";
const WINDOW_TO: &str = "2035-01-31T00:00:00Z";

/// 10k resources and 100 two-hour reservations each within the window,
/// straight into the read models of the key's tenant (once).
async fn seed_read_models(pool: &PgPool, tenant: &str) -> anyhow::Result<()> {
    let seeded: bool = sqlx::query_scalar(
        "select exists(select 1 from read.resources
                        where tenant_id = $1 and resource_id = md5('bench-report-resource-10000')::uuid)",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    if seeded {
        return Ok(());
    }
    let _spinner = crate::progress::working(
        "seeding 10,000 resources and 1,000,000 reservations into the read models (once)",
    );
    sqlx::query(
        "insert into read.resources (tenant_id, resource_id, name, kind, capacity, timezone,
                                     working_hours, tags, retired, version, registered_at,
                                     updated_at, position)
         select $1, md5('bench-report-resource-' || g)::uuid, 'room ' || g, 'room', 1,
                'Europe/Berlin',
                case when g % 2 = 0 then '[]'::jsonb else
                  '[{\"weekday\":\"mon\",\"start\":\"08:00\",\"end\":\"18:00\"},
                    {\"weekday\":\"tue\",\"start\":\"08:00\",\"end\":\"18:00\"},
                    {\"weekday\":\"wed\",\"start\":\"08:00\",\"end\":\"18:00\"},
                    {\"weekday\":\"thu\",\"start\":\"08:00\",\"end\":\"18:00\"},
                    {\"weekday\":\"fri\",\"start\":\"08:00\",\"end\":\"18:00\"}]'::jsonb end,
                '{}', false, 1, now(), now(), 0
           from generate_series(1, 10000) g",
    )
    .bind(tenant)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into read.booking_reservations
             (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at)
         select $1, md5('bench-report-res-' || g || '-' || k)::uuid,
                md5('bench-report-booking-' || g || '-' || k)::uuid,
                md5('bench-report-resource-' || g)::uuid,
                $2::timestamptz + make_interval(hours => k * 7 + g % 5),
                $2::timestamptz + make_interval(hours => k * 7 + g % 5 + 2)
           from generate_series(1, 10000) g, generate_series(0, 99) k",
    )
    .bind(tenant)
    .bind(chrono::DateTime::parse_from_rfc3339(WINDOW_FROM)?)
    .execute(pool)
    .await?;
    sqlx::query("analyze read.resources").execute(pool).await?;
    sqlx::query("analyze read.booking_reservations")
        .execute(pool)
        .await?;
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let key = args.read.key()?;
    let tenant = key
        .split('.')
        .nth(1)
        .context("a key of the form mk.<tenant>.<secret>")?
        .to_owned();
    let pool = PgPool::connect(&args.read.database_url).await?;
    seed_read_models(&pool, &tenant).await?;

    // Baseline: fetching the same reservation rows over one connection.
    let started = Instant::now();
    let rows: Vec<(
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as(
        "select resource_id, starts_at, ends_at from read.booking_reservations
              where tenant_id = $1 and starts_at < $3::timestamptz and ends_at > $2::timestamptz
              order by resource_id, starts_at",
    )
    .bind(&tenant)
    .bind(chrono::DateTime::parse_from_rfc3339(WINDOW_FROM)?)
    .bind(chrono::DateTime::parse_from_rfc3339(WINDOW_TO)?)
    .fetch_all(&pool)
    .await?;
    let baseline = started.elapsed();
    let fetched = rows.len();
    drop(rows);

    let http = reqwest::Client::new();
    let rss_before = rss_kib(args.server_pid).context("reading the server's RSS")?;
    let started = Instant::now();
    let answer = http
        .post(format!("{}/v1/reports", args.read.url))
        .bearer_auth(&key)
        .json(
            &json!({"kind": "utilization", "format": "csv", "from": WINDOW_FROM, "to": WINDOW_TO}),
        )
        .send()
        .await?;
    if answer.status() != 202 {
        bail!("requesting the report: {}", answer.status());
    }
    let body: serde_json::Value = answer.json().await?;
    let id = body["id"].as_str().context("a report id")?.to_owned();
    let mut peak = rss_before;
    let report = loop {
        peak = peak.max(rss_kib(args.server_pid).unwrap_or(0));
        let r: serde_json::Value = http
            .get(format!("{}/v1/reports/{id}", args.read.url))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        match r["status"].as_str() {
            Some("done") => break r,
            Some("failed") => bail!("the report failed: {r}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let wall = started.elapsed();
    let built = chrono::DateTime::parse_from_rfc3339(report["finished_at"].as_str().unwrap_or(""))?
        - chrono::DateTime::parse_from_rfc3339(report["started_at"].as_str().unwrap_or(""))?;
    println!(
        "utilization report, 10,000 resources × 30 days over {fetched} reservations: built in {:.2} s \
         (request→done {:.2} s), {} rows, {:.1} MB; server RSS {:.0} MB before, peak {:.0} MB; \
         baseline fetching the same reservations over one connection: {:.2} s",
        built.as_seconds_f64(),
        wall.as_secs_f64(),
        report["rows_total"],
        report["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        baseline.as_secs_f64()
    );
    Ok(())
}
