//! The host manifest (`host.toml`): listeners, where nodes come from, the nodes to load and
//! what each is granted, the data directory, and the host's own bounds.
//!
//! A manifest is refused whole: a TOML or type error names its line and column (toml's own
//! message), and every value that parses but is wrong (an unknown capability, a bad size, a
//! source that does not exist) is listed at once, each with its line and field.
//! docs/daemon.md describes every field.

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use warden_host::allowlist::AllowedHosts;
use warden_host::limits::MAX_TIMEOUT;
use warden_host::units::{parse_duration, parse_size};
use warden_host::{Capabilities, Limits, Preset};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest {} is not valid: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("the manifest {} has {} problem{}:\n{}", path.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|problem| format!("  {problem}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One thing wrong in a manifest: where, which field, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when the problem is not at one place (a required field missing).
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.field, self.message),
            line => write!(f, "line {line}, {}: {}", self.field, self.message),
        }
    }
}

/// Largest manifest read: far beyond any real one, small enough that a wrong path (a disk
/// image, a log) is refused rather than read.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Nodes a manifest may load.
pub const MAX_NODES: usize = 1024;

/// Failed authentications a source may make a minute unless `[api]` says otherwise.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;

/// A checked manifest: every path absolute, every value parsed.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The SHA-256 of its bytes: reloads record it, and the watcher compares it.
    pub sha256: String,
    pub api: Api,
    pub metrics: Option<MetricsListener>,
    /// Storage scopes (`storage.redb`), compiled code (`code/`), install state (`state/`),
    /// node files (`files/`), the development certificate (`tls/`) and the audit log.
    pub data_dir: PathBuf,
    pub host: HostSettings,
    pub registries: Vec<RegistrySource>,
    pub directories: Vec<DirectorySource>,
    pub nodes: Vec<NodeEntry>,
    /// How the workflow executor's tokens are checked; executor tokens are refused without.
    pub executor: Option<ExecutorAuth>,
    /// How people's OpenID Connect access tokens are checked; refused without.
    pub oidc: Option<OidcAuth>,
    /// `[cluster]`: this daemon is one of many sharing a PostgreSQL database.
    pub cluster: Option<Cluster>,
}

/// The environment variable that holds the cluster's database URL when `[cluster]` names none.
pub const DEFAULT_DATABASE_URL_ENV: &str = "WARDEN_DATABASE_URL";

/// `[cluster]`: where the shared state is. The URL carries a password, so the manifest names
/// the environment variable that holds it, never the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub database_url_env: String,
    /// Connections this daemon opens to the database at most.
    pub max_connections: u32,
    /// How long the daemon waits at start for its database to answer.
    pub connect_timeout: Duration,
    /// How long a worker holds a queued run without renewing its lease: a daemon that dies
    /// mid-run has its runs taken again this long after its last renewal.
    pub lease: Duration,
    /// Workers taking queued runs on this daemon (`None`: as many as `host.concurrency`).
    pub workers: Option<u32>,
    /// Times a queued run is taken at most: a run whose daemons died this often is answered
    /// `run_lost` instead of being taken again.
    pub max_attempts: u32,
    /// Unfinished queued runs per caller, and in all.
    pub max_queued_per_caller: u32,
    pub max_queued: u32,
    /// How long a run may wait in the queue before it is answered `queue_expired`.
    pub max_queue_wait: Duration,
    /// Where the daemons share the packages they install (`blobs`, or `WARDEN_BLOBS_URL`);
    /// `None`: each daemon downloads its packages from the registry.
    pub blobs: Option<warden_cluster::BlobSettings>,
}

/// The environment variable that names the cluster's object storage when `[cluster]` names none.
pub const BLOBS_URL_ENV: &str = "WARDEN_BLOBS_URL";

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            database_url_env: DEFAULT_DATABASE_URL_ENV.to_string(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            workers: None,
            max_attempts: 3,
            max_queued_per_caller: 1000,
            max_queued: 100_000,
            max_queue_wait: Duration::from_secs(24 * 3600),
            blobs: None,
        }
    }
}

/// `[auth.executor]`: the issuer, audience, keys and lifetimes of executor tokens.
#[derive(Clone, Debug)]
pub struct ExecutorAuth {
    pub policy: crate::auth::jwt::Policy,
    pub keys: Vec<crate::auth::jwt::EcKey>,
    /// Keys fetched from `jwks_url`, beside the PEM keys.
    pub jwks: Option<crate::auth::keyset::KeySetConfig>,
}

/// `[auth.oidc]`: the provider people sign in with, and what its access tokens must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcAuth {
    pub policy: crate::auth::oidc::OidcPolicy,
    /// Discovery at the issuer; its endpoints must be on the issuer's origin or on
    /// `provider_origins`.
    pub keys: crate::auth::keyset::KeySetConfig,
}

#[derive(Clone, Debug)]
pub struct Api {
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub keys: Vec<ApiKey>,
    /// The largest request body.
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Failed authentications a source may make a minute (and at once) before it gets 429.
    pub auth_failures_per_minute: u32,
}

/// A caller's key, kept as its SHA-256: the manifest holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    /// May reload the daemon and read every caller's run records. The operator's keys (from
    /// the command line or the environment) are; a manifest key is when it says so.
    pub admin: bool,
}

#[derive(Clone, Debug)]
pub struct MetricsListener {
    pub listen: String,
}

#[derive(Clone, Debug)]
pub struct HostSettings {
    /// Runs at once across every node.
    pub concurrency: u32,
    /// Requests that may wait for a host-wide slot; past it, 429.
    pub queue: usize,
    /// How long a request waits in a queue before it gets 429.
    pub queue_timeout: Duration,
    /// Finished runs whose records `GET /v1/runs/{id}` returns, at most.
    pub run_records: usize,
    /// How long a finished run's record is kept.
    pub run_record_ttl: Duration,
    /// On SIGTERM, how long runs in flight may take to finish before they are stopped.
    pub shutdown_grace: Duration,
    /// How long the runs of a node that a reload removed may take to finish before they are
    /// stopped. Runs of a node blocked by a sync (a revoked key, a version no longer listed) are stopped
    /// at once.
    pub stop_grace: Duration,
    /// Reload when the manifest file changes.
    pub watch: bool,
    /// How often the daemon syncs its registries (blocking revoked and unlisted nodes); `None`
    /// syncs only at start and at each reload.
    pub sync_interval: Option<Duration>,
    /// Keep compiled code in `data_dir/code`.
    pub code_cache: bool,
}

