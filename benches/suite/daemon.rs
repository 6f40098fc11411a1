//! Workload 6: the daemon (`warden serve`, the binary operators run) serving runs of a no-op node
//! over HTTPS, with each kind of credential, over HTTP/1.1 and HTTP/2, against the ceiling of the
//! HTTP layer: a plain hyper server on the same TLS configuration answering the same bytes.
//!
//! The load generator is `oha` (crates.io). `cargo xtask bench` installs it and names it in
//! `WARDEN_BENCH_OHA`; without it (and in the quick pass) every configuration answers one request
//! of the bench's own client, which proves the setup and measures nothing.

use super::provider::{Provider, Signer};
use super::support;
use super::{Scale, Table, human};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The operator's key, given to the daemon in `WARDEN_API_KEY`.
const OPERATOR_KEY: &str = "bench-operator-key-0123456789";

/// What a run of the no-op node sends.
const BODY: &str = r#"{"node":"bench/noop"}"#;

/// A credential: what it is called in the report, and the header that carries it.
struct Credential {
    kind: &'static str,
    header: &'static str,
    value: String,
}

/// `warden serve` running on loopback; killed when dropped.
pub(super) struct Served {
    child: Child,
    pub(super) address: String,
    pub(super) ca: Vec<u8>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Signs the bench node into `dir/packages` and writes `dir/host.toml`: the node, both token
/// issuers (people's OIDC and the executor's, keys from `provider`), and queues and connection
/// caps large enough that a load generator on one loopback address meets none of them.
fn write_fixture(dir: &Path, bytes: &[u8], provider: &Provider) {
    let key = warden_package::generate_key().expect("a signing key");
    let package = warden_package::pack(bytes, super::package_manifest("0.1.0"), &key)
        .expect("sign the bench node");
    std::fs::create_dir_all(dir.join("packages")).expect("the package directory");
    std::fs::write(dir.join("packages/bench-0.1.0.wpkg"), package).expect("write the package");
    std::fs::write(dir.join("provider-ca.pem"), &provider.ca_pem).expect("write the CA");
    let text = format!(
        r#"[api]
listen = "127.0.0.1:0"
max_connections = 4096
max_connections_per_ip = 4096
auth_failures_per_minute = 100000

[storage]
data_dir = "data"

[host]
sync_interval = "off"
concurrency = 64
queue = 4096
queue_timeout = "60s"
shutdown_grace = "1s"

[[directories]]
name = "local"
path = "packages"
trusted_keys = ["{key}"]

[[nodes]]
name = "bench"
grant = ["storage-read", "http-get"]
queue = 4096

[auth.oidc]
issuer = "{issuer}"
audience = "warden"
ca_certs = ["provider-ca.pem"]

[auth.executor]
issuer = "flow-like"
jwks_url = "{issuer}/executor-jwks"
ca_certs = ["provider-ca.pem"]
"#,
        key = warden_package::public_key_hex(&key),
        issuer = provider.issuer,
    );
    std::fs::write(dir.join("host.toml"), text).expect("write the manifest");
}

/// Runs `warden serve --manifest host.toml ARGS` while the daemon is stopped; its stdout.
fn offline(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(dir.join("host.toml"))
        .args(args)
        .env_remove("WARDEN_MANIFEST")
        .output()
        .expect("run warden");
    assert!(
        output.status.success(),
        "warden serve {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The store's credentials: an owner's API key, and a person (`ada`, also the OIDC subject) with
/// the right to run, and her personal access token.
fn provision(dir: &Path) -> (String, String) {
    let owner = offline(dir, &["--create-owner", "root"]);
    let api_key = owner
        .split_whitespace()
        .find(|word| word.starts_with("wdh_key_"))
        .expect("the owner's API key")
        .to_string();
    offline(dir, &["admin", "add-user", "ada", "--subject", "ada-sub"]);
    offline(
        dir,
        &[
            "admin",
            "set-role",
            "runner",
            "--permissions",
            "ExecuteBoards",
        ],
    );
    offline(dir, &["admin", "assign", "ada", "runner"]);
    let issued: Json = serde_json::from_str(&offline(
        dir,
        &["admin", "issue", "ada", "--expires-in", "1d"],
    ))
    .expect("the issued PAT, as JSON");
    let pat = issued["secret"].as_str().expect("the PAT").to_string();
    (api_key, pat)
}

fn start(dir: &Path) -> Served {
    start_with(dir, OPERATOR_KEY, &[])
}

/// `warden serve` on `dir/host.toml` with `key` as the operator's key and more environment
/// variables; waits until it listens.
pub(super) fn start_with(dir: &Path, key: &str, env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(dir.join("host.toml"))
        .env("WARDEN_API_KEY", key)
        .envs(env.iter().copied())
        // One log line per run would be measured too.
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_MANIFEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start warden serve");
    let mut address = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(found) = line.strip_prefix("listening on https://") {
                address = Some(found.to_string());
                break;
            }
        }
    }
    let Some(address) = address else {
        let _ = child.kill();
        panic!("the daemon did not start (its errors are above)");
    };
    let pem = std::fs::read(dir.join("data/tls/cert.pem")).expect("the dev certificate");
    let ca =
        warden_host::tls::certificates_from_pem_or_der(&pem).expect("a certificate")[0].clone();
    Served { child, address, ca }
}

/// The five kinds of caller, each with a credential the daemon accepts for running the node.
fn credentials(provider: &Provider, api_key: String, pat: String) -> Vec<Credential> {
    let people = Signer::es256("bench-people");
    let executor = Signer::es256("bench-executor");
    {
        let mut state = provider.state();
        state.keys = vec![people.jwk()];
        state.executor_keys = vec![executor.jwk()];
    }
    let now = now();
    // Within the executor's default 15 minute lifetime, and long enough for the whole bench.
    let exp = now + 840;
    let oidc = people.token(
        json!({}),
        &json!({"iss": provider.issuer, "aud": "warden", "sub": "ada-sub",
                "iat": now - 5, "nbf": now - 5, "exp": exp}),
    );
    let run = executor.token(
        json!({}),
        &json!({"iss": "flow-like", "aud": "warden-executor", "sub": "executor-1",
                "iat": now - 5, "nbf": now - 5, "exp": exp, "run_id": "bench",
                "app_id": "app-a", "board_id": "board-a"}),
    );
    vec![
        Credential {
            kind: "operator key",
            header: "x-api-key",
            value: OPERATOR_KEY.into(),
        },
        Credential {
            kind: "API key",
            header: "x-api-key",
            value: api_key,
        },
        Credential {
            kind: "personal access token",
            header: "authorization",
            value: format!("PAT {pat}"),
        },
        Credential {
            kind: "executor JWT (ES256)",
            header: "authorization",
            value: format!("Bearer {run}"),
        },
        Credential {
            kind: "OIDC access token (ES256)",
            header: "authorization",
            value: format!("Bearer {oidc}"),
        },
    ]
}

/// One POST of the run body over a new TLS connection speaking `h2` or HTTP/1.1: the status and
/// the answer's bytes.
async fn post(address: &str, ca: &[u8], h2: bool, header: Option<(&str, &str)>) -> (u16, Bytes) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let stream = support::connect_tls(address.to_string(), ca.to_vec(), alpn).await;
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut request = hyper::Request::post(format!("https://{address}/v1/runs"))
        .header("content-type", "application/json");
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from_static(
            BODY.as_bytes(),
        )))
        .expect("a request");
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("an h2 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("an HTTP/1.1 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await
    };
    let response = response.expect("an answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    (status, bytes)
}

