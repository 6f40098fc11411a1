//! The host daemon end to end: real `warden serve` processes on loopback, called over HTTPS
//! as a caller would, with packages signed and loaded from a directory (and, in
//! `registry::daemon_revocation`, from a registry).

mod admin;
mod api;
mod auth;
pub(crate) mod cluster;
mod lifecycle;
mod load;
mod oidc;
mod provider;
mod queue;

use crate::support::*;
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden::build::Target;
use warden_package::{self as package, Manifest};

pub const KEY: &str = "daemon-test-key-0123456789";

/// A directory with signed packages and a manifest that loads them.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
}

/// The manifest's `[[nodes]]` for the packages every fixture has.
pub const NODES: &str = r#"
[[nodes]]
name = "text-transform"

[[nodes]]
name = "greeter"
grant = ["variables-read", "cache-read", "cache-write", "streaming"]

[[nodes]]
name = "limits"
limits = { preset = "default", fuel = 200000000, timeout = "3s", memory = "32MiB" }
concurrency = 4
queue = 4
"#;

pub fn sign(component: &Path, name: &str, version: &str, key: &SigningKey) -> Vec<u8> {
    let manifest = Manifest {
        name: name.into(),
        version: version.into(),
        description: String::new(),
        publisher: "acme".into(),
        capabilities: vec![],
        allowed_hosts: vec![],
        limits: "default".into(),
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    };
    package::pack(&std::fs::read(component).unwrap(), manifest, key).unwrap()
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = package::generate_key().unwrap();
        std::fs::create_dir(dir.path().join("packages")).unwrap();
        let fixture = Fixture { dir, key };
        fixture.add(
            "text-transform",
            "1.0.0",
            &example("text-transform", Target::Unknown),
        );
        fixture.add("greeter", "1.0.0", &example("greeter", Target::Unknown));
        // Built for WASI: its `sleep` node sleeps (the other target cannot).
        fixture.add(
            "limits",
            "0.1.0",
            &build_node("tests/nodes/limits", Target::Wasip2, &[]),
        );
        fixture.write_manifest("", NODES);
        fixture
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Signs `component` as `name@version` into the package directory.
    pub fn add(&self, name: &str, version: &str, component: &Path) {
        let bytes = sign(component, name, version, &self.key);
        std::fs::write(self.path(&format!("packages/{name}-{version}.wpkg")), bytes).unwrap();
    }

    /// Writes the manifest: listeners on free ports, the package directory, `host` settings
    /// (TOML lines for `[host]`) and `nodes`.
    pub fn write_manifest(&self, host: &str, nodes: &str) {
        self.write_manifest_with_api("", host, nodes);
    }

    /// Like `write_manifest`, with more `[api]` lines.
    pub fn write_manifest_with_api(&self, api: &str, host: &str, nodes: &str) {
        let text = format!(
            r#"[api]
listen = "127.0.0.1:0"
{api}

[metrics]
listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[host]
sync_interval = "off"
{host}

[[directories]]
name = "local"
path = "packages"
trusted_keys = ["{}"]
{nodes}"#,
            package::public_key_hex(&self.key)
        );
        std::fs::write(self.path("host.toml"), text).unwrap();
    }
}

/// A `warden serve` process.
pub struct Daemon {
    pub child: Child,
    pub api: String,
    pub metrics: String,
    pub ca: Vec<u8>,
    pub banner: String,
    pub stderr: PathBuf,
}

/// An answer: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.shown()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The start of the body, for failure messages.
    pub fn shown(&self) -> String {
        self.text().chars().take(2000).collect()
    }

    /// The error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error ({}): {}", self.status, self.shown()))
            .to_string()
    }
}

impl Daemon {
    /// Starts `warden serve` on the fixture's manifest and waits until it listens.
    pub fn start(fixture: &Fixture) -> Daemon {
        Daemon::try_start(fixture)
            .unwrap_or_else(|output| panic!("the daemon did not start: {output}"))
    }

