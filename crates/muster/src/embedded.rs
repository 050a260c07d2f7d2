//! The embedded default: a private Postgres cluster under the data
//! directory, made from the system's PostgreSQL server binaries, used when
//! `DATABASE_URL` is not set.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::RngCore;
use sha2::Digest;
use sqlx::postgres::PgConnectOptions;

/// What went wrong bringing the cluster up, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No server binaries.
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found. Install them \
         (Debian/Ubuntu: `apt-get install postgresql`), or set DATABASE_URL to an existing \
         database, or run `docker compose up`"
    )]
    BinariesMissing,
    /// Running as root with no unprivileged user to run Postgres as.
    #[error(
        "muster runs as root, and initdb refuses to; no 'postgres' user exists to run the \
         embedded cluster as. Run muster as a regular user, create a 'postgres' user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    /// The cluster's user cannot reach the data directory.
    #[error(
        "the embedded cluster's directory {0} is not reachable by the 'postgres' user \
         (a parent directory is not searchable). Set MUSTER_DATA_DIR to a directory it can reach \
         (e.g. /var/tmp/muster) or set DATABASE_URL"
    )]
    Unreachable(PathBuf),
    /// A Postgres tool failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// Which.
        tool: &'static str,
        /// Its output.
        message: String,
    },
    /// File-system trouble.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A running private cluster.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    run_as: Option<String>,
    port: u16,
    password: String,
    started_here: bool,
}

const USER: &str = "muster";
const DATABASE: &str = "muster";

impl EmbeddedPostgres {
    /// Initialises the cluster on first use and starts it (or joins it if
    /// another muster process already runs it).
    pub fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::BinariesMissing)?;
        let run_as = if running_as_root() {
            Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .ok_or(EmbeddedError::NoUnprivilegedUser)?;
            Some("postgres".to_owned())
        } else {
            None
        };
        create_private_dir(data_dir)?;
        let cluster_dir = cluster_dir_for(data_dir, run_as.as_deref())?;
        let password_file = data_dir.join("pg.password");
        let mut cluster = EmbeddedPostgres {
            bin_dir,
            cluster_dir,
            run_as,
            port: 0,
            password: String::new(),
            started_here: false,
        };
        let initialised = cluster.cluster_dir.join("PG_VERSION").exists();
        if initialised && !password_file.exists() {
            cluster.set_aside()?;
        }
        if !cluster.cluster_dir.join("PG_VERSION").exists() {
            cluster.init(&password_file)?;
        }
        cluster.password = fs::read_to_string(&password_file)
            .map_err(io(format!("reading {}", password_file.display())))?
            .trim()
            .to_owned();
        if let Some(port) = cluster.running_port() {
            tracing::info!(port, "joining the embedded Postgres already running");
            cluster.port = port;
        } else {
            cluster.port = free_port()?;
            cluster.run_tool(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    &cluster.dir_str(),
                    "-l",
                    &format!("{}/postmaster.log", cluster.dir_str()),
                    "-o",
                    &format!("-p {}", cluster.port),
                ],
            )?;
            cluster.started_here = true;
            tracing::info!(port = cluster.port, dir = %cluster.cluster_dir.display(), "embedded Postgres started");
        }
        Ok(cluster)
    }

    /// How to connect to the cluster's `muster` database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.connect_options_for(DATABASE)
    }

    /// How to connect to another database of the cluster.
    pub fn connect_options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(USER)
            .password(&self.password)
            .database(database)
    }

    /// Stops the cluster if this process started it.
    pub fn stop(&self) {
        if !self.started_here {
            return;
        }
        match self.run_tool(
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", &self.dir_str()],
        ) {
            Ok(()) => tracing::info!("embedded Postgres stopped"),
            Err(e) => tracing::error!(error = %e, "could not stop the embedded Postgres"),
        }
    }

    fn init(&self, password_file: &Path) -> Result<(), EmbeddedError> {
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut secret);
        let password = hex::encode(secret);
        write_private(password_file, &password)?;
        fs::create_dir_all(&self.cluster_dir)
            .map_err(io(format!("creating {}", self.cluster_dir.display())))?;
        // initdb reads the password from a file that its user can read.
        let pwfile = self.cluster_dir.with_extension("initpw");
        write_private(&pwfile, &password)?;
        if let Some(user) = &self.run_as {
            chown(&self.cluster_dir, user)?;
            chown(&pwfile, user)?;
            let reachable = Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(&self.cluster_dir)
                .status()
                .is_ok_and(|s| s.success());
            if !reachable {
                let _ = fs::remove_file(&pwfile);
                return Err(EmbeddedError::Unreachable(self.cluster_dir.clone()));
            }
        }
        let result = self.run_tool(
            "initdb",
            &[
                "-D",
                &self.dir_str(),
                "-U",
                USER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        let _ = fs::remove_file(&pwfile);
        result?;
        // Loopback TCP only: no socket files, nothing on other interfaces.
        let conf = self.cluster_dir.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(io("reading postgresql.conf".into()))?;
        text.push_str("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n");
        fs::write(&conf, text).map_err(io("writing postgresql.conf".into()))?;
        tracing::info!(dir = %self.cluster_dir.display(), "embedded Postgres cluster initialised");
        Ok(())
    }

    /// Moves a cluster whose password is gone out of the way (stopping it
    /// first if it runs), so that a new one can be made in its place.
    ///
    /// This happens when a data directory was deleted while its cluster
    /// lived elsewhere (under `/var/tmp`, see [`cluster_dir_for`]), and a new
    /// one was made at the same path: without the password nothing can log
    /// in to the old cluster. Its files are kept, not deleted, and the
    /// operator is told where.
    fn set_aside(&self) -> Result<(), EmbeddedError> {
        if self.running_port().is_some() {
            self.run_tool(
                "pg_ctl",
                &["stop", "-w", "-m", "fast", "-D", &self.dir_str()],
            )?;
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let aside = self
            .cluster_dir
            .with_extension(format!("orphaned-{since_epoch}"));
        fs::rename(&self.cluster_dir, &aside)
            .map_err(io(format!("moving {} aside", self.cluster_dir.display())))?;
        tracing::warn!(
            old = %aside.display(),
            "the embedded cluster's password file is gone, so nothing can log in to it; \
             it was set aside and a new cluster is made (delete the old one when it is not needed)"
        );
        Ok(())
    }

    /// The port of a postmaster already running on this cluster.
    fn running_port(&self) -> Option<u16> {
        let pid_file = fs::read_to_string(self.cluster_dir.join("postmaster.pid")).ok()?;
        let status = self
            .tool("pg_ctl", &["status", "-D", &self.dir_str()])
            .ok()?;
        if !status.status.success() {
            return None;
        }
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn dir_str(&self) -> String {
        self.cluster_dir.display().to_string()
    }

    fn tool(&self, name: &str, args: &[&str]) -> std::io::Result<Output> {
        let program = self.bin_dir.join(name);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // The tools chdir into the cluster; a cwd the user cannot read would
        // make them fail with a confusing message.
        command.args(args).current_dir("/").output()
    }

    fn run_tool(&self, name: &'static str, args: &[&str]) -> Result<(), EmbeddedError> {
        let output = self
            .tool(name, args)
            .map_err(io(format!("running {name}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(EmbeddedError::Tool {
                tool: name,
                message: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    String::from_utf8_lossy(&output.stdout).trim()
                ),
            })
        }
    }
}

/// Where the server binaries are: `pg_config --bindir`, then Debian's
/// versioned directories (newest first, any major version), then `PATH`.
/// Tests that run clusters of their own find them the same way.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().map(|(_, p)| p))
        .chain(on_path)
        .find(|dir| has_tools(dir))
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> Result<u16, EmbeddedError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port".into()))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port".into()))?
        .port())
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(path).map_err(io(format!("resolving {}", path.display())))
}

