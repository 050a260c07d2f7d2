//! Fail fast and heal: a real `muster api` on a Postgres cluster of its own
//! that is stopped and started again under it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway Postgres cluster on a port of its own, run as the `postgres`
/// user when the tests run as root (initdb refuses root).
struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str, args: &[&str]) -> Command {
    let path = format!("{PG_BIN}/{program}");
    if unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]).args(args);
        c
    } else {
        let mut c = Command::new(path);
        c.args(args);
        c
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn start() -> Option<Self> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            eprintln!("skipping: no {PG_BIN}/initdb");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("muster-fault-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chmod").arg("777").arg(&dir).status().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("pg");
        let ok = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
        assert!(ok, "initdb");
        let cluster = Self { dir, port };
        cluster.pg_ctl_start();
        Some(cluster)
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("pg");
        let log = self.dir.join("pg.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        let ok = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
        assert!(ok, "pg_ctl start");
    }

    fn stop_immediately(&self) {
        let data = self.dir.join("pg");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn muster(url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "muster {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_database_is_failed_fast_and_healed_without_a_restart() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    muster(&url, &["migrate"]);
    let key = muster(
        &url,
        &["keys", "create", "--tenant", "acme", "--role", "planner"],
    );
    let key = key.lines().last().unwrap().trim().to_owned();
    let (_api, address) = crate::two_processes::spawn_api_process_with(&url, &[]).await;
    let client = reqwest::Client::new();
    let register = || {
        client
            .post(format!("{address}/v1/resources"))
            .bearer_auth(&key)
            .json(&json!({"name": "Room", "kind": "room"}))
            .send()
    };
    assert_eq!(register().await.unwrap().status(), 201);

    cluster.stop_immediately();
    // The probe notices within a few of its 100 ms rounds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let answer = register().await.unwrap();
        let took = started.elapsed();
        assert_eq!(answer.status(), 503);
        assert!(
            took < Duration::from_millis(100),
            "a command's 503 took {took:?}"
        );
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["type"], "urn:muster:problem:unavailable");
        let started = Instant::now();
        let list = client
            .get(format!("{address}/v1/resources"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 503);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a query's 503 took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(body["problems"][0].as_str().unwrap().contains("database"));

    cluster.pg_ctl_start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = register().await.unwrap().status();
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "muster did not heal: still {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
