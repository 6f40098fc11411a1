//! Commands: `build`, `inspect` and `run`. Every failure is one line on stderr and an exit code:
//! 2 bad usage or input, 3 capability refused, 4 limit hit, 5 node failed or trapped.

use crate::build::{self, BuildOptions, Target};
use clap::{Parser, Subcommand};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use warden_host::allowlist::AllowedHosts;
use warden_host::http::certificates_from_pem_or_der;
use warden_host::limits::{MAX_TIMEOUT, parse_duration, parse_size};
use warden_host::log::LogRecord;
use warden_host::models::ModelProvider;
use warden_host::{
    CAPABILITIES, Capabilities, DataType, Error, Limits, NodeComponent, NodeInfo, Preset,
    RunContext, RunRequest, Runtime, RuntimeSettings, Storage, Value, WasmSecurityConfig,
};
use warden_package as package;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Build, inspect and run sandboxed workflow nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a node crate into a component and print its path.
    Build {
        /// The node crate (a directory with Cargo.toml); the current directory by default.
        path: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "wasm32-unknown-unknown")]
        target: Target,
        /// Build without optimizations.
        #[arg(long)]
        debug: bool,
        /// Cargo features of the node crate to enable.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// Show the nodes a component provides, their pins, and the capabilities it needs.
    Inspect {
        node: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run a node in a sandbox. Outputs go to stdout as JSON, the node's log to stderr.
    Run(Box<RunArgs>),
    /// Make an Ed25519 key pair for signing packages: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "warden-signing")]
        out: PathBuf,
    },
    /// Sign a node into a package: the manifest's capabilities come from the component's imports.
    Pack(Box<PackArgs>),
    /// Verify a package: its manifest, component, capabilities and signatures.
    Verify {
        package: PathBuf,
        /// Also require a signature by the public key in FILE (repeatable).
        #[arg(long = "trust", value_name = "FILE")]
        trusted: Vec<PathBuf>,
        /// Require signatures by at least N distinct --trust keys (a key counts once).
        #[arg(long, value_name = "N", requires = "trusted")]
        threshold: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Publish a package to a registry.
    Publish {
        package: PathBuf,
        #[command(flatten)]
        remote: crate::registry_cli::Remote,
    },
    /// Install a node from a registry after verifying the index, the log and the package.
    Install(Box<crate::registry_cli::InstallArgs>),
    /// Approve what an installed node's new version requests, enabling it.
    Approve {
        name: String,
        /// Approve only these capabilities (comma-separated); everything pending by default.
        #[arg(long, value_name = "CAP[,CAP]...", value_delimiter = ',')]
        grant: Option<Vec<String>>,
        /// Approve only these hosts (repeatable); everything pending by default.
        #[arg(long = "host", value_name = "PATTERN")]
        hosts: Option<Vec<String>>,
        /// Approve up to this limits preset; what is pending by default.
        #[arg(long, value_name = "restrictive|default|permissive")]
        preset: Option<String>,
        #[command(flatten)]
        state: crate::registry_cli::StateDir,
    },
    /// Re-verify a registry's newest signed state and block installed nodes it no longer
    /// vouches for (a revoked signing key): the kill switch. Run it more often than the
    /// registry's index lifetime.
    Sync {
        #[command(flatten)]
        remote: crate::registry_cli::Remote,
        #[command(flatten)]
        state: crate::registry_cli::StateDir,
    },
    /// List installed nodes, the registries they came from, and accepted publisher changes.
    Installed {
        #[command(flatten)]
        state: crate::registry_cli::StateDir,
        #[arg(long)]
        json: bool,
    },
    /// Yank a published version: hosts will not install it anew.
    Yank {
        /// NAME@VERSION
        node: String,
        #[command(flatten)]
        remote: crate::registry_cli::Remote,
    },
    /// Run the node registry, check one, or manage its users, tokens and publisher keys.
    #[command(subcommand)]
    Registry(crate::registry_cli::RegistryCommand),
    /// List the capabilities and the names --grant accepts.
    Capabilities {
        /// Print the table as Markdown (docs/capabilities.md holds this output).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(clap::Args)]
struct PackArgs {
    /// A node component (.wasm), or a node crate to build first.
    node: PathBuf,
    #[arg(long)]
    name: String,
    /// Semantic version, such as 1.0.0.
    #[arg(long)]
    version: String,
    /// The secret key file from `warden keygen`; repeat for co-signers.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long, default_value = "")]
    publisher: String,
    /// Hosts the node asks to reach (repeatable).
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// The limits preset the node asks for.
    #[arg(long, default_value = "default")]
    preset: String,
    /// Where to write the package; NAME-VERSION.wpkg by default.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The node component (.wasm), or with --installed the name of an installed node.
    node_file: PathBuf,
    /// Run an installed node: its package is re-verified, its grant and allowed hosts are what
    /// the operator approved of what it requests (--grant and --allow-host are refused), and it
    /// runs under the limits preset it requested and the operator approved.
    #[arg(long, conflicts_with_all = ["grant", "allow_hosts"])]
    installed: bool,
    #[command(flatten)]
    state: crate::registry_cli::StateDir,
    /// Which node of the component to run (needed when it provides several).
    #[arg(long = "node")]
    node: Option<String>,
    /// An input, NAME=VALUE, parsed by the pin's type (repeatable).
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// Capabilities to grant, comma-separated: names or sets (standard, storage-all, all, none).
    #[arg(long, default_value = "standard", value_name = "CAP[,CAP]...")]
    grant: String,
    /// The limits preset: `default` unless given (with --installed, the approved one).
    #[arg(long, value_name = "default|restrictive|permissive")]
    preset: Option<String>,
    /// Memory limit, such as 64MiB (overrides the preset).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Fuel limit, or `off` (overrides the preset).
    #[arg(long, value_name = "N|off")]
    fuel: Option<String>,
    /// Wall-clock timeout, such as 500ms or 10s (overrides the preset).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    #[arg(long, default_value = "default", value_name = "ID")]
    board: String,
    #[arg(long, default_value = "local", value_name = "ID")]
    user: String,
    /// The node instance id (node-scoped storage belongs to it); the node's name by default.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// A variable of the run, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Keep storage in DIR/warden.redb (in memory, gone after the run, by default).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Allow outbound connections to hosts matching PATTERN (repeatable): `api.example.com`,
    /// `*.example.com`, `https://host:8443`, `10.1.2.0/24`, `[::1]`, `*`.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// Also trust the CA certificate(s) in FILE (PEM or DER) for HTTPS and WSS (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
    /// The OpenAI-compatible endpoint behind the models capability, such as
    /// http://127.0.0.1:8080/v1 (its API key, if any, from WARDEN_MODELS_API_KEY).
    #[arg(long, value_name = "URL")]
    models_endpoint: Option<String>,
    /// Link wasi:filesystem (the node's private directory only).
    #[arg(long)]
    allow_wasi: bool,
    /// Link wasi:sockets for the granted tcp, udp and dns capabilities.
    #[arg(long)]
    allow_wasi_network: bool,
    /// Print one JSON document with outputs, variables, log and usage.
    #[arg(long)]
    json: bool,
}

/// A failure of a command: its message and exit code.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            code: error.exit_code(),
            message: with_causes(&error),
        }
    }
}

