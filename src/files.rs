//! Reading the files commands are given: text, secret keys, components and CA certificates.
//! Each failure names the file, so one line on stderr says which one.

use crate::failure::Failure;
use std::path::{Path, PathBuf};
use warden_host::NodeComponent;
use warden_host::tls::certificates_from_pem_or_der;
use warden_package as package;
use warden_registry::protocol;

pub(crate) fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))
}

pub(crate) fn read_secret(path: &Path) -> Result<protocol::SigningKey, Failure> {
    package::signing_key_from_hex(&read_text(path)?)
        .ok_or_else(|| Failure::usage(format!("{} is not a warden secret key", path.display())))
}

pub(crate) fn read_component(path: &Path) -> Result<NodeComponent, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))?;
    NodeComponent::from_bytes(bytes)
        .map_err(|error| Failure::usage(format!("{}: {error}", path.display())))
}

/// The certificates in `--ca-cert` files (PEM or DER), trusted beside the built-in roots.
pub(crate) fn ca_certificates(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, Failure> {
    let mut roots = Vec::new();
    for file in files {
        let bytes = std::fs::read(file)
            .map_err(|error| Failure::usage(format!("--ca-cert {}: {error}", file.display())))?;
        roots.extend(
            certificates_from_pem_or_der(&bytes).map_err(|error| {
                Failure::usage(format!("--ca-cert {}: {error}", file.display()))
            })?,
        );
    }
    Ok(roots)
}