    /// Starts it, or returns what it said when it did not start.
    pub fn try_start(fixture: &Fixture) -> Result<Daemon, String> {
        Daemon::try_start_with_env(fixture, &[])
    }

    /// Starts it with more environment variables.
    pub fn try_start_with_env(fixture: &Fixture, env: &[(&str, &str)]) -> Result<Daemon, String> {
        let stderr = fixture.path(&format!("daemon-{}.log", unique()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--manifest"])
            .arg(fixture.path("host.toml"))
            .env("WARDEN_API_KEY", KEY)
            .env_remove("WARDEN_MANIFEST")
            .env_remove("WARDEN_DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut banner = String::new();
        let mut api = String::new();
        let mut metrics = String::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                banner += &line;
                banner.push('\n');
                if let Some(address) = line.strip_prefix("metrics on https://") {
                    metrics = address.trim_end_matches("/metrics").to_string();
                }
                if let Some(address) = line.strip_prefix("listening on https://") {
                    api = address.to_string();
                    break;
                }
            }
        }
        if api.is_empty() {
            let _ = child.wait();
            return Err(format!(
                "{banner}{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ));
        }
        let pem = std::fs::read(fixture.path("data/tls/cert.pem")).unwrap();
        let ca = warden_host::tls::certificates_from_pem_or_der(&pem).unwrap()[0].clone();
        Ok(Daemon {
            child,
            api,
            metrics,
            ca,
            banner,
            stderr,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` (`HUP`, `TERM`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the daemon to exit, at most `limit`; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A request to the API with the test's key.
    pub fn call(&self, method: &str, path: &str, body: Option<&Json>) -> Reply {
        self.request(
            &self.api,
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {KEY}"))],
        )
    }

    /// `POST /v1/runs` with `body`.
    pub fn run(&self, body: Json) -> Reply {
        self.call("POST", "/v1/runs", Some(&body))
    }

    /// The metrics listener's text, read with the test's (admin) key.
    pub fn metrics_text(&self) -> String {
        let reply = self.request(
            &self.metrics,
            "GET",
            "/metrics",
            None,
            &[("authorization", &format!("Bearer {KEY}"))],
        );
        assert_eq!(reply.status, 200, "{}", reply.shown());
        reply.text()
    }

    /// A request to `address` with the headers given (and no key unless one is given).
    pub fn request(
        &self,
        address: &str,
        method: &str,
        path: &str,
        body: Option<&Json>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let bytes = body
            .map(|body| body.to_string().into_bytes())
            .unwrap_or_default();
        self.raw(address, method, path, bytes, headers)
    }

    pub fn raw(
        &self,
        address: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let ca = self.ca.clone();
        let address = address.to_string();
        block_on(async move {
            let tls = connect(&address, ca).await;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1")
                .header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = sender
                .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
                .await
                .unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec();
            Reply {
                status,
                headers,
                body,
            }
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// A TLS connection to `address` trusting only `ca`, speaking HTTP/1.1.
pub async fn connect(
    address: &str,
    ca: Vec<u8>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connect_tls(address.to_string(), ca, &[b"http/1.1"]).await
}

/// The value of `metric` with `labels` (such as `node="limits",outcome="ok"`) in a scrape.
pub fn metric(text: &str, metric: &str, labels: &str) -> Option<f64> {
    // Prometheus writes a metric without labels without braces.
    let prefix = match labels {
        "" => format!("{metric} "),
        labels => format!("{metric}{{{labels}}} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Runs `count` requests on threads of their own at once; their replies.
pub fn concurrently(daemon: &Daemon, bodies: Vec<Json>) -> Vec<Reply> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| scope.spawn(move || daemon.run(body)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

pub fn sleep_run(ms: u64) -> Json {
    json!({ "node": "limits/sleep", "inputs": { "ms": ms } })
}
