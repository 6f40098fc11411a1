//! Commands that talk to a registry or run one: `publish`, `install`, `approve`, `yank`, and
//! `registry serve|check|user|token|key`. Refusals of a security check exit with 2, like
//! `verify`; failures to reach the registry with 1.

use crate::cli::{Failure, out, tokio};
use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_host::http::certificates_from_pem_or_der;
use warden_host::limits::{parse_duration, parse_size};
use warden_package as package;
use warden_registry::client::install::{self, InstallError, InstallRequest, InstallState};
use warden_registry::client::{Client, ClientError, Credential};
use warden_registry::protocol::TokenKind;
use warden_registry::protocol::{self, DEFAULT_MAX_PACKAGE_BYTES};
use warden_registry::server;
use warden_registry::server::limits::{DEFAULT_QUOTAS, Quotas, Rate};
use warden_registry::server::store::{
    DEFAULT_INDEX_TTL, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL, Store, StoreError,
};
use warden_registry::server::tls;

/// How to reach a registry.
#[derive(Args, Clone)]
pub struct Remote {
    /// The registry's base URL, such as https://127.0.0.1:8443.
    #[arg(long, env = "WARDEN_REGISTRY")]
    registry: String,
    /// A personal access token (wdn_pat_...) or an API key (wdn_key_...). Given on the command
    /// line it is visible to other local users (in ps and /proc); prefer --token-file or
    /// $WARDEN_TOKEN.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from FILE (surrounding whitespace ignored); wins over --token. Also taken
    /// from $WARDEN_TOKEN_FILE when that is set and not empty.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Also trust the CA certificate(s) in FILE, such as a development registry's
    /// tls/cert.pem (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
}

/// Where a host keeps what it installed.
#[derive(Args, Clone)]
pub struct StateDir {
    /// The host's state directory; $WARDEN_STATE, or ~/.warden.
    #[arg(long = "state", value_name = "DIR", env = "WARDEN_STATE")]
    dir: Option<PathBuf>,
}

impl StateDir {
    pub fn open(&self) -> Result<InstallState, Failure> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".warden"))
                .ok_or_else(|| Failure::usage("no --state given and HOME is not set"))?,
        };
        InstallState::open(&dir).map_err(install_failure)
    }
}

