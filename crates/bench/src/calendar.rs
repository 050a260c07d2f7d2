//! External calendars (SPEC §12, §9): a CalDAV collection of `--events`
//! events (`--recurring` of them weekly for a year) on a real Radicale
//! started here, linked to a resource of a running muster (which must allow
//! private targets: `MUSTER_ALLOW_PRIVATE_WEBHOOKS=true`). It times the
//! first sync (from the link's answer until its blocks are in) and then,
//! round after round, a sync with one change (from `POST
//! /v1/calendars/{id}/sync` until the link says it synced), each beside the
//! same read done by a bare WebDAV client in the same run: the full listing
//! and a multiget of every object, and a sync-collection from a token with
//! a multiget of the one changed object. The gap is muster's own work
//! (expanding recurrences, the decision under the resource's lock, the
//! blocks' rows) plus the job's pick-up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::reads::{histogram, ms};

/// The calendar sync scenario.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Base URL of the running muster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (admin: linking a calendar is an admin's).
    #[arg(long, env = "MUSTER_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// A Python that has Radicale (`pip install radicale`).
    #[arg(long, default_value = "target/radicale-venv/bin/python")]
    radicale_python: PathBuf,
    /// Events in the collection.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Of which weekly for a year.
    #[arg(long, default_value_t = 100)]
    recurring: usize,
    /// Syncs with one change, measured.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

/// Radicale on a free port with storage of its own; stopped on drop.
struct Radicale {
    child: Child,
    base: String,
    storage: PathBuf,
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

impl Radicale {
    async fn start(python: &PathBuf) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let storage = std::env::temp_dir().join(format!("muster-bench-radicale-{port}"));
        std::fs::create_dir_all(&storage)?;
        let child = Command::new(python)
            .args(["-m", "radicale", "--server-hosts"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--auth-type", "none", "--logging-level", "warning"])
            .arg("--storage-filesystem-folder")
            .arg(&storage)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start Radicale with {}", python.display()))?;
        let radicale = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            storage,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("Radicale did not listen within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(radicale)
    }
}

const USER: &str = "bench";

/// Event `i` of the collection: single events spread over the year ahead,
/// the first `recurring` weekly for a year; `revision` moves it an hour.
fn object(i: usize, recurring: usize, revision: u32, from: DateTime<Utc>) -> String {
    let start = from
        + chrono::Duration::hours((i * 7 % (24 * 300)) as i64 + i64::from(revision))
        + chrono::Duration::days((i % 300) as i64);
    let end = start + chrono::Duration::minutes(45);
    let utc = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let rule = if i < recurring {
        "RRULE:FREQ=WEEKLY;COUNT=52\r\n"
    } else {
        ""
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//muster-bench//EN\r\nBEGIN:VEVENT\r\n\
         UID:bench-{i}@example.com\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:Busy {i}.{revision}\r\n\
         DTSTART:{}\r\nDTEND:{}\r\n{rule}END:VEVENT\r\nEND:VCALENDAR\r\n",
        utc(start),
        utc(end)
    )
}

/// The texts of every `<…name>` element of `xml`, whatever its prefix.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&format!("{name}>")) {
        let before = &rest[..at];
        rest = &rest[at + name.len() + 1..];
        // An opening tag: `<name>` or `<prefix:name>`.
        if let Some(open) = before.rfind('<')
            && !before[open..].starts_with("</")
            && before[open + 1..]
                .chars()
                .all(|c| c.is_alphanumeric() || c == ':')
            && let Some(end) = rest.find('<')
        {
            found.push(rest[..end].to_owned());
        }
    }
    found
}

/// A bare WebDAV client's reads of the collection: the baseline.
struct Bare {
    http: reqwest::Client,
    collection: String,
    base: String,
}

impl Bare {
    async fn report(&self, body: String) -> anyhow::Result<String> {
        let answer = self
            .http
            .request(reqwest::Method::from_bytes(b"REPORT")?, &self.collection)
            .basic_auth(USER, Some("x"))
            .header("depth", "1")
            .header("content-type", "application/xml; charset=utf-8")
            .body(body)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("REPORT: {}", answer.status());
        }
        Ok(answer.text().await?)
    }

    /// sync-collection from `token` (everything without one): the new
    /// token and the changed hrefs.
    async fn changes(&self, token: Option<&str>) -> anyhow::Result<(String, Vec<String>)> {
        let xml = self
            .report(format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:sync-collection xmlns:D=\"DAV:\">\
                 <D:sync-token>{}</D:sync-token><D:sync-level>1</D:sync-level>\
                 <D:prop><D:getetag/></D:prop></D:sync-collection>",
                token.unwrap_or_default()
            ))
            .await?;
        let token = texts(&xml, "sync-token").pop().context("a sync token")?;
        let path = self.collection.trim_start_matches(&self.base).to_owned();
        let hrefs = texts(&xml, "href")
            .into_iter()
            .filter(|h| *h != path)
            .collect();
        Ok((token, hrefs))
    }

    /// calendar-multiget of `hrefs`, 200 at a time: the bytes read.
    async fn fetch(&self, hrefs: &[String]) -> anyhow::Result<usize> {
        let mut bytes = 0;
        for chunk in hrefs.chunks(200) {
            let list: String = chunk
                .iter()
                .map(|h| format!("<D:href>{h}</D:href>"))
                .collect();
            bytes += self
                .report(format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?><C:calendar-multiget xmlns:D=\"DAV:\" \
                     xmlns:C=\"urn:ietf:params:xml:ns:caldav\"><D:prop><D:getetag/><C:calendar-data/>\
                     </D:prop>{list}</C:calendar-multiget>"
                ))
                .await?
                .len();
        }
        Ok(bytes)
    }
}

