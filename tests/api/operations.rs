use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_a_key() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let hall = app.resource(1).await;
    app.book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    app.book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "muster_appends_total",
        "muster_append_duration_seconds_bucket",
        "muster_reservation_conflicts_total",
        "muster_db_pool_connections",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains(r#"route="/v1/bookings""#));
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_are_served() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/resources",
        "/v1/bookings",
        "/v1/bookings/{id}/reservations/{rid}",
        "/v1/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/v1/bookings"]["post"]["responses"]["409"].is_object());
    let docs = app
        .client
        .get(format!("{}/docs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let missing = app.get("/v1/nothing", &app.admin).await;
    crate::helpers::assert_problem(&missing, 404, "not-found");
    let method = app
        .send(
            reqwest::Method::PUT,
            "/v1/bookings",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn requests_fail_fast_with_503_while_the_database_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there: the database is "down".
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("muster")
        .database("muster");
    let mut settings = crate::helpers::pool_settings();
    settings.acquire_timeout = std::time::Duration::from_millis(500);
    let app = muster::Application::build(
        "127.0.0.1:0".parse().unwrap(),
        options,
        &settings,
        crate::helpers::api_config(),
        Default::default(),
    )
    .await
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::new();

    let started = std::time::Instant::now();
    let answer = client
        .post(format!("{address}/v1/resources"))
        .bearer_auth(format!("mk.acme.{}", "ab".repeat(32)))
        .json(&serde_json::json!({"name": "A", "kind": "room"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["type"], "urn:muster:problem:unavailable");

    let health = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Sends `head` and `body` on a raw connection and returns the status line
/// of the answer and how long it took.
async fn raw_status(address: &str, head: &str, body: &[u8]) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(8), stream.read(&mut buf))
            .await
            .expect("an answer within 8 s")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or_default().to_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn an_over_limit_length_is_413_at_once_and_a_stalled_body_is_408() {
    let app = spawn_app().await;
    let head = |length: &str| {
        format!(
            "POST /v1/bookings HTTP/1.1\r\nHost: muster\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            app.planner
        )
    };
    let (status, took) = raw_status(&app.address, &head("99999999999"), b"{").await;
    assert!(status.contains(" 413 "), "{status}");
    assert!(
        took < std::time::Duration::from_secs(2),
        "at once, not after a wait: {took:?}"
    );

    // Ten bytes of a hundred, then nothing: 408 after the body timeout (1 s
    // in tests), well before the request timeout's 503.
    let (status, took) = raw_status(&app.address, &head("100"), b"{\"title\":").await;
    assert!(status.contains(" 408 "), "{status}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn documents_are_compressed_revalidated_and_cors_is_only_for_configured_origins() {
    let app = spawn_app().await;
    let hall = app.resource(1).await;
    let booked = app
        .book(&hall, "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
        .await;
    let id = booked.body["id"].as_str().unwrap().to_owned();
    let position = booked.body["position"].as_i64().unwrap();
    let url = format!(
        "{}/v1/bookings/{id}?consistent_with={position}",
        app.address
    );
    let get = |extra: Option<(&'static str, String)>| {
        let mut request = app.client.get(&url).bearer_auth(&app.analyst);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };

    let gzipped = get(Some(("accept-encoding", "gzip".into()))).await.unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let brotli = get(Some(("accept-encoding", "br".into()))).await.unwrap();
    assert_eq!(brotli.headers()["content-encoding"], "br");

    let first = get(None).await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = get(Some(("if-none-match", etag.clone()))).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let confirmed = app
        .post(
            &format!("/v1/bookings/{id}/confirm"),
            &serde_json::json!({}),
        )
        .await;
    let position = confirmed.body["position"].as_i64().unwrap();
    let changed = app
        .client
        .get(format!(
            "{}/v1/bookings/{id}?consistent_with={position}",
            app.address
        ))
        .bearer_auth(&app.analyst)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a new version is a new ETag"
    );
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    let preflight = |origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/bookings", app.address),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://planner.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://planner.example.com"
    );
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}
