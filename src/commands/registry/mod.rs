//! `warden registry`: run the node registry, check one, or manage its users, tokens and
//! publisher keys. `serve`, `check`, `recover` and `rotate-key` work on the registry's own
//! directory; `user`, `token` and `key` talk to a running registry over HTTPS.

pub(crate) mod check;
pub(crate) mod key;
pub(crate) mod recover;
pub(crate) mod rotate_key;
pub(crate) mod serve;
pub(crate) mod token;
pub(crate) mod user;

use crate::failure::Failure;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum RegistryCommand {
    /// Run the registry: HTTPS (HTTP/2) over rustls, storage in DATA/registry.redb.
    Serve(Box<serve::ServeArgs>),
    /// Re-verify everything a stopped registry stores: records, files, log and index.
    Check(check::CheckArgs),
    /// Issue a token with local access to a stopped registry (when the owner's are lost).
    Recover(recover::RecoverArgs),
    /// Replace a stopped registry's signing key. Hosts follow the change through a root
    /// document signed by the old key and the new one.
    RotateKey(rotate_key::RotateKeyArgs),
    /// Create a user.
    User(user::UserArgs),
    /// Issue a token (shown once), or revoke one with --revoke ID.
    Token(token::TokenArgs),
    /// Register a publisher's public key, proving possession with its secret key. A
    /// publisher's later keys are rotations and must be signed in by a current key (--signed-by
    /// its secret key file).
    Key(key::KeyArgs),
}

pub(crate) fn execute(command: RegistryCommand) -> Result<(), Failure> {
    match command {
        RegistryCommand::Serve(args) => serve::execute(*args),
        RegistryCommand::Check(args) => check::execute(args),
        RegistryCommand::Recover(args) => recover::execute(args),
        RegistryCommand::RotateKey(args) => rotate_key::execute(args),
        RegistryCommand::User(args) => user::execute(args),
        RegistryCommand::Token(args) => token::execute(args),
        RegistryCommand::Key(args) => key::execute(args),
    }
}
