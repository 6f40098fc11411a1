//! `warden build`: build a node crate into a component and print its path.

use crate::build::{self, BuildOptions, Target};
use crate::failure::Failure;
use crate::output::out;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The node crate (a directory with Cargo.toml); the current directory by default.
    path: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wasm32-unknown-unknown")]
    target: Target,
    /// Build without optimizations.
    #[arg(long)]
    debug: bool,
    /// Cargo features of the node crate to enable.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
}

pub(crate) fn execute(args: BuildArgs) -> Result<(), Failure> {
    let BuildArgs {
        path,
        target,
        debug,
        features,
    } = args;
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let options = BuildOptions {
        target,
        release: !debug,
        features,
        ..BuildOptions::default()
    };
    let built = build::build(&path, &options).map_err(|error| Failure::usage(error.to_string()))?;
    for component in built {
        out(&format!("{}\n", component.display()));
    }
    Ok(())
}
