//! Waitlists (SPEC §12, §9): from a cancel until the first waiting
//! entry's offer hold exists, round after round on a running muster
//! (run `muster-bench mixed` beside it for the load the target names),
//! beside the cancel's own answer time in the same rounds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::reads::{histogram, ms};

/// The waitlist offer scenario.
#[derive(Debug, Args)]
pub struct OfferArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (planner or admin).
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Cancels measured, one after another.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Entries waiting behind the first on each slot (they must stay
    /// waiting: one freed unit, one offer).
    #[arg(long, default_value_t = 2)]
    behind: usize,
}

/// Books a slot, queues `1 + behind` entries for it, cancels the booking
/// and times the first entry's offer; every round checks that only the
/// first entry was offered.
pub async fn offer(args: OfferArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let room = call(
        &http,
        &args,
        "/v1/resources",
        &json!({"name": "bench waitlist room", "kind": "room"}),
    )
    .await?["id"]
        .as_str()
        .context("a resource id")?
        .to_owned();
    let mut offered = histogram();
    let mut cancelled = histogram();
    let started = Instant::now();
    for round in 0..args.rounds {
        let start = chrono::DateTime::parse_from_rfc3339("2036-01-01T00:00:00Z")?
            + chrono::Duration::hours(round as i64);
        let end = start + chrono::Duration::minutes(30);
        let booking = call(
            &http,
            &args,
            "/v1/bookings",
            &json!({"title": "taken", "client": {"name": "Bench"}, "starts_at": start,
                    "ends_at": end, "headcount": 1,
                    "reservations": [{"resource_id": room, "starts_at": start, "ends_at": end}]}),
        )
        .await?["id"]
            .as_str()
            .context("a booking id")?
            .to_owned();
        let mut entries = Vec::with_capacity(1 + args.behind);
        for i in 0..=args.behind {
            let entry = call(
                &http,
                &args,
                "/v1/waitlist",
                &json!({"resource_id": room, "starts_at": start, "ends_at": end,
                        "client": {"name": format!("Waiting {i}")}, "offer_ttl": "PT10M"}),
            )
            .await?;
            entries.push(entry["id"].as_str().context("an entry id")?.to_owned());
        }
        let sent = Instant::now();
        call(
            &http,
            &args,
            &format!("/v1/bookings/{booking}/cancel"),
            &json!({}),
        )
        .await?;
        cancelled.saturating_record(micros(sent.elapsed()));
        loop {
            let entry = get(&http, &args, &format!("/v1/waitlist/{}", entries[0])).await?;
            if entry["status"] == "offered" {
                offered.saturating_record(micros(sent.elapsed()));
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("round {round}: no offer 30 s after the cancel: {entry}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for later in &entries[1..] {
            let entry = get(&http, &args, &format!("/v1/waitlist/{later}")).await?;
            if entry["status"] != "waiting" {
                bail!("round {round}: a second offer for one freed unit: {entry}");
            }
        }
    }
    println!(
        "waitlist, {} cancels: until the first entry's offer hold exists p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms; the cancel's own answer p50 {:.2} ms, p99 {:.2} ms; \
         never a second offer; {:.1} s",
        args.rounds,
        ms(&offered, 0.5),
        ms(&offered, 0.99),
        offered.max() as f64 / 1000.0,
        ms(&cancelled, 0.5),
        ms(&cancelled, 0.99),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn micros(elapsed: Duration) -> u64 {
    elapsed.as_micros().max(1) as u64
}

async fn call(
    http: &reqwest::Client,
    args: &OfferArgs,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    crate::api::post(http, &args.url, &args.key, path, body).await
}

async fn get(http: &reqwest::Client, args: &OfferArgs, path: &str) -> anyhow::Result<Value> {
    crate::api::get(http, &args.url, &args.key, path).await
}