#[derive(Clone, Debug)]
pub struct RegistrySource {
    pub name: String,
    pub url: String,
    /// The registry's root key (hex), pinned.
    pub root_key: String,
    /// Certificates to trust for it beside the system's roots (PEM files).
    pub ca_certs: Vec<PathBuf>,
    /// A file holding the token the daemon reads the registry with (the registry asks for
    /// one to read its index and packages).
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct DirectorySource {
    pub name: String,
    pub path: PathBuf,
    /// A package from here must carry a signature by one of these.
    pub trusted_keys: Vec<VerifyingKey>,
}

/// A node (a package) to load, and what it is granted.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    /// The package's name.
    pub name: String,
    pub version: semver::VersionReq,
    /// The registry or directory it comes from.
    pub source: String,
    pub grant: Capabilities,
    pub allowed_hosts: Vec<String>,
    /// The limits preset named (or the one explicit limits start from).
    pub preset: Preset,
    pub limits: Limits,
    /// Runs of this node at once.
    pub concurrency: u32,
    /// Requests that may wait for one of those; past it, 429.
    pub queue: usize,
    /// Link wasi:filesystem (the node instance's private directory).
    pub allow_wasi: bool,
    /// When not empty, the package must carry a signature by one of these (beyond the
    /// directory's trust): pins a node to its publisher in a directory several share.
    pub trusted_keys: Vec<VerifyingKey>,
}

impl Manifest {
    /// This manifest with the settings that hold until a restart (listeners, TLS, the data
    /// directory, the host's bounds) taken from `started`; and the names of those that differ.
    /// What a reload applies is the rest: the API keys, the sources and the nodes.
    pub fn keeping_fixed(mut self, started: &Manifest) -> (Manifest, Vec<&'static str>) {
        let mut changed = Vec::new();
        let api = &started.api;
        let fields = [
            ("api.listen", self.api.listen != api.listen),
            ("api.tls_cert", self.api.tls_cert != api.tls_cert),
            ("api.tls_key", self.api.tls_key != api.tls_key),
            (
                "api.max_body",
                self.api.max_body_bytes != api.max_body_bytes,
            ),
            (
                "api.max_connections",
                self.api.max_connections != api.max_connections,
            ),
            (
                "api.max_connections_per_ip",
                self.api.max_connections_per_ip != api.max_connections_per_ip,
            ),
            (
                "api.auth_failures_per_minute",
                self.api.auth_failures_per_minute != api.auth_failures_per_minute,
            ),
            (
                "metrics.listen",
                self.metrics.as_ref().map(|m| &m.listen)
                    != started.metrics.as_ref().map(|m| &m.listen),
            ),
            ("storage.data_dir", self.data_dir != started.data_dir),
            ("cluster", self.cluster != started.cluster),
            (
                "host",
                format!("{:?}", self.host) != format!("{:?}", started.host),
            ),
        ];
        for (field, differs) in fields {
            if differs {
                changed.push(field);
            }
        }
        let keys = std::mem::take(&mut self.api.keys);
        self.api = started.api.clone();
        self.api.keys = keys;
        self.metrics = started.metrics.clone();
        self.data_dir = started.data_dir.clone();
        self.cluster = started.cluster.clone();
        self.host = started.host.clone();
        for node in &mut self.nodes {
            node.concurrency = node.concurrency.min(self.host.concurrency);
        }
        (self, changed)
    }
}

// What the file holds, before it is checked. Fields validated after parsing are `Spanned`, so
// that their problems can name their line.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    api: RawApi,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    directories: Vec<RawDirectory>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    auth: RawAuth,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    database_url_env: Option<Spanned<String>>,
    max_connections: Option<Spanned<u32>>,
    connect_timeout: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
    workers: Option<Spanned<u32>>,
    max_attempts: Option<Spanned<u32>>,
    max_queued_per_caller: Option<Spanned<u32>>,
    max_queued: Option<Spanned<u32>>,
    max_queue_wait: Option<Spanned<String>>,
    blobs: Option<Spanned<String>>,
    blobs_endpoint: Option<Spanned<String>>,
    blobs_region: Option<Spanned<String>>,
    #[serde(default)]
    blobs_ca_certs: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    executor: Option<RawExecutor>,
    oidc: Option<RawOidc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: Spanned<String>,
    audience: Spanned<String>,
    algorithms: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    provider_origins: Vec<Spanned<String>>,
    #[serde(default)]
    ca_certs: Vec<Spanned<String>>,
    key_ttl: Option<Spanned<String>>,
    key_refresh_interval: Option<Spanned<String>>,
    leeway: Option<Spanned<String>>,
    max_lifetime: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    issuer: Spanned<String>,
    audience: Option<String>,
    /// PEM files of P-256 public keys.
    #[serde(default)]
    public_keys: Vec<Spanned<String>>,
    /// An environment variable holding PEM public keys.
    public_keys_env: Option<Spanned<String>>,
    /// A JWKS URL the keys are fetched from.
    jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    ca_certs: Vec<Spanned<String>>,
    key_ttl: Option<Spanned<String>>,
    key_refresh_interval: Option<Spanned<String>>,
    leeway: Option<Spanned<String>>,
    max_lifetime: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<String>>,
    tls_cert: Option<String>,
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<RawKey>,
    max_body: Option<Spanned<String>>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    auth_failures_per_minute: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Spanned<String>,
    sha256: Spanned<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    concurrency: Option<Spanned<u32>>,
    queue: Option<usize>,
    queue_timeout: Option<Spanned<String>>,
    run_records: Option<usize>,
    run_record_ttl: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    stop_grace: Option<Spanned<String>>,
    watch: Option<bool>,
    sync_interval: Option<Spanned<String>>,
    code_cache: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    name: Spanned<String>,
    url: Spanned<String>,
    root_key: Spanned<String>,
    #[serde(default)]
    ca_certs: Vec<String>,
    token_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    name: Spanned<String>,
    path: String,
    trusted_keys: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    version: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    grant: Option<Spanned<Vec<Spanned<String>>>>,
    allowed_hosts: Option<Spanned<Vec<String>>>,
    /// A preset's name, or a table: read by hand, so that a mistake in it is named.
    limits: Option<Spanned<toml::Value>>,
    concurrency: Option<Spanned<u32>>,
    queue: Option<usize>,
    #[serde(default)]
    allow_wasi: bool,
    #[serde(default)]
    trusted_keys: Vec<Spanned<String>>,
}

/// Problems found so far, each with its line.
struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
}