#[derive(Args)]
pub struct InstallArgs {
    /// NAME or NAME@VERSION (the highest version not yanked by default).
    node: String,
    #[command(flatten)]
    remote: Remote,
    /// The registry's public key (hex, or a file holding it); needed on first use, after
    /// which it is pinned.
    #[arg(long, value_name = "HEX|FILE")]
    registry_key: Option<String>,
    /// Capabilities to approve, comma-separated; on a first install, what the package requests.
    #[arg(long, value_name = "CAP[,CAP]...", value_delimiter = ',')]
    approve: Option<Vec<String>>,
    /// Hosts to approve (repeatable); on a first install, what the package requests.
    #[arg(long = "approve-host", value_name = "PATTERN")]
    approve_hosts: Option<Vec<String>>,
    /// The loosest limits preset to approve; on a first install, what the package requests.
    #[arg(long, value_name = "restrictive|default|permissive")]
    approve_preset: Option<String>,
    /// Accept an update from another registry or publisher, or signed by a key outside the
    /// ones accepted before. Approvals start afresh, as on a first install; the change is
    /// recorded (`warden installed` shows it).
    #[arg(long)]
    accept_publisher_change: bool,
    #[command(flatten)]
    state: StateDir,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Run the registry: HTTPS (HTTP/2) over rustls, storage in DATA/registry.redb.
    Serve(Box<ServeArgs>),
    /// Re-verify everything a stopped registry stores: records, files, log and index.
    Check {
        #[arg(long, default_value = "warden-registry", value_name = "DIR")]
        data: PathBuf,
    },
    /// Issue a token with local access to a stopped registry (when the owner's are lost).
    Recover {
        #[arg(long, default_value = "warden-registry", value_name = "DIR")]
        data: PathBuf,
        #[arg(long, default_value = "owner")]
        user: String,
        #[arg(long, value_enum, default_value = "pat")]
        kind: KindArg,
        /// Lifetime, such as 1d (90 days by default).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Replace a stopped registry's signing key. Hosts follow the change through a root
    /// document signed by the old key and the new one.
    RotateKey {
        #[arg(long, default_value = "warden-registry", value_name = "DIR")]
        data: PathBuf,
        /// Also list this offline public key in the new root (repeatable). With
        /// --threshold 2 or more, a stolen signing key alone can no longer rotate the root.
        #[arg(long = "root-key", value_name = "PUBLIC_KEY_FILE")]
        root_keys: Vec<PathBuf>,
        /// How many of the new root's keys must sign the root after it.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// The secret key file of an offline root key, current or new (repeatable), as many
        /// as the current root's threshold and the new one's need.
        #[arg(long = "cosign", value_name = "SECRET_KEY_FILE")]
        cosigners: Vec<PathBuf>,
    },
    /// Create a user.
    User {
        name: String,
        /// A role: owner, admin, publisher, reader or auditor (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The publisher this user publishes as.
        #[arg(long)]
        publisher: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue a token (shown once), or revoke one with --revoke ID.
    Token {
        /// Whose token; your own by default.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_enum, default_value = "pat")]
        kind: KindArg,
        /// Lifetime, such as 30d or 12h (90 days by default).
        #[arg(long)]
        ttl: Option<String>,
        /// Revoke the token with this id instead.
        #[arg(long, value_name = "ID")]
        revoke: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Register a publisher's public key, proving possession with its secret key. A
    /// publisher's later keys are rotations and must be signed in by a current key (--signed-by
    /// its secret key file).
    Key {
        publisher: String,
        /// The public key file (from `warden keygen`) to add, or to revoke with --revoke.
        public_key: PathBuf,
        /// The secret key file of the key added, which signs the proof of possession; by
        /// default the `.key` file next to the `.pub` one.
        #[arg(long, value_name = "SECRET_KEY_FILE", conflicts_with = "revoke")]
        secret_key: Option<PathBuf>,
        /// Adding: the current key that signs the new one in. With --revoke and --revoked-at
        /// in the past: another current key of the publisher, which signs the back-dated
        /// revocation.
        #[arg(long, value_name = "SECRET_KEY_FILE")]
        signed_by: Option<PathBuf>,
        /// Revoke the key instead of adding it.
        #[arg(long)]
        revoke: bool,
        /// With --revoke: refuse what it signed from this Unix time on (now by default). A time
        /// in the past needs --signed-by another current key, or an admin's token.
        #[arg(long, value_name = "UNIX_SECONDS", requires = "revoke")]
        revoked_at: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Pat,
    ApiKey,
}

impl From<KindArg> for TokenKind {
    fn from(kind: KindArg) -> TokenKind {
        match kind {
            KindArg::Pat => TokenKind::Pat,
            KindArg::ApiKey => TokenKind::ApiKey,
        }
    }
}

/// A token lifetime in whole seconds, at least one.
fn token_ttl(text: Option<String>) -> Result<Option<u64>, Failure> {
    let Some(text) = text else {
        return Ok(None);
    };
    let seconds = parse_duration(&text)
        .map_err(|error| Failure::usage(format!("--ttl: {error}")))?
        .as_secs();
    if seconds == 0 {
        return Err(Failure::usage("--ttl: a token lives at least 1s"));
    }
    Ok(Some(seconds))
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where the database, the registry's signing key and the development certificate live.
    #[arg(long, default_value = "warden-registry", value_name = "DIR")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDRESS:PORT")]
    listen: String,
    /// The TLS certificate chain (PEM); a self-signed development one by default.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a signed index stays valid; hosts refuse it after that.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    index_ttl: String,
    /// The largest package accepted.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    max_package: String,
    /// Connections open at once; past it new ones are closed before the TLS handshake. Keep it
    /// well below the process's file limit (`ulimit -n`).
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    max_connections: usize,
    /// Connections open at once from one IPv4 address (or one IPv6 /64).
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_CONNECTIONS_PER_IP, value_name = "N")]
    max_connections_per_ip: usize,
    /// How long a client may take for its TLS handshake (default 10s).
    #[arg(long, value_name = "DURATION")]
    handshake_timeout: Option<String>,
    /// How long a client may stay silent after its TLS handshake (default 10s).
    #[arg(long, value_name = "DURATION")]
    first_byte_timeout: Option<String>,
    /// How long a request's headers may take to arrive; also the wait for the next request on
    /// a kept-alive HTTP/1.1 connection (default 10s).
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// How long a request body may pause before the request gets 408 (default 15s).
    #[arg(long, value_name = "DURATION")]
    body_read_timeout: Option<String>,
    /// How long a client may leave a response untaken before its connection is closed
    /// (default 30s).
    #[arg(long, value_name = "DURATION")]
    send_timeout: Option<String>,
    /// How long a connection may stay open with no request in flight (default 60s).
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// The slowest a request or response body may average, per second, once it has run for
    /// 10 seconds (default 16KiB); lower it for clients on slow links.
    #[arg(long, value_name = "SIZE")]
    min_transfer_rate: Option<String>,
    /// Package uploads received at once; more get 503. Each may hold a package in memory while
    /// it is verified.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_UPLOADS, value_name = "N")]
    max_uploads: usize,
    /// Package downloads served at once; more get 503. Each holds its package in memory.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_DOWNLOADS, value_name = "N")]
    max_downloads: usize,
    /// Package uploads one user may have in flight; more get 429.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_UPLOADS_PER_USER, value_name = "N")]
    max_uploads_per_user: usize,
    /// Package downloads one user may have in flight; more get 429. Hosts that share a token
    /// share its downloads.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_DOWNLOADS_PER_USER, value_name = "N")]
    max_downloads_per_user: usize,
    /// Live tokens one user may hold.
    #[arg(long, default_value_t = DEFAULT_QUOTAS.tokens_per_user, value_name = "N")]
    max_tokens_per_user: usize,
    /// Versions one publisher may publish, ever (the log keeps every one).
    #[arg(long, default_value_t = DEFAULT_QUOTAS.versions_per_publisher, value_name = "N")]
    max_versions_per_publisher: u64,
    /// Key additions and revocations one publisher's history may hold (admins are exempt).
    #[arg(long, default_value_t = DEFAULT_QUOTAS.key_events_per_publisher, value_name = "N")]
    max_key_events_per_publisher: u64,
    /// Tokens one user may issue: N at once, refilled evenly over DURATION.
    #[arg(long, default_value = "20/10m", value_name = "N/DURATION")]
    token_rate: String,
    /// Publishes one user may make: N at once, refilled evenly over DURATION.
    #[arg(long, default_value = "30/30m", value_name = "N/DURATION")]
    publish_rate: String,
    /// Failed authentications one address (an IPv6 /64) may make: N at once, refilled evenly
    /// over DURATION; past that its requests are refused with 429 until it refills.
    #[arg(long, default_value = "30/1m", value_name = "N/DURATION")]
    auth_failure_rate: String,
}

/// The connection limits `serve` was given; the library's defaults for the rest.
fn server_limits(args: &ServeArgs) -> Result<server::ServerLimits, Failure> {
    let mut limits = server::ServerLimits {
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        ..server::ServerLimits::default()
    };
    let timeouts = [
        (
            "handshake-timeout",
            &args.handshake_timeout,
            &mut limits.handshake_timeout,
        ),
        (
            "first-byte-timeout",
            &args.first_byte_timeout,
            &mut limits.first_byte_timeout,
        ),
        (
            "header-timeout",
            &args.header_timeout,
            &mut limits.header_timeout,
        ),
        (
            "body-read-timeout",
            &args.body_read_timeout,
            &mut limits.body_read_timeout,
        ),
        ("send-timeout", &args.send_timeout, &mut limits.send_timeout),
        ("idle-timeout", &args.idle_timeout, &mut limits.idle_timeout),
    ];
    for (flag, text, field) in timeouts {
        let Some(text) = text else { continue };
        let duration =
            parse_duration(text).map_err(|error| Failure::usage(format!("--{flag}: {error}")))?;
        if duration.is_zero() {
            return Err(Failure::usage(format!(
                "--{flag}: a timeout must be longer than 0"
            )));
        }
        *field = duration;
    }
    if let Some(text) = &args.min_transfer_rate {
        let rate = parse_size(text)
            .map_err(|error| Failure::usage(format!("--min-transfer-rate: {error}")))?;
        limits.min_body_rate = rate;
        limits.min_send_rate = rate;
    }
    Ok(limits)
}

/// A rate given as `N/DURATION`: a burst of N, refilled one every DURATION / N.
fn rate(flag: &str, text: &str) -> Result<Rate, Failure> {
    let bad =
        |why: String| Failure::usage(format!("--{flag}: {why} (give N/DURATION, such as 30/1m)"));
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| bad(format!("`{text}` has no `/`")))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| bad(format!("`{count}` is not a positive count")))?;
    let period = parse_duration(period.trim()).map_err(|error| bad(error.to_string()))?;
    if period.is_zero() {
        return Err(bad("the duration is zero".into()));
    }
    Ok(Rate::new(count, period / count))
}

