//! Personal data and time travel (SPEC §12, §9), on a running muster:
//!
//! - `erasure`: a client with N bookings is erased (the answer waits for
//!   the read model to scrub its copies), round after round, beside the
//!   erasure of a client with no bookings (the fixed cost) and the time
//!   it took to make the N bookings, in the same run;
//! - `as-of`: a resource whose bookings' streams hold ~10,000 events, its
//!   schedule as of an instant in the middle of their history, beside the
//!   same schedule read now from the read model, in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::reads::{histogram, ms};

/// Requests in flight while seeding.
const IN_FLIGHT: usize = 16;

/// The erasure scenario.
#[derive(Debug, Args)]
pub struct ErasureArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin key.
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Bookings of the client erased each round.
    #[arg(long, default_value_t = 1_000)]
    bookings: usize,
    /// Clients erased, one after another.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The time-travel scenario.
#[derive(Debug, Args)]
pub struct AsOfArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A planner or admin key.
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Bookings on the resource; each makes five events (requested, its
    /// reservation, a reschedule moving it, a confirmation).
    #[arg(long, default_value_t = 2_000)]
    bookings: usize,
    /// Schedule reads timed, each way.
    #[arg(long, default_value_t = 100)]
    reads: usize,
}

/// A running muster and a key.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    fn new(url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            key: key.to_owned(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        crate::api::post(&self.http, &self.url, &self.key, path, body).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        crate::api::get(&self.http, &self.url, &self.key, path).await
    }

    async fn room(&self, name: &str) -> anyhow::Result<String> {
        Ok(self
            .post("/v1/resources", &json!({"name": name, "kind": "room"}))
            .await?["id"]
            .as_str()
            .context("a resource id")?
            .to_owned())
    }
}

/// The `i`th half-hour slot from 2040 on: every booking its own.
fn slot(i: usize) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = DateTime::parse_from_rfc3339("2040-01-01T00:00:00Z")
        .expect("a fixed instant")
        .with_timezone(&Utc)
        + chrono::Duration::minutes(30 * i as i64);
    (start, start + chrono::Duration::minutes(30))
}

/// Makes `n` bookings on `room`, slots `first..first + n`, for `client`,
/// `IN_FLIGHT` at a time; their ids and the highest position.
async fn book_many(
    api: &Api,
    room: &str,
    first: usize,
    n: usize,
    client: &Value,
) -> anyhow::Result<(Vec<String>, i64)> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    for i in first..first + n {
        let (api, room, client, gate) =
            (api.clone(), room.to_owned(), client.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let (start, end) = slot(i);
            let made = api
                .post(
                    "/v1/bookings",
                    &json!({"title": "bench", "client": client, "notes": "bench notes",
                            "starts_at": start, "ends_at": end, "headcount": 1,
                            "reservations": [{"resource_id": room, "starts_at": start, "ends_at": end}]}),
                )
                .await?;
            let id = made["id"].as_str().context("a booking id")?.to_owned();
            anyhow::Ok((id, made["position"].as_i64().unwrap_or(0)))
        }));
    }
    let mut ids = Vec::with_capacity(n);
    let mut position = 0;
    for task in tasks {
        let (id, at) = task.await??;
        ids.push(id);
        position = position.max(at);
    }
    Ok((ids, position))
}