impl Problems<'_> {
    fn at<T>(
        &mut self,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = line_of(self.text, spanned.span().start);
        self.found.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    fn missing(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.found.push(Problem {
            line: 0,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8440";
pub const DEFAULT_CONCURRENCY: u32 = 8;
pub const DEFAULT_QUEUE: usize = 64;
pub const DEFAULT_NODE_QUEUE: usize = 16;
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_RUN_RECORDS: usize = 10_000;

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let read_error = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let path = std::path::absolute(path).map_err(read_error)?;
        let size = std::fs::metadata(&path).map_err(read_error)?.len();
        if size > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Syntax {
                path,
                message: format!("it is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}"),
            });
        }
        let bytes = std::fs::read(&path).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| ManifestError::Syntax {
            path: path.clone(),
            message: "it is not UTF-8 text".into(),
        })?;
        Self::parse(&path, &text)
    }

    /// Checks manifest `text` as if read from `path` (relative paths in it are relative to
    /// the directory of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|error| ManifestError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        let mut problems = Problems {
            text,
            found: Vec::new(),
        };
        let manifest = check(raw, path, base, text, &mut problems);
        if problems.found.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                problems: problems.found,
            })
        }
    }
}

fn relative(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

/// The longest any duration of the manifest may be.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

fn duration(
    problems: &mut Problems,
    value: &Option<Spanned<String>>,
    field: &str,
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(text) => match parse_duration(text.get_ref()) {
            Ok(duration) if duration > MAX_DURATION => {
                problems.at(text, field, "at most 30 days");
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                problems.at(text, field, error.to_string());
                default
            }
        },
    }
}

fn check(
    raw: RawManifest,
    path: &Path,
    base: &Path,
    text: &str,
    problems: &mut Problems,
) -> Manifest {
    let api = check_api(&raw.api, base, problems);
    let metrics = raw.metrics.map(|metrics| {
        check_address(problems, &metrics.listen, "metrics.listen");
        MetricsListener {
            listen: metrics.listen.into_inner(),
        }
    });
    let host = check_host(&raw.host, problems);
    let cluster = raw
        .cluster
        .as_ref()
        .map(|cluster| check_cluster(cluster, base, problems));
    let data_dir = relative(
        base,
        raw.storage.data_dir.as_deref().unwrap_or("warden-data"),
    );
    let mut names = BTreeSet::new();
    let registries: Vec<RegistrySource> = raw
        .registries
        .iter()
        .enumerate()
        .map(|(index, registry)| {
            let field = format!("registries[{index}]");
            check_source_name(problems, &registry.name, &field, &mut names);
            let url = registry.url.get_ref();
            if !url.starts_with("https://") {
                problems.at(
                    &registry.url,
                    format!("{field}.url"),
                    "a registry is reached over https://",
                );
            }
            if warden_package::verifying_key_from_hex(registry.root_key.get_ref()).is_err() {
                problems.at(
                    &registry.root_key,
                    format!("{field}.root_key"),
                    "not a registry key: 64 hex digits, as `warden registry serve` prints",
                );
            }
            RegistrySource {
                name: registry.name.get_ref().clone(),
                url: url.clone(),
                root_key: registry.root_key.get_ref().clone(),
                ca_certs: registry
                    .ca_certs
                    .iter()
                    .map(|ca| relative(base, ca))
                    .collect(),
                token_file: registry
                    .token_file
                    .as_deref()
                    .map(|file| relative(base, file)),
            }
        })
        .collect();
    let directories: Vec<DirectorySource> = raw
        .directories
        .iter()
        .enumerate()
        .map(|(index, directory)| {
            let field = format!("directories[{index}]");
            check_source_name(problems, &directory.name, &field, &mut names);
            if directory.trusted_keys.get_ref().is_empty() {
                problems.at(
                    &directory.trusted_keys,
                    format!("{field}.trusted_keys"),
                    "name at least one publisher key: a package from a directory must be signed by one",
                );
            }
            let trusted_keys = directory
                .trusted_keys
                .get_ref()
                .iter()
                .filter_map(|key| match warden_package::verifying_key_from_hex(key.get_ref()) {
                    Ok(key) => Some(key),
                    Err(error) => {
                        problems.at(key, format!("{field}.trusted_keys"), error.to_string());
                        None
                    }
                })
                .collect();
            DirectorySource {
                name: directory.name.get_ref().clone(),
                path: relative(base, &directory.path),
                trusted_keys,
            }
        })
        .collect();
    if raw.nodes.len() > MAX_NODES {
        problems.missing("nodes", format!("at most {MAX_NODES} nodes"));
    }
    let mut node_names = BTreeSet::new();
    let nodes = raw
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| check_node(node, index, &names, &host, &mut node_names, problems))
        .collect();
    let _ = text;
    let executor = raw
        .auth
        .executor
        .as_ref()
        .map(|executor| check_executor(executor, base, problems));
    let oidc = raw
        .auth
        .oidc
        .as_ref()
        .map(|oidc| check_oidc(oidc, base, problems));
    if let (Some(executor), Some(oidc)) = (&executor, &oidc)
        && executor.policy.issuer == oidc.policy.issuer
        && let Some(raw_oidc) = &raw.auth.oidc
    {
        problems.at(
            &raw_oidc.issuer,
            "auth.oidc.issuer",
            "the executor's issuer is the same: a bearer token is told apart by its issuer",
        );
    }
    Manifest {
        executor,
        oidc,
        cluster,
        path: path.to_path_buf(),
        sha256: warden_package::hex(&sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(text.as_bytes()),
        )),
        api,
        metrics,
        data_dir,
        host,
        registries,
        directories,
        nodes,
    }
}

