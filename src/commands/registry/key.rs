//! `warden registry key`: register a publisher's public key, proving possession with its
//! secret key, or revoke one. A publisher's later keys are rotations, signed in by a current key.

use crate::args::Remote;
use crate::async_runtime::tokio;
use crate::failure::{Failure, client_failure};
use crate::files::{read_secret, read_text};
use crate::output::out;
use serde_json::{Value as Json, json};
use std::path::PathBuf;
use warden_package as package;
use warden_registry::protocol;

#[derive(clap::Args)]
pub(crate) struct KeyArgs {
    publisher: String,
    /// The public key file (from `warden keygen`) to add, or to revoke with --revoke.
    public_key: PathBuf,
    /// The secret key file of the key added, which signs the proof of possession; by
    /// default the `.key` file next to the `.pub` one.
    #[arg(long, value_name = "SECRET_KEY_FILE", conflicts_with = "revoke")]
    secret_key: Option<PathBuf>,
    /// Adding: the current key that signs the new one in. With --revoke and --revoked-at
    /// in the past: another current key of the publisher, which signs the back-dated
    /// revocation.
    #[arg(long, value_name = "SECRET_KEY_FILE")]
    signed_by: Option<PathBuf>,
    /// Revoke the key instead of adding it.
    #[arg(long)]
    revoke: bool,
    /// With --revoke: refuse what it signed from this Unix time on (now by default). A time
    /// in the past needs --signed-by another current key, or an admin's token.
    #[arg(long, value_name = "UNIX_SECONDS", requires = "revoke")]
    revoked_at: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn execute(args: KeyArgs) -> Result<(), Failure> {
    let KeyArgs {
        publisher,
        public_key,
        secret_key,
        signed_by,
        revoke,
        revoked_at,
        remote,
    } = args;
    let key = read_text(&public_key)?.trim().to_string();
    package::verifying_key_from_hex(&key)
        .map_err(|error| Failure::usage(format!("{}: {error}", public_key.display())))?;
    let signer = signed_by.as_deref().map(read_secret).transpose()?;
    if revoke {
        revoke_key_command(&remote, &publisher, &key, revoked_at, signer.as_ref())
    } else {
        let secret = secret_key.unwrap_or_else(|| public_key.with_extension("key"));
        add_key_command(
            &remote,
            &publisher,
            &key,
            &read_secret(&secret)?,
            signer.as_ref(),
        )
    }
}

fn add_key_command(
    remote: &Remote,
    publisher: &str,
    key: &str,
    secret: &protocol::SigningKey,
    signed_by: Option<&protocol::SigningKey>,
) -> Result<(), Failure> {
    if package::public_key_hex(secret) != key {
        return Err(Failure::usage(
            "the secret key is not the one of the public key added; give it with --secret-key",
        ));
    }
    let client = remote.client()?;
    let runtime = tokio()?;
    let registry = remote.registry_id(&client, &runtime)?;
    let mut body = json!({
        "public_key": key,
        "possession": protocol::sign_possession(&registry, publisher, secret),
    });
    if let Some(by) = signed_by {
        body["signed_by"] = json!(package::public_key_hex(by));
        body["signature"] = json!(protocol::sign_key_statement(publisher, key, by));
    }
    let _: Json = runtime
        .block_on(client.post_json(&format!("v1/publishers/{publisher}/keys"), &body))
        .map_err(client_failure)?;
    out(&format!("added {key} to {publisher}\n"));
    Ok(())
}

fn revoke_key_command(
    remote: &Remote,
    publisher: &str,
    key: &str,
    revoked_at: Option<u64>,
    signed_by: Option<&protocol::SigningKey>,
) -> Result<(), Failure> {
    let client = remote.client()?;
    let runtime = tokio()?;
    let mut body = json!({ "revoked_at": revoked_at });
    if let (Some(by), Some(at)) = (signed_by, revoked_at) {
        let registry = remote.registry_id(&client, &runtime)?;
        body["signed_by"] = json!(package::public_key_hex(by));
        body["signature"] = json!(protocol::sign_revocation(&registry, publisher, key, at, by));
    }
    let _: Json = runtime
        .block_on(client.post_json(
            &format!("v1/publishers/{publisher}/keys/{key}/revoke"),
            &body,
        ))
        .map_err(client_failure)?;
    out(&format!("revoked {key} of {publisher}\n"));
    Ok(())
}
