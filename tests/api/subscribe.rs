//! The live stream: Server-Sent Events, filtered, resumable.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, api_config, spawn_api_only_with, spawn_app};

/// An open SSE connection and the events parsed from it so far.
struct Subscription {
    response: reqwest::Response,
    pending: String,
}

impl Subscription {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        Self::open_at(
            &app.client,
            &app.address,
            &app.analyst,
            query,
            last_event_id,
        )
        .await
    }

    async fn open_at(
        client: &reqwest::Client,
        address: &str,
        key: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> Self {
        let mut request = client
            .get(format!("{address}/v1/subscribe{query}"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            pending: String::new(),
        }
    }

    /// The next `n` events as (id, event type), failing after 10 s.
    async fn take(&mut self, n: usize) -> Vec<(i64, String)> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while events.len() < n {
            // Parsed in place and drained once: a chunk holds hundreds of
            // frames.
            let mut consumed = 0;
            while let Some(end) = self.pending[consumed..].find("\n\n") {
                let block = &self.pending[consumed..consumed + end];
                consumed += end + 2;
                let mut id = None;
                let mut kind = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    }
                }
                if let Some(id) = id {
                    events.push((id, kind));
                }
            }
            self.pending.drain(..consumed);
            if events.len() >= n {
                break;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("{n} events within 10 s; got {}", events.len()))
                .unwrap()
                .unwrap_or_else(|| {
                    panic!(
                        "the stream ended after {} events, the last {:?}",
                        events.len(),
                        events.last()
                    )
                });
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
        events
    }
}

async fn feed_positions(app: &TestApp) -> Vec<i64> {
    let feed = app.get("/v1/events?limit=1000", &app.analyst).await;
    feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_resumed_stream_has_no_gap_and_no_duplicate() {
    let app = spawn_app().await;
    let resource = app.resource(100).await;
    let mut first = Subscription::open(&app, "?after=0", None).await;
    for day in 1..=10 {
        app.book(
            &resource,
            &format!("2027-08-{day:02}T09:00:00Z"),
            &format!("2027-08-{day:02}T10:00:00Z"),
        )
        .await;
    }
    // Resource registered + 10 × (requested, reservation added) = 21.
    let mut seen = first.take(12).await;
    drop(first);

    // Events keep coming while the client is away.
    let writer = {
        let app_address = app.address.clone();
        let key = app.planner.clone();
        let resource = resource.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for day in 11..=20 {
                let from = format!("2027-08-{day:02}T09:00:00Z");
                let to = format!("2027-08-{day:02}T10:00:00Z");
                client
                    .post(format!("{app_address}/v1/bookings"))
                    .bearer_auth(&key)
                    .json(&crate::helpers::booking(&resource, &from, &to))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let last = seen.last().unwrap().0;
    let mut resumed = Subscription::open(&app, "", Some(last)).await;
    writer.await.unwrap();
    seen.extend(resumed.take(41 - seen.len()).await);

    let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        feed_positions(&app).await,
        "the stream equals the feed"
    );
    assert_eq!(seen[0].1, "resource.registered");
}

#[tokio::test]
async fn streams_are_filtered_and_tenant_scoped() {
    let app = spawn_app().await;
    let resource = app.resource(10).await;
    let mut confirmed =
        Subscription::open(&app, "?after=0&event_types=booking.confirmed", None).await;
    let mut bookings = Subscription::open(&app, "?after=0&stream_types=booking", None).await;
    // Another tenant's events never appear.
    app.send(
        reqwest::Method::POST,
        "/v1/resources",
        Some(&app.other_tenant),
        Some(&json!({"name": "Theirs", "kind": "room"})),
        &[],
    )
    .await;
    let booked = app
        .book(&resource, "2027-09-01T09:00:00Z", "2027-09-01T10:00:00Z")
        .await;
    let id = booked.body["id"].as_str().unwrap();
    app.post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
        .await;

    let got = confirmed.take(1).await;
    assert_eq!(got[0].1, "booking.confirmed");
    let got = bookings.take(3).await;
    let kinds: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "booking.requested",
            "reservation.added",
            "booking.confirmed"
        ]
    );
}

