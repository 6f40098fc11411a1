//! The Tokio runtimes commands block on: one thread for a command's one task at a time, a
//! worker per core for `registry serve`.

use crate::failure::Failure;

pub(crate) fn tokio() -> Result<tokio::runtime::Runtime, Failure> {
    started(tokio::runtime::Builder::new_current_thread().enable_all())
}

pub(crate) fn tokio_multi_thread() -> Result<tokio::runtime::Runtime, Failure> {
    started(tokio::runtime::Builder::new_multi_thread().enable_all())
}

fn started(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, Failure> {
    builder
        .build()
        .map_err(|error| Failure::failed(format!("cannot start the async runtime: {error}")))
}
