//! How a command fails: one message and an exit code. Every failure is one line on stderr
//! (`warden: error: ...`, written by `cli::main`) and one of these codes:
//!
//! - 1 ([`EXIT_FAILED`]): the command could not do its work: I/O, the network, a store;
//! - 2 ([`EXIT_USAGE`]): bad usage or input, or a refused security check. Refusals of a
//!   security check (a package, a registry's signatures, an install) exit with 2, like
//!   `verify`; failures to reach the registry with 1;
//! - 3 capability refused, 4 limit hit, 5 node failed or trapped: what a node's run ends in,
//!   from [`warden_host::Error::exit_code`].
//!
//! The conversions from the library errors live here, so every command maps an error to the
//! same code.

use warden_host::Error;
use warden_registry::client::ClientError;
use warden_registry::client::install::InstallError;
use warden_registry::server::store::StoreError;

/// The command could not do its work: I/O, the network, a store.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Bad usage or input, or a refused security check.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failure of a command: its message and exit code.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Bad usage or input, or a refused security check.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// The command could not do its work.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            code: error.exit_code(),
            message: with_causes(&error),
        }
    }
}

/// An error's message followed by each cause its message does not already say:
/// `message: cause: cause`.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// Install refusals are refused security checks; reaching the registry or keeping the host's
/// state failing is not.
pub(crate) fn install_failure(error: InstallError) -> Failure {
    match error {
        InstallError::Client(error) => client_failure(error),
        InstallError::State(message) => Failure::failed(message),
        other => Failure::usage(other.to_string()),
    }
}

/// The registry's answer (a status) and a bad URL are usage; the network failing is not.
pub(crate) fn client_failure(error: ClientError) -> Failure {
    match &error {
        ClientError::Status { .. } | ClientError::Url(..) => Failure::usage(error.to_string()),
        _ => Failure::failed(error.to_string()),
    }
}

/// The registry's database failing is not usage; everything the store refuses is.
pub(crate) fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::Storage(message) => Failure::failed(message),
        other => Failure::usage(other.to_string()),
    }
}