/// The ceiling: hyper on the daemon's own TLS configuration (its certificate, its ALPN), HTTP/1.1
/// and HTTP/2, answering every request with `answer` as the daemon sends a run's answer
/// (streamed: chunked on HTTP/1.1); its address. It runs on a 2-thread runtime of its own, as the
/// daemon does.
fn ceiling(data: &Path, answer: Bytes) -> String {
    let tls =
        warden_registry::server::tls::server_config(data, None, None).expect("the TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let _ = sender.send(listener.local_addr().expect("its address").to_string());
            while let Ok((stream, _)) = listener.accept().await {
                // As the daemon's server does.
                let _ = stream.set_nodelay(true);
                let (acceptor, answer) = (acceptor.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let answer = answer.clone();
                            async move {
                                // Read the request's body, as the daemon does.
                                let _ = request.into_body().collect().await;
                                let frame = Ok::<_, std::convert::Infallible>(Frame::data(answer));
                                let body =
                                    http_body_util::StreamBody::new(futures_util::stream::iter([
                                        frame,
                                    ]));
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(body)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    receiver.recv().expect("the ceiling's address")
}

/// What oha measured: runs per second, p50, p99, and answers other than 200.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    failed: u64,
}

/// oha, when `cargo xtask bench` installed it (or it is on the PATH).
fn oha() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WARDEN_BENCH_OHA") {
        return Some(PathBuf::from(path));
    }
    Command::new("oha")
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|_| PathBuf::from("oha"))
}

