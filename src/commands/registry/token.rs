//! `warden registry token`: issue a token (shown once), or revoke one.

use crate::args::Remote;
use crate::async_runtime::tokio;
use crate::failure::{Failure, client_failure};
use crate::output::out;
use serde_json::{Value as Json, json};
use warden_host::units::parse_duration;
use warden_registry::protocol::TokenKind;

#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    /// Whose token; your own by default.
    #[arg(long)]
    user: Option<String>,
    #[arg(long, value_enum, default_value = "pat")]
    kind: KindArg,
    /// Lifetime, such as 30d or 12h (90 days by default).
    #[arg(long)]
    ttl: Option<String>,
    /// Revoke the token with this id instead.
    #[arg(long, value_name = "ID")]
    revoke: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn execute(args: TokenArgs) -> Result<(), Failure> {
    let TokenArgs {
        user,
        kind,
        ttl,
        revoke,
        remote,
    } = args;
    let client = remote.client()?;
    if let Some(id) = revoke {
        let _: Json = tokio()?
            .block_on(client.post_json(&format!("v1/tokens/{id}/revoke"), &json!({})))
            .map_err(client_failure)?;
        out(&format!("revoked token {id}\n"));
        return Ok(());
    }
    let ttl = token_ttl(ttl)?;
    let kind = TokenKind::from(kind);
    let issued: Json = tokio()?
        .block_on(client.post_json(
            "v1/tokens",
            &json!({ "user": user, "kind": kind, "ttl": ttl }),
        ))
        .map_err(client_failure)?;
    out(&format!(
        "{}\n",
        issued["token"].as_str().unwrap_or_default()
    ));
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum KindArg {
    Pat,
    ApiKey,
}

impl From<KindArg> for TokenKind {
    fn from(kind: KindArg) -> TokenKind {
        match kind {
            KindArg::Pat => TokenKind::Pat,
            KindArg::ApiKey => TokenKind::ApiKey,
        }
    }
}

/// A token lifetime in whole seconds, at least one.
pub(crate) fn token_ttl(text: Option<String>) -> Result<Option<u64>, Failure> {
    let Some(text) = text else {
        return Ok(None);
    };
    let seconds = parse_duration(&text)
        .map_err(|error| Failure::usage(format!("--ttl: {error}")))?
        .as_secs();
    if seconds == 0 {
        return Err(Failure::usage("--ttl: a token lives at least 1s"));
    }
    Ok(Some(seconds))
}