/// An error's message followed by each cause its message does not already say:
/// `message: cause: cause`.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// Prints a warning of the runtime as one line on stderr.
fn print_warning(message: &str) {
    let message = message.replace(['\n', '\r'], " ");
    eprintln!("warden: warning: {message}");
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's message spans several lines (tip, usage); keep the promise of one line.
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("warden: error: {first} (see warden --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Build {
            path,
            target,
            debug,
            features,
        } => build_command(path, target, debug, features),
        Command::Inspect { node, json } => inspect_command(&node, json),
        Command::Run(args) => run_command(*args),
        Command::Keygen { out } => keygen_command(&out),
        Command::Pack(args) => pack_command(*args),
        Command::Verify {
            package,
            trusted,
            threshold,
            json,
        } => verify_command(&package, &trusted, threshold, json),
        Command::Publish { package, remote } => {
            crate::registry_cli::publish_command(&package, &remote)
        }
        Command::Install(args) => crate::registry_cli::install_command(*args),
        Command::Approve {
            name,
            grant,
            hosts,
            preset,
            state,
        } => crate::registry_cli::approve_command(&name, grant, hosts, preset, &state),
        Command::Sync { remote, state } => crate::registry_cli::sync_command(&remote, &state),
        Command::Installed { state, json } => crate::registry_cli::installed_command(&state, json),
        Command::Yank { node, remote } => crate::registry_cli::yank_command(&node, &remote),
        Command::Registry(command) => crate::registry_cli::registry_command(command),
        Command::Capabilities { markdown } => {
            out(&if markdown {
                capability_markdown()
            } else {
                capability_list()
            });
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Messages may carry a node's words (its error, its names): one line, shown.
            let message = warden_host::log::one_line(&failure.message, 16 * 1024);
            eprintln!("warden: error: {message}");
            ExitCode::from(failure.code)
        }
    }
}

