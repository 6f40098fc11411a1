//! `warden registry user`: create a user of a registry.

use crate::args::Remote;
use crate::async_runtime::tokio;
use crate::failure::{Failure, client_failure};
use crate::output::out;
use serde_json::{Value as Json, json};

#[derive(clap::Args)]
pub(crate) struct UserArgs {
    name: String,
    /// A role: owner, admin, publisher, reader or auditor (repeatable).
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// The publisher this user publishes as.
    #[arg(long)]
    publisher: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn execute(args: UserArgs) -> Result<(), Failure> {
    let UserArgs {
        name,
        roles,
        publisher,
        remote,
    } = args;
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
