//! `warden keygen`: an Ed25519 key pair for signing packages.

use crate::failure::Failure;
use crate::failure::with_causes;
use crate::output::out;
use std::path::PathBuf;
use warden_package as package;

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Path prefix of the two files.
    #[arg(long, default_value = "warden-signing")]
    out: PathBuf,
}

pub(crate) fn execute(args: KeygenArgs) -> Result<(), Failure> {
    let prefix = args.out;
    let secret_path = prefix.with_extension("key");
    let public_path = prefix.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(Failure::usage(format!(
                "{} exists; choose another --out or remove it",
                path.display()
            )));
        }
    }
    let key = package::generate_key().map_err(|error| Failure::usage(error.to_string()))?;
    package::write_secret_file(
        &secret_path,
        &format!("{}\n", package::secret_key_hex(&key)),
    )
    .map_err(|error| Failure::usage(with_causes(&error)))?;
    std::fs::write(&public_path, format!("{}\n", package::public_key_hex(&key))).map_err(
        |error| Failure::usage(format!("cannot write {}: {error}", public_path.display())),
    )?;
    out(&format!(
        "secret key: {} (keep it private)\npublic key: {} ({})\n",
        secret_path.display(),
        public_path.display(),
        package::public_key_hex(&key)
    ));
    Ok(())
}
