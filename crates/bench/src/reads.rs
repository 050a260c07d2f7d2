//! Read-side scenarios: GET booking by id, the conflict check over 1M
//! reservations, projection lag under commands, and synthetic events for
//! rebuild runs. Each reports beside a pgbench baseline from the same run.
//!
//! Its SQL is runtime-checked on purpose: it seeds other modules' tables
//! straight (a million rows without the write path) and creates pgbench's
//! own scratch table, neither of which belongs in the product's checked
//! queries.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;

use crate::{pgbench_latency, pgbench_script, strings};

/// A read-side scenario.
#[derive(Debug, Subcommand)]
pub enum ReadScenario {
    /// GET /v1/bookings/{id}: closed-loop throughput, then open-loop latency.
    GetBooking(ReadArgs),
    /// POST /v1/conflicts/check at a fixed rate over 1M reservations on 10k
    /// resources (seeded in SQL into the key's tenant on first run).
    ConflictCheck(ReadArgs),
    /// GET /v1/resources/free at a fixed rate (default 200/s) over the same
    /// 10k resources and 1M reservations, half the ranges busy everywhere.
    FreeSearch(ReadArgs),
    /// Projection lag (command answered → both projections past its
    /// position) while booking commands run at a fixed rate.
    Lag(ReadArgs),
    /// Appends synthetic resource and booking events straight into the
    /// event store, for timing `muster projections rebuild`.
    SeedEvents {
        /// The database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        count: i64,
    },
}

/// Where and how hard.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// API key (planner or admin); or use --key-file.
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// File holding the API key.
    #[arg(long, default_value = ".muster/admin.key")]
    key_file: PathBuf,
    /// The database muster uses (baseline, seeding, lag polling).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: String,
    /// Concurrent clients of the closed loop.
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 30)]
    pub(crate) duration: u64,
    /// Requests per second of the open loop.
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Fail (exit status 1) if the rate is below this percentage of the
    /// same-run pgbench baseline: the benchmark smoke's guard against a
    /// large regression (errors always fail).
    #[arg(long)]
    pub(crate) min_ratio: Option<f64>,
}

impl ReadArgs {
    pub(crate) fn key(&self) -> anyhow::Result<String> {
        match &self.key {
            Some(key) => Ok(key.clone()),
            None => Ok(std::fs::read_to_string(&self.key_file)
                .with_context(|| format!("reading the key from {}", self.key_file.display()))?
                .trim()
                .to_owned()),
        }
    }
}

/// Runs `scenario`.
pub async fn run(scenario: ReadScenario) -> anyhow::Result<()> {
    match scenario {
        ReadScenario::GetBooking(args) => get_booking(args).await,
        ReadScenario::ConflictCheck(args) => conflict_check(args).await,
        ReadScenario::FreeSearch(args) => free_search(args).await,
        ReadScenario::Lag(args) => lag(args).await,
        ReadScenario::SeedEvents {
            database_url,
            count,
        } => seed_events(&database_url, count).await,
    }
}

pub(crate) const LOOKUP_SETUP: &str = "do $$ begin
  if to_regclass('muster_bench_lookup') is null then
    create table muster_bench_lookup (id integer primary key, doc jsonb not null);
    insert into muster_bench_lookup
      select g, jsonb_build_object('n', g, 'pad', repeat('x', 600)) from generate_series(1, 10000) g;
  end if;