/// Erases clients with `bookings` bookings each.
pub async fn erasure(args: ErasureArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.url, &args.key);
    let room = api.room("bench erasure room").await?;
    let mut erased = Vec::with_capacity(args.rounds);
    let mut empty = Vec::with_capacity(args.rounds);
    let mut seeded = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let email = format!("bench-erase-{}@example.com", uuid::Uuid::now_v7());
        let client = json!({"name": format!("Bench Erasable {round}"), "email": email, "phone": "+1 555 0100"});
        let started = Instant::now();
        let (ids, position) =
            book_many(&api, &room, round * args.bookings, args.bookings, &client).await?;
        seeded.push(started.elapsed());
        api.get(&format!(
            "/v1/bookings/{}?consistent_with={position}",
            ids[0]
        ))
        .await?;

        let nobody = format!("bench-nobody-{}@example.com", uuid::Uuid::now_v7());
        let sent = Instant::now();
        api.post("/v1/clients/erase", &json!({"email": nobody}))
            .await?;
        empty.push(sent.elapsed());

        let sent = Instant::now();
        let answer = api
            .post("/v1/clients/erase", &json!({"email": email}))
            .await?;
        erased.push(sent.elapsed());
        let reached = answer["bookings"].as_array().map_or(0, Vec::len);
        if reached != args.bookings || answer["read_models_scrubbed"] != true {
            bail!("round {round}: the erasure reached {reached} bookings: {answer}");
        }
        let sample = api
            .get(&format!("/v1/bookings/{}", ids[ids.len() / 2]))
            .await?;
        if sample["client"] != json!({"erased": true}) {
            bail!("round {round}: a booking still names its client: {sample}");
        }
    }
    let secs = |d: &Duration| d.as_secs_f64();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "erasure of a client with {} bookings: median {:.2} s (each: {}); \
         a client with none: median {:.3} s; making their {} bookings took median {:.2} s",
        args.bookings,
        secs(&median(erased.clone())),
        erased
            .iter()
            .map(|d| format!("{:.2}", secs(d)))
            .collect::<Vec<_>>()
            .join(" / "),
        secs(&median(empty)),
        args.bookings,
        secs(&median(seeded)),
    );
    Ok(())
}

/// Reads a resource's schedule as of the middle of its history.
pub async fn as_of(args: AsOfArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.url, &args.key);
    let room = api.room("bench time travel room").await?;
    let client = json!({"name": "Bench Past", "email": "bench-past@example.com"});
    let half = args.bookings / 2;
    let started = Instant::now();
    let (mut ids, _) = book_many(&api, &room, 0, half, &client).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (later, _) = book_many(&api, &room, half, args.bookings - half, &client).await?;
    ids.extend(later);
    // Each booking moves by a day (its reservation with it), then is
    // confirmed: five events a stream.
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let (api, id, gate) = (api.clone(), id.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let (start, end) = slot(i + 60 * 48);
            api.post(
                &format!("/v1/bookings/{id}/reschedule"),
                &json!({"starts_at": start, "ends_at": end}),
            )
            .await?;
            let confirmed = api
                .post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
                .await?;
            anyhow::Ok(confirmed["position"].as_i64().unwrap_or(0))
        }));
    }
    let mut position = 0;
    for task in tasks {
        position = position.max(task.await??);
    }
    let seeding = started.elapsed();
    let (from, _) = slot(0);
    let to = from + chrono::Duration::days(366);
    let window = format!(
        "from={}&to={}",
        from.format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ")
    );
    api.get(&format!(
        "/v1/resources/{room}/schedule?{window}&consistent_with={position}"
    ))
    .await?;
    let as_of = middle.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();

    let mut past = histogram();
    let mut now = histogram();
    let mut entries = (0, 0);
    for _ in 0..args.reads {
        let sent = Instant::now();
        let then = api
            .get(&format!(
                "/v1/resources/{room}/schedule?{window}&as_of={as_of}"
            ))
            .await?;
        past.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        let sent = Instant::now();
        let current = api
            .get(&format!("/v1/resources/{room}/schedule?{window}"))
            .await?;
        now.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        entries = (
            then["entries"].as_array().map_or(0, Vec::len),
            current["entries"].as_array().map_or(0, Vec::len),
        );
    }
    if entries.0 != half || entries.1 != args.bookings {
        bail!(
            "as of the middle the schedule held {} of the first {half}, now {} of {}",
            entries.0,
            entries.1,
            args.bookings
        );
    }
    println!(
        "as_of schedule of a resource with {} events ({} bookings, seeded in {:.1} s): \
         p50 {:.2} ms, p99 {:.2} ms ({} entries then); the same schedule now from the read \
         model p50 {:.2} ms, p99 {:.2} ms ({} entries)",
        args.bookings * 5,
        args.bookings,
        seeding.as_secs_f64(),
        ms(&past, 0.5),
        ms(&past, 0.99),
        entries.0,
        ms(&now, 0.5),
        ms(&now, 0.99),
        entries.1,
    );
    Ok(())
}
