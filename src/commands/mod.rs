//! One module per command, as cargo's `src/bin/cargo/commands/` does. Each holds the command's
//! clap arguments (`XArgs`) and its `execute`, which returns `Result<(), Failure>`;
//! `crate::cli` parses the command line and dispatches. Adding a command: a module here, a
//! variant of `cli::Command` and a line in its dispatch.

pub(crate) mod approve;
pub(crate) mod build;
pub(crate) mod call;
pub(crate) mod capabilities;
pub(crate) mod inspect;
pub(crate) mod install;
pub(crate) mod installed;
pub(crate) mod keygen;
pub(crate) mod new;
pub(crate) mod pack;
pub(crate) mod publish;
pub(crate) mod registry;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod serve_admin;
pub(crate) mod sync;
pub(crate) mod verify;
pub(crate) mod yank;
