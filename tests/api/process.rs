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

/// The README's first command from a clone inside a root user's 0700 home:
/// the cluster's unprivileged user cannot reach the data directory, so the
/// cluster lives where it can, and muster serves. Deleted and cloned again
/// at the same path, the data directory has lost the old cluster's
/// password: muster sets that cluster aside and serves from a new one.
#[tokio::test]
async fn the_embedded_default_serves_from_a_private_directory() {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let home = std::env::temp_dir().join(format!("muster-home-{}", uuid::Uuid::new_v4().simple()));
    let data_dir = home.join(".muster");
    let beside = std::path::absolute(data_dir.join("pg")).unwrap();
    let digest = sha2::Sha256::digest(beside.as_os_str().as_encoded_bytes());
    let elsewhere =
        std::path::PathBuf::from(format!("/var/tmp/muster-{}", &hex::encode(digest)[..16]));
    for clone in ["first", "again at the same path"] {
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        serve_embedded_until_ready_then_stop(&data_dir, clone).await;
        assert!(data_dir.join("admin.key").exists(), "{clone}");
    }
    // Only root runs the cluster as another user, which is what sends it
    // out of the data directory.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if !root {
        let _ = std::fs::remove_dir_all(home);
        return;
    }
    let set_aside = std::fs::read_dir(&elsewhere)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("pg.orphaned-")
        })
        .count();
    assert_eq!(set_aside, 1, "the first cluster is kept, set aside");
    let _ = std::fs::remove_dir_all(elsewhere);
    let _ = std::fs::remove_dir_all(home);
}

/// Runs `muster serve` on the embedded default in `data_dir` until
/// `/readyz` answers, then stops it with SIGTERM and expects a clean exit.
async fn serve_embedded_until_ready_then_stop(data_dir: &std::path::Path, clone: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("MUSTER_DATA_DIR", data_dir)
        .env("MUSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{clone}: muster serve exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{clone}: muster serve did not become ready");
    let pid = child.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{clone}: {status}");
}
