//! `warden sync`: re-verify a registry's newest signed state and block installed nodes it no
//! longer vouches for (a revoked signing key): the kill switch.

use crate::args::{Remote, StateDir};
use crate::async_runtime::tokio;
use crate::failure::{Failure, install_failure};
use crate::output::out;
use warden_registry::client::install;
use warden_registry::protocol;

#[derive(clap::Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    state: StateDir,
}

pub(crate) fn execute(args: SyncArgs) -> Result<(), Failure> {
    let SyncArgs { remote, state } = args;
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