fn build_command(
    path: Option<PathBuf>,
    target: Target,
    debug: bool,
    features: Vec<String>,
) -> Result<(), Failure> {
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let options = BuildOptions {
        target,
        release: !debug,
        features,
        ..BuildOptions::default()
    };
    let built = build::build(&path, &options).map_err(|error| Failure::usage(error.to_string()))?;
    for component in built {
        out(&format!("{}\n", component.display()));
    }
    Ok(())
}

fn read_component(path: &Path) -> Result<NodeComponent, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))?;
    NodeComponent::from_bytes(bytes)
        .map_err(|error| Failure::usage(format!("{}: {error}", path.display())))
}

pub(crate) fn tokio() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure {
            code: 1,
            message: format!("cannot start the async runtime: {error}"),
        })
}

fn inspect_command(path: &Path, as_json: bool) -> Result<(), Failure> {
    let component = read_component(path)?;
    // One description, so a pool for one run of the default preset.
    let runtime = Runtime::from_settings(RuntimeSettings {
        concurrency: 1,
        pool_limits: Limits::default(),
        on_warning: Some(Arc::new(print_warning)),
        ..RuntimeSettings::new(Storage::in_memory().map_err(Error::from)?)
    });
    let nodes = tokio()?.block_on(runtime.describe(&component, &Limits::default()))?;
    let required = component.required_capabilities();
    let summary = component.summary();
    if as_json {
        let document = json!({
            "sha256": summary.sha256,
            "nodes": nodes.iter().map(NodeInfo::to_json).collect::<Vec<_>>(),
            "capabilities": required.names(),
            "imports": summary.imports,
        });
        out(&format!("{document:#}\n"));
        return Ok(());
    }
    let mut text = String::new();
    for node in &nodes {
        text += &format!("node {} ({})\n", node.name, node.friendly_name);
        if !node.description.is_empty() {
            text += &format!("  {}\n", node.description);
        }
        if !node.category.is_empty() {
            text += &format!("  category: {}\n", node.category);
        }
        for pin in &node.pins {
            let direction = if pin.direction == warden_host::Direction::Input {
                "in "
            } else {
                "out"
            };
            let mut line = format!("  {direction} {}: {}", pin.name, pin.data_type.name());
            if let Some(default) = &pin.default {
                line += &format!(" = {}", default.to_json());
            }
            if !pin.valid_values.is_empty() {
                let values: Vec<String> = pin
                    .valid_values
                    .iter()
                    .map(|v| v.to_json().to_string())
                    .collect();
                line += &format!(" (one of {})", values.join(", "));
            }
            if let Some(range) = pin.range {
                line += &format!(" (range {} to {})", range.min, range.max);
            }
            if !pin.description.is_empty() {
                line += &format!("  # {}", pin.description);
            }
            text += &format!("{line}\n");
        }
    }
    text += &format!("capabilities: {required}\n");
    text += &format!(
        "imports: {}\n",
        if summary.imports.is_empty() {
            "none".into()
        } else {
            summary.imports.join(", ")
        }
    );
    text += &format!("sha256: {}\n", summary.sha256);
    out(&text);
    Ok(())
}

