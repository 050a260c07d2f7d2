//! The live stream: Server-Sent Events, filtered, resumable.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

/// An open SSE connection and the events parsed from it so far.
struct Subscription {
    response: reqwest::Response,
    pending: String,
}

impl Subscription {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app
            .client
            .get(format!("{}/v1/subscribe{query}", app.address))
            .bearer_auth(&app.analyst);
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
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
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
            if events.len() >= n {
                break;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("events arrive within 10 s")
                .unwrap()
                .expect("the stream stays open");
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
