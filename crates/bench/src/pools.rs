//! Pools and finding a time (SPEC §12): 64 clients racing for one slot of
//! a 10-member pool, beside the same race for one named resource; and
//! find-time with three requirements (one a 50-member pool) over 14 days
//! of the 1M seeded reservations, beside pgbench's lookup at the same rate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};

use crate::reads::{LOOKUP, LOOKUP_SETUP, ReadArgs, histogram, ms, open_loop, resource_id, seeded};

/// The pool race.
#[derive(Debug, Args)]
pub struct RaceArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (planner or admin).
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Clients racing for each slot.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Members of the pool.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Slots raced for, one after another.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
}

/// What one kind of race measured.
struct Raced {
    latency: Histogram<u64>,
    wins: Vec<usize>,
    errors: u64,
    elapsed: Duration,
}

/// Runs the pool race, then the named-resource race as its baseline.
pub async fn race(args: RaceArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut members = Vec::with_capacity(args.members);
    for i in 0..args.members {
        members.push(register(&http, &args, &format!("bench member {i}")).await?);
    }
    let pool = post(
        &http,
        &args,
        "/v1/pools",
        &json!({"name": "bench pool", "members": members, "strategy": "least_booked"}),
    )
    .await?;
    let pool = pool["id"].as_str().context("a pool id")?.to_owned();
    let named = register(&http, &args, "bench named").await?;

    let pooled = run_race(&http, &args, json!({"pool_id": pool}), 0).await?;
    let baseline = run_race(&http, &args, json!({"resource_id": named}), 1).await?;
    let exact = pooled.wins.iter().all(|&w| w == args.members);
    println!(
        "pool race, {} clients for one slot of a {}-member pool, {} rounds: p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms; winners per slot {}..={} ({}), {} errors, {:.1} s; \
         the same race for one named resource: p50 {:.2} ms, p99 {:.2} ms, winners {}..={}, \
         {} errors, {:.1} s",
        args.clients,
        args.members,
        args.rounds,
        ms(&pooled.latency, 0.5),
        ms(&pooled.latency, 0.99),
        pooled.latency.max() as f64 / 1000.0,
        pooled.wins.iter().min().unwrap_or(&0),
        pooled.wins.iter().max().unwrap_or(&0),
        if exact {
            "exactly the pool's size every time"
        } else {
            "NOT the pool's size"
        },
        pooled.errors,
        pooled.elapsed.as_secs_f64(),
        ms(&baseline.latency, 0.5),
        ms(&baseline.latency, 0.99),
        baseline.wins.iter().min().unwrap_or(&0),
        baseline.wins.iter().max().unwrap_or(&0),
        baseline.errors,
        baseline.elapsed.as_secs_f64(),
    );
    if !exact || pooled.errors + baseline.errors > 0 {
        bail!("the race went wrong: winners or errors above");
    }
    Ok(())
}