/// A counter's value in a Prometheus text page (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 200 subscribers of one real process are fed by its one tail: the store
/// is read per wake-up, not per subscriber, and every stream still gets
/// every event in order. A stream resumed from before the tail's start
/// catches up from the store, then joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_streams_cost_one_tail_and_miss_nothing() {
    let app = spawn_app().await;
    let resource = app.resource(1000).await;
    // History from before the process starts: only a catch-up reaches it.
    let first = app
        .book(&resource, "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")
        .await;
    let first_position = first.body["position"].as_i64().unwrap();
    let (_process, address) = crate::two_processes::spawn_api_process_with(
        &app.db.url(),
        &[("MUSTER_MAX_STREAMS_PER_KEY", "500")],
    )
    .await;
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(
            Subscription::open_at(
                &client,
                &address,
                &app.analyst,
                "?stream_types=booking",
                None,
            )
            .await,
        );
    }
    let mut old = Subscription::open_at(
        &client,
        &address,
        &app.analyst,
        "?stream_types=booking",
        Some(0),
    )
    .await;
    let metrics = || metrics_of(&client, &address);
    // Idle for two seconds: the tail polls, the subscribers do not.
    let before = counter(&metrics().await, "muster_live_tail_reads_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_reads = counter(&metrics().await, "muster_live_tail_reads_total") - before;
    // One reader per wake-up (and per second at least), whatever the
    // number of streams: 200 streams reading on their own would be 400+.
    assert!(
        idle_reads <= 20.0,
        "{idle_reads} tail reads in 2 idle seconds with 200 streams"
    );

    for hour in 0..5 {
        let booked = client
            .post(format!("{address}/v1/bookings"))
            .bearer_auth(&app.planner)
            .json(&json!({"title": "t", "client": {"name": "c"},
                "starts_at": format!("2030-02-01T{:02}:00:00Z", 8 + hour),
                "ends_at": format!("2030-02-01T{:02}:30:00Z", 8 + hour),
                "reservations": [{"resource_id": resource,
                    "starts_at": format!("2030-02-01T{:02}:00:00Z", 8 + hour),
                    "ends_at": format!("2030-02-01T{:02}:30:00Z", 8 + hour)}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(booked.status(), 201);
    }
    // booking.requested per booking (reservation.added too: 2 events each).
    let mut seen = None;
    for stream in &mut streams {
        let events = stream.take(10).await;
        assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        match &seen {
            None => seen = Some(events),
            Some(first) => assert_eq!(&events, first, "every stream sees the same events"),
        }
    }
    let resumed = old.take(12).await;
    assert!(
        resumed[0].0 <= first_position,
        "the catch-up starts at the beginning"
    );
    assert_eq!(
        &resumed[2..],
        &seen.unwrap()[..],
        "then joins the tail without a gap"
    );
    let page = metrics().await;
    assert!(counter(&page, "muster_live_catch_up_reads_total") >= 1.0);
    assert!(
        counter(&page, "muster_live_catch_up_reads_total") <= 4.0,
        "only the resumed stream reads the store"
    );
}

#[tokio::test]
async fn streams_are_capped_per_key_and_per_process() {
    let app = spawn_app().await;
    let (_process, address) = crate::two_processes::spawn_api_process_with(
        &app.db.url(),
        &[
            ("MUSTER_MAX_STREAMS_PER_KEY", "2"),
            ("MUSTER_MAX_STREAMS", "3"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let _a = Subscription::open_at(&client, &address, &app.analyst, "", None).await;
    let _b = Subscription::open_at(&client, &address, &app.analyst, "", None).await;
    let third = client
        .get(format!("{address}/v1/subscribe"))
        .bearer_auth(&app.analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let problem: serde_json::Value = third.json().await.unwrap();
    assert_eq!(problem["type"], "urn:muster:problem:too-many-streams");
    let _c = Subscription::open_at(&client, &address, &app.planner, "", None).await;
    let fourth = client
        .get(format!("{address}/v1/subscribe"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(fourth.status(), 503);
}

/// `n` events of about 700 bytes each for tenant `acme`, appended in one
/// transaction; their positions in order.
async fn append_filler(app: &TestApp, n: i64) -> Vec<i64> {
    let mut positions: Vec<i64> = sqlx::query_scalar(
        "insert into events (tenant_id, stream_id, stream_version, stream_type, event_type,
                             schema_version, payload, metadata)
         select 'acme', gen_random_uuid(), 1, 'probe', 'probe.filled', 1,
                jsonb_build_object('n', n, 'pad', repeat('x', 600)), '{}'::jsonb
           from generate_series(1, $1) n
         returning position",
    )
    .bind(n)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    positions.sort_unstable();
    positions
}

/// The (id, event type) of every frame in raw SSE text.
fn frames(raw: &str) -> Vec<(i64, String)> {
    raw.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut kind = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                }
            }
            Some((id?, kind))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_is_cut_off_resumably_while_the_others_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut config = api_config();
    config.live_buffer = 10_000;
    let app = spawn_api_only_with(config).await;

    // The slow subscriber: a tiny receive window, and it reads nothing
    // while the events arrive. HTTP/1.0, so the body is the raw stream.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    slow.write_all(
        format!(
            "GET /v1/subscribe HTTP/1.0\r\nHost: muster\r\nAuthorization: Bearer {}\r\n\r\n",
            app.analyst
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 256];
    let read = slow.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..read]).contains(" 200 "));
    let mut fast = Subscription::open(&app, "", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // ~21 MB of events, three times the tail's memory and far more than
    // the slow one's socket buffers hold. The fast one reads along and gets
    // every event: the slow one holds nobody back.
    let mut positions = Vec::new();
    for _ in 0..30 {
        let batch = append_filler(&app, 1_000).await;
        let got: Vec<i64> = fast
            .take(batch.len())
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(got, batch);
        positions.extend(batch);
    }

    // The slow one, reading at last, finds itself cut off, with the
    // position to resume after as the last frame's id.
    let mut raw = head[..read].to_vec();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut raw))
        .await
        .expect("the cut-off stream ends")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let mut received = frames(body);
    let (resume_after, kind) = received.pop().expect("frames before the end");
    assert_eq!(kind, "muster.cut-off", "the last frame says it was cut off");
    let sent: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
    let kept = positions.partition_point(|p| *p <= resume_after);
    assert!(kept < positions.len(), "cut off before the end");
    assert_eq!(
        sent,
        positions[..kept],
        "everything up to the resume position, in order"
    );

    // Resuming there brings the rest: no gap, no duplicate.
    let mut resumed = Subscription::open(&app, "", Some(resume_after)).await;
    let rest: Vec<i64> = resumed
        .take(positions.len() - kept)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rest, positions[kept..]);

    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(counter(&metrics, "muster_subscriber_cutoffs_total") >= 1.0);
}

/// An idle stream gets a keep-alive comment within 15 s of its last write,
/// however often the tail polls meanwhile, so that proxies keep it open.
#[tokio::test]
async fn an_idle_stream_is_kept_alive() {
    let app = spawn_app().await;
    let mut stream = app
        .client
        .get(format!("{}/v1/subscribe", app.address))
        .bearer_auth(&app.analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
        .await
        .expect("a keep-alive within 20 s")
        .unwrap()
        .expect("the stream stays open");
    assert!(chunk.starts_with(b":"), "{chunk:?}");
}

/// A stream that wants rare events is not woken by the others (it shares
/// its tenant's and filter's view of the tail with any stream that asks
/// the same) and is not cut off when they push the tail's memory past it:
/// what it wants is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_rare_events_outlives_the_tails_memory() {
    let mut config = api_config();
    config.live_buffer = 100;
    let app = spawn_api_only_with(config).await;
    let resource = app.resource(10).await;
    let mut rare = Subscription::open(&app, "?event_types=booking.requested", None).await;
    let mut same = Subscription::open(
        &app,
        "?event_types=booking.requested,booking.requested",
        None,
    )
    .await;
    for round in 0..3 {
        // Ten times what the tail keeps, none of it wanted, in batches the
        // tail reads one wake-up at a time.
        for _ in 0..10 {
            append_filler(&app, 100).await;
            sqlx::query("select pg_notify('muster_events', '')")
                .execute(&app.db.pool)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let day = 1 + round;
        let booked = app
            .book(
                &resource,
                &format!("2027-09-{day:02}T09:00:00Z"),
                &format!("2027-09-{day:02}T10:00:00Z"),
            )
            .await;
        assert_eq!(booked.status, 201, "{}", booked.body);
        let position = booked.body["position"].as_i64().unwrap();
        // A cut-off stream would get `muster.cut-off` here instead.
        for stream in [&mut rare, &mut same] {
            let got = stream.take(1).await;
            assert_eq!(got[0].1, "booking.requested", "{got:?}");
            assert!(got[0].0 <= position, "{got:?} after {position}");
        }
    }
}

/// A process's `/metrics` page.
async fn metrics_of(client: &reqwest::Client, address: &str) -> String {
    client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A gauge or counter of a process's `/metrics` (0 when absent).
async fn metric(client: &reqwest::Client, address: &str, name: &str) -> f64 {
    metrics_of(client, address)
        .await
        .lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_reads_and_keeps_nothing_while_no_stream_is_open() {
    // A real `muster api` of its own, so that its metrics are its alone.
    let app = spawn_app().await;
    let (_process, address) =
        crate::two_processes::spawn_api_process_with(&app.db.url(), &[]).await;
    let client = reqwest::Client::new();
    let room = app.resource(1).await;
    let book = |day: u32| {
        let client = client.clone();
        let address = address.clone();
        let key = app.planner.clone();
        let room = room.clone();
        async move {
            let from = format!("2030-01-{day:02}T10:00:00Z");
            let to = format!("2030-01-{day:02}T11:00:00Z");
            let answer = client
                .post(format!("{address}/v1/bookings"))
                .bearer_auth(key)
                .json(&json!({"title": "x", "client": {"name": "A"}, "starts_at": from, "ends_at": to,
                              "reservations": [{"resource_id": room, "starts_at": from, "ends_at": to}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 201);
        }
    };
    for day in 1..=10 {
        book(day).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        metric(&client, &address, "muster_live_tail_reads_total").await,
        0.0
    );
    assert_eq!(
        metric(&client, &address, "muster_live_tail_retained_bytes").await,
        0.0
    );

    // A stream opens: the tail follows, and it gets what happens next.
    let mut stream = Subscription::open_at(
        &client,
        &address,
        &app.analyst,
        "?stream_types=booking",
        None,
    )
    .await;
    book(20).await;
    let got = stream.take(1).await;
    assert_eq!(got[0].1, "booking.requested");
    assert!(metric(&client, &address, "muster_live_tail_reads_total").await > 0.0);
    assert!(metric(&client, &address, "muster_live_tail_retained_bytes").await > 0.0);

    // It closes: the tail forgets what it kept.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&client, &address, "muster_live_tail_retained_bytes").await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tail still keeps events with no stream open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads = metric(&client, &address, "muster_live_tail_reads_total").await;
    book(21).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        metric(&client, &address, "muster_live_tail_reads_total").await,
        reads,
        "an idle tail does not read"
    );
}
