//! The `warden` command-line program, as a library so tests and tools can call its parts.

pub mod build;
pub mod cli;
pub(crate) mod registry_cli;
