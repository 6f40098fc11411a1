//! Capabilities the embedder serves: `functions` (host functions it registers), `oauth` and
//! `token` (credentials it holds). UI documents (`a2ui`) are in `caps::a2ui`.

use super::common::now_ms;
use crate::bindings::warden::node::{functions, oauth, token, types};
use crate::bindings::wit::HostError;
use crate::node::value::Field;
use crate::output::delivery::{CallbackFailed, panic_message};
use crate::policy::capability::Capabilities;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// A host function a node may call by name.
pub type FunctionHandler = Arc<dyn Fn(Vec<Field>) -> Result<Vec<Field>, String> + Send + Sync>;

/// One registered host function and the capabilities a node needs to call it.
#[derive(Clone)]
pub struct HostFunction {
    pub requires: Capabilities,
    pub handler: FunctionHandler,
}

/// The host functions of an embedder, by name.
#[derive(Clone, Default)]
pub struct Functions {
    functions: HashMap<String, HostFunction>,
}

impl Functions {
    /// Registers `name`; a node may call it when it holds `functions` and every one of `requires`.
    pub fn register(
        &mut self,
        name: &str,
        requires: Capabilities,
        handler: impl Fn(Vec<Field>) -> Result<Vec<Field>, String> + Send + Sync + 'static,
    ) {
        self.functions.insert(
            name.to_string(),
            HostFunction {
                requires,
                handler: Arc::new(handler),
            },
        );
    }

    pub(crate) fn get(&self, name: &str) -> Option<&HostFunction> {
        self.functions.get(name)
    }
}

/// An OAuth access token the embedder holds for the run's user. `Debug` shows everything but
/// the token.
#[derive(Clone)]
pub struct OAuthToken {
    pub provider: String,
    pub scopes: Vec<String>,
    pub token: String,
    pub expires_at_ms: Option<u64>,
}

/// An API token for a named service. `Debug` shows everything but the token.
#[derive(Clone)]
pub struct ServiceToken {
    pub service: String,
    pub scopes: Vec<String>,
    pub token: String,
}

/// What `Debug` shows in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken")
            .field("provider", &self.provider)
            .field("scopes", &self.scopes)
            .field("token", &REDACTED)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("service", &self.service)
            .field("scopes", &self.scopes)
            .field("token", &REDACTED)
            .finish()
    }
}

/// Credentials for one run. Tokens never appear in logs, errors or `Debug`.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub oauth: Vec<OAuthToken>,
    pub tokens: Vec<ServiceToken>,
}

/// Whether `held` covers every scope in `wanted`.
pub(crate) fn covers(held: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|scope| held.contains(scope))
}

pub use super::a2ui::{A2UI_SCHEMA, MAX_UI_BYTES, MAX_UI_DEPTH, UiError, validate_ui};
pub use crate::output::delivery::UiSink;

/// What the embedder's services may touch: its functions, its credentials, and the grant
/// (a host function may require capabilities of its own).
pub(crate) struct View<'a> {
    pub functions: Option<&'a Arc<Functions>>,
    pub credentials: Option<&'a Credentials>,
    pub capabilities: Capabilities,
}

struct Embedder;

impl HasData for Embedder {
    type Data<'a> = View<'a>;
}

/// What the store data lends the embedder host functions: their view, and nothing else.
pub(crate) trait EmbedderView: Send + 'static {
    fn embedder(&mut self) -> View<'_>;
}

pub(crate) fn link<T: EmbedderView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/functions" => functions::add_to_linker::<T, Embedder>(linker, T::embedder)?,
        "warden:node/oauth" => oauth::add_to_linker::<T, Embedder>(linker, T::embedder)?,
        "warden:node/token" => token::add_to_linker::<T, Embedder>(linker, T::embedder)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl functions::Host for View<'_> {
    async fn call(
        &mut self,
        name: String,
        arguments: Vec<types::Field>,
    ) -> wasmtime::Result<Result<Vec<types::Field>, HostError>> {
        let Some(function) = self
            .functions
            .as_ref()
            .and_then(|functions| functions.get(&name))
        else {
            return Ok(Err(HostError::Denied(format!(
                "the host registered no function `{name}`"
            ))));
        };
        let missing = function.requires - self.capabilities;
        if !missing.is_empty() {
            return Ok(Err(HostError::Denied(format!(
                "`{name}` needs the capabilities {missing}, which this node was not granted"
            ))));
        }
        let handler = function.handler.clone();
        let arguments = arguments
            .into_iter()
            .map(crate::node::value::Field::from)
            .collect();
        // On a blocking thread: the handler may wait on anything, and the run's timeout still
        // ends the run by dropping this future (the thread finishes on its own).
        let outcome = tokio::task::spawn_blocking(move || handler(arguments)).await;
        match outcome {
            Ok(Ok(results)) => Ok(Ok(results.into_iter().map(Into::into).collect())),
            Ok(Err(message)) => Ok(Err(HostError::Unavailable(format!(
                "`{name}` failed: {message}"
            )))),
            Err(error) => {
                let failure = match error.try_into_panic() {
                    Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                    Err(error) => format!("did not finish: {error}"),
                };
                Err(wasmtime::Error::new(CallbackFailed {
                    callback: format!("host function `{name}`"),
                    failure,
                }))
            }
        }
    }
}

impl oauth::Host for View<'_> {
    fn access_token(
        &mut self,
        provider: String,
        scopes: Vec<String>,
    ) -> Result<oauth::OauthToken, HostError> {
        let now = now_ms();
        let found = self.credentials.as_ref().and_then(|credentials| {
            credentials.oauth.iter().find(|token| {
                token.provider == provider
                    && covers(&token.scopes, &scopes)
                    && token.expires_at_ms.is_none_or(|expiry| expiry > now)
            })
        });
        match found {
            Some(token) => Ok(oauth::OauthToken {
                token: token.token.clone(),
                scopes: token.scopes.clone(),
                expires_at_ms: token.expires_at_ms,
            }),
            // Never the token itself, in an error or a log.
            None => Err(HostError::Denied(format!(
                "the host holds no unexpired {provider} token covering the scopes [{}]",
                scopes.join(", ")
            ))),
        }
    }
}

impl token::Host for View<'_> {
    fn get(&mut self, service: String, scopes: Vec<String>) -> Result<String, HostError> {
        let found = self.credentials.as_ref().and_then(|credentials| {
            credentials
                .tokens
                .iter()
                .find(|token| token.service == service && covers(&token.scopes, &scopes))
        });
        found.map(|token| token.token.clone()).ok_or_else(|| {
            HostError::Denied(format!(
                "the host holds no {service} token covering the scopes [{}]",
                scopes.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn secrets_do_not_print_through_debug() {
        let credentials = Credentials {
            oauth: vec![OAuthToken {
                provider: "github".into(),
                scopes: vec!["repo".into()],
                token: "gho_secret1".into(),
                expires_at_ms: None,
            }],
            tokens: vec![ServiceToken {
                service: "stripe".into(),
                scopes: vec![],
                token: "sk_secret2".into(),
            }],
        };
        let shown = format!("{credentials:?} {credentials:#?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("github") && shown.contains(REDACTED),
            "{shown}"
        );
    }

    #[test]
    fn scopes_are_covered_only_in_full() {
        let held = vec!["repo".to_string(), "user".to_string()];
        assert!(covers(&held, &["repo".to_string()]));
        assert!(covers(&held, &[]));
        assert!(!covers(&held, &["repo".to_string(), "admin".to_string()]));
    }
}