end $$";
pub(crate) const LOOKUP: &str =
    "\\set id random(1, 10000)\nselect doc from muster_bench_lookup where id = :id;\n";

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn get_booking(args: ReadArgs) -> anyhow::Result<()> {
    let key = args.key()?;
    let http = reqwest::Client::new();
    let resource = register(&http, &args.url, &key, "bench get").await?;
    let mut ids = Vec::new();
    let mut last = 0;
    for n in 0..2_000i64 {
        let (id, position) = book(&http, &args.url, &key, &resource, n).await?;
        ids.push(id);
        last = position;
    }
    let check = http
        .get(format!(
            "{}/v1/bookings/{}?consistent_with={last}",
            args.url, ids[0]
        ))
        .bearer_auth(&key)
        .send()
        .await?;
    if !check.status().is_success() {
        bail!("reading a booking: {}", check.status());
    }
    let ids = Arc::new(ids);
    let duration = Duration::from_secs(args.duration);

    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (http, url, key, ids) = (http.clone(), args.url.clone(), key.clone(), ids.clone());
            tokio::spawn(async move {
                let mut h = histogram();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let id = &ids[rand::rng().random_range(0..ids.len())];
                    let t = Instant::now();
                    let ok = http
                        .get(format!("{url}/v1/bookings/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors += 1;
                    }
                }
                (h, errors)
            })
        })
        .collect();
    let mut closed = histogram();
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await?;
        closed.add(&h)?;
        errors += e;
    }
    let rate = closed.len() as f64 / started.elapsed().as_secs_f64();
    let (baseline, dir) = pgbench_script(
        &args.database_url,
        LOOKUP_SETUP,
        LOOKUP,
        &strings(&[
            "-c",
            &args.clients.to_string(),
            "-j",
            "2",
            "-T",
            &args.duration.to_string(),
        ]),
    )?;
    let _ = std::fs::remove_dir_all(dir);
    let baseline_tps = baseline
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    let ratio = rate * 100.0 / baseline_tps.max(1.0);
    println!(
        "GET /v1/bookings/{{id}}, {} clients, {}s: {rate:.0}/s (p50 {:.2} ms, p99 {:.2} ms, {errors} errors); \
         pgbench primary-key lookup same clients: {baseline_tps:.0}/s ({ratio:.0}%)",
        args.clients,
        args.duration,
        ms(&closed, 0.5),
        ms(&closed, 0.99),
    );
    crate::smoke_check(errors, Some(ratio), args.min_ratio)?;

    let open_rate = args.rate.unwrap_or(2_000);
    let open = open_loop(open_rate, duration, {
        let (http, url, key, ids) = (http.clone(), args.url.clone(), key.clone(), ids.clone());
        move || {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            let id = ids[rand::rng().random_range(0..ids.len())].clone();
            async move {
                http.get(format!("{url}/v1/bookings/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        }
    })
    .await;
    let base = pgbench_latency(
        &args.database_url,
        LOOKUP_SETUP,
        LOOKUP,
        open_rate,
        args.duration,
    )?;
    println!(
        "GET /v1/bookings/{{id}} at {open_rate}/s: p50 {:.2} ms, p99 {:.2} ms; pgbench lookup at {open_rate}/s: p50 {:.2} ms, p99 {:.2} ms",
        ms(&open, 0.5),
        ms(&open, 0.99),
        ms(&base, 0.5),
        ms(&base, 0.99)
    );
    Ok(())
}

/// The key, its tenant and a pool on a database holding the 10k resources
/// with 1M reservations (seeded once).
pub(crate) async fn seeded(args: &ReadArgs) -> anyhow::Result<(String, String, PgPool)> {
    let key = args.key()?;
    let tenant = key
        .split('.')
        .nth(1)
        .context("a key of the form mk.<tenant>.<secret>")?
        .to_owned();
    let pool = PgPool::connect(&args.database_url).await?;
    seed_reservations(&pool, &tenant).await?;
    Ok((key, tenant, pool))
}

async fn conflict_check(args: ReadArgs) -> anyhow::Result<()> {
    let (key, _, _) = seeded(&args).await?;
    let http = reqwest::Client::new();
    let rate = args.rate.unwrap_or(1_000);
    let conflicts = Arc::new(Mutex::new((0u64, 0u64)));
    let measured = open_loop(rate, Duration::from_secs(args.duration), {
        let (url, key, conflicts) = (args.url.clone(), key.clone(), conflicts.clone());
        move || {
            let (http, url, key, conflicts) =
                (http.clone(), url.clone(), key.clone(), conflicts.clone());
            let mut rng = rand::rng();
            let resource = rng.random_range(1..=10_000);
            let hour = rng.random_range(0..200);
            async move {
                let start = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").unwrap()
                    + chrono::Duration::hours(hour);
                let body = json!({
                    "resource_ids": [resource_id(resource)],
                    "starts_at": start, "ends_at": start + chrono::Duration::minutes(30)
                });
                let answer = http
                    .post(format!("{url}/v1/conflicts/check"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        let mut c = conflicts.lock().expect("not poisoned");
                        if v["available"] == false {
                            c.0 += 1;
                        } else {
                            c.1 += 1;
                        }
                        true
                    }
                    _ => false,
                }
            }
        }
    })
    .await;
    let base = pgbench_latency(
        &args.database_url,
        LOOKUP_SETUP,
        LOOKUP,
        rate,
        args.duration,
    )?;
    let (busy, free) = *conflicts.lock().expect("not poisoned");
    println!(
        "conflict check at {rate}/s over 1M reservations / 10k resources: p50 {:.2} ms, p99 {:.2} ms \
         ({busy} busy, {free} free); pgbench lookup at {rate}/s: p50 {:.2} ms, p99 {:.2} ms",
        ms(&measured, 0.5),
        ms(&measured, 0.99),
        ms(&base, 0.5),
        ms(&base, 0.99)
    );
    Ok(())
}

async fn free_search(args: ReadArgs) -> anyhow::Result<()> {
    let (key, tenant, pool) = seeded(&args).await?;
    seed_resource_list(&pool, &tenant).await?;
    let http = reqwest::Client::new();
    let rate = args.rate.unwrap_or(200);
    let found = Arc::new(Mutex::new((0u64, 0u64)));
    let measured = open_loop(rate, Duration::from_secs(args.duration), {
        let (url, key, found) = (args.url.clone(), key.clone(), found.clone());
        move || {
            let (http, url, key, found) = (http.clone(), url.clone(), key.clone(), found.clone());
            // Every resource holds [2h, 2h+1) for h in 0..100: a range in an
            // even hour is busy everywhere (the search scans its bound),
            // one in an odd hour is free everywhere.
            let hour = rand::rng().random_range(0..200);
            async move {
                let start = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").unwrap()
                    + chrono::Duration::hours(hour)
                    + chrono::Duration::minutes(10);
                let end = start + chrono::Duration::minutes(30);
                let answer = http
                    .get(format!("{url}/v1/resources/free"))
                    .query(&[
                        ("starts_at", start.to_rfc3339()),
                        ("ends_at", end.to_rfc3339()),
                        ("kind", "room".to_owned()),
                        ("limit", "20".to_owned()),
                    ])
                    .bearer_auth(&key)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        let n = v["items"].as_array().map_or(0, Vec::len) as u64;
                        let mut f = found.lock().expect("not poisoned");
                        f.0 += 1;
                        f.1 += n;
                        true
                    }
                    _ => false,
                }
            }
        }
    })
    .await;
    let base = pgbench_latency(
        &args.database_url,
        LOOKUP_SETUP,
        LOOKUP,
        rate,
        args.duration,
    )?;
    let (answers, items) = *found.lock().expect("not poisoned");
    println!(
        "free-resource search at {rate}/s over 10k resources / 1M reservations: p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms ({answers} answers, {:.1} resources each on average); \
         pgbench lookup at {rate}/s: p50 {:.2} ms, p99 {:.2} ms",
        ms(&measured, 0.5),
        ms(&measured, 0.99),
        measured.max() as f64 / 1000.0,
        items as f64 / answers.max(1) as f64,
        ms(&base, 0.5),
        ms(&base, 0.99)
    );
    Ok(())
}

/// The 10k seeded resources in the resource list (`read.resources`), as
/// the projection would have written them, once per database.
async fn seed_resource_list(pool: &PgPool, tenant: &str) -> anyhow::Result<()> {
    sqlx::query(
        "insert into read.resources
             (tenant_id, resource_id, name, kind, capacity, timezone, working_hours, tags,
              retired, version, registered_at, updated_at, position)
         select $1, md5('muster-bench-resource-' || g)::uuid, 'bench room ' || g, 'room', 1,
                'UTC', '[]'::jsonb, '{}'::text[], false, 1, now(), now(), 0
           from generate_series(1, 10000) g
         on conflict do nothing",
    )
    .bind(tenant)
    .execute(pool)
    .await?;
    // As autovacuum would soon: without statistics the planner reads the
    // whole list for every page.
    sqlx::query("analyze read.resources").execute(pool).await?;
    Ok(())
}

/// The bench's resource number `n` (1..=10k) as its id.
pub(crate) fn resource_id(n: u32) -> String {
    let digest = format!("{:032x}", md5_like(&format!("muster-bench-resource-{n}")));
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

/// Postgres' `md5(text)` as a number, so ids computed here match the seed.
fn md5_like(text: &str) -> u128 {
    u128::from_be_bytes(md5::compute(text).0)
}

async fn seed_reservations(pool: &PgPool, tenant: &str) -> anyhow::Result<()> {
    let seeded: bool = sqlx::query_scalar(
        "select exists(select 1 from reservations
                        where tenant_id = $1 and reservation_id = md5('muster-bench-res-10000-99')::uuid)",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    if seeded {
        return Ok(());
    }
    let _spinner = crate::progress::working(
        "seeding 10,000 resources with 100 reservations each (once per database)",
    );
    sqlx::query(
        "insert into reservable_resources (tenant_id, resource_id, capacity, longest_reservation_secs)
         select $1, md5('muster-bench-resource-' || g)::uuid, 1, 3600
           from generate_series(1, 10000) g
         on conflict do nothing",
    )
    .bind(tenant)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into reservations (tenant_id, reservation_id, booking_id, resource_id, starts_at, ends_at)
         select $1, md5('muster-bench-res-' || r || '-' || s)::uuid,
                md5('muster-bench-booking-' || r || '-' || s)::uuid,
                md5('muster-bench-resource-' || r)::uuid,
                timestamptz '2031-01-01 00:00Z' + (s * 2) * interval '1 hour',
                timestamptz '2031-01-01 00:00Z' + (s * 2 + 1) * interval '1 hour'
           from generate_series(1, 10000) r, generate_series(0, 99) s
         on conflict do nothing",
    )
    .bind(tenant)
    .execute(pool)
    .await?;
    sqlx::query("analyze reservations").execute(pool).await?;
    Ok(())
}