async fn put(http: &reqwest::Client, url: String, body: String) -> anyhow::Result<()> {
    let answer = http
        .put(&url)
        .basic_auth(USER, Some("x"))
        .header("content-type", "text/calendar")
        .body(body)
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("PUT {url}: {}", answer.status());
    }
    Ok(())
}

/// The link, polled until `done`.
async fn wait_link(
    http: &reqwest::Client,
    args: &SyncArgs,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let link =
            crate::api::get(http, &args.url, &args.key, &format!("/v1/calendars/{id}")).await?;
        if let Some(error) = link["last_error"].as_str() {
            bail!("the sync failed: {error}");
        }
        if done(&link) {
            return Ok(link);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the link never synced: {link}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs the scenario.
pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let radicale = Radicale::start(&args.radicale_python).await?;
    let http = reqwest::Client::new();
    let collection = format!("{}/{USER}/calendar/", radicale.base);
    let made = http
        .request(reqwest::Method::from_bytes(b"MKCALENDAR")?, &collection)
        .basic_auth(USER, Some("x"))
        .send()
        .await?;
    if !made.status().is_success() {
        bail!("MKCALENDAR: {}", made.status());
    }
    let from = Utc::now() + chrono::Duration::days(2);
    let loading = Instant::now();
    let gate = Arc::new(Semaphore::new(16));
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..args.events {
        let (http, gate) = (http.clone(), gate.clone());
        let url = format!("{collection}e{i}.ics");
        let body = object(i, args.recurring, 0, from);
        puts.spawn(async move {
            let _permit = gate.acquire().await?;
            put(&http, url, body).await
        });
    }
    while let Some(done) = puts.join_next().await {
        done??;
    }
    eprintln!(
        "calendar-sync: {} events ({} weekly for a year) loaded into Radicale in {:.1} s",
        args.events,
        args.recurring,
        loading.elapsed().as_secs_f64()
    );

    // The baseline's first read: the whole collection, bare.
    let bare = Bare {
        http: http.clone(),
        collection: collection.clone(),
        base: radicale.base.clone(),
    };
    let bare_full = Instant::now();
    let (mut token, hrefs) = bare.changes(None).await?;
    bare.fetch(&hrefs).await?;
    let bare_full = bare_full.elapsed();

    let resource = crate::api::post(
        &http,
        &args.url,
        &args.key,
        "/v1/resources",
        &json!({"name": "bench calendar staff", "kind": "staff", "timezone": "Europe/Berlin"}),
    )
    .await?["id"]
        .as_str()
        .context("a resource id")?
        .to_owned();
    let linked_at = Instant::now();
    let link = crate::api::post(
        &http,
        &args.url,
        &args.key,
        &format!("/v1/resources/{resource}/calendars"),
        &json!({"kind": "caldav", "url": collection, "username": USER, "password": "x"}),
    )
    .await?;
    let id = link["id"].as_str().context("a link id")?.to_owned();
    let first = wait_link(&http, &args, &id, |l| l["last_synced_at"].is_string()).await?;
    let first_sync = linked_at.elapsed();
    let blocks = first["blocks"].as_i64().unwrap_or(0);

    let mut muster = histogram();
    let mut baseline = histogram();
    for round in 0..args.rounds {
        let i = args.recurring + round % (args.events - args.recurring).max(1);
        let revision = u32::try_from(round + 1).unwrap_or(u32::MAX);
        put(
            &http,
            format!("{collection}e{i}.ics"),
            object(i, args.recurring, revision, from),
        )
        .await?;
        // The change read bare: a sync-collection from the token and a
        // multiget of the one object.
        let bare_started = Instant::now();
        let (next, changed) = bare.changes(Some(&token)).await?;
        bare.fetch(&changed).await?;
        baseline.saturating_record(bare_started.elapsed().as_micros().max(1) as u64);
        token = next;
        // The same change synced by muster.
        let before = first_or(&wait_link(&http, &args, &id, |_| true).await?);
        let asked = Instant::now();
        crate::api::post(
            &http,
            &args.url,
            &args.key,
            &format!("/v1/calendars/{id}/sync"),
            &json!({}),
        )
        .await?;
        wait_link(&http, &args, &id, |l| first_or(l) != before).await?;
        muster.saturating_record(asked.elapsed().as_micros().max(1) as u64);
    }
    println!(
        "calendar sync, {} events ({} weekly for a year, {blocks} blocks): first sync {:.0} ms \
         (a bare full read of the collection: {:.0} ms); a sync with one change, {} rounds: \
         p50 {:.1} ms, p99 {:.1} ms (bare sync-collection + multiget of it: p50 {:.1} ms, \
         p99 {:.1} ms)",
        args.events,
        args.recurring,
        first_sync.as_secs_f64() * 1000.0,
        bare_full.as_secs_f64() * 1000.0,
        args.rounds,
        ms(&muster, 0.5),
        ms(&muster, 0.99),
        ms(&baseline, 0.5),
        ms(&baseline, 0.99),
    );
    Ok(())
}

/// When the link last synced, as its answer says.
fn first_or(link: &Value) -> String {
    link["last_synced_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