fn install_failure(error: InstallError) -> Failure {
    match error {
        InstallError::Client(error) => client_failure(error),
        InstallError::State(message) => Failure { code: 1, message },
        other => Failure::usage(other.to_string()),
    }
}

fn client_failure(error: ClientError) -> Failure {
    match &error {
        ClientError::Status { .. } | ClientError::Url(..) => Failure::usage(error.to_string()),
        _ => Failure {
            code: 1,
            message: error.to_string(),
        },
    }
}

fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::Storage(message) => Failure { code: 1, message },
        other => Failure::usage(other.to_string()),
    }
}

impl Remote {
    fn client(&self) -> Result<Client, Failure> {
        let mut roots = Vec::new();
        for file in &self.ca_certs {
            let bytes = std::fs::read(file).map_err(|error| {
                Failure::usage(format!("--ca-cert {}: {error}", file.display()))
            })?;
            roots.extend(certificates_from_pem_or_der(&bytes).map_err(|error| {
                Failure::usage(format!("--ca-cert {}: {error}", file.display()))
            })?);
        }
        // Read by hand rather than by clap, so an empty variable means "not set".
        let file = self.token_file.clone().or_else(|| {
            std::env::var_os("WARDEN_TOKEN_FILE")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        });
        let token = match &file {
            Some(path) => {
                let text = read_text(path).map_err(|failure| {
                    Failure::usage(format!("--token-file: {}", failure.message))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(Failure::usage(format!(
                        "--token-file: {} is empty; put the token in it",
                        path.display()
                    )));
                }
                Some(token.to_string())
            }
            None => self.token.clone().filter(|token| !token.trim().is_empty()),
        };
        let credential = token.as_deref().map(Credential::from_token);
        Client::new(&self.registry, &roots, credential).map_err(client_failure)
    }

    /// The registry's identity (`protocol::registry_id`), from its root documents: what key
    /// possession and revocation statements name. Taken from the registry this command talks
    /// to over verified TLS.
    fn registry_id(
        &self,
        client: &Client,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<String, Failure> {
        let roots: Vec<protocol::SignedRoot> = runtime
            .block_on(client.get_json("v1/roots"))
            .map_err(client_failure)?;
        protocol::registry_id(&roots).map_err(|error| Failure::usage(error.to_string()))
    }
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))
}

