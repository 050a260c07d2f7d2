//! The binary as an operator runs it: configuration errors at boot, and a
//! graceful exit on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[tokio::test]
async fn invalid_configuration_stops_the_process_with_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("api")
        .env("MUSTER_LISTEN", "not-an-address")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("invalid value 'not-an-address'") && first.contains("--listen"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("migrate")
        .env("DATABASE_URL", "mysql://x")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a valid postgres:// URL"));
}

#[tokio::test]
async fn an_invalid_smtp_url_stops_serve_at_boot_with_one_line_and_no_secret() {
    for role in ["serve", "work"] {
        let output = Command::new(env!("CARGO_BIN_EXE_muster"))
            .arg(role)
            .env("SMTP_URL", "notaurl-with-s3cret")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("MUSTER_LISTEN", "127.0.0.1:0")
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{role} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{role}: one line: {stderr}");
        assert!(lines[0].contains("SMTP_URL is invalid"), "{stderr}");
        assert!(
            !stderr.contains("s3cret"),
            "the value stays out of the message"
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_and_exits_zero() {
    let db = muster_store::testing::TestDatabase::new().await;
    muster_jobs::migrate(&db.pool).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("api")
        .env("DATABASE_URL", db.url())
        .env("MUSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut up = false;
    for _ in 0..200 {
        if client.get(&url).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "muster api did not come up");
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
