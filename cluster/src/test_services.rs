//! Real services on loopback for tests: PostgreSQL, started from the binaries Debian's
//! `postgresql` package installs (`cargo xtask test` installs it when it is missing).
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user in a
//! temporary directory it owns. Each server dies with the test process (a parent-death signal),
//! so a crashed test leaves nothing running.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set by `cargo xtask test` once it has installed the services: tests then fail rather than
/// skip when a service does not start.
pub const REQUIRE_ENV: &str = "WARDEN_REQUIRE_SERVICES";

/// A PostgreSQL server of its own, on a loopback port, with trust authentication.
pub struct Postgres {
    child: Child,
    port: u16,
    // Holds the data directory for the server's lifetime; removed when dropped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    databases: AtomicU32,
}

/// The server every test of a test binary shares; `None` (with the reason printed) when
/// PostgreSQL is not installed here.
pub fn shared_postgres() -> Option<&'static Postgres> {
    static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
    SHARED
        .get_or_init(|| match Postgres::start() {
            Ok(server) => Some(server),
            Err(reason) => {
                if std::env::var_os(REQUIRE_ENV).is_some() {
                    panic!("PostgreSQL did not start, and {REQUIRE_ENV} is set: {reason}");
                }
                eprintln!(
                    "skipping the PostgreSQL tests: {reason}. `cargo xtask test` installs \
                     PostgreSQL (Debian's `postgresql` package) when it can."
                );
                None
            }
        })
        .as_ref()
}

/// Where the server binaries are: `WARDEN_PG_BIN`, the newest `/usr/lib/postgresql/*/bin`, or
/// the `PATH`.
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("WARDEN_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
        })
        .ok_or_else(|| "PostgreSQL's initdb and postgres are not installed".to_string())
}

/// The uid and gid of the `postgres` user, when the server must not run as this user (root).
fn server_owner() -> Result<Option<(u32, u32)>, String> {
    if !rustix::process::getuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|error| error.to_string())?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run PostgreSQL as".into()
        })
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    Ok(listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port())
}

impl Postgres {
    /// Creates a cluster in a temporary directory and starts it, waiting until it accepts
    /// connections.
    pub fn start() -> Result<Postgres, String> {
        remove_stale_directories();
        let bin = binaries()?;
        let owner = server_owner()?;
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .map_err(|error| format!("cannot create a directory for PostgreSQL: {error}"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|error| format!("cannot give the directory to postgres: {error}"))?;
        }
        let data = dir.path().join("data");
        let output = as_owner(Command::new(bin.join("initdb")), owner)
            .args([
                "--auth=trust",
                "--username=warden",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg("--no-sync")
            .arg("-D")
            .arg(&data)
            .output()
            .map_err(|error| format!("cannot run initdb: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let port = free_port()?;
        let child = spawn_server(&bin, owner, dir.path(), port)?;
        let server = Postgres {
            child,
            port,
            dir,
            bin,
            owner,
            databases: AtomicU32::new(0),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Waits for the log line that says the server accepts connections.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        loop {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            if log[seen.min(log.len())..].contains("ready to accept connections") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("PostgreSQL did not start in 60 s: {}", log.trim()));
            }
            seen = log.rfind('\n').unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of the server's `postgres` database, for administration.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://warden@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database of its own for one test and returns its URL.
    pub async fn fresh_database(&self) -> Result<String, String> {
        use sqlx::Connection;
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&self.admin_url())
            .await
            .map_err(|error| error.to_string())?;
        sqlx::raw_sql(&format!(
            "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        ))
        .execute(&mut admin)
        .await
        .map_err(|error| error.to_string())?;
        Ok(self.url(&name))
    }

    /// Stops the server at once (as a crash would) and starts it again on the same port and
    /// data: for tests of surviving a database restart.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = spawn_server(&self.bin, self.owner, self.dir.path(), self.port)?;
        self.wait_ready()
    }

    fn stop(&mut self) {
        // SIGQUIT is PostgreSQL's immediate shutdown: the server and its backends exit now.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared server's directory outlives its test process (statics are never dropped; the
/// server itself dies with the process): remove those of servers that are gone. A directory
/// younger than ten minutes may be one that another test process is still setting up.
fn remove_stale_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry
            .file_name()
            .to_string_lossy()
            .starts_with("warden-pg-");
        let old = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        let running = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|pid| pid.lines().next().map(str::to_owned))
            .is_some_and(|pid| Path::new("/proc").join(pid.trim()).exists());
        if named && old && !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// Starts `postgres` on `port`, logging to `server.log` in `dir`, from a thread that lives as
/// long as the process: the server is sent SIGQUIT when the thread that started it ends.
fn spawn_server(
    bin: &Path,
    owner: Option<(u32, u32)>,
    dir: &Path,
    port: u16,
) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|error| format!("cannot open PostgreSQL's log: {error}"))?;
    if let Some((uid, gid)) = owner {
        // The server appends to it as postgres.
        let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
    }
    let stderr = log.try_clone().map_err(|error| error.to_string())?;
    let mut command = as_owner(Command::new(bin.join("postgres")), owner);
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            &port.to_string(),
            "-k",
        ])
        .arg(dir)
        // A test server: durability is not what is tested, and these make it fast.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    // SAFETY: the closure only makes one async-signal-safe system call (prctl).
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::QUIT))
                .map_err(std::io::Error::from)
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let spawned = command.spawn();
        let _ = sender.send(spawned);
        // The parent-death signal follows this thread: it must outlive the server.
        loop {
            std::thread::park();
        }
    });
    receiver
        .recv()
        .map_err(|error| error.to_string())?
        .map_err(|error| format!("cannot start postgres: {error}"))
}