/// `connections` connections sending runs for `length`, with oha.
fn load(
    oha: &Path,
    address: &str,
    h2: bool,
    header: Option<&Credential>,
    connections: usize,
    length: Duration,
) -> Load {
    let mut command = Command::new(oha);
    command
        .args(["--no-tui", "--output-format", "json", "--insecure", "-w"])
        .args(["-z", &format!("{}ms", length.as_millis())])
        .args(["-c", &connections.to_string()])
        .args([
            "-m",
            "POST",
            "-d",
            BODY,
            "-H",
            "content-type: application/json",
        ]);
    if let Some(credential) = header {
        command.args([
            "-H",
            &format!("{}: {}", credential.header, credential.value),
        ]);
    }
    if h2 {
        command.arg("--http2");
    }
    command.arg(format!("https://{address}/v1/runs"));
    let output = command.output().expect("run oha");
    assert!(
        output.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Json = serde_json::from_slice(&output.stdout).expect("oha's JSON report");
    let seconds = |value: &Json| Duration::from_secs_f64(value.as_f64().unwrap_or(0.0));
    let statuses = report["statusCodeDistribution"].as_object();
    let failed = statuses.map_or(0, |statuses| {
        statuses
            .iter()
            .filter(|(status, _)| status.as_str() != "200")
            .map(|(_, count)| count.as_u64().unwrap_or(0))
            .sum()
    }) + report["errorDistribution"].as_object().map_or(0, |errors| {
        errors
            .values()
            .map(|count| count.as_u64().unwrap_or(0))
            .sum()
    });
    Load {
        per_second: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50: seconds(&report["latencyPercentiles"]["p50"]),
        p99: seconds(&report["latencyPercentiles"]["p99"]),
        failed,
    }
}

/// 6. The daemon over HTTPS.
pub fn daemon(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let provider = Provider::start();
    write_fixture(dir.path(), bytes, &provider);
    let (api_key, pat) = provision(dir.path());
    // The token issuers' keys are in place before the daemon fetches them, at its start.
    let credentials = credentials(&provider, api_key, pat);
    let served = start(dir.path());
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    // Every credential runs the node over both protocols, and the ceiling answers what the
    // daemon answered.
    let mut answer = Bytes::new();
    for credential in &credentials {
        for h2 in [false, true] {
            let (status, body) = tokio.block_on(post(
                &served.address,
                &served.ca,
                h2,
                Some((credential.header, &credential.value)),
            ));
            assert_eq!(
                status,
                200,
                "{} over {}: {}",
                credential.kind,
                if h2 { "h2" } else { "HTTP/1.1" },
                String::from_utf8_lossy(&body)
            );
            answer = body;
        }
    }
    let ceiling = ceiling(&dir.path().join("data"), answer);
    for h2 in [false, true] {
        let (status, _) = tokio.block_on(post(&ceiling, &served.ca, h2, None));
        assert_eq!(status, 200, "the ceiling answers");
    }
    let oha = match (scale.full, oha()) {
        (true, Some(oha)) => oha,
        (true, None) => {
            eprintln!(
                "suite: 6. the daemon: oha is not installed (`cargo xtask bench` installs it), so \
                 the daemon is not measured"
            );
            return;
        }
        (false, _) => return,
    };
    let length = Duration::from_secs(3);
    let mut table = Table::new(
        "6. The daemon over HTTPS",
        "Runs of the no-op node (`POST /v1/runs`, `{\"node\":\"bench/noop\"}`) served by `warden \
         serve` (the binary, 2 worker threads, its log at `warn`) on loopback, measured with \
         `oha` for 3 s per row, each connection sending one request after another; against the \
         ceiling of the HTTP layer: hyper on the same TLS configuration (certificate, ALPN, \
         rustls with ring) answering the same bytes, streamed as the daemon streams them. The \
         load generator shares the 2 cores with the server. Targets: at least 70% of the \
         ceiling's runs per second; p99 under 2 ms at 16 connections.",
        &[
            "caller",
            "protocol",
            "connections",
            "runs/s",
            "p50",
            "p99",
            "of the ceiling's runs/s",
            "not 200",
        ],
    );
    // For experiments: other connection counts, e.g. `WARDEN_BENCH_CONNECTIONS=1,16`.
    let counts: Vec<usize> = std::env::var("WARDEN_BENCH_CONNECTIONS")
        .ok()
        .map(|text| {
            text.split(',')
                .filter_map(|count| count.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![16, 64]);
    for connections in counts {
        for h2 in [false, true] {
            let protocol = if h2 { "HTTP/2" } else { "HTTP/1.1" };
            eprintln!("suite: 6. {protocol}, {connections} connections");
            let top = load(&oha, &ceiling, h2, None, connections, length);
            table.row(vec![
                "hyper ceiling".into(),
                protocol.into(),
                connections.to_string(),
                format!("{:.0}", top.per_second),
                human(top.p50),
                human(top.p99),
                "100%".into(),
                top.failed.to_string(),
            ]);
            for credential in &credentials {
                let measured = load(
                    &oha,
                    &served.address,
                    h2,
                    Some(credential),
                    connections,
                    length,
                );
                table.row(vec![
                    credential.kind.into(),
                    protocol.into(),
                    connections.to_string(),
                    format!("{:.0}", measured.per_second),
                    human(measured.p50),
                    human(measured.p99),
                    format!(
                        "{:.0}%",
                        100.0 * measured.per_second / top.per_second.max(1.0)
                    ),
                    measured.failed.to_string(),
                ]);
            }
        }
    }
    tables.push(table);
}
