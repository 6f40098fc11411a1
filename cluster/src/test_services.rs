//! Real services on loopback for tests: PostgreSQL, started from the binaries Debian's
//! `postgresql` package installs (`cargo xtask test` installs it when it is missing).
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user in a
//! temporary directory it owns. Each server dies with the test process (a parent-death signal),
//! so a crashed test leaves nothing running. A server listens on a Unix socket in its own
//! directory (mode 0700) and on no TCP port: its trust authentication admits only who may enter
//! that directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set by `cargo xtask test` once it has installed the services: tests then fail rather than
/// skip when a service does not start.
pub const REQUIRE_ENV: &str = "WARDEN_REQUIRE_SERVICES";

/// A PostgreSQL server of its own, on a Unix socket in its directory, with trust authentication.
pub struct Postgres {
    /// The server while it runs (`None` between `stop` and `resume`).
    child: Option<Child>,
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
    SHARED.get_or_init(own_postgres).as_ref()
}

/// A server of the test's own, for tests that stop and restart it; `None` (with the reason
/// printed) when PostgreSQL is not installed here.
pub fn own_postgres() -> Option<Postgres> {
    match Postgres::start() {
        Ok(server) => Some(server),
        Err(reason) => {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("PostgreSQL did not start, and {REQUIRE_ENV} is set: {reason}");
            }
            eprintln!(
                "skipping a PostgreSQL test: {reason}. `cargo xtask test` installs PostgreSQL \
                 (Debian's `postgresql` package) when it can."
            );
            None
        }
    }
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

/// The port only names the socket file (`.s.PGSQL.PORT`), which is in the server's own directory.
const PORT: u16 = 5432;

impl Postgres {
    /// Creates a cluster in a temporary directory and starts it, waiting until it accepts
    /// connections.
    pub fn start() -> Result<Postgres, String> {
        remove_stale_directories();
        let bin = binaries()?;
        let owner = server_owner()?;
        // Under /tmp when there is one: a Unix socket's path must stay under 108 bytes, and
        // TMPDIR may be long.
        let base = Path::new("/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir_in(base)
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
        let port = PORT;
        let child = spawn_server(&bin, owner, dir.path(), port)?;
        let mut server = Postgres {
            child: Some(child),
            port,
            dir,
            bin,
            owner,
            databases: AtomicU32::new(0),
        };
        server.wait_ready(0)?;
        Ok(server)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// How much the log holds: a start waits for its own "ready" line, after this.
    fn log_length(&self) -> usize {
        std::fs::metadata(self.log()).map_or(0, |metadata| metadata.len() as usize)
    }

    /// Waits for the log line, written after `from`, that says the server accepts connections.
    fn wait_ready(&mut self, from: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read(self.log()).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
            if new.contains("ready to accept connections") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|child| child.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                self.stop();
                return Err(format!("PostgreSQL did not start: {}", new.trim()));
            }
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
        format!(
            "postgres://warden@localhost/{database}?host={}&port={}",
            self.dir.path().display(),
            self.port
        )
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

    /// Stops the server at once, as a crash would (committed data stays: commits wait for
    /// their WAL to be written).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGQUIT is PostgreSQL's immediate shutdown: the server and its backends exit now.
        // The child is not yet reaped, so its pid cannot have been reused.
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let _ = child.wait();
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn resume(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let from = self.log_length();
        self.child = Some(spawn_server(
            &self.bin,
            self.owner,
            self.dir.path(),
            self.port,
        )?);
        self.wait_ready(from)
    }

    /// `stop`, then `resume`.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.resume()
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
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    // Only this user's directories, or, as root, those made for the postgres user.
    let me = rustix::process::getuid().as_raw();
    let server = server_owner().ok().flatten().map(|(uid, _)| uid);
    for entry in entries.flatten() {
        let path = entry.path();
        let owner = entry.metadata().map(|metadata| metadata.uid()).ok();
        let ours = owner.is_some_and(|uid| uid == me || Some(uid) == server);
        let named = ours
            && entry
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
        .args(["-c", "listen_addresses=", "-p", &port.to_string(), "-k"])
        .arg(dir)
        // A test server: surviving the machine's crash is not tested, and these make it fast.
        // Commits still wait for their WAL to reach the kernel, so a stopped server keeps them.
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
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

/// An S3-compatible server on loopback: moto's (`moto_server`, from PyPI's `moto[server]`),
/// with one bucket. It keeps objects in memory and dies with the test process.
pub struct S3 {
    child: Child,
    port: u16,
    bucket: String,
    /// Over HTTPS, with a certificate the CA file this names issued.
    tls_ca: Option<PathBuf>,
}

/// Where `cargo xtask test` installs moto when it is missing (a virtual environment under the
/// default target directory; it also passes the binary's path in `WARDEN_MOTO_BIN`).
const MOTO_VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tools/moto-venv");

/// Set by `cargo xtask test` once it has installed moto: the object storage tests then fail
/// rather than skip when it does not start.
pub const REQUIRE_S3_ENV: &str = "WARDEN_REQUIRE_S3";

/// `moto_server`: `WARDEN_MOTO_BIN`, the virtual environment `cargo xtask test` makes, or the
/// `PATH`.
fn moto_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("WARDEN_MOTO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(MOTO_VENV).join("bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("moto_server"))
                .find(|binary| binary.exists())
        })
        .ok_or_else(|| "moto_server (PyPI's moto[server]) is not installed".to_string())
}

/// An S3 server of the test's own; `None` (with the reason printed) when moto is not installed.
pub fn own_s3() -> Option<S3> {
    match S3::start() {
        Ok(server) => Some(server),
        Err(reason) => {
            if std::env::var_os(REQUIRE_S3_ENV).is_some() {
                panic!("the S3 server did not start, and {REQUIRE_S3_ENV} is set: {reason}");
            }
            eprintln!(
                "skipping an object storage test: {reason}. `cargo xtask test` installs moto \
                 (PyPI's moto[server]) when it can."
            );
            None
        }
    }
}

impl S3 {
    /// Starts moto on a free loopback port, waits until it answers and creates the bucket
    /// `warden`.
    pub fn start() -> Result<S3, String> {
        Self::start_with(None)
    }

