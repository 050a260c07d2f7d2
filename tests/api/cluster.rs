//! Throwaway Postgres clusters of a test's own (to stop, restart, or
//! replicate without touching the shared one), and the `muster` CLI on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Postgres' server binaries, found as the embedded default finds them
/// (any installed major version). A test that needs them and finds none
/// fails, saying what to install: it never passes without running.
static PG_BIN: LazyLock<PathBuf> = LazyLock::new(|| {
    muster::embedded::find_bin_dir().unwrap_or_else(|| {
        panic!(
            "this test runs a Postgres cluster of its own and needs PostgreSQL's server \
             binaries (initdb, pg_ctl, pg_basebackup, pg_isready): apt-get install postgresql"
        )
    })
});

/// The path of server binary `program`, which must exist.
fn pg_bin(program: &str) -> String {
    let path = PG_BIN.join(program);
    assert!(
        path.is_file(),
        "{} is missing: this test needs it (apt-get install postgresql)",
        path.display()
    );
    path.to_str().unwrap().to_owned()
}

/// A Postgres cluster on a port of its own, run as the `postgres` user when
/// the tests run as root (initdb refuses root). Stopped and removed on drop.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str, args: &[&str]) -> Command {
    as_postgres_at(&pg_bin(program), args)
}

/// `path` run as the `postgres` user when the tests run as root (Postgres'
/// tools and PgBouncer refuse root).
fn as_postgres_at(path: &str, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", path]).args(args);
        c
    } else {
        let mut c = Command::new(path);
        c.args(args);
        c
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new directory the `postgres` user may write its logs and sockets in.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-pg-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    Command::new("chmod").arg("777").arg(&dir).status().unwrap();
    dir
}

fn run(mut command: Command, what: &str) {
    let output = command.stdout(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// A new, empty cluster, started. Fails the test, saying what to
    /// install, where Postgres' server binaries are missing.
    pub fn start() -> Self {
        let cluster = Self::empty_dir();
        let data = cluster.data();
        run(
            as_postgres("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]),
            "initdb",
        );
        cluster.pg_ctl_start();
        cluster
    }

    /// A hot standby of `self`, streaming from it (`pg_basebackup -R`),
    /// started and accepting reads.
    pub fn standby(&self) -> Self {
        let standby = Self::empty_dir();
        run(
            as_postgres(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    &standby.data(),
                    "-R",
                    "-X",
                    "stream",
                ],
            ),
            "pg_basebackup",
        );
        standby.pg_ctl_start();
        standby
    }

    fn empty_dir() -> Self {
        Self {
            dir: scratch_dir(),
            port: free_port(),
        }
    }

    fn data(&self) -> String {
        self.dir.join("pg").to_str().unwrap().to_owned()
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn pg_ctl_start(&self) {
        let log = self.dir.join("pg.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        run(
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &options,
                    "-w",
                    "start",
                ],
            ),
            "pg_ctl start",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(pg_bin("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the cluster at once, as a crash would.
    pub fn stop_immediately(&self) {
        let _ = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }

    /// Its `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer in front of a [`Cluster`], configured as operators run it:
/// transaction pooling, a small server pool, `extra_float_digits` ignored
/// and every other startup parameter (`options`) refused. Stopped on drop.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Starts one with `pool_size` server connections to `cluster`'s
    /// `postgres` database. Fails the test, saying what to install, where
    /// PgBouncer is missing (`.ci/run` installs it).
    pub fn start(cluster: &Cluster, pool_size: u32) -> Self {
        assert!(
            Path::new(PGBOUNCER).is_file(),
            "this test runs PgBouncer and needs {PGBOUNCER}: apt-get install pgbouncer"
        );
        let bouncer = Self {
            dir: scratch_dir(),
            port: free_port(),
        };
        let path = |name: &str| bouncer.dir.join(name).to_str().unwrap().to_owned();
        std::fs::write(path("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={upstream} dbname=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             admin_users = postgres\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            upstream = cluster.port,
            port = bouncer.port,
            users = path("userlist.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(path("pgbouncer.ini"), ini).unwrap();
        run(
            as_postgres_at(PGBOUNCER, &["-d", &path("pgbouncer.ini")]),
            "pgbouncer",
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", bouncer.port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// The URL of the pooled `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Rows of an admin console command (`SHOW POOLS`, ...), each a map
    /// from column name to value.
    pub fn show(&self, what: &str) -> Vec<std::collections::HashMap<String, String>> {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                "pgbouncer",
                "-A",
                "-F",
                "\t",
                "-c",
                &format!("show {what}"),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "show {what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines().filter(|l| l.contains('\t'));
        let columns: Vec<String> = lines
            .next()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .unwrap_or_default();
        lines
            .map(|l| {
                columns
                    .iter()
                    .cloned()
                    .zip(l.split('\t').map(str::to_owned))
                    .collect()
            })
            .collect()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the `muster` CLI on `url`; its standard output, trimmed.
pub fn muster(url: &str, args: &[&str]) -> String {
    muster_with(url, &[], args)
}

/// [`muster`] with more environment.
pub fn muster_with(url: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .envs(env.iter().copied())
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

/// A new key of `role` for tenant `acme` on `url`.
pub fn new_key(url: &str, role: &str) -> String {
    new_key_with(url, &[], role)
}

/// [`new_key`] with more environment.
pub fn new_key_with(url: &str, env: &[(&str, &str)], role: &str) -> String {
    let out = muster_with(
        url,
        env,
        &["keys", "create", "--tenant", "acme", "--role", role],
    );
    out.lines().last().unwrap().trim().to_owned()
}

/// `muster ROLE` (`project`, `work`, ...) on `url`, with more environment;
/// killed when dropped.
pub fn spawn_role(role: &str, url: &str, env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .arg(role)
        .env("DATABASE_URL", url)
        .env("MUSTER_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A client of one API process with one key.
pub struct Client {
    pub http: reqwest::Client,
    pub address: String,
    pub key: String,
}

impl Client {
    /// Sends a request; the status and the JSON body (`null` if none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.unwrap();
        (
            answer.status(),
            answer.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
}