pub fn publish_command(path: &Path, remote: &Remote) -> Result<(), Failure> {
    let client = remote.client()?;
    // Verify locally first: a package that cannot pass here would be refused anyway.
    let package = package::read_file(path)
        .map_err(|error| Failure::usage(format!("{}: {error}", path.display())))?;
    package::verify(&package, None)
        .map_err(|error| Failure::usage(format!("{}: {error}", path.display())))?;
    let bytes = package::encode(&package);
    // The answer is the new index entry; it must be JSON, its content is not needed here.
    let _: Json = tokio()?
        .block_on(client.send(
            hyper::Method::POST,
            "v1/packages",
            Some(("application/octet-stream", bytes)),
            1024 * 1024,
        ))
        .map_err(client_failure)
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|error| Failure::usage(error.to_string()))
        })?;
    out(&format!(
        "published {}@{} to {}\n",
        package.manifest.name,
        package.manifest.version,
        client.base()
    ));
    Ok(())
}

pub fn install_command(args: InstallArgs) -> Result<(), Failure> {
    let client = args.remote.client()?;
    let host = args.state.open()?;
    let (name, version) = match args.node.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (args.node.as_str(), None),
    };
    let key = match &args.registry_key {
        Some(given) if Path::new(given).is_file() => Some(read_text(Path::new(given))?),
        other => other.clone(),
    };
    let record = tokio()?
        .block_on(install::install(
            &client,
            &host,
            InstallRequest {
                name,
                version,
                registry_key: key.as_deref(),
                approve: args.approve,
                approve_hosts: args.approve_hosts,
                approve_limits: args.approve_preset,
                now: protocol::now(),
                accept_publisher_change: args.accept_publisher_change,
            },
        ))
        .map_err(install_failure)?;
    if args.json {
        out(&format!(
            "{:#}\n",
            json!({ "installed": record, "pending": record.pending(), "pending_hosts": record.pending_hosts() })
        ));
    } else {
        out(&format!(
            "installed {}@{} from {} (registry {}, publisher {}): granted [{}]\n",
            record.name,
            record.version,
            record.registry_url,
            record.registry,
            record.publisher,
            record
                .grant()
                .map(|grant| grant.to_string())
                .unwrap_or_default()
        ));
        if !record.enabled {
            out(&format!(
                "disabled: this version also requests capabilities [{}], hosts [{}], limits {}; approve them with `warden approve {}`\n",
                record.pending().join(","),
                record.pending_hosts().join(","),
                record
                    .pending_limits()
                    .unwrap_or_else(|| "as approved".into()),
                record.name
            ));
        }
    }
    Ok(())
}

