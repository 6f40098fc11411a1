//! `warden registry rotate-key`: replace a stopped registry's signing key. Hosts follow the
//! change through a root document signed by the old key and the new one.

use crate::failure::{Failure, store_failure};
use crate::files::{read_secret, read_text};
use crate::output::out;
use std::path::PathBuf;
use warden_registry::server::store::{DEFAULT_INDEX_TTL, Store};

#[derive(clap::Args)]
pub(crate) struct RotateKeyArgs {
    #[arg(long, default_value = "warden-registry", value_name = "DIR")]
    data: PathBuf,
    /// Also list this offline public key in the new root (repeatable). With
    /// --threshold 2 or more, a stolen signing key alone can no longer rotate the root.
    #[arg(long = "root-key", value_name = "PUBLIC_KEY_FILE")]
    root_keys: Vec<PathBuf>,
    /// How many of the new root's keys must sign the root after it.
    #[arg(long, default_value_t = 1)]
    threshold: usize,
    /// The secret key file of an offline root key, current or new (repeatable), as many
    /// as the current root's threshold and the new one's need.
    #[arg(long = "cosign", value_name = "SECRET_KEY_FILE")]
    cosigners: Vec<PathBuf>,
}

pub(crate) fn execute(args: RotateKeyArgs) -> Result<(), Failure> {
    let RotateKeyArgs {
        data,
        root_keys,
        threshold,
        cosigners,
    } = args;
    let mut offline = Vec::new();
    for path in &root_keys {
        offline.push(read_text(path)?.trim().to_string());
    }
    let secrets = cosigners
        .iter()
        .map(|path| read_secret(path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
    let root = store
        .rotate_root(&data, &offline, threshold, &secrets)
        .map_err(store_failure)?;
    out(&format!(
        "registry key: {} (root version {}; the old key signed it in and is no longer used)\n",
        store.public_key(),
        root.version
    ));
    Ok(())
}
