//! `warden pack`: sign a node into a package; the manifest's capabilities come from the
//! component's imports (and `--capability` for what its ambient imports can use).

use crate::build::{self, BuildOptions};
use crate::failure::Failure;
use crate::files::read_secret;
use crate::output::out;
use std::path::PathBuf;
use warden_package as package;

#[derive(clap::Args)]
pub(crate) struct PackArgs {
    /// A node component (.wasm), or a node crate to build first.
    node: PathBuf,
    #[arg(long)]
    name: String,
    /// Semantic version, such as 1.0.0.
    #[arg(long)]
    version: String,
    /// The secret key file from `warden keygen`; repeat for co-signers.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long, default_value = "")]
    publisher: String,
    /// Hosts the node asks to reach (repeatable).
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// Capabilities to ask for beyond what the component's imports require: only those its
    /// ambient imports can use (tcp, udp, dns for a node importing wasi:sockets). Repeatable
    /// or comma-separated.
    #[arg(long = "capability", value_name = "NAME", value_delimiter = ',')]
    capabilities: Vec<String>,
    /// The limits preset the node asks for.
    #[arg(long, default_value = "default")]
    preset: String,
    /// Where to write the package; NAME-VERSION.wpkg by default.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn execute(args: PackArgs) -> Result<(), Failure> {
    let component_path = if args.node.is_dir() {
        let built = build::build(&args.node, &BuildOptions::default())
            .map_err(|error| Failure::usage(error.to_string()))?;
        match built.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Failure::usage(
                    "the crate built several components; pack one .wasm at a time",
                ));
            }
        }
    } else {
        args.node.clone()
    };
    let component = std::fs::read(&component_path).map_err(|error| {
        Failure::usage(format!("cannot read {}: {error}", component_path.display()))
    })?;
    let keys = args
        .keys
        .iter()
        .map(|path| read_secret(path))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = package::Manifest {
        name: args.name.clone(),
        version: args.version.clone(),
        description: args.description,
        publisher: args.publisher,
        capabilities: args.capabilities,
        allowed_hosts: args.allow_hosts,
        limits: args.preset,
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    };
    let (first, cosigners) = keys
        .split_first()
        .ok_or_else(|| Failure::usage("give a signing key with --key"))?;
    let mut bytes = package::pack(&component, manifest, first)
        .map_err(|error| Failure::usage(error.to_string()))?;
    if !cosigners.is_empty() {
        let mut signed =
            package::decode(&bytes).map_err(|error| Failure::usage(error.to_string()))?;
        for key in cosigners {
            package::add_signature(&mut signed, key);
        }
        bytes = package::encode(&signed);
    }
    let destination = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.wpkg", args.name, args.version)));
    std::fs::write(&destination, bytes).map_err(|error| {
        Failure::usage(format!("cannot write {}: {error}", destination.display()))
    })?;
    out(&format!("{}\n", destination.display()));
    Ok(())
}