async fn lag(args: ReadArgs) -> anyhow::Result<()> {
    let key = args.key()?;
    let pool = PgPool::connect(&args.database_url).await?;
    let http = reqwest::Client::new();
    let resource = register(&http, &args.url, &key, "bench lag").await?;
    let rate = args.rate.unwrap_or(1_000);
    let answered: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let samples: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let (pool, samples, polling) = (pool.clone(), samples.clone(), polling.clone());
        tokio::spawn(async move {
            let mut round_trips = histogram();
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let at: Option<i64> =
                    sqlx::query_scalar("select min(position) from projection_checkpoints")
                        .fetch_one(&pool)
                        .await
                        .unwrap_or(None);
                round_trips.saturating_record(t.elapsed().as_micros().max(1) as u64);
                samples
                    .lock()
                    .expect("not poisoned")
                    .push((Instant::now(), at.unwrap_or(0)));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            round_trips
        })
    };
    let counter = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let _ = open_loop(rate, Duration::from_secs(args.duration), {
        let (url, key, answered) = (args.url.clone(), key.clone(), answered.clone());
        move || {
            let (http, url, key, resource, answered) = (
                http.clone(),
                url.clone(),
                key.clone(),
                resource.clone(),
                answered.clone(),
            );
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                match book(&http, &url, &key, &resource, 100_000 + n).await {
                    Ok((_, position)) => {
                        answered
                            .lock()
                            .expect("not poisoned")
                            .push((position, Instant::now()));
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let round_trips = poller.await?;
    let samples = samples.lock().expect("not poisoned").clone();
    let mut lag = histogram();
    let mut unseen = 0;
    for (position, at) in answered.lock().expect("not poisoned").iter() {
        match samples.iter().find(|(t, p)| t >= at && p >= position) {
            Some((t, _)) => lag.saturating_record(t.duration_since(*at).as_micros().max(1) as u64),
            None => unseen += 1,
        }
    }
    println!(
        "projection lag with commands at {rate}/s for {}s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         ({} commands, {unseen} not applied within 2 s); checkpoint poll round trip (resolution): p50 {:.2} ms, p99 {:.2} ms",
        args.duration,
        ms(&lag, 0.5),
        ms(&lag, 0.99),
        lag.max() as f64 / 1000.0,
        lag.len(),
        ms(&round_trips, 0.5),
        ms(&round_trips, 0.99)
    );
    Ok(())
}

async fn seed_events(database_url: &str, count: i64) -> anyhow::Result<()> {
    let pool = PgPool::connect(database_url).await?;
    let resources = 1_000i64;
    let bookings = (count - resources).max(0) / 2;
    let started = Instant::now();
    sqlx::query(
        "insert into events (tenant_id, stream_id, stream_version, stream_type, event_type,
                             schema_version, payload, metadata)
         select 'bench-rebuild', md5('rebuild-resource-' || g)::uuid, 1, 'resource',
                'resource.registered', 1,
                jsonb_build_object('name', 'Room ' || g, 'kind', 'room', 'capacity', 1,
                                   'timezone', 'Europe/Berlin', 'working_hours', '[]'::jsonb,
                                   'tags', '[]'::jsonb),
                '{}'::jsonb
           from generate_series(1, $1) g",
    )
    .bind(resources)
    .execute(&pool)
    .await?;
    // In chunks, so that each transaction stays reasonable.
    let chunk = 50_000i64;
    let mut from = 1;
    while from <= bookings {
        let to = (from + chunk - 1).min(bookings);
        sqlx::query(
            "insert into events (tenant_id, stream_id, stream_version, stream_type, event_type,
                                 schema_version, payload, metadata)
             select 'bench-rebuild', md5('rebuild-booking-' || g)::uuid, v, 'booking',
                    case v when 1 then 'booking.requested' else 'reservation.added' end,
                    case v when 1 then 2 else 1 end,
                    case v when 1 then jsonb_build_object(
                            'title', 'Booking ' || g, 'client', jsonb_build_object('name', 'Client ' || g),
                            'starts_at', timestamptz '2032-01-01 00:00Z' + g * interval '1 hour',
                            'ends_at', timestamptz '2032-01-01 01:00Z' + g * interval '1 hour',
                            'headcount', 2)
                    else jsonb_build_object(
                            'reservation_id', md5('rebuild-reservation-' || g)::uuid,
                            'resource_id', md5('rebuild-resource-' || (g % $3 + 1))::uuid,
                            'starts_at', timestamptz '2032-01-01 00:00Z' + g * interval '1 hour',
                            'ends_at', timestamptz '2032-01-01 01:00Z' + g * interval '1 hour')
                    end,
                    '{}'::jsonb
               from generate_series($1, $2) g, generate_series(1, 2) v
              order by g, v",
        )
        .bind(from)
        .bind(to)
        .bind(resources)
        .execute(&pool)
        .await?;
        from = to + 1;
    }
    println!(
        "appended {} events ({resources} resources, {bookings} bookings) in {:.1}s",
        resources + bookings * 2,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn register(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    name: &str,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{url}/v1/resources"))
        .bearer_auth(key)
        .json(&json!({"name": name, "kind": "room", "capacity": 10_000}))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("registering a resource: {}", r.status());
    }
    let body: serde_json::Value = r.json().await?;
    Ok(body["id"].as_str().context("an id")?.to_owned())
}

/// Books half an hour at a random hour from 2040 on `resource` (capacity
/// 10,000, so that collisions never refuse); returns the id and position.
async fn book(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    resource: &str,
    n: i64,
) -> anyhow::Result<(String, i64)> {
    let start = chrono::DateTime::parse_from_rfc3339("2040-01-01T00:00:00Z")?
        + chrono::Duration::minutes(n % 60 + 60 * rand::rng().random_range(0..500_000));
    let end = start + chrono::Duration::minutes(30);
    let r = http
        .post(format!("{url}/v1/bookings"))
        .bearer_auth(key)
        .json(&json!({
            "title": "bench", "client": {"name": "Bench Client"},
            "starts_at": start, "ends_at": end, "headcount": 2,
            "reservations": [{"resource_id": resource, "starts_at": start, "ends_at": end}]
        }))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("booking: {}", r.status());
    }
    let body: serde_json::Value = r.json().await?;
    Ok((
        body["id"].as_str().context("an id")?.to_owned(),
        body["position"].as_i64().context("a position")?,
    ))
}

/// Fixed-rate arrivals of `request`; latency counts from the scheduled start.
pub(crate) async fn open_loop<F, Fut>(
    rate: u64,
    duration: Duration,
    mut request: F,
) -> Histogram<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let total = (rate * duration.as_secs()) as usize;
    let mut tasks = Vec::with_capacity(total);
    let mut arrivals = crate::pace::arrivals(rate, total);
    while let Some((_, scheduled)) = arrivals.next().await {
        let call = request();
        tasks.push(tokio::spawn(async move {
            let ok = call.await;
            (ok, scheduled.elapsed())
        }));
    }
    arrivals.report();
    let mut h = histogram();
    for task in tasks {
        if let Ok((true, latency)) = task.await {
            h.saturating_record(latency.as_micros().max(1) as u64);
        }
    }
    h
}
