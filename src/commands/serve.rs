//! `warden serve`: the host daemon. It loads the nodes its manifest names, verified and
//! prepared, and runs them for callers over an authenticated HTTPS API until SIGTERM.
//! docs/daemon.md describes the manifest and the API.

use crate::async_runtime::tokio_multi_thread;
use crate::failure::Failure;
use crate::files::read_text;
use crate::output::out;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use warden_daemon::{ApiKey, Options, ServeError, StartError};

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The host manifest (TOML): listeners, sources, nodes and their grants.
    #[arg(long, env = "WARDEN_MANIFEST", value_name = "FILE")]
    manifest: PathBuf,
    /// A file holding an API key callers may present (beside the manifest's [[api.keys]] and
    /// $WARDEN_API_KEY).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// The daemon's own log on stderr: one JSON object per line, or text for people.
    #[arg(long, default_value = "json", value_name = "json|text")]
    log_format: LogFormat,
    /// Check the manifest and load, verify and prepare every node, then exit without serving.
    #[arg(long)]
    check: bool,
    /// Create the first owner offline (the daemon stopped): a technical user NAME with the
    /// Owner role, and an API key for it, shown once. Then exit.
    #[arg(long, value_name = "NAME", conflicts_with = "check")]
    create_owner: Option<String>,
    /// Administer users, roles and credentials offline (the daemon stopped); a running daemon
    /// is administered through /v1/admin/... (docs/auth.md).
    #[command(subcommand)]
    command: Option<ServeCommand>,
}

#[derive(clap::Subcommand)]
enum ServeCommand {
    /// Users, roles, assignments and credentials in the daemon's store, offline.
    #[command(subcommand)]
    Admin(super::serve_admin::AdminCommand),
}

