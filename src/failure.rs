//! How a command fails: one message and an exit code. Every failure is one line on stderr
//! (`warden: error: ...`, written by `cli::main`): 2 bad usage or input, 3 capability refused,
//! 4 limit hit, 5 node failed or trapped. Refusals of a security check exit with 2, like
//! `verify`; failures to reach the registry with 1.

use warden_host::Error;
use warden_registry::client::ClientError;
use warden_registry::install::InstallError;
use warden_registry::store::StoreError;

/// A failure of a command: its message and exit code.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
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

pub(crate) fn install_failure(error: InstallError) -> Failure {
    match error {
        InstallError::Client(error) => client_failure(error),
        InstallError::State(message) => Failure { code: 1, message },
        other => Failure::usage(other.to_string()),
    }
}

pub(crate) fn client_failure(error: ClientError) -> Failure {
    match &error {
        ClientError::Status { .. } | ClientError::Url(..) => Failure::usage(error.to_string()),
        _ => Failure {
            code: 1,
            message: error.to_string(),
        },
    }
}

pub(crate) fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::Storage(message) => Failure { code: 1, message },
        other => Failure::usage(other.to_string()),
    }
}
