//! Argument groups several commands share: how to reach a registry ([`Remote`]) and where a
//! host keeps what it installed ([`StateDir`]).

use crate::failure::{Failure, client_failure, install_failure};
use crate::files::{ca_certificates, read_text};
use clap::Args;
use std::path::PathBuf;
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
