//! The `warden` command-line program, as a library so tests and tools can call its parts.
//!
//! `cli` parses the command line and hands each command to its module in `commands`. The
//! helpers every command shares sit beside them and import no command: `failure` (the error
//! type, exit codes, conversions from library errors), `output` (stdout and warnings), `files`
//! (reading the files commands are given), `args` (argument groups several commands share) and
//! `async_runtime` (the Tokio runtime commands block on). `build` builds node crates; benches
//! and tests use it.

mod args;
mod async_runtime;
pub mod build;
pub mod cli;
mod commands;
mod failure;
mod files;
mod output;
