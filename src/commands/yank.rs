//! `warden yank`: mark a published version so hosts will not install it anew.

use crate::args::Remote;
use crate::async_runtime::tokio;
use crate::failure::{Failure, client_failure};
use crate::output::out;
use serde_json::{Value as Json, json};

#[derive(clap::Args)]
pub(crate) struct YankArgs {
    /// NAME@VERSION
    node: String,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn execute(args: YankArgs) -> Result<(), Failure> {
    let YankArgs { node, remote } = args;
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