fn keygen_command(prefix: &Path) -> Result<(), Failure> {
    let secret_path = prefix.with_extension("key");
    let public_path = prefix.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(Failure::usage(format!(
                "{} exists; choose another --out or remove it",
                path.display()
            )));
        }
    }
    let key = package::generate_key().map_err(|error| Failure::usage(error.to_string()))?;
    package::write_secret_file(
        &secret_path,
        &format!("{}\n", package::secret_key_hex(&key)),
    )
    .map_err(|error| Failure::usage(error.to_string()))?;
    std::fs::write(&public_path, format!("{}\n", package::public_key_hex(&key))).map_err(
        |error| Failure::usage(format!("cannot write {}: {error}", public_path.display())),
    )?;
    out(&format!(
        "secret key: {} (keep it private)\npublic key: {} ({})\n",
        secret_path.display(),
        public_path.display(),
        package::public_key_hex(&key)
    ));
    Ok(())
}

fn pack_command(args: PackArgs) -> Result<(), Failure> {
    let component_path = if args.node.is_dir() {
        let built = build::build(&args.node, &BuildOptions::default())
            .map_err(|error| Failure::usage(error.to_string()))?;
        match built.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Failure::usage(
                    "the crate built several components; pack one .wasm at a time",
                ));
            }
        }
    } else {
        args.node.clone()
    };
    let component = std::fs::read(&component_path).map_err(|error| {
        Failure::usage(format!("cannot read {}: {error}", component_path.display()))
    })?;
    let mut keys = Vec::new();
    for path in &args.keys {
        let secret = std::fs::read_to_string(path)
            .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))?;
        keys.push(package::signing_key_from_hex(&secret).ok_or_else(|| {
            Failure::usage(format!("{} is not a warden secret key", path.display()))
        })?);
    }
    let manifest = package::Manifest {
        name: args.name.clone(),
        version: args.version.clone(),
        description: args.description,
        publisher: args.publisher,
        capabilities: Vec::new(),
        allowed_hosts: args.allow_hosts,
        limits: args.preset,
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    };
    let (first, cosigners) = keys
        .split_first()
        .ok_or_else(|| Failure::usage("give a signing key with --key"))?;
    let mut bytes = package::pack(&component, manifest, first)
        .map_err(|error| Failure::usage(error.to_string()))?;
    if !cosigners.is_empty() {
        let mut signed =
            package::decode(&bytes).map_err(|error| Failure::usage(error.to_string()))?;
        for key in cosigners {
            package::add_signature(&mut signed, key);
        }
        bytes = package::encode(&signed);
    }
    let destination = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.wpkg", args.name, args.version)));
    std::fs::write(&destination, bytes).map_err(|error| {
        Failure::usage(format!("cannot write {}: {error}", destination.display()))
    })?;
    out(&format!("{}\n", destination.display()));
    Ok(())
}

