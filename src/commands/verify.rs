//! `warden verify`: a package's manifest, component, capabilities and signatures.

use crate::failure::Failure;
use crate::files::read_text;
use crate::output::{out, out_json};
use serde_json::json;
use std::path::PathBuf;
use warden_package as package;

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    package: PathBuf,
    /// Also require a signature by the public key in FILE (repeatable).
    #[arg(long = "trust", value_name = "FILE")]
    trusted: Vec<PathBuf>,
    /// Require signatures by at least N distinct --trust keys (a key counts once).
    #[arg(long, value_name = "N", requires = "trusted")]
    threshold: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub(crate) fn execute(args: VerifyArgs) -> Result<(), Failure> {
    let VerifyArgs {
        package: path,
        trusted,
        threshold,
        json: as_json,
    } = args;
    let refused =
        |error: package::PackageError| Failure::usage(format!("{}: {error}", path.display()));
    let mut keys = Vec::new();
    for file in &trusted {
        let text = read_text(file)?;
        keys.push(
            package::verifying_key_from_hex(&text)
                .map_err(|error| Failure::usage(format!("{}: {error}", file.display())))?,
        );
    }
    let package = package::read_file(&path).map_err(|error| match error {
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
        out_json(&json!({ "verified": true, "manifest": manifest, "signers": signers }));
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
