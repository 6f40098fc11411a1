//! The Tokio runtime commands block on: one thread, for a command's one task at a time.

use crate::failure::Failure;

pub(crate) fn tokio() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure {
            code: 1,
            message: format!("cannot start the async runtime: {error}"),
        })
}
