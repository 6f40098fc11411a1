//! `warden registry recover`: issue a token with local access to a stopped registry, when the
//! owner's are lost.

use super::token::{KindArg, token_ttl};
use crate::failure::{Failure, store_failure};
use crate::output::out;
use std::path::PathBuf;
use warden_registry::server::store::{DEFAULT_INDEX_TTL, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL, Store};

#[derive(clap::Args)]
pub(crate) struct RecoverArgs {
    #[arg(long, default_value = "warden-registry", value_name = "DIR")]
    data: PathBuf,
    #[arg(long, default_value = "owner")]
    user: String,
    #[arg(long, value_enum, default_value = "pat")]
    kind: KindArg,
    /// Lifetime, such as 1d (90 days by default).
    #[arg(long)]
    ttl: Option<String>,
}

pub(crate) fn execute(args: RecoverArgs) -> Result<(), Failure> {
    let RecoverArgs {
        data,
        user,
        kind,
        ttl,
    } = args;
    let store = Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
    let ttl = token_ttl(ttl)?.unwrap_or(DEFAULT_TOKEN_TTL);
    if ttl > MAX_TOKEN_TTL {
        return Err(Failure::usage("--ttl: a token lives at most 366 days"));
    }
    let (token, record) = store
        .issue_token_offline(&user, kind.into(), ttl)
        .map_err(store_failure)?;
    out(&format!("{token}\n"));
    eprintln!("token {} for `{user}` (shown once)", record.id);
    Ok(())
}