fn verify_command(
    path: &Path,
    trusted: &[PathBuf],
    threshold: Option<usize>,
    as_json: bool,
) -> Result<(), Failure> {
    let refused =
        |error: package::PackageError| Failure::usage(format!("{}: {error}", path.display()));
    let mut keys = Vec::new();
    for file in trusted {
        let text = std::fs::read_to_string(file)
            .map_err(|error| Failure::usage(format!("cannot read {}: {error}", file.display())))?;
        keys.push(
            package::verifying_key_from_hex(&text)
                .map_err(|error| Failure::usage(format!("{}: {error}", file.display())))?,
        );
    }
    let package = package::read_file(path).map_err(|error| match error {
        package::PackageError::Io(..) => Failure::usage(error.to_string()),
        other => refused(other),
    })?;
    let signers = match threshold {
        Some(threshold) => package::verify_threshold(&package, &keys, threshold),
        None => package::verify(&package, (!trusted.is_empty()).then_some(keys.as_slice())),
    }
    .map_err(refused)?;
    let manifest = &package.manifest;
    let signers: Vec<String> = signers
        .iter()
        .map(|key| key.as_bytes().iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    if as_json {
        out(&format!(
            "{:#}\n",
            json!({ "verified": true, "manifest": manifest, "signers": signers })
        ));
    } else {
        out(&format!(
            "verified {} {}: capabilities [{}], signed by {}\n",
            manifest.name,
            manifest.version,
            manifest.capabilities.join(","),
            signers.join(", ")
        ));
    }
    Ok(())
}

fn capability_list() -> String {
    let mut text = String::new();
    for info in CAPABILITIES {
        let state = if info.implemented {
            ""
        } else {
            " (declared in WIT; this host does not provide it yet)"
        };
        text += &format!(
            "{:#07x}  {:<16} {}{state}\n",
            info.bit.bits(),
            info.name,
            info.summary
        );
    }
    text + &format!("sets: {}\n", compound_list())
}

fn compound_list() -> String {
    let sets: Vec<String> = warden_host::capability::COMPOUNDS
        .iter()
        .map(|(name, set)| format!("{name} = {set}"))
        .collect();
    sets.join("; ")
}

/// The capability table as Markdown, generated from the same table the host links from.
pub fn capability_markdown() -> String {
    let mut text = String::from(
        "| bit | name | world | imports | grants | provided |\n|---|---|---|---|---|---|\n",
    );
    for info in CAPABILITIES {
        let imports: Vec<String> = info
            .interfaces
            .iter()
            .map(|interface| format!("`{interface}`"))
            .collect();
        let provided = if info.implemented { "yes" } else { "not yet" };
        text += &format!(
            "| {:#x} | `{}` | `{}` | {} | {} | {provided} |\n",
            info.bit.bits(),
            info.name,
            info.world,
            imports.join(", "),
            info.summary
        );
    }
    text + &format!("\nSets: {}.\n", compound_list())
}

fn split_pair<'a>(flag: &str, pair: &'a str) -> Result<(&'a str, &'a str), Failure> {
    pair.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| Failure::usage(format!("{flag} `{pair}` is not NAME=VALUE")))
}

fn limits(args: &RunArgs) -> Result<Limits, Failure> {
    let preset: Preset = args
        .preset
        .as_deref()
        .unwrap_or("default")
        .parse()
        .map_err(|error: warden_host::limits::UnknownPreset| Failure::usage(error.to_string()))?;
    let mut limits = Limits::preset(preset);
    if let Some(memory) = &args.memory {
        limits.memory_bytes =
            parse_size(memory).map_err(|error| Failure::usage(format!("--memory: {error}")))?;
    }
    if let Some(fuel) = &args.fuel {
        limits.fuel = match fuel.as_str() {
            "off" | "none" => None,
            number => {
                let digits = number.replace('_', "");
                if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(Failure::usage(format!(
                        "--fuel: `{number}` is not a whole number or `off`"
                    )));
                }
                Some(digits.parse().map_err(|_| {
                    Failure::usage(format!(
                        "--fuel: `{number}` is too large; the most is {}",
                        u64::MAX
                    ))
                })?)
            }
        };
    }
    if let Some(timeout) = &args.timeout {
        limits.timeout = parse_duration(timeout)
            .map_err(|error| Failure::usage(format!("--timeout: {error}")))?;
        if limits.timeout > MAX_TIMEOUT {
            return Err(Failure::usage(format!(
                "--timeout: `{timeout}` is over the longest a run may take (24h)"
            )));
        }
    }
    limits
        .validate()
        .map_err(|error| Failure::usage(format!("invalid limits: {error}")))?;
    Ok(limits)
}