fn check_executor(raw: &RawExecutor, base: &Path, problems: &mut Problems) -> ExecutorAuth {
    use crate::auth::jwt::{EcKey, Policy};
    let mut policy = Policy::new(raw.issuer.get_ref().clone());
    if raw.issuer.get_ref().is_empty() {
        problems.at(
            &raw.issuer,
            "auth.executor.issuer",
            "name the issuer its tokens carry",
        );
    }
    if let Some(audience) = &raw.audience {
        policy.audience = audience.clone();
    }
    policy.leeway = duration(problems, &raw.leeway, "auth.executor.leeway", policy.leeway);
    policy.max_lifetime = duration(
        problems,
        &raw.max_lifetime,
        "auth.executor.max_lifetime",
        policy.max_lifetime,
    );
    let mut keys = Vec::new();
    let mut add = |text: &str, at: &dyn Fn(&mut Problems, String), problems: &mut Problems| {
        // A file or variable may hold several PEM blocks.
        let blocks: Vec<String> = text
            .split("-----END PUBLIC KEY-----")
            .filter(|block| block.contains("-----BEGIN PUBLIC KEY-----"))
            .map(|block| format!("{block}-----END PUBLIC KEY-----"))
            .collect();
        if blocks.is_empty() {
            at(problems, "holds no PEM public key".into());
        }
        for block in blocks {
            match EcKey::from_pem(&block) {
                Ok(key) => keys.push(key),
                Err(error) => at(problems, error.to_string()),
            }
        }
    };
    for file in &raw.public_keys {
        let path = relative(base, file.get_ref());
        let at = |problems: &mut Problems, message: String| {
            problems.at(
                file,
                "auth.executor.public_keys",
                format!("{}: {message}", path.display()),
            )
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => add(&text, &at, problems),
            Err(error) => at(problems, error.to_string()),
        }
    }
    if let Some(variable) = &raw.public_keys_env {
        let at = |problems: &mut Problems, message: String| {
            problems.at(
                variable,
                "auth.executor.public_keys_env",
                format!("${}: {message}", variable.get_ref()),
            )
        };
        match std::env::var(variable.get_ref()) {
            Ok(text) => add(&text, &at, problems),
            Err(_) => at(problems, "is not set".into()),
        }
    }
    if raw.public_keys.is_empty() && raw.public_keys_env.is_none() && raw.jwks_url.is_none() {
        problems.at(
            &raw.issuer,
            "auth.executor",
            "give public_keys, public_keys_env or jwks_url",
        );
    }
    let jwks = raw.jwks_url.as_ref().map(|url| {
        if let Err(error) = crate::auth::fetch::https_url(url.get_ref()) {
            problems.at(url, "auth.executor.jwks_url", error.to_string());
        }
        key_set_config(
            crate::auth::keyset::Source::Jwks(url.get_ref().clone()),
            KeySetFields {
                section: "auth.executor",
                ca_certs: &raw.ca_certs,
                ttl: &raw.key_ttl,
                refresh_interval: &raw.key_refresh_interval,
            },
            base,
            problems,
        )
    });
    ExecutorAuth { policy, keys, jwks }
}

/// The fields of a section that fetches keys.
struct KeySetFields<'a> {
    section: &'static str,
    ca_certs: &'a [Spanned<String>],
    ttl: &'a Option<Spanned<String>>,
    refresh_interval: &'a Option<Spanned<String>>,
}

fn key_set_config(
    source: crate::auth::keyset::Source,
    fields: KeySetFields,
    base: &Path,
    problems: &mut Problems,
) -> crate::auth::keyset::KeySetConfig {
    let section = fields.section;
    let mut ca_certs = Vec::new();
    for file in fields.ca_certs {
        let path = relative(base, file.get_ref());
        let read = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                warden_host::tls::certificates_from_pem_or_der(&bytes)
                    .map_err(|error| error.to_string())
            });
        match read {
            Ok(certificates) => ca_certs.extend(certificates),
            Err(error) => problems.at(
                file,
                format!("{section}.ca_certs"),
                format!("{}: {error}", path.display()),
            ),
        }
    }
    let ttl = duration(
        problems,
        fields.ttl,
        &format!("{section}.key_ttl"),
        Duration::from_secs(600),
    );
    let refresh_interval = duration(
        problems,
        fields.refresh_interval,
        &format!("{section}.key_refresh_interval"),
        Duration::from_secs(30),
    );
    if let Some(text) = fields.refresh_interval
        && refresh_interval < Duration::from_secs(1)
    {
        problems.at(
            text,
            format!("{section}.key_refresh_interval"),
            "at least 1s: it bounds how often a bad token can make the daemon fetch",
        );
    }
    crate::auth::keyset::KeySetConfig {
        source,
        ca_certs,
        ttl,
        refresh_interval: refresh_interval.max(Duration::from_secs(1)),
    }
}

fn check_oidc(raw: &RawOidc, base: &Path, problems: &mut Problems) -> OidcAuth {
    use crate::auth::oidc::{ALGORITHMS, OidcPolicy};
    let issuer = raw.issuer.get_ref().clone();
    let mut origins = Vec::new();
    match crate::auth::fetch::https_url(&issuer) {
        Ok(url) => origins.push(crate::auth::fetch::origin(&url)),
        Err(error) => problems.at(&raw.issuer, "auth.oidc.issuer", error.to_string()),
    }
    for extra in &raw.provider_origins {
        match crate::auth::fetch::https_url(extra.get_ref()) {
            Ok(url) if url.path() == "/" && url.query().is_none() => {
                origins.push(crate::auth::fetch::origin(&url))
            }
            Ok(_) => problems.at(
                extra,
                "auth.oidc.provider_origins",
                "an origin is `https://host[:port]`, no path",
            ),
            Err(error) => problems.at(extra, "auth.oidc.provider_origins", error.to_string()),
        }
    }
    if raw.audience.get_ref().is_empty() {
        problems.at(
            &raw.audience,
            "auth.oidc.audience",
            "name the audience the provider puts in tokens for this daemon",
        );
    }
    let algorithms = match &raw.algorithms {
        None => ALGORITHMS.iter().map(|alg| alg.to_string()).collect(),
        Some(list) => {
            if list.is_empty() {
                problems.at(&raw.issuer, "auth.oidc.algorithms", "name at least one");
            }
            list.iter()
                .filter_map(|alg| {
                    if ALGORITHMS.contains(&alg.get_ref().as_str()) {
                        Some(alg.get_ref().clone())
                    } else {
                        problems.at(
                            alg,
                            "auth.oidc.algorithms",
                            format!("one of {}", ALGORITHMS.join(", ")),
                        );
                        None
                    }
                })
                .collect()
        }
    };
    let policy = OidcPolicy {
        issuer: issuer.clone(),
        audience: raw.audience.get_ref().clone(),
        leeway: duration(
            problems,
            &raw.leeway,
            "auth.oidc.leeway",
            Duration::from_secs(30),
        ),
        algorithms,
        max_lifetime: duration(
            problems,
            &raw.max_lifetime,
            "auth.oidc.max_lifetime",
            Duration::from_secs(24 * 3600),
        ),
    };
    let keys = key_set_config(
        crate::auth::keyset::Source::Discovery { issuer, origins },
        KeySetFields {
            section: "auth.oidc",
            ca_certs: &raw.ca_certs,
            ttl: &raw.key_ttl,
            refresh_interval: &raw.key_refresh_interval,
        },
        base,
        problems,
    );
    OidcAuth { policy, keys }
}

fn check_address(problems: &mut Problems, address: &Spanned<String>, field: &str) {
    if address.get_ref().parse::<std::net::SocketAddr>().is_err() {
        problems.at(
            address,
            field,
            format!(
                "`{}` is not ADDRESS:PORT, such as 127.0.0.1:8440",
                address.get_ref()
            ),
        );
    }
}