pub fn approve_command(
    name: &str,
    capabilities: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    preset: Option<String>,
    state: &StateDir,
) -> Result<(), Failure> {
    let host = state.open()?;
    // Naming any of --grant, --host or --preset approves exactly what is named: the others
    // stay as they are. With none of them, everything pending is approved.
    let (capabilities, hosts, preset) =
        if capabilities.is_none() && hosts.is_none() && preset.is_none() {
            (None, None, None)
        } else {
            let current = host
                .installed(name)
                .map_err(install_failure)?
                .ok_or_else(|| Failure::usage(format!("`{name}` is not installed")))?;
            (
                Some(capabilities.unwrap_or_default()),
                Some(hosts.unwrap_or_default()),
                Some(preset.unwrap_or(current.approved_limits)),
            )
        };
    let record = host
        .approve(name, capabilities, hosts, preset)
        .map_err(install_failure)?;
    out(&format!(
        "{}@{} {}: approved capabilities [{}], hosts [{}], limits up to {}\n",
        record.name,
        record.version,
        if record.enabled {
            "enabled"
        } else {
            "still disabled"
        },
        record.approved.join(","),
        record.approved_hosts.join(","),
        record.approved_limits
    ));
    Ok(())
}

pub fn sync_command(remote: &Remote, state: &StateDir) -> Result<(), Failure> {
    let client = remote.client()?;
    let host = state.open()?;
    let report = tokio()?
        .block_on(install::sync_report(&client, &host, protocol::now()))
        .map_err(install_failure)?;
    out(&format!(
        "{} (registry {}): verified, {} new log entries; {} newly blocked, {} blocked in all\n",
        report.url,
        report.registry,
        report.log_entries_fetched,
        report.blocked.len(),
        report.blocked_in_all
    ));
    for record in report.blocked {
        out(&format!(
            "blocked {}@{}: {}\n",
            record.name,
            record.version,
            record.blocked.unwrap_or_default()
        ));
    }
    Ok(())
}

