//! `warden approve`: approve what an installed node's new version requests, enabling it.

use crate::args::StateDir;
use crate::failure::{Failure, install_failure};
use crate::output::out;

#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    name: String,
    /// Approve only these capabilities (comma-separated); everything pending by default.
    #[arg(long, value_name = "CAP[,CAP]...", value_delimiter = ',')]
    grant: Option<Vec<String>>,
    // `--host` was this flag's name before `install` and `approve` took `run`'s words: a hidden
    // alias, so scripts written for it keep working.
    /// Approve only these hosts (repeatable); everything pending by default.
    #[arg(long = "allow-host", alias = "host", value_name = "PATTERN")]
    allow_hosts: Option<Vec<String>>,
    /// Approve up to this limits preset; what is pending by default.
    #[arg(long, value_name = "restrictive|default|permissive")]
    preset: Option<String>,
    #[command(flatten)]
    state: StateDir,
}

pub(crate) fn execute(args: ApproveArgs) -> Result<(), Failure> {
    let ApproveArgs {
        name,
        grant: capabilities,
        allow_hosts: hosts,
        preset,
        state,
    } = args;
    let host = state.open()?;
    // Naming any of --grant, --allow-host or --preset approves exactly what is named: the others
    // stay as they are. With none of them, everything pending is approved.
    let (capabilities, hosts, preset) =
        if capabilities.is_none() && hosts.is_none() && preset.is_none() {
            (None, None, None)
        } else {
            let current = host
                .installed(&name)
                .map_err(install_failure)?
                .ok_or_else(|| Failure::usage(format!("`{name}` is not installed")))?;
            (
                Some(capabilities.unwrap_or_default()),
                Some(hosts.unwrap_or_default()),
                Some(preset.unwrap_or(current.approved_limits)),
            )
        };
    let record = host
        .approve(&name, capabilities, hosts, preset)
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