/// The component, grant and allowed hosts of a run: from the command line, or from what was
/// installed and approved.
fn run_source(args: &mut RunArgs) -> Result<(NodeComponent, Capabilities, Vec<String>), Failure> {
    if !args.installed {
        let capabilities: Capabilities =
            args.grant
                .parse()
                .map_err(|error: warden_host::capability::UnknownCapability| {
                    Failure::usage(format!("--grant: {error}"))
                })?;
        return Ok((
            read_component(&args.node_file)?,
            capabilities,
            args.allow_hosts.clone(),
        ));
    }
    let name = args.node_file.to_string_lossy().into_owned();
    let (package, record) = args
        .state
        .open()?
        .load(&name)
        .map_err(|error| Failure::usage(error.to_string()))?;
    if args.preset.is_none() {
        args.preset = Some(record.limits.clone());
    }
    let grant = record
        .grant()
        .map_err(|error| Failure::usage(error.to_string()))?;
    let component = NodeComponent::from_bytes(package.component)
        .map_err(|error| Failure::usage(format!("{name}: {error}")))?;
    Ok((component, grant, record.granted_hosts()))
}

/// `--input` pairs split into names and texts; each name once.
fn input_pairs(args: &RunArgs) -> Result<Vec<(String, String)>, Failure> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in &args.inputs {
        let (name, text) = split_pair("--input", pair)?;
        if pairs.iter().any(|(seen, _)| seen == name) {
            return Err(Failure::usage(format!("--input `{name}` is given twice")));
        }
        pairs.push((name.to_string(), text.to_string()));
    }
    Ok(pairs)
}

/// The run's variables from `--var` pairs; each name once.
fn variables(args: &RunArgs) -> Result<BTreeMap<String, Value>, Failure> {
    let mut variables = BTreeMap::new();
    for pair in &args.vars {
        let (name, text) = split_pair("--var", pair)?;
        let value = Value::parse_as(text, DataType::Any).map_err(Failure::usage)?;
        if variables.insert(name.to_string(), value).is_some() {
            return Err(Failure::usage(format!("--var `{name}` is given twice")));
        }
    }
    Ok(variables)
}

/// The run's context; `node` names the node instance unless `--instance` does.
fn run_context(args: &RunArgs, node: &str) -> Result<RunContext, Failure> {
    let context = RunContext {
        run_id: format!("run-{}", std::process::id()),
        board_id: args.board.clone(),
        user_id: args.user.clone(),
        node_instance_id: args.instance.clone().unwrap_or_else(|| node.to_string()),
        ..RunContext::for_node(node)
    };
    context.validate().map_err(|error| {
        let flag = match error.field {
            "board id" => "--board",
            "user id" => "--user",
            "node instance id" => "--instance",
            _ => "the run context",
        };
        Failure::usage(format!("{flag}: {error}"))
    })?;
    Ok(context)
}

