//! Reports: 202 → done → download, contents checked by hand on a small
//! fixture, for every kind and both formats.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::deployments::wait_for;
use crate::helpers::{TestApp, spawn_app_with_workers, worker_config};

/// Requests a report as the analyst; returns its id once it is queued.
pub async fn request_report(app: &TestApp, body: &Value) -> String {
    let requested = app
        .send(
            Method::POST,
            "/v1/reports",
            Some(&app.analyst),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(
        requested.status,
        StatusCode::ACCEPTED,
        "{:?}",
        requested.body
    );
    assert_eq!(requested.body["status"], "queued");
    requested.body["id"].as_str().unwrap().to_owned()
}

/// Requests a report as the analyst, waits until it is done, downloads it.
async fn report(app: &TestApp, body: Value) -> (String, String) {
    let id = request_report(app, &body).await;
    let done = wait_for(app, &format!("/v1/reports/{id}"), |b| {
        b["status"] == "done" || b["status"] == "failed"
    })
    .await;
    assert_eq!(done["status"], "done", "{done}");
    let response = app
        .client
        .get(format!("{}/v1/reports/{id}/download", app.address))
        .bearer_auth(&app.analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(done["bytes"].as_u64().unwrap() as usize, text.len());
    (content_type, text)
}

#[tokio::test]
async fn reports_match_hand_computed_figures() {
    let app = spawn_app_with_workers(worker_config()).await;
    // One room (Europe/Berlin, capacity 1, no working hours: 24 h a day).
    let room = app.resource(1).await;
    let first = app
        .book(&room, "2027-01-04T10:00:00Z", "2027-01-04T12:00:00Z")
        .await;
    let first_id = first.body["id"].as_str().unwrap();
    let confirmed = app
        .post(&format!("/v1/bookings/{first_id}/confirm"), &json!({}))
        .await;
    let second = app
        .book(&room, "2027-01-05T09:00:00Z", "2027-01-05T10:00:00Z")
        .await;
    let second_id = second.body["id"].as_str().unwrap();
    // Let the read models catch up with every write before reporting.
    let position = second.body["position"]
        .as_i64()
        .unwrap()
        .max(confirmed.body["position"].as_i64().unwrap());
    let read = app
        .get(
            &format!("/v1/bookings/{second_id}?consistent_with={position}"),
            &app.analyst,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);

    let window = json!({"from": "2027-01-04T00:00:00+01:00", "to": "2027-01-06T00:00:00+01:00"});
    let mut body = window.clone();
    body["kind"] = json!("utilization");
    body["format"] = json!("csv");
    let (content_type, csv) = report(&app, body).await;
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(
        csv,
        format!(
            "resource_id,resource_name,resource_kind,date,available_hours,booked_hours,utilization\r\n\
             {room},Hall,room,2027-01-04,24,2,0.083\r\n\
             {room},Hall,room,2027-01-05,24,1,0.042\r\n"
        )
    );

    let mut body = window.clone();
    body["kind"] = json!("bookings");
    body["format"] = json!("json");
    let (content_type, text) = report(&app, body).await;
    assert_eq!(content_type, "application/json");
    let rows: Value = serde_json::from_str(&text).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["booking_id"], first_id);
    assert_eq!(rows[0]["status"], "confirmed");
    assert_eq!(rows[0]["headcount"], 120.0);
    assert_eq!(rows[1]["booking_id"], second_id);
    assert_eq!(rows[1]["status"], "requested");
    assert_eq!(rows[1]["client_email"], "ann@example.com");

    let mut body = window.clone();
    body["kind"] = json!("status_summary");
    let (_, csv) = report(&app, body).await;
    assert_eq!(
        csv,
        "date,status,bookings\r\n2027-01-04,confirmed,1\r\n2027-01-05,requested,1\r\n"
    );
}

#[tokio::test]
async fn bad_report_requests_are_refused_and_unfinished_reports_do_not_download() {
    let app = spawn_app_with_workers(worker_config()).await;
    for (body, field) in [
        (
            json!({"kind": "utilization", "from": "2027-01-02T00:00:00Z", "to": "2027-01-01T00:00:00Z"}),
            "to",
        ),
        (
            json!({"kind": "utilization", "from": "2027-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"}),
            "to",
        ),
        (
            json!({"kind": "nope", "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}),
            "kind",
        ),
        // Year 0 and year 10000 in UTC, reached through the widest offsets.
        (
            json!({"kind": "utilization", "from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00Z"}),
            "from",
        ),
        (
            json!({"kind": "utilization", "from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:00:00-14:00"}),
            "to",
        ),
        (
            json!({"kind": "bookings", "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z", "format": "xml"}),
            "format",
        ),
    ] {
        let answer = app
            .send(
                Method::POST,
                "/v1/reports",
                Some(&app.analyst),
                Some(&body),
                &[],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(
            crate::helpers::fields(&answer),
            [field],
            "{:?}",
            answer.body
        );
    }
    let missing = app
        .get(
            &format!("/v1/reports/{}/download", uuid::Uuid::now_v7()),
            &app.analyst,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Finished reports (with their files) and finished webhook deliveries
/// (with their attempts) are kept for their retention, then forgotten;
/// reports are listed newest first until then.
#[tokio::test]
async fn finished_reports_and_deliveries_are_forgotten_after_their_retention() {
    let app = spawn_app_with_workers(muster_workers::WorkerConfig {
        report_retention: std::time::Duration::from_secs(1),
        delivery_retention: std::time::Duration::from_secs(1),
        cleanup_interval: std::time::Duration::from_millis(300),
        ..worker_config()
    })
    .await;
    let receiver = crate::receiver::Receiver::start(
        std::sync::Arc::new(|_, _| 204),
        std::time::Duration::ZERO,
    )
    .await;
    let hook = crate::deployments::subscribe(&app, &receiver.url, &["booking.requested"]).await;
    let hall = app.resource(1).await;
    app.book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let body = json!({"kind": "status_summary", "format": "json",
                      "from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"});
    let (_, _) = report(&app, body.clone()).await;
    let listed = app.get("/v1/reports", &app.analyst).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let id = listed.body["items"][0]["id"].as_str().unwrap().to_owned();
    wait_for(&app, &format!("/v1/webhooks/{hook}/deliveries"), |b| {
        b["items"][0]["status"] == "delivered"
    })
    .await;

    // After the retention: gone, files and attempt logs with them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = app.get(&format!("/v1/reports/{id}"), &app.analyst).await;
        let deliveries = app
            .get(&format!("/v1/webhooks/{hook}/deliveries"), &app.admin)
            .await;
        if report.status == StatusCode::NOT_FOUND
            && deliveries.body["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still kept: {:?}",
            report.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let chunks: i64 = sqlx::query_scalar("select count(*) from report_chunks")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(chunks, 0);
    let attempts: i64 = sqlx::query_scalar("select count(*) from webhook_attempts")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}

/// `curl` as a client that asks for `encoding`, the way browsers, `curl
/// --compressed` and Python's requests do: its exit status and what it
/// decoded.
async fn curl_download(url: &str, key: &str, encoding: &str) -> (bool, Vec<u8>, String) {
    // tokio's: the server under test runs on this test's runtime.
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["-H", &format!("Accept-Encoding: {encoding}")])
        .args(if encoding == "identity" {
            &[][..]
        } else {
            &["--compressed"][..]
        })
        .arg(url)
        .output()
        .await
        .expect("curl runs (Debian: apt-get install curl)");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn streamed_answers_arrive_whole_with_gzip_br_and_identity() {
    let app = spawn_app_with_workers(worker_config()).await;
    let room = app.resource(1).await;
    // Enough rows that the file spans more than one stored chunk.
    for day in 1..=28 {
        let from = format!("2027-02-{day:02}T10:00:00Z");
        let to = format!("2027-02-{day:02}T12:00:00Z");
        let booked = app.book(&room, &from, &to).await;
        assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    }
    let (_, whole) = report(
        &app,
        json!({"kind": "bookings", "from": "2027-02-01T00:00:00Z",
               "to": "2027-03-01T00:00:00Z", "format": "csv"}),
    )
    .await;
    let listed = app.get("/v1/reports?limit=1", &app.analyst).await;
    let id = listed.body["items"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/reports/{id}/download", app.address);
    for encoding in ["gzip", "br", "identity"] {
        let (ok, body, said) = curl_download(&url, &app.analyst, encoding).await;
        assert!(ok, "{encoding}: {said}");
        assert_eq!(String::from_utf8(body).unwrap(), whole, "{encoding}");
    }
    // The other answers a client streams or downloads: the calendar feed
    // and a page of the event feed, compressed or not, arrive whole.
    let feed = app
        .post(&format!("/v1/resources/{room}/feeds"), &json!({}))
        .await;
    assert_eq!(feed.status, StatusCode::CREATED, "{:?}", feed.body);
    let ics = format!("{}{}", app.address, feed.body["path"].as_str().unwrap());
    let events = format!("{}/v1/events?after=0&limit=100", app.address);
    for url in [ics, events] {
        let (ok, plain, said) = curl_download(&url, &app.analyst, "identity").await;
        assert!(ok, "{url}: {said}");
        for encoding in ["gzip", "br"] {
            let (ok, decoded, said) = curl_download(&url, &app.analyst, encoding).await;
            assert!(ok, "{url} {encoding}: {said}");
            assert_eq!(decoded, plain, "{url} {encoding}");
        }
    }
}