/// `warden installed`: what this host installed, from which registry and publisher, the
/// registries it follows, and the publisher changes its operator accepted.
pub fn installed_command(state: &StateDir, as_json: bool) -> Result<(), Failure> {
    let host = state.open()?;
    let installed = host.all_installed().map_err(install_failure)?;
    let registries = host.registries().map_err(install_failure)?;
    let changes = host.publisher_changes().map_err(install_failure)?;
    if as_json {
        out(&format!(
            "{:#}\n",
            json!({ "installed": installed, "registries": registries, "publisher_changes": changes })
        ));
        return Ok(());
    }
    let mut text = String::new();
    for record in &installed {
        let status = match (&record.blocked, record.enabled) {
            (Some(reason), _) => format!("blocked: {reason}"),
            (None, true) => "enabled".to_string(),
            (None, false) => "disabled until approved".to_string(),
        };
        text += &format!(
            "{}@{} publisher {} (keys {}) from registry {} at {}: {status}\n",
            record.name,
            record.version,
            record.publisher,
            record.publisher_keys.join(","),
            record.registry,
            record.registry_url
        );
    }
    for registry in &registries {
        text += &format!(
            "registry {} last reached at {}: root version {}, index version {}, log of {} entries verified\n",
            registry.id,
            registry.url,
            registry.root.version,
            registry.index_version,
            registry.log_size
        );
    }
    for change in &changes {
        text += &format!(
            "publisher change accepted at {}: {} {} -> {}, registry {} -> {} ({}), publisher {} -> {}, keys [{}] -> [{}]: {}\n",
            change.time,
            change.name,
            change.old_version,
            change.new_version,
            change.old_registry,
            change.new_registry,
            change.new_registry_url,
            change.old_publisher,
            change.new_publisher,
            change.old_keys.join(","),
            change.new_keys.join(","),
            change.reason
        );
    }
    if text.is_empty() {
        text = "nothing installed\n".into();
    }
    out(&text);
    Ok(())
}

pub fn yank_command(node: &str, remote: &Remote) -> Result<(), Failure> {
    let (name, version) = node
        .split_once('@')
        .ok_or_else(|| Failure::usage("give the version to yank: NAME@VERSION"))?;
    let client = remote.client()?;
    let _: Json = tokio()?
        .block_on(client.post_json(&format!("v1/packages/{name}/{version}/yank"), &json!({})))
        .map_err(client_failure)?;
    out(&format!("yanked {name}@{version}\n"));
    Ok(())
}