fn run_command(mut args: RunArgs) -> Result<(), Failure> {
    // Everything given on the command line is checked before any node code runs (describing
    // the component runs some): limits, ids, the syntax of inputs and variables.
    let limits = limits(&args)?;
    let input_pairs = input_pairs(&args)?;
    let variables = variables(&args)?;
    run_context(&args, args.node.as_deref().unwrap_or("node"))?;
    let (component, capabilities, hosts) = run_source(&mut args)?;
    // An installed node brings its preset: check the limits again with it.
    let limits = if args.installed {
        self::limits(&args)?
    } else {
        limits
    };
    let allowed_hosts = AllowedHosts::parse(&hosts)
        .map_err(|error| Failure::usage(format!("--allow-host: {error}")))?;
    let config = WasmSecurityConfig {
        limits,
        capabilities,
        allow_wasi: args.allow_wasi,
        allow_wasi_network: args.allow_wasi_network,
        allowed_hosts,
    };
    let storage = match &args.data {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|error| Failure::usage(format!("--data {}: {error}", dir.display())))?;
            Storage::open(&dir.join("warden.redb"))
                .map_err(|error| Failure::usage(format!("--data: {error}")))?
        }
        None => Storage::in_memory().map_err(Error::from)?,
    };
    let mut roots = Vec::new();
    for file in &args.ca_certs {
        let bytes = std::fs::read(file)
            .map_err(|error| Failure::usage(format!("--ca-cert {}: {error}", file.display())))?;
        roots.extend(
            certificates_from_pem_or_der(&bytes).map_err(|error| {
                Failure::usage(format!("--ca-cert {}: {error}", file.display()))
            })?,
        );
    }
    // The CLI runs one node: a pool for exactly one run under its limits.
    let settings = RuntimeSettings {
        concurrency: 1,
        pool_limits: config.limits.clone(),
        on_warning: Some(Arc::new(print_warning)),
        root_certificates: roots,
        files_dir: args.data.as_ref().map(|dir| dir.join("files")),
        models: match &args.models_endpoint {
            Some(endpoint) => Some(
                ModelProvider::new(
                    endpoint,
                    std::env::var("WARDEN_MODELS_API_KEY").ok(),
                    Vec::new(),
                )
                .map_err(|error| Failure::usage(format!("--models-endpoint: {error}")))?,
            ),
            None => None,
        },
        ..RuntimeSettings::new(storage)
    };
    let runtime = Runtime::from_settings(settings);
    let tokio = tokio()?;
    let prepared = tokio.block_on(runtime.prepare(&component, &config))?;
    let node = prepared.node(args.node.as_deref())?;
    let mut inputs = Vec::new();
    for (name, text) in &input_pairs {
        let (name, text) = (name.as_str(), text.as_str());
        let pin = node.inputs().find(|pin| pin.name == name).ok_or_else(|| {
            let known: Vec<&str> = node.inputs().map(|pin| pin.name.as_str()).collect();
            Failure::usage(format!(
                "node `{}` has no input `{name}`; its inputs are: {}",
                node.name,
                known.join(", ")
            ))
        })?;
        let value = Value::parse_as(text, pin.data_type)
            .map_err(|error| Failure::usage(format!("--input {name}: {error}")))?;
        inputs.push(warden_host::Field::new(name, value));
    }
    let context = run_context(&args, &node.name)?;
    let as_json = args.json;
    let request = RunRequest {
        node: Some(node.name.clone()),
        context,
        inputs,
        variables,
        on_log: Some(Arc::new(move |record: &LogRecord| {
            print_log(record, as_json)
        })),
        on_stream: Some(Arc::new(move |chunk: &Value| {
            if !as_json {
                out(&format!("{}\n", json!({ "chunk": chunk.to_json() })));
            }
        })),
        on_ui: Some(Arc::new(move |document: &Json| {
            if !as_json {
                out(&format!("{}\n", json!({ "ui": document })));
            }
        })),
        ..RunRequest::default()
    };
    let outcome = tokio.block_on(prepared.run(request))?;
    let outputs: serde_json::Map<String, Json> = outcome
        .outputs
        .iter()
        .map(|field| (field.name.clone(), field.value.to_json()))
        .collect();
    if as_json {
        let variables: serde_json::Map<String, Json> = outcome
            .variables
            .iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect();
        let document = json!({
            "node": outcome.node,
            "outputs": outputs,
            "variables": variables,
            "log": outcome.log,
            "log_dropped_bytes": outcome.log_dropped_bytes,
            "fuel_consumed": outcome.fuel_consumed,
            "duration_ms": outcome.duration.as_secs_f64() * 1000.0,
        });
        out(&format!("{document:#}\n"));
    } else {
        out(&format!("{:#}\n", Json::Object(outputs)));
    }
    Ok(())
}

/// Writes to stdout and flushes; a closed stdout (`warden run … | head`) is not an error worth
/// a panic, so write errors are ignored.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A node's log line on stderr: `[level source] text`, the text escaped by the host, so it
/// is one line that never starts like warden's own `warden: ` lines; with `--json`, a JSON
/// object per line (`{"log": {...}}`), so node text stays inside JSON strings.
fn print_log(record: &LogRecord, as_json: bool) {
    let mut stderr = std::io::stderr().lock();
    let _ = if as_json {
        writeln!(stderr, "{}", json!({ "log": record }))
    } else {
        writeln!(
            stderr,
            "[{} {}] {}",
            record.level.name(),
            source_name(record),
            record.message
        )
    };
}

fn source_name(record: &LogRecord) -> &'static str {
    match record.source {
        warden_host::log::Source::Log => "log",
        warden_host::log::Source::Stdout => "stdout",
        warden_host::log::Source::Stderr => "stderr",
        warden_host::log::Source::Host => "host",
    }
}