/// Where the cluster lives: `<data dir>/pg`, unless the unprivileged user
/// the cluster runs as cannot reach the data directory (a clone inside a
/// root user's 0700 home). Then it lives where that user can, under
/// `/var/tmp`, at a place derived from the data directory's path (so every
/// start finds it again), and the operator is told where.
fn cluster_dir_for(data_dir: &Path, run_as: Option<&str>) -> Result<PathBuf, EmbeddedError> {
    let beside = absolute(&data_dir.join("pg"))?;
    let Some(user) = run_as else {
        return Ok(beside);
    };
    let reachable = Command::new("runuser")
        .args(["-u", user, "--", "test", "-x"])
        .arg(absolute(data_dir)?)
        .status()
        .is_ok_and(|s| s.success());
    if reachable || beside.join("PG_VERSION").exists() {
        return Ok(beside);
    }
    let digest = sha2::Sha256::digest(beside.as_os_str().as_encoded_bytes());
    let elsewhere = PathBuf::from(format!("/var/tmp/muster-{}/pg", &hex::encode(digest)[..16]));
    tracing::warn!(
        data_dir = %data_dir.display(),
        cluster = %elsewhere.display(),
        "the '{user}' user cannot reach the data directory; the embedded cluster lives elsewhere"
    );
    Ok(elsewhere)
}

fn create_private_dir(dir: &Path) -> Result<(), EmbeddedError> {
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(())
}

/// Writes a file only its owner can read (mode 0600).
pub fn write_private(path: &Path, contents: &str) -> Result<(), EmbeddedError> {
    fs::write(path, contents).map_err(io(format!("writing {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io(format!("protecting {}", path.display())))
}

fn chown(path: &Path, user: &str) -> Result<(), EmbeddedError> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let (uid, gid) = id("-u")
        .zip(id("-g"))
        .ok_or(EmbeddedError::NoUnprivilegedUser)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(io(format!("chown {}", path.display())))
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    move |source| EmbeddedError::Io { context, source }
}
