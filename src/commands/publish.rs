//! `warden publish`: send a package to a registry, after verifying it here.

use crate::args::Remote;
use crate::async_runtime::tokio;
use crate::failure::{Failure, client_failure};
use crate::output::out;
use serde_json::Value as Json;
use std::path::PathBuf;
use warden_package as package;

#[derive(clap::Args)]
pub(crate) struct PublishArgs {
    package: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn execute(args: PublishArgs) -> Result<(), Failure> {
    let PublishArgs {
        package: path,
        remote,
    } = args;
    let client = remote.client()?;
    // Verify locally first: a package that cannot pass here would be refused anyway.
    let package = package::read_file(&path)
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
