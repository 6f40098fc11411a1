//! `warden installed`: what this host installed, from which registry and publisher, the
//! registries it follows, and the publisher changes its operator accepted.

use crate::args::StateDir;
use crate::failure::{Failure, install_failure};
use crate::output::{out, out_json};
use serde_json::json;

#[derive(clap::Args)]
pub(crate) struct InstalledArgs {
    #[command(flatten)]
    state: StateDir,
    #[arg(long)]
    json: bool,
}

/// `warden installed`: what this host installed, from which registry and publisher, the
/// registries it follows, and the publisher changes its operator accepted.
pub(crate) fn execute(args: InstalledArgs) -> Result<(), Failure> {
    let InstalledArgs {
        state,
        json: as_json,
    } = args;
    let host = state.open()?;
    let installed = host.all_installed().map_err(install_failure)?;
    let registries = host.registries().map_err(install_failure)?;
    let changes = host.publisher_changes().map_err(install_failure)?;
    if as_json {
        out_json(
            &json!({ "installed": installed, "registries": registries, "publisher_changes": changes }),
        );
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
