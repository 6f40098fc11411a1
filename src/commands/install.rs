//! `warden install`: install a node from a registry after verifying the index, the log and the
//! package. What the node may do is what the operator approves of what it requests.

use crate::args::{Remote, StateDir};
use crate::async_runtime::tokio;
use crate::failure::{Failure, install_failure};
use crate::files::read_text;
use crate::output::{out, out_json};
use serde_json::json;
use std::path::Path;
use warden_registry::client::install::{self, InstallRequest};
use warden_registry::protocol;

#[derive(clap::Args)]
pub(crate) struct InstallArgs {
    /// NAME or NAME@VERSION (the highest version not yanked by default).
    node: String,
    #[command(flatten)]
    remote: Remote,
    /// The registry's public key (hex, or a file holding it); needed on first use, after
    /// which it is pinned.
    #[arg(long, value_name = "HEX|FILE")]
    registry_key: Option<String>,
    // The approval flags are spelled as `run` and `approve` spell them; the spellings before
    // (`--approve`, `--approve-host`, `--approve-preset`) stay as hidden aliases for scripts.
    /// Capabilities to approve, comma-separated; on a first install, what the package requests.
    #[arg(
        long,
        alias = "approve",
        value_name = "CAP[,CAP]...",
        value_delimiter = ','
    )]
    grant: Option<Vec<String>>,
    /// Hosts to approve (repeatable); on a first install, what the package requests.
    #[arg(long = "allow-host", alias = "approve-host", value_name = "PATTERN")]
    allow_hosts: Option<Vec<String>>,
    /// The loosest limits preset to approve; on a first install, what the package requests.
    #[arg(
        long,
        alias = "approve-preset",
        value_name = "restrictive|default|permissive"
    )]
    preset: Option<String>,
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

pub(crate) fn execute(args: InstallArgs) -> Result<(), Failure> {
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
                version_req: None,
                registry_key: key.as_deref(),
                approve: args.grant,
                approve_hosts: args.allow_hosts,
                approve_limits: args.preset,
                now: protocol::now(),
                accept_publisher_change: args.accept_publisher_change,
                blobs: None,
            },
        ))
        .map_err(install_failure)?;
    if args.json {
        out_json(
            &json!({ "installed": record, "pending": record.pending(), "pending_hosts": record.pending_hosts() }),
        );
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