/// Creates the owner `name` in the manifest's data directory and prints its key once.
fn create_owner(args: &ServeArgs, name: &str) -> Result<(), Failure> {
    use warden_daemon::auth::Permissions;
    use warden_daemon::auth::store::{CredentialKind, UserKind};
    let manifest = warden_daemon::Manifest::load(&args.manifest)
        .map_err(|error| Failure::usage(error.to_string()))?;
    std::fs::create_dir_all(&manifest.data_dir).map_err(|error| {
        Failure::failed(format!(
            "cannot create {}: {error}",
            manifest.data_dir.display()
        ))
    })?;
    let failed = |error: warden_daemon::auth::store::StoreError| match error.in_cluster() {
        true => Failure::failed(error.to_string()),
        false => Failure::failed(format!("{error} (is the daemon running? stop it first)")),
    };
    // In a cluster, the owner is created in the cluster's database, for every daemon.
    let runtime = tokio_multi_thread()?;
    let _entered = runtime.enter();
    let store = warden_daemon::cluster::auth_store(&manifest, &runtime)
        .map_err(|error| Failure::failed(error.to_string()))?;
    let now = warden_registry::protocol::now();
    store
        .create_user(name, UserKind::Technical, None, now)
        .map_err(|error| match error.in_cluster() {
            true => Failure::failed(error.to_string()),
            false => Failure::usage(error.to_string()),
        })?;
    // A cluster may have its `owner` role already (made by another daemon's first owner):
    // kept as it is.
    let roles = store.roles().map_err(failed)?;
    if !roles.iter().any(|role| role.name == "owner") {
        store
            .put_role("owner", Permissions::OWNER)
            .map_err(failed)?;
    }
    store.assign(name, "owner", None).map_err(failed)?;
    let (credential, secret) = store
        .issue(
            name,
            CredentialKind::ApiKey,
            "first owner",
            warden_daemon::auth::store::MAX_CREDENTIAL_LIFETIME,
            now,
        )
        .map_err(failed)?;
    out(&format!(
        "owner `{name}` created {}\nAPI key {} (shown once, keep it safe; send it as X-API-Key): {secret}\n",
        store.location(),
        credential.id
    ));
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn key(name: &str, key: &str) -> Result<ApiKey, Failure> {
    let key = key.trim();
    if key.len() < 16 {
        return Err(Failure::usage(format!(
            "{name}: an API key is at least 16 characters; make one with `openssl rand -hex 32`"
        )));
    }
    Ok(ApiKey {
        name: name.to_string(),
        sha256: Sha256::digest(key.as_bytes()).into(),
        // The operator's own key.
        admin: true,
    })
}

fn keys(args: &ServeArgs) -> Result<Vec<ApiKey>, Failure> {
    let mut keys = Vec::new();
    if let Ok(text) = std::env::var("WARDEN_API_KEY")
        && !text.trim().is_empty()
    {
        keys.push(key("env:WARDEN_API_KEY", &text)?);
    }
    if let Some(file) = &args.api_key_file {
        keys.push(key("file:api-key-file", &read_text(file)?)?);
    }
    Ok(keys)
}

/// What keeps the daemon's own log going: with the `otlp` feature, the exporter, flushed when
/// dropped.
struct Logging {
    #[cfg(feature = "otlp")]
    _exporting: Option<warden_daemon::otlp::Exporting>,
}

/// The daemon's log on stderr (and, with the `otlp` feature and an endpoint set, its spans
/// exported over OTLP). Call within the Tokio runtime.
fn init_logging(format: LogFormat) -> Result<Logging, Failure> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = crate::commands::registry::serve::log_level()?;
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    let text = matches!(format, LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = matches!(format, LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json);
    #[cfg(feature = "otlp")]
    {
        let (layer, exporting) = match warden_daemon::otlp::layer()
            .map_err(|error| Failure::usage(format!("OpenTelemetry: {error}")))?
        {
            Some((layer, exporting)) => (Some(layer), Some(exporting)),
            None => (None, None),
        };
        // A second call (tests run commands in one process) keeps the first subscriber.
        let _ = registry.with(layer).try_init();
        Ok(Logging {
            _exporting: exporting,
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = registry.try_init();
        Ok(Logging {})
    }
}

fn failure(error: ServeError) -> Failure {
    match &error {
        ServeError::Start(StartError::Nodes(problems)) => {
            for problem in problems {
                eprintln!("warden: refused: {problem}");
            }
            Failure::usage(format!(
                "{} node problem{}, listed above; nothing was started",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ))
        }
        ServeError::Start(StartError::Manifest(warden_daemon::ManifestError::Invalid {
            path,
            problems,
        })) => {
            for problem in problems {
                eprintln!("warden: {}: {problem}", path.display());
            }
            Failure::usage(format!(
                "the manifest {} has {} problem{}, listed above",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ))
        }
        // What the operator wrote is wrong: 2; the machine would not let it start: 1.
        ServeError::Start(StartError::Manifest(_) | StartError::NoApiKey) => {
            Failure::usage(error.to_string())
        }
        _ => Failure::failed(error.to_string()),
    }
}

pub(crate) fn execute(mut args: ServeArgs) -> Result<(), Failure> {
    if let Some(ServeCommand::Admin(command)) = args.command.take() {
        return super::serve_admin::execute(&args.manifest, command);
    }
    if let Some(name) = &args.create_owner {
        return create_owner(&args, name);
    }
    let options = Options {
        api_keys: keys(&args)?,
    };
    let runtime = tokio_multi_thread()?;
    let _logging = {
        let _entered = runtime.enter();
        init_logging(args.log_format)?
    };
    if args.check {
        return runtime.block_on(async {
            let daemon = warden_daemon::Daemon::start(&args.manifest, options)
                .await
                .map_err(|error| failure(ServeError::Start(error)))?;
            let generation = daemon.current();
            for live in &generation.nodes {
                out(&format!(
                    "ok: {}@{} granted [{}]\n",
                    live.name(),
                    live.verified.version,
                    live.config.capabilities.names().join(",")
                ));
            }
            // In a cluster, the start's audit records wait for the database.
            daemon.audit.flush(std::time::Duration::from_secs(5)).await;
            Ok(())
        });
    }
    runtime.block_on(async {
        warden_daemon::serve(
            &args.manifest,
            options,
            |ready| {
                // "listening on" comes last: scripts may wait for it.
                let mut banner = String::new();
                for node in &ready.nodes {
                    banner += &format!("loaded {node}\n");
                }
                banner += &format!("generation {}\n", ready.generation);
                banner += &format!("audit log: {}\n", ready.audit_log);
                if let Some(certificate) = &ready.dev_certificate {
                    banner += &format!(
                        "development certificate: {} (trust it with `warden call --ca-cert` or `curl --cacert`)\n",
                        certificate.display()
                    );
                }
                if let Some(metrics) = ready.metrics {
                    banner += &format!("metrics on https://{metrics}/metrics\n");
                }
                banner += &format!("listening on https://{}\n", ready.api);
                out(&banner);
            },
            std::future::pending(),
        )
        .await
        .map_err(failure)
    })
}
