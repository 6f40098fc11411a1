//! `warden build`: build a node crate, or a Python or JavaScript node, into a component and
//! print its path.

use crate::build::{self, BuildOptions, Target};
use crate::failure::Failure;
use crate::output::out;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The node crate (a directory with Cargo.toml), Python node (a directory with app.py) or
    /// JavaScript node (a directory with app.js); the current directory by default.
    path: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wasm32-unknown-unknown")]
    target: Target,
    /// Build without optimizations.
    #[arg(long)]
    debug: bool,
    /// Cargo features of the node crate to enable.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// For a Python or JavaScript node: capabilities its world includes beyond those its
    /// warden.toml names, comma-separated (`storage-read,variables-read`).
    #[arg(long = "cap", value_name = "CAP[,CAP]...")]
    capabilities: Option<String>,
}

pub(crate) fn execute(args: BuildArgs) -> Result<(), Failure> {
    let BuildArgs {
        path,
        target,
        debug,
        features,
        capabilities,
    } = args;
    let capabilities = match capabilities {
        Some(list) => list
            .parse::<warden_host::Capabilities>()
            .map_err(|error| Failure::usage(format!("--cap: {error}")))?,
        None => warden_host::Capabilities::empty(),
    };
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let options = BuildOptions {
        target,
        release: !debug,
        features,
        capabilities,
        ..BuildOptions::default()
    };
    let built = build::build(&path, &options).map_err(|error| Failure::usage(error.to_string()))?;
    for component in built {
        out(&format!("{}\n", component.display()));
    }
    Ok(())
}