fn check_source_name(
    problems: &mut Problems,
    name: &Spanned<String>,
    field: &str,
    names: &mut BTreeSet<String>,
) {
    if warden_package::validate_name(name.get_ref()).is_err() {
        problems.at(
            name,
            format!("{field}.name"),
            "use lowercase letters, digits, `-`, `_` or `.`, starting with a letter",
        );
    } else if !names.insert(name.get_ref().clone()) {
        problems.at(
            name,
            format!("{field}.name"),
            format!(
                "another registry or directory is named `{}`",
                name.get_ref()
            ),
        );
    }
}

fn check_api(raw: &RawApi, base: &Path, problems: &mut Problems) -> Api {
    let listen = match &raw.listen {
        Some(listen) => {
            check_address(problems, listen, "api.listen");
            listen.get_ref().clone()
        }
        None => DEFAULT_LISTEN.to_string(),
    };
    if let Some(key) = &raw.tls_key
        && raw.tls_cert.is_none()
    {
        problems.at(
            key,
            "api.tls_key",
            "give tls_cert with it, or neither for a development certificate",
        );
    }
    if raw.tls_cert.is_some() && raw.tls_key.is_none() {
        problems.missing(
            "api.tls_key",
            "give tls_key with tls_cert, or neither for a development certificate",
        );
    }
    let mut key_names = BTreeSet::new();
    let keys = raw
        .keys
        .iter()
        .enumerate()
        .filter_map(|(index, key)| {
            let field = format!("api.keys[{index}]");
            let name = key.name.get_ref();
            let well_formed = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
            if !well_formed {
                problems.at(&key.name, format!("{field}.name"), "1 to 64 letters, digits, `-`, `_` or `.`");
            } else if !key_names.insert(name.clone()) {
                problems.at(&key.name, format!("{field}.name"), "each key needs a name of its own");
            }
            match warden_package::unhex::<32>(key.sha256.get_ref()) {
                Some(sha256) => Some(ApiKey {
                    name: key.name.get_ref().clone(),
                    sha256,
                    admin: key.admin,
                }),
                None => {
                    problems.at(&key.sha256, format!("{field}.sha256"), "64 hex digits: the SHA-256 of the key, as `printf %s KEY | sha256sum` prints");
                    None
                }
            }
        })
        .collect();
    let max_body_bytes = match &raw.max_body {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(text) => match parse_size(text.get_ref()) {
            Ok(size) if (1024..=1 << 30).contains(&size) => size as usize,
            Ok(_) => {
                problems.at(text, "api.max_body", "between 1KiB and 1GiB");
                DEFAULT_MAX_BODY_BYTES
            }
            Err(error) => {
                problems.at(text, "api.max_body", error.to_string());
                DEFAULT_MAX_BODY_BYTES
            }
        },
    };
    Api {
        listen,
        tls_cert: raw.tls_cert.as_deref().map(|cert| relative(base, cert)),
        tls_key: raw
            .tls_key
            .as_ref()
            .map(|key| relative(base, key.get_ref())),
        keys,
        max_body_bytes,
        max_connections: raw
            .max_connections
            .unwrap_or(warden_server::DEFAULT_MAX_CONNECTIONS),
        max_connections_per_ip: raw
            .max_connections_per_ip
            .unwrap_or(warden_server::DEFAULT_MAX_CONNECTIONS_PER_IP),
        auth_failures_per_minute: match &raw.auth_failures_per_minute {
            Some(value) if !(1..=100_000).contains(value.get_ref()) => {
                problems.at(
                    value,
                    "api.auth_failures_per_minute",
                    "between 1 and 100000",
                );
                DEFAULT_AUTH_FAILURES_PER_MINUTE
            }
            Some(value) => *value.get_ref(),
            None => DEFAULT_AUTH_FAILURES_PER_MINUTE,
        },
    }
}

fn check_cluster(raw: &RawCluster, base: &Path, problems: &mut Problems) -> Cluster {
    let mut cluster = Cluster::default();
    if let Some(name) = &raw.database_url_env {
        let valid = !name.get_ref().is_empty()
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            cluster.database_url_env = name.get_ref().clone();
        } else {
            problems.at(
                name,
                "cluster.database_url_env",
                "the name of an environment variable (letters, digits and `_`), such as WARDEN_DATABASE_URL; the URL itself stays out of the manifest",
            );
        }
    }
    if let Some(count) = &raw.max_connections {
        if (1..=1000).contains(count.get_ref()) {
            cluster.max_connections = *count.get_ref();
        } else {
            problems.at(count, "cluster.max_connections", "between 1 and 1000");
        }
    }
    cluster.connect_timeout = duration(
        problems,
        &raw.connect_timeout,
        "cluster.connect_timeout",
        cluster.connect_timeout,
    );
    let lease = duration(problems, &raw.lease, "cluster.lease", cluster.lease);
    match &raw.lease {
        // A renewal comes every third of a lease: under a second would be a write per run
        // every few hundred milliseconds; over ten minutes, a lost run waits too long.
        Some(text) if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&lease) => {
            problems.at(text, "cluster.lease", "between 1s and 10m");
        }
        _ => cluster.lease = lease,
    }
    let counts = [
        (
            &raw.workers,
            "cluster.workers",
            1..=warden_host::MAX_CONCURRENCY,
        ),
        (&raw.max_attempts, "cluster.max_attempts", 1..=100),
        (
            &raw.max_queued_per_caller,
            "cluster.max_queued_per_caller",
            1..=1_000_000,
        ),
        (&raw.max_queued, "cluster.max_queued", 1..=10_000_000),
    ];
    let mut values = [None; 4];
    for (index, (value, field, range)) in counts.into_iter().enumerate() {
        if let Some(value) = value {
            if range.contains(value.get_ref()) {
                values[index] = Some(*value.get_ref());
            } else {
                problems.at(
                    value,
                    field,
                    format!("between {} and {}", range.start(), range.end()),
                );
            }
        }
    }
    let [workers, attempts, per_caller, total] = values;
    cluster.workers = workers;
    cluster.max_attempts = attempts.unwrap_or(cluster.max_attempts);
    cluster.max_queued_per_caller = per_caller.unwrap_or(cluster.max_queued_per_caller);
    cluster.max_queued = total.unwrap_or(cluster.max_queued);
    let wait = duration(
        problems,
        &raw.max_queue_wait,
        "cluster.max_queue_wait",
        cluster.max_queue_wait,
    );
    match &raw.max_queue_wait {
        // Under a minute, the minutely sweep would expire runs that merely waited for a worker.
        Some(text) if wait < Duration::from_secs(60) => {
            problems.at(text, "cluster.max_queue_wait", "between 1m and 30d");
        }
        _ => cluster.max_queue_wait = wait,
    }
    cluster.blobs = check_blobs(raw, base, problems);
    cluster
}

