//! `warden run`: run a node in a sandbox. Outputs go to stdout as JSON, the node's log to
//! stderr. Everything given on the command line is checked before any node code runs.

use crate::args::{CodeCacheDir, StateDir};
use crate::async_runtime::tokio;
use crate::failure::Failure;
use crate::files::{ca_certificates, read_component};
use crate::output::{out, out_json, print_warning};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use warden_host::allowlist::AllowedHosts;
use warden_host::limits::MAX_TIMEOUT;
use warden_host::log::LogRecord;
use warden_host::models::ModelProvider;
use warden_host::units::{parse_duration, parse_size};
use warden_host::{
    Capabilities, DataType, Error, Limits, NodeComponent, Preset, RunContext, RunRequest, Runtime,
    RuntimeConfig, Storage, Value, WasmSecurityConfig,
};

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The node component (.wasm), or with --installed the name of an installed node.
    node_file: PathBuf,
    /// Run an installed node: its package is re-verified, its grant and allowed hosts are what
    /// the operator approved of what it requests (--grant and --allow-host are refused), and it
    /// runs under the limits preset it requested and the operator approved.
    #[arg(long, conflicts_with_all = ["grant", "allow_hosts"])]
    installed: bool,
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    code_cache: CodeCacheDir,
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
        let value = Value::parse_as(text, DataType::Any)
            .map_err(|error| Failure::usage(error.to_string()))?;
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

pub(crate) fn execute(mut args: RunArgs) -> Result<(), Failure> {
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
    let roots = ca_certificates(&args.ca_certs)?;
    // The CLI runs one node: a pool for exactly one run under its limits.
    let settings = RuntimeConfig {
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
        code_cache: args.code_cache.open()?,
        ..RuntimeConfig::new(storage)
    };
    let runtime = Runtime::from_config(settings);
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
        out_json(&document);
    } else {
        out_json(&Json::Object(outputs));
    }
    Ok(())
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
