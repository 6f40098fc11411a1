//! Shared by the end-to-end tests: build nodes with the SDK (once per test process) and run them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use warden::build::{BuildOptions, Target, build};
use warden_host::{Error, NodeComponent, RunOutcome, RunRequest, Runtime, WasmSecurityConfig};

pub const TARGETS: [Target; 2] = [Target::Unknown, Target::Wasip2];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A crate path, a target and its features.
type BuildKey = (PathBuf, Target, String);

/// Built components, by what was built.
static BUILT: OnceLock<Mutex<HashMap<BuildKey, PathBuf>>> = OnceLock::new();

/// Builds the crate at `path` (relative to the repository) and returns its component.
pub fn build_node(path: &str, target: Target, features: &[&str]) -> PathBuf {
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    // One build at a time: builds of the same workspace would overwrite each other's output.
    let mut built = built.lock().unwrap_or_else(|poison| poison.into_inner());
    let key = (root().join(path), target, features.join(","));
    if let Some(component) = built.get(&key) {
        return component.clone();
    }
    let options = BuildOptions {
        target,
        features: features.iter().map(|f| f.to_string()).collect(),
        quiet: true,
        ..BuildOptions::default()
    };
    let components = build(&root().join(path), &options)
        .unwrap_or_else(|error| panic!("building {path}: {error}"));
    assert_eq!(components.len(), 1, "{path} should build one component");
    // Builds of one crate with other features write the same file: keep a copy per feature set.
    let mut component = components[0].clone();
    if !features.is_empty() {
        let copy =
            component.with_file_name(format!("{}-{}.wasm", stem(&component), features.join("-")));
        let partial = copy.with_extension("partial");
        std::fs::copy(&component, &partial).unwrap();
        std::fs::rename(&partial, &copy).unwrap();
        component = copy;
    }
    built.insert(key, component.clone());
    component
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// A test node from `tests/nodes/`.
pub fn test_node(name: &str, target: Target) -> NodeComponent {
    load(&build_node(&format!("tests/nodes/{name}"), target, &[]))
}

/// An example node from `nodes/`.
pub fn example(name: &str, target: Target) -> PathBuf {
    build_node(&format!("nodes/{name}"), target, &[])
}

pub fn load(path: &Path) -> NodeComponent {
    NodeComponent::from_bytes(std::fs::read(path).unwrap()).unwrap()
}

pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Prepares and runs one node of `component` under `config`.
pub fn run(
    runtime: &Runtime,
    component: &NodeComponent,
    config: &WasmSecurityConfig,
    request: RunRequest,
) -> Result<RunOutcome, Error> {
    block_on(async {
        let prepared = runtime.prepare(component, config).await?;
        prepared.run(request).await
    })
}

/// A request for node `name` with text/integer inputs given as pairs.
pub fn request(name: &str, inputs: &[(&str, warden_host::Value)]) -> RunRequest {
    RunRequest {
        node: Some(name.to_string()),
        context: warden_host::RunContext::for_node(name),
        inputs: inputs
            .iter()
            .map(|(n, v)| warden_host::Field::new(*n, v.clone()))
            .collect(),
        ..RunRequest::default()
    }
}

pub fn output<'a>(outcome: &'a RunOutcome, name: &str) -> &'a warden_host::Value {
    &outcome
        .outputs
        .iter()
        .find(|field| field.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .value
}

/// Every message of a run's log, one a line.
pub fn log_text(outcome: &RunOutcome) -> String {
    outcome
        .log
        .iter()
        .map(|record| record.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts a server on a loopback port, on a thread and runtime of its own; each connection is
/// handed to `handle` on a task of its own. Returns the address it listens on.
pub fn serve_loopback<F, Fut>(handle: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
    });
    receiver.recv().unwrap()
}

/// A small xorshift generator: tests that want randomness print their seed so a failure can be
/// replayed.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// Runs `test` (an ignored test of this binary, by its full name) alone in a child process,
/// for tests that measure the process (its memory, its descriptors) and must not count other
/// tests' work. Panics, with the child's output, unless it passes; returns its stdout.
pub fn in_child(test: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child {test} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test}: {stdout}"
    );
    println!("{stdout}");
    stdout
}

/// Runs the `warden` binary with `args` and returns what it did.
pub fn warden(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

/// A TLS connection to `address` trusting only `ca`, offering the `alpn` protocols.
pub async fn connect_tls(
    address: String,
    ca: Vec<u8>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}