/// `[cluster] blobs`, `blobs_endpoint` and `blobs_region`.
fn check_blobs(
    raw: &RawCluster,
    base: &Path,
    problems: &mut Problems,
) -> Option<warden_cluster::BlobSettings> {
    let Some(url) = &raw.blobs else {
        for (field, value) in [
            ("cluster.blobs_endpoint", &raw.blobs_endpoint),
            ("cluster.blobs_region", &raw.blobs_region),
        ] {
            if let Some(value) = value {
                problems.at(value, field, "only with `blobs`, the store it is for");
            }
        }
        if let Some(first) = raw.blobs_ca_certs.first() {
            problems.at(
                first,
                "cluster.blobs_ca_certs",
                "only with `blobs`, the store it is for",
            );
        }
        return None;
    };
    let text = url.get_ref();
    let s3 = text
        .strip_prefix("s3://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !s3 && !text.starts_with("file:///") {
        problems.at(
            url,
            "cluster.blobs",
            "s3://BUCKET[/PREFIX], or file:///ABSOLUTE/PATH (a directory every daemon shares)",
        );
    }
    let endpoint = raw.blobs_endpoint.as_ref().map(|endpoint| {
        let text = endpoint.get_ref();
        let web = ["https://", "http://"]
            .iter()
            .any(|scheme| text.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()));
        if !web || !s3 {
            problems.at(
                endpoint,
                "cluster.blobs_endpoint",
                "https://HOST[:PORT] of an S3-compatible store (http:// only on a trusted network), with an s3:// `blobs`",
            );
        }
        text.clone()
    });
    Some(warden_cluster::BlobSettings {
        url: text.clone(),
        endpoint,
        region: raw
            .blobs_region
            .as_ref()
            .map(|region| region.get_ref().clone()),
        ca_certs: raw
            .blobs_ca_certs
            .iter()
            .map(|ca| relative(base, ca.get_ref()))
            .collect(),
    })
}

fn check_host(raw: &RawHost, problems: &mut Problems) -> HostSettings {
    let concurrency = match &raw.concurrency {
        Some(value) if *value.get_ref() == 0 || *value.get_ref() > warden_host::MAX_CONCURRENCY => {
            problems.at(
                value,
                "host.concurrency",
                format!("between 1 and {}", warden_host::MAX_CONCURRENCY),
            );
            DEFAULT_CONCURRENCY
        }
        Some(value) => *value.get_ref(),
        None => DEFAULT_CONCURRENCY,
    };
    let sync_interval = match &raw.sync_interval {
        Some(text) if matches!(text.get_ref().as_str(), "off" | "never") => None,
        value => Some(duration(
            problems,
            value,
            "host.sync_interval",
            Duration::from_secs(300),
        )),
    };
    if let Some(interval) = sync_interval
        && interval < Duration::from_secs(1)
        && let Some(text) = &raw.sync_interval
    {
        problems.at(text, "host.sync_interval", "at least 1s, or `off`");
    }
    HostSettings {
        concurrency,
        queue: raw.queue.unwrap_or(DEFAULT_QUEUE),
        queue_timeout: duration(
            problems,
            &raw.queue_timeout,
            "host.queue_timeout",
            Duration::from_secs(10),
        ),
        run_records: raw.run_records.unwrap_or(DEFAULT_RUN_RECORDS),
        run_record_ttl: duration(
            problems,
            &raw.run_record_ttl,
            "host.run_record_ttl",
            Duration::from_secs(3600),
        ),
        shutdown_grace: duration(
            problems,
            &raw.shutdown_grace,
            "host.shutdown_grace",
            Duration::from_secs(30),
        ),
        stop_grace: duration(
            problems,
            &raw.stop_grace,
            "host.stop_grace",
            Duration::from_secs(5),
        ),
        watch: raw.watch.unwrap_or(false),
        sync_interval,
        code_cache: raw.code_cache.unwrap_or(true),
    }
}