    /// `start`, serving HTTPS with `cert` and `key` (PEM files) for 127.0.0.1, which the CA in
    /// `ca` (a PEM file) issued.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Result<S3, String> {
        Self::start_with(Some((cert, key, ca)))
    }

    fn start_with(tls: Option<(&Path, &Path, &Path)>) -> Result<S3, String> {
        let binary = moto_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port for moto: {error}"))?
            .port();
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((cert, key, _)) = tls {
            command.arg("-c").arg(cert).arg("-k").arg(key);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure only makes one async-signal-safe system call (prctl).
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(command.spawn());
            // The parent-death signal follows this thread: it must outlive the server.
            loop {
                std::thread::park();
            }
        });
        let child = receiver
            .recv()
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let mut server = S3 {
            child,
            port,
            bucket: "warden".into(),
            tls_ca: tls.map(|(_, _, ca)| ca.to_path_buf()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.create_bucket() {
                Ok(200) => return Ok(server),
                Ok(status) => return Err(format!("moto refused to create a bucket: {status}")),
                Err(error) => {
                    if server.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline
                    {
                        return Err(format!("moto did not start: {error}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Creates the bucket: its status.
    fn create_bucket(&self) -> Result<u16, String> {
        let path = format!("/{}", self.bucket);
        let Some(ca) = &self.tls_ca else {
            return self.request("PUT", &path);
        };
        // Through warden's own client, trusting the CA, on a thread of its own (a test may call
        // this from inside a runtime).
        let roots = crate::blobs::roots(std::slice::from_ref(ca)).map_err(|e| e.to_string())?;
        let url = format!("{}{path}", self.endpoint());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                use object_store::client::HttpConnector;
                let client = crate::blobs::RustlsConnector { roots }
                    .connect(&object_store::ClientOptions::new())
                    .map_err(|error| error.to_string())?;
                let request = hyper::Request::put(url)
                    .body(object_store::client::HttpRequestBody::empty())
                    .map_err(|error| error.to_string())?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(response.status().as_u16())
            })
        })
        .join()
        .map_err(|_| "the bucket's request panicked".to_string())?
    }

    /// One plain HTTP/1.1 request without a body; its status.
    fn request(&self, method: &str, path: &str) -> Result<u16, String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|error| error.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|error| error.to_string())?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(|error| error.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .map_err(|error| error.to_string())?;
        let answer = String::from_utf8_lossy(&answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {answer}"))
    }

    /// The endpoint to give object_store (`http://127.0.0.1:PORT`, or `https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = match self.tls_ca {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The store's URL, with a prefix of the caller's (`s3://warden/PREFIX`).
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The credentials moto accepts (any).
    pub const KEY_ID: &'static str = "warden-test";
    pub const SECRET: &'static str = "warden-test-secret";
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
