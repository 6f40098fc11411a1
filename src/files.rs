//! Reading the files commands are given: text, secret keys and components. Each failure names
//! the file, so one line on stderr says which one.

use crate::failure::Failure;
use std::path::Path;
use warden_host::NodeComponent;
use warden_host::package;
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