fn check_node(
    raw: &RawNode,
    index: usize,
    sources: &BTreeSet<String>,
    host: &HostSettings,
    node_names: &mut BTreeSet<String>,
    problems: &mut Problems,
) -> NodeEntry {
    let field = format!("nodes[{index}]");
    let name = raw.name.get_ref().clone();
    if let Err(error) = warden_package::validate_name(&name) {
        problems.at(&raw.name, format!("{field}.name"), error.to_string());
    } else if !node_names.insert(name.clone()) {
        problems.at(
            &raw.name,
            format!("{field}.name"),
            format!("`{name}` is loaded twice"),
        );
    }
    let version = match &raw.version {
        None => semver::VersionReq::STAR,
        Some(text) => semver::VersionReq::parse(text.get_ref()).unwrap_or_else(|error| {
            problems.at(
                text,
                format!("{field}.version"),
                format!("not a version requirement (such as ^1.2): {error}"),
            );
            semver::VersionReq::STAR
        }),
    };
    let source = match &raw.source {
        Some(source) => {
            if !sources.contains(source.get_ref()) {
                problems.at(
                    source,
                    format!("{field}.source"),
                    format!(
                        "no registry or directory is named `{}`; the manifest has: {}",
                        source.get_ref(),
                        sources.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            source.get_ref().clone()
        }
        None if sources.len() == 1 => sources.iter().next().cloned().unwrap_or_default(),
        None => {
            problems.at(
                &raw.name,
                format!("{field}.source"),
                "name the registry or directory it comes from",
            );
            String::new()
        }
    };
    let mut grant = Capabilities::empty();
    for capability in raw.grant.iter().flat_map(|grant| grant.get_ref()) {
        match capability.get_ref().parse::<Capabilities>() {
            Ok(parsed) => grant |= parsed,
            Err(error) => problems.at(capability, format!("{field}.grant"), error.to_string()),
        }
    }
    let allowed_hosts = match &raw.allowed_hosts {
        Some(hosts) => {
            if let Err(error) = AllowedHosts::parse(hosts.get_ref()) {
                problems.at(hosts, format!("{field}.allowed_hosts"), error.to_string());
            }
            hosts.get_ref().clone()
        }
        None => Vec::new(),
    };
    let (preset, limits) = match &raw.limits {
        None => (Preset::Default, Limits::preset(Preset::Default)),
        Some(spanned) => match node_limits(spanned.get_ref()) {
            Ok(limits) => limits,
            Err(message) => {
                problems.at(spanned, format!("{field}.limits"), message);
                (Preset::Default, Limits::preset(Preset::Default))
            }
        },
    };
    let concurrency = match &raw.concurrency {
        Some(value) if *value.get_ref() == 0 => {
            problems.at(value, format!("{field}.concurrency"), "at least 1");
            1
        }
        Some(value) => (*value.get_ref()).min(host.concurrency),
        None => host.concurrency,
    };
    let trusted_keys = raw
        .trusted_keys
        .iter()
        .filter_map(
            |key| match warden_package::verifying_key_from_hex(key.get_ref()) {
                Ok(key) => Some(key),
                Err(error) => {
                    problems.at(key, format!("{field}.trusted_keys"), error.to_string());
                    None
                }
            },
        )
        .collect();
    NodeEntry {
        trusted_keys,
        name,
        version,
        source,
        grant,
        allowed_hosts,
        preset,
        limits,
        concurrency,
        queue: raw.queue.unwrap_or(DEFAULT_NODE_QUEUE),
        allow_wasi: raw.allow_wasi,
    }
}

fn node_limits(raw: &toml::Value) -> Result<(Preset, Limits), String> {
    let preset = |name: &str| -> Result<Preset, String> {
        name.parse()
            .map_err(|error: warden_host::limits::UnknownPreset| error.to_string())
    };
    let table = match raw {
        toml::Value::String(name) => {
            let preset = preset(name)?;
            return Ok((preset, Limits::preset(preset)));
        }
        toml::Value::Table(table) => table,
        _ => {
            return Err(
                "a preset's name (\"restrictive\", \"default\", \"permissive\") or a table of preset, memory, fuel and timeout"
                    .into(),
            );
        }
    };
    let text = |key: &str| -> Result<Option<&str>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!(
                "{key}: write it as a string, such as \"64MiB\" or \"5s\""
            )),
        }
    };
    if let Some(unknown) = table
        .keys()
        .find(|key| !["preset", "memory", "fuel", "timeout"].contains(&key.as_str()))
    {
        return Err(format!(
            "`{unknown}` is not a limit here; the table takes preset, memory, fuel and timeout"
        ));
    }
    let preset = preset(text("preset")?.unwrap_or("default"))?;
    let mut limits = Limits::preset(preset);
    if let Some(memory) = text("memory")? {
        limits.memory_bytes = parse_size(memory).map_err(|error| format!("memory: {error}"))?;
    }
    match table.get("fuel") {
        None => {}
        Some(toml::Value::Integer(fuel)) if *fuel >= 0 => limits.fuel = Some(*fuel as u64),
        Some(toml::Value::String(off)) if off == "off" => limits.fuel = None,
        Some(_) => return Err("fuel: a whole number, or \"off\"".into()),
    }
    if let Some(timeout) = text("timeout")? {
        limits.timeout = parse_duration(timeout).map_err(|error| format!("timeout: {error}"))?;
        if limits.timeout > MAX_TIMEOUT {
            return Err(format!(
                "timeout: `{timeout}` is over the longest a run may take (24h)"
            ));
        }
    }
    limits.validate().map_err(|error| error.to_string())?;
    Ok((preset, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/etc/warden/host.toml"), text)
    }

    #[test]
    fn a_small_manifest_gets_the_defaults_and_absolute_paths() {
        let manifest = parse(&format!(
            r#"
[[directories]]
name = "local"
path = "packages"
trusted_keys = ["{KEY}"]

[[nodes]]
name = "text-tools"
grant = ["storage-read", "storage-write"]
"#
        ))
        .unwrap();
        assert_eq!(manifest.api.listen, DEFAULT_LISTEN);
        assert_eq!(manifest.data_dir, Path::new("/etc/warden/warden-data"));
        assert_eq!(
            manifest.directories[0].path,
            Path::new("/etc/warden/packages")
        );
        let node = &manifest.nodes[0];
        assert_eq!(node.source, "local");
        assert_eq!(node.version, semver::VersionReq::STAR);
        assert_eq!(node.grant, "storage-read,storage-write".parse().unwrap());
        assert_eq!(node.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(node.limits, Limits::default_preset());
        assert_eq!(manifest.host.sync_interval, Some(Duration::from_secs(300)));
    }

    #[test]
    fn the_deployment_files_hold_valid_host_manifests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let compose = std::fs::read_to_string(root.join("deploy/compose/host.toml")).unwrap();
        let configmap =
            std::fs::read_to_string(root.join("deploy/kubernetes/configmap.yaml")).unwrap();
        let (_, block) = configmap.split_once("host.toml: |\n").unwrap();
        let embedded: Vec<&str> = block
            .lines()
            .map(|line| line.strip_prefix("    ").unwrap_or(line))
            .collect();
        for (file, text) in [("compose", compose), ("kubernetes", embedded.join("\n"))] {
            let manifest = parse(&text).unwrap_or_else(|error| panic!("{file}: {error}"));
            assert!(manifest.cluster.is_some(), "{file}");
            assert!(manifest.metrics.is_some(), "{file}");
        }
    }

    #[test]
    fn a_clusters_object_storage_is_an_s3_bucket_or_a_directory() {
        let cluster = parse(
            "[cluster]\nblobs = \"s3://packages/warden\"\nblobs_endpoint = \"https://minio.internal:9000\"\nblobs_region = \"eu-west-1\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            cluster.blobs,
            Some(warden_cluster::BlobSettings {
                url: "s3://packages/warden".into(),
                endpoint: Some("https://minio.internal:9000".into()),
                region: Some("eu-west-1".into()),
                ca_certs: Vec::new(),
            })
        );
        let local = parse("[cluster]\nblobs = \"file:///srv/warden/blobs\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(local.blobs.unwrap().url, "file:///srv/warden/blobs");
        for (text, field) in [
            ("blobs = \"s3:///x\"", "cluster.blobs"),
            ("blobs = \"/srv/blobs\"", "cluster.blobs"),
            ("blobs = \"gs://bucket\"", "cluster.blobs"),
            ("blobs_endpoint = \"https://x\"", "cluster.blobs_endpoint"),
            (
                "blobs = \"file:///srv\"\nblobs_endpoint = \"https://x\"",
                "cluster.blobs_endpoint",
            ),
            (
                "blobs = \"s3://b\"\nblobs_endpoint = \"minio:9000\"",
                "cluster.blobs_endpoint",
            ),
            ("blobs_region = \"eu-west-1\"", "cluster.blobs_region"),
        ] {
            let error = parse(&format!("[cluster]\n{text}\n")).unwrap_err();
            let ManifestError::Invalid { problems, .. } = &error else {
                panic!("{error}");
            };
            let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
            assert_eq!(fields, [field], "{text}");
        }
    }

    #[test]
    fn a_cluster_names_the_variable_that_holds_its_database_url() {
        assert_eq!(parse("").unwrap().cluster, None);
        assert_eq!(
            parse("[cluster]\n").unwrap().cluster,
            Some(Cluster::default())
        );
        let cluster = parse(
            "[cluster]\ndatabase_url_env = \"PG_URL\"\nmax_connections = 4\nconnect_timeout = \"2s\"\n",
        )
        .unwrap()
            .cluster
            .unwrap();
        assert_eq!(cluster.database_url_env, "PG_URL");
        assert_eq!(cluster.max_connections, 4);
        assert_eq!(cluster.connect_timeout, Duration::from_secs(2));
        // A URL where the variable's name belongs is refused, and not echoed back.
        let error = parse(
            "[cluster]\ndatabase_url_env = \"postgres://u:secret@db/warden\"\nmax_connections = 0\n",
        )
        .unwrap_err();
        let ManifestError::Invalid { problems, .. } = &error else {
            panic!("{error}");
        };
        let fields: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (2, "cluster.database_url_env"),
                (3, "cluster.max_connections")
            ]
        );
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(parse("[cluster]\nurl = \"x\"\n").is_err());
        // The queue's settings, each checked against its range.
        let queue = parse(
            "[cluster]\nlease = \"5s\"\nworkers = 2\nmax_attempts = 5\nmax_queued_per_caller = 10\nmax_queued = 20\nmax_queue_wait = \"1h\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            (queue.lease, queue.workers, queue.max_attempts),
            (Duration::from_secs(5), Some(2), 5)
        );
        assert_eq!(
            (
                queue.max_queued_per_caller,
                queue.max_queued,
                queue.max_queue_wait
            ),
            (10, 20, Duration::from_secs(3600))
        );
        let error = parse(
            "[cluster]\nlease = \"500ms\"\nworkers = 0\nmax_attempts = 101\nmax_queued_per_caller = 0\nmax_queued = 0\nmax_queue_wait = \"30s\"\n",
        )
        .unwrap_err();
        let ManifestError::Invalid { problems, .. } = &error else {
            panic!("{error}");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cluster.lease",
                "cluster.workers",
                "cluster.max_attempts",
                "cluster.max_queued_per_caller",
                "cluster.max_queued",
                "cluster.max_queue_wait"
            ]
        );
        // Joining or leaving a cluster takes a restart.
        let started = parse("").unwrap();
        let (kept, changed) = parse("[cluster]\n").unwrap().keeping_fixed(&started);
        assert_eq!(kept.cluster, None);
        assert_eq!(changed, ["cluster"]);
    }

    #[test]
    fn every_problem_is_listed_with_its_line_and_field() {
        let error = parse(&format!(
            r#"[api]
listen = "nowhere"

[[directories]]
name = "local"
path = "packages"
trusted_keys = ["{KEY}", "abc"]

[[nodes]]
name = "a"
source = "elsewhere"
grant = ["storage-read", "teleport"]
limits = {{ memory = "lots" }}

[[nodes]]
name = "a"
version = "not a version"
"#
        ))
        .unwrap_err();
        let ManifestError::Invalid { problems, .. } = &error else {
            panic!("{error}");
        };
        let lines: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, "api.listen"),
                (7, "directories[0].trusted_keys"),
                (11, "nodes[0].source"),
                (12, "nodes[0].grant"),
                (13, "nodes[0].limits"),
                (16, "nodes[1].name"),
                (17, "nodes[1].version"),
            ],
            "{error}"
        );
        let text = error.to_string();
        assert!(text.contains("line 12, nodes[0].grant: "), "{text}");
        let error = parse("[[directories]]\nname = \"d\"\npath = \"p\"\ntrusted_keys = [\"%K\"]\n[[nodes]]\nname = \"a\"\nlimits = { memroy = \"1MiB\" }\n".replace("%K", KEY).as_str()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("line 7, nodes[0].limits: `memroy` is not a limit"),
            "{error}"
        );
        let error =
            parse("[host]\nsync_interval = \"0s\"\nshutdown_grace = \"100000d\"\n").unwrap_err();
        assert!(
            error.to_string().contains("line 2, host.sync_interval: "),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("line 3, host.shutdown_grace: at most 30 days"),
            "{error}"
        );
        assert!(text.contains("teleport"), "{text}");
    }

    #[test]
    fn syntax_and_type_errors_name_their_line() {
        for (text, line) in [
            ("[api]\nlisten = 8440\n", "line 2"),
            ("[[nodes]]\nname = \"a\"\nunknown = 1\n", "line 3"),
            ("[host]\nconcurrency = -1\n", "line 2"),
            ("[[nodes]\n", "line 1"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(matches!(error, ManifestError::Syntax { .. }), "{error}");
            assert!(error.to_string().contains(line), "{text}: {error}");
        }
    }

    #[test]
    fn explicit_limits_start_from_their_preset() {
        let manifest = parse(&format!(
            r#"
[[directories]]
name = "local"
path = "p"
trusted_keys = ["{KEY}"]
[[nodes]]
name = "a"
limits = {{ preset = "restrictive", memory = "8MiB", fuel = "off", timeout = "2s" }}
[[nodes]]
name = "b"
limits = "permissive"
"#
        ))
        .unwrap();
        let limits = &manifest.nodes[0].limits;
        assert_eq!(limits.memory_bytes, 8 * 1024 * 1024);
        assert_eq!(limits.fuel, None);
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(
            limits.max_instances,
            Limits::preset(Preset::Restrictive).max_instances
        );
        assert_eq!(manifest.nodes[1].preset, Preset::Permissive);
    }

    #[test]
    fn api_keys_are_kept_as_hashes_and_checked() {
        let error = parse(
            r#"[[api.keys]]
name = "executor"
sha256 = "xyz"
"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("line 3, api.keys[0].sha256"),
            "{error}"
        );
        let error = parse(&format!(
            "[[api.keys]]\nname = \"env:WARDEN_API_KEY\"\nsha256 = \"{KEY}\"\n"
        ))
        .unwrap_err();
        assert!(
            error.to_string().contains("line 2, api.keys[0].name"),
            "{error}"
        );
        let manifest = parse(&format!(
            "[[api.keys]]\nname = \"executor\"\nsha256 = \"{KEY}\"\n"
        ))
        .unwrap();
        assert_eq!(warden_package::hex(&manifest.api.keys[0].sha256), KEY);
    }
}