pub fn registry_command(command: RegistryCommand) -> Result<(), Failure> {
    match command {
        RegistryCommand::Serve(args) => serve_command(*args),
        RegistryCommand::Recover {
            data,
            user,
            kind,
            ttl,
        } => {
            let store = Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
            let ttl = token_ttl(ttl)?.unwrap_or(DEFAULT_TOKEN_TTL);
            if ttl > MAX_TOKEN_TTL {
                return Err(Failure::usage("--ttl: a token lives at most 366 days"));
            }
            let (token, record) = store
                .issue_token_offline(&user, kind.into(), ttl)
                .map_err(store_failure)?;
            out(&format!("{token}\n"));
            eprintln!("token {} for `{user}` (shown once)", record.id);
            Ok(())
        }
        RegistryCommand::Check { data } => {
            let store = Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
            let report = store.check().map_err(store_failure)?;
            out(&format!(
                "{}: intact (redb integrity check {:?}): root version {}, {} versions verified, log of {} entries chains to index version {}\n",
                data.display(),
                report.integrity,
                report.root_version,
                report.versions,
                report.log_entries,
                report.index_version
            ));
            Ok(())
        }
        RegistryCommand::RotateKey {
            data,
            root_keys,
            threshold,
            cosigners,
        } => {
            let mut offline = Vec::new();
            for path in &root_keys {
                offline.push(read_text(path)?.trim().to_string());
            }
            let mut secrets = Vec::new();
            for path in &cosigners {
                secrets.push(package::signing_key_from_hex(&read_text(path)?).ok_or_else(
                    || Failure::usage(format!("{} is not a warden secret key", path.display())),
                )?);
            }
            let mut store =
                Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
            let root = store
                .rotate_root(&data, &offline, threshold, &secrets)
                .map_err(store_failure)?;
            out(&format!(
                "registry key: {} (root version {}; the old key signed it in and is no longer used)\n",
                store.public_key(),
                root.version
            ));
            Ok(())
        }
        RegistryCommand::User {
            name,
            roles,
            publisher,
            remote,
        } => {
            let client = remote.client()?;
            let _: Json = tokio()?
                .block_on(client.post_json(
                    "v1/users",
                    &json!({ "name": name, "roles": roles, "publisher": publisher }),
                ))
                .map_err(client_failure)?;
            out(&format!("created user {name}\n"));
            Ok(())
        }
        RegistryCommand::Token {
            user,
            kind,
            ttl,
            revoke,
            remote,
        } => {
            let client = remote.client()?;
            if let Some(id) = revoke {
                let _: Json = tokio()?
                    .block_on(client.post_json(&format!("v1/tokens/{id}/revoke"), &json!({})))
                    .map_err(client_failure)?;
                out(&format!("revoked token {id}\n"));
                return Ok(());
            }
            let ttl = token_ttl(ttl)?;
            let kind = TokenKind::from(kind);
            let issued: Json = tokio()?
                .block_on(client.post_json(
                    "v1/tokens",
                    &json!({ "user": user, "kind": kind, "ttl": ttl }),
                ))
                .map_err(client_failure)?;
            out(&format!(
                "{}\n",
                issued["token"].as_str().unwrap_or_default()
            ));
            Ok(())
        }
        RegistryCommand::Key {
            publisher,
            public_key,
            secret_key,
            signed_by,
            revoke,
            revoked_at,
            remote,
        } => {
            let key = read_text(&public_key)?.trim().to_string();
            package::verifying_key_from_hex(&key)
                .map_err(|error| Failure::usage(format!("{}: {error}", public_key.display())))?;
            let signer = signed_by.as_deref().map(read_secret).transpose()?;
            if revoke {
                revoke_key_command(&remote, &publisher, &key, revoked_at, signer.as_ref())
            } else {
                let secret = secret_key.unwrap_or_else(|| public_key.with_extension("key"));
                add_key_command(
                    &remote,
                    &publisher,
                    &key,
                    &read_secret(&secret)?,
                    signer.as_ref(),
                )
            }
        }
    }
}

fn read_secret(path: &Path) -> Result<protocol::SigningKey, Failure> {
    package::signing_key_from_hex(&read_text(path)?)
        .ok_or_else(|| Failure::usage(format!("{} is not a warden secret key", path.display())))
}

fn add_key_command(
    remote: &Remote,
    publisher: &str,
    key: &str,
    secret: &protocol::SigningKey,
    signed_by: Option<&protocol::SigningKey>,
) -> Result<(), Failure> {
    if package::public_key_hex(secret) != key {
        return Err(Failure::usage(
            "the secret key is not the one of the public key added; give it with --secret-key",
        ));
    }
    let client = remote.client()?;
    let runtime = tokio()?;
    let registry = remote.registry_id(&client, &runtime)?;
    let mut body = json!({
        "public_key": key,
        "possession": protocol::sign_possession(&registry, publisher, secret),
    });
    if let Some(by) = signed_by {
        body["signed_by"] = json!(package::public_key_hex(by));
        body["signature"] = json!(protocol::sign_key_statement(publisher, key, by));
    }
    let _: Json = runtime
        .block_on(client.post_json(&format!("v1/publishers/{publisher}/keys"), &body))
        .map_err(client_failure)?;
    out(&format!("added {key} to {publisher}\n"));
    Ok(())
}

fn revoke_key_command(
    remote: &Remote,
    publisher: &str,
    key: &str,
    revoked_at: Option<u64>,
    signed_by: Option<&protocol::SigningKey>,
) -> Result<(), Failure> {
    let client = remote.client()?;
    let runtime = tokio()?;
    let mut body = json!({ "revoked_at": revoked_at });
    if let (Some(by), Some(at)) = (signed_by, revoked_at) {
        let registry = remote.registry_id(&client, &runtime)?;
        body["signed_by"] = json!(package::public_key_hex(by));
        body["signature"] = json!(protocol::sign_revocation(&registry, publisher, key, at, by));
    }
    let _: Json = runtime
        .block_on(client.post_json(
            &format!("v1/publishers/{publisher}/keys/{key}/revoke"),
            &body,
        ))
        .map_err(client_failure)?;
    out(&format!("revoked {key} of {publisher}\n"));
    Ok(())
}

