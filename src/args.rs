//! Argument groups several commands share: how to reach a registry ([`Remote`]), where a
//! host keeps what it installed ([`StateDir`]), and where compiled code is kept
//! ([`CodeCacheDir`]).

use crate::failure::{Failure, client_failure, install_failure, with_causes};
use crate::files::{ca_certificates, read_text};
use crate::output::print_warning;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use warden_host::CodeCache;
use warden_registry::client::install::InstallState;
use warden_registry::client::{Client, Credential};
use warden_registry::protocol;

/// How to reach a registry.
#[derive(Args, Clone)]
pub(crate) struct Remote {
    /// The registry's base URL, such as https://127.0.0.1:8443.
    #[arg(long, env = "WARDEN_REGISTRY")]
    registry: String,
    /// A personal access token (wdn_pat_...) or an API key (wdn_key_...). Given on the command
    /// line it is visible to other local users (in ps and /proc); prefer --token-file or
    /// $WARDEN_TOKEN.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from FILE (surrounding whitespace ignored); wins over --token. Also taken
    /// from $WARDEN_TOKEN_FILE when that is set and not empty.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Also trust the CA certificate(s) in FILE, such as a development registry's
    /// tls/cert.pem (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
}

impl Remote {
    pub(crate) fn client(&self) -> Result<Client, Failure> {
        let roots = ca_certificates(&self.ca_certs)?;
        // Read by hand rather than by clap, so an empty variable means "not set".
        let file = self.token_file.clone().or_else(|| {
            std::env::var_os("WARDEN_TOKEN_FILE")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        });
        let token = match &file {
            Some(path) => {
                let text = read_text(path).map_err(|failure| {
                    Failure::usage(format!("--token-file: {}", failure.message))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(Failure::usage(format!(
                        "--token-file: {} is empty; put the token in it",
                        path.display()
                    )));
                }
                Some(token.to_string())
            }
            None => self.token.clone().filter(|token| !token.trim().is_empty()),
        };
        let credential = token.as_deref().map(Credential::from_token);
        Client::new(&self.registry, &roots, credential).map_err(client_failure)
    }

    /// The registry's identity (`protocol::registry_id`), from its root documents: what key
    /// possession and revocation statements name. Taken from the registry this command talks
    /// to over verified TLS.
    pub(crate) fn registry_id(
        &self,
        client: &Client,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<String, Failure> {
        let roots: Vec<protocol::SignedRoot> = runtime
            .block_on(client.get_json("v1/roots"))
            .map_err(client_failure)?;
        protocol::registry_id(&roots).map_err(|error| Failure::usage(error.to_string()))
    }
}

/// Where a host keeps what it installed.
#[derive(Args, Clone)]
pub(crate) struct StateDir {
    /// The host's state directory; $WARDEN_STATE, or ~/.warden.
    #[arg(long = "state", value_name = "DIR", env = "WARDEN_STATE")]
    dir: Option<PathBuf>,
}

impl StateDir {
    pub(crate) fn open(&self) -> Result<InstallState, Failure> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".warden"))
                .ok_or_else(|| Failure::usage("no --state given and HOME is not set"))?,
        };
        InstallState::open(&dir).map_err(install_failure)
    }
}

/// Where compiled code is kept between runs.
#[derive(Args, Clone)]
pub(crate) struct CodeCacheDir {
    /// Keep compiled nodes in DIR, authenticated with a key only this host holds, so the next
    /// run of the same node is not compiled again. By default $XDG_CACHE_HOME/warden/code or
    /// ~/.cache/warden/code.
    #[arg(long, env = "WARDEN_CODE_CACHE", value_name = "DIR")]
    code_cache: Option<PathBuf>,
    /// Compile the node in this process and keep nothing on disk (wins over --code-cache and
    /// $WARDEN_CODE_CACHE).
    #[arg(long)]
    no_code_cache: bool,
}

impl CodeCacheDir {
    /// The cache to use: none with --no-code-cache; the one named, which must open; or the
    /// default one, which is skipped with a warning when it cannot be opened (a run never
    /// fails for want of a cache).
    pub(crate) fn open(&self) -> Result<Option<Arc<CodeCache>>, Failure> {
        if self.no_code_cache {
            return Ok(None);
        }
        if let Some(dir) = &self.code_cache {
            return CodeCache::open(dir)
                .map(|cache| Some(Arc::new(cache)))
                .map_err(|error| Failure::usage(format!("--code-cache: {}", with_causes(&error))));
        }
        let Some(dir) = default_code_cache() else {
            return Ok(None);
        };
        match CodeCache::open(&dir) {
            Ok(cache) => Ok(Some(Arc::new(cache))),
            Err(error) => {
                print_warning(&format!(
                    "compiled code is not kept between runs: {}",
                    with_causes(&error)
                ));
                Ok(None)
            }
        }
    }
}

/// $XDG_CACHE_HOME/warden/code, or ~/.cache/warden/code; none when neither is set.
fn default_code_cache() -> Option<PathBuf> {
    // The XDG rules: unset, empty or relative values are ignored.
    let set = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    set("XDG_CACHE_HOME")
        .or_else(|| set("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("warden").join("code"))
}