/// `args.rounds` slots, each raced for by `args.clients` requests for
/// `target` at once; every winner of a slot must hold a different
/// resource.
async fn run_race(
    http: &reqwest::Client,
    args: &RaceArgs,
    target: Value,
    day: i64,
) -> anyhow::Result<Raced> {
    let mut raced = Raced {
        latency: histogram(),
        wins: Vec::with_capacity(args.rounds),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    let started = Instant::now();
    for round in 0..args.rounds {
        let start = chrono::DateTime::parse_from_rfc3339("2035-01-01T00:00:00Z")?
            + chrono::Duration::days(day * 1000)
            + chrono::Duration::hours(round as i64);
        let end = start + chrono::Duration::minutes(30);
        let mut reservation = target.clone();
        reservation["starts_at"] = json!(start);
        reservation["ends_at"] = json!(end);
        let body = json!({"title": "race", "client": {"name": "Bench"}, "starts_at": start,
                          "ends_at": end, "headcount": 1, "reservations": [reservation]});
        let barrier = Arc::new(tokio::sync::Barrier::new(args.clients));
        let tasks: Vec<_> = (0..args.clients)
            .map(|_| {
                let (http, url, key, body, barrier) = (
                    http.clone(),
                    args.url.clone(),
                    args.key.clone(),
                    body.clone(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    let sent = Instant::now();
                    let answer = http
                        .post(format!("{url}/v1/bookings"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    let status = answer.as_ref().map(|r| r.status().as_u16()).ok();
                    let held = match answer {
                        Ok(r) if r.status() == 201 => {
                            let v: Value = r.json().await.unwrap_or_default();
                            v["reservations"][0]["resource_id"]
                                .as_str()
                                .map(str::to_owned)
                        }
                        _ => None,
                    };
                    (status, held, sent.elapsed())
                })
            })
            .collect();
        let mut held = HashSet::new();
        let mut wins = 0;
        for task in tasks {
            let (status, resource, latency) = task.await?;
            match status {
                Some(201) => {
                    wins += 1;
                    if let Some(resource) = resource
                        && !held.insert(resource)
                    {
                        bail!("two winners of one slot hold the same resource");
                    }
                }
                Some(409) => {}
                _ => raced.errors += 1,
            }
            raced
                .latency
                .saturating_record(latency.as_micros().max(1) as u64);
        }
        raced.wins.push(wins);
    }
    raced.elapsed = started.elapsed();
    Ok(raced)
}

async fn register(http: &reqwest::Client, args: &RaceArgs, name: &str) -> anyhow::Result<String> {
    let created = post(
        http,
        args,
        "/v1/resources",
        &json!({"name": name, "kind": "room"}),
    )
    .await?;
    Ok(created["id"].as_str().context("an id")?.to_owned())
}

async fn post(
    http: &reqwest::Client,
    args: &RaceArgs,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    crate::api::post(http, &args.url, &args.key, path, body).await
}

/// Find-time at a fixed rate (default 50/s): a resource, 2 of a 50-member
/// pool and one of two resources, for an hour in 14 days of the seeded
/// reservations (every resource busy every other hour for 200 hours).
pub async fn find_time(args: ReadArgs) -> anyhow::Result<()> {
    let (key, _, _) = seeded(&args).await?;
    let http = reqwest::Client::new();
    let members: Vec<String> = (9_001..=9_050).map(resource_id).collect();
    let created = http
        .post(format!("{}/v1/pools", args.url))
        .bearer_auth(&key)
        .json(&json!({"name": "bench find-time pool", "members": members}))
        .send()
        .await?;
    if created.status() != 201 {
        bail!(
            "creating the pool: {} {}",
            created.status(),
            created.text().await?
        );
    }
    let pool = created.json::<Value>().await?["id"]
        .as_str()
        .context("a pool id")?
        .to_owned();
    let rate = args.rate.unwrap_or(50);
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let measured = open_loop(rate, Duration::from_secs(args.duration), {
        let (url, key, counts) = (args.url.clone(), key.clone(), counts.clone());
        move || {
            let (http, url, key, counts, pool) = (
                http.clone(),
                url.clone(),
                key.clone(),
                counts.clone(),
                pool.clone(),
            );
            let mut rng = rand::rng();
            let one = resource_id(rng.random_range(1..=9_000));
            let pair = [
                resource_id(rng.random_range(1..=9_000)),
                resource_id(rng.random_range(1..=9_000)),
            ];
            let day = rng.random_range(0..7);
            async move {
                let from = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").unwrap()
                    + chrono::Duration::days(day);
                let body = json!({
                    "duration": "PT1H", "from": from, "to": from + chrono::Duration::days(14),
                    "limit": 10,
                    "requirements": [{"resource_id": one}, {"pool_id": pool, "count": 2},
                                     {"any_of": pair}]});
                let answer = http
                    .post(format!("{url}/v1/find-time"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        let mut c = counts.lock().expect("not poisoned");
                        c.0 += 1;
                        c.1 += v["candidates"].as_array().map_or(0, Vec::len) as u64;
                        true
                    }
                    _ => false,
                }
            }
        }
    })
    .await;
    let base = crate::pgbench_latency(
        &args.database_url,
        LOOKUP_SETUP,
        LOOKUP,
        rate,
        args.duration,
    )?;
    let (answers, candidates) = *counts.lock().expect("not poisoned");
    let expected = rate * args.duration;
    println!(
        "find-time at {rate}/s, 3 requirements (one a 50-member pool), 14 days over 1M \
         reservations / 10k resources: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         ({answers} of {expected} answered, {:.1} candidates each); pgbench lookup at {rate}/s: \
         p50 {:.2} ms, p99 {:.2} ms",
        ms(&measured, 0.5),
        ms(&measured, 0.99),
        measured.max() as f64 / 1000.0,
        candidates as f64 / answers.max(1) as f64,
        ms(&base, 0.5),
        ms(&base, 0.99)
    );
    if answers < expected {
        bail!("{} requests failed", expected - answers);
    }
    Ok(())
}