/// Sends the server's own messages to stderr, at the level `$WARDEN_LOG` names (`error`,
/// `warn`, `info`, `debug` or `trace`; `info` by default).
fn log_to_stderr() -> Result<(), Failure> {
    let level = match std::env::var("WARDEN_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            text.trim().parse::<tracing::Level>().map_err(|_| {
                Failure::usage(format!(
                    "WARDEN_LOG=`{text}`: give error, warn, info, debug or trace"
                ))
            })?
        }
        _ => tracing::Level::INFO,
    };
    // A second call (tests run commands in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level)
        .with_target(false)
        .try_init();
    Ok(())
}

fn serve_command(args: ServeArgs) -> Result<(), Failure> {
    log_to_stderr()?;
    let ttl = parse_duration(&args.index_ttl)
        .map_err(|error| Failure::usage(format!("--index-ttl: {error}")))?
        .as_secs();
    let max_package = parse_size(&args.max_package)
        .map_err(|error| Failure::usage(format!("--max-package: {error}")))?
        .min(DEFAULT_MAX_PACKAGE_BYTES as u64 * 4) as usize;
    let (store, bootstrap) = Store::open(&args.data, ttl).map_err(store_failure)?;
    let store = store.with_quotas(Quotas {
        tokens_per_user: args.max_tokens_per_user,
        versions_per_publisher: args.max_versions_per_publisher,
        key_events_per_publisher: args.max_key_events_per_publisher,
        token_issuing: rate("token-rate", &args.token_rate)?,
        publishing: rate("publish-rate", &args.publish_rate)?,
        failed_authentications: rate("auth-failure-rate", &args.auth_failure_rate)?,
    });
    store.record_index_ttl().map_err(store_failure)?;
    let tls = tls::server_config(
        &args.data,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )
    .map_err(|error| Failure::usage(error.to_string()))?;
    let mut limits = server_limits(&args)?;
    // Descriptors the registry keeps for itself: the database, a spool file per upload in
    // flight, the runtime's own and the standard streams.
    let reserve = 32u64.saturating_add(args.max_uploads as u64);
    let files = server::fit_file_limit(&mut limits, reserve);
    if let (Some(given), Some(open_files)) = (files.lowered_from, files.open_files) {
        eprintln!(
            "warden: warning: --max-connections lowered from {given} to {}: this process may open \
             only {open_files} files and keeps {reserve} for its own; raise `ulimit -n` for more",
            limits.max_connections
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure {
            code: 1,
            message: format!("cannot start the async runtime: {error}"),
        })?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|error| {
                Failure::usage(format!("cannot listen on {}: {error}", args.listen))
            })?;
        let address = listener
            .local_addr()
            .map_err(|error| Failure::usage(error.to_string()))?;
        // "listening on" comes last: scripts may wait for it.
        let mut banner = format!("registry key: {}\n", store.public_key());
        if let Some(token) = bootstrap {
            banner += &format!("owner token (shown once, keep it safe): {token}\n");
        }
        if args.tls_cert.is_none() {
            banner += &format!(
                "development certificate: {} (clients trust it with --ca-cert)\n",
                tls::dev_certificate_path(&args.data).display()
            );
        }
        banner += &format!("listening on https://{address}\n");
        out(&banner);
        let router = server::api(
            Arc::new(store),
            server::ApiLimits {
                max_package_bytes: max_package,
                max_downloads: args.max_downloads,
                max_uploads: args.max_uploads,
                max_downloads_per_user: args.max_downloads_per_user,
                max_uploads_per_user: args.max_uploads_per_user,
                // Uploads are spooled on the registry's own disk.
                spool: args.data.clone(),
            },
        );
        let interrupted = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::serve_with(listener, tls, router, limits, interrupted).await;
        Ok(())
    })
}
