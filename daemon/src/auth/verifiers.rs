//! The token checkers the daemon serves with, as its manifest configures them: the workflow
//! executor's (PEM keys and, optionally, a JWKS URL) and the OpenID Connect provider's. A
//! reload that leaves a section as it was keeps its key set, cache and all.

use super::jwt::{self, ExecutorClaims, TokenError};
use super::keyset::KeySet;
use super::oidc::{self, OidcClaims};
use crate::manifest::{ExecutorAuth, Manifest, OidcAuth};
use std::sync::Arc;

pub struct ExecutorVerifier {
    pub auth: ExecutorAuth,
    pub jwks: Option<Arc<KeySet>>,
}

pub struct OidcVerifier {
    pub auth: OidcAuth,
    pub keys: Arc<KeySet>,
}

#[derive(Default, Clone)]
pub struct Verifiers {
    pub executor: Option<Arc<ExecutorVerifier>>,
    pub oidc: Option<Arc<OidcVerifier>>,
}

impl ExecutorVerifier {
    pub async fn verify(&self, token: &str, now: u64) -> Result<ExecutorClaims, TokenError> {
        let mut keys = self.auth.keys.clone();
        if let Some(jwks) = &self.jwks {
            let snapshot = jwks.keys_for(jwt::kid(token).as_deref()).await;
            keys.extend(jwt::keys_from_jwks(&serde_json::json!({
                "keys": snapshot.keys.as_ref()
            })));
        }
        if keys.is_empty() {
            return Err(TokenError::KeysUnavailable);
        }
        jwt::verify(token, &keys, &self.auth.policy, now)
    }
}

impl OidcVerifier {
    pub async fn verify(&self, token: &str, now: u64) -> Result<OidcClaims, TokenError> {
        if token.len() > oidc::MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("too long"));
        }
        let snapshot = self.keys.keys_for(jwt::kid(token).as_deref()).await;
        if snapshot.keys.is_empty() {
            return Err(TokenError::KeysUnavailable);
        }
        oidc::verify(token, &snapshot.keys, &self.auth.policy, now)
    }
}

/// Why a key set could not be made (a CA certificate rustls refuses).
#[derive(Debug, thiserror::Error)]
#[error("{section}: {message}")]
pub struct VerifierError {
    pub section: &'static str,
    pub message: String,
}

impl Verifiers {
    /// The checkers `manifest` asks for, reusing those of `current` whose configuration is
    /// unchanged; the key sets that are new are fetched once before this returns (a provider
    /// down is logged, and its tokens are refused until a fetch succeeds).
    pub async fn build(
        current: &Verifiers,
        manifest: &Manifest,
    ) -> Result<Verifiers, VerifierError> {
        let mut fresh = Vec::new();
        let executor = match &manifest.executor {
            None => None,
            Some(auth) => {
                let jwks = match (
                    &auth.jwks,
                    current.executor.as_ref().and_then(|e| e.jwks.clone()),
                ) {
                    (None, _) => None,
                    (Some(config), Some(kept)) if kept.config() == config => Some(kept),
                    (Some(config), _) => {
                        let keys =
                            KeySet::new(config.clone()).map_err(|message| VerifierError {
                                section: "auth.executor",
                                message,
                            })?;
                        fresh.push(keys.clone());
                        Some(keys)
                    }
                };
                Some(Arc::new(ExecutorVerifier {
                    auth: auth.clone(),
                    jwks,
                }))
            }
        };
        let oidc = match &manifest.oidc {
            None => None,
            Some(auth) => {
                let keys = match current.oidc.as_ref().map(|o| o.keys.clone()) {
                    Some(kept) if kept.config() == &auth.keys => kept,
                    _ => {
                        let keys =
                            KeySet::new(auth.keys.clone()).map_err(|message| VerifierError {
                                section: "auth.oidc",
                                message,
                            })?;
                        fresh.push(keys.clone());
                        keys
                    }
                };
                Some(Arc::new(OidcVerifier {
                    auth: auth.clone(),
                    keys,
                }))
            }
        };
        for keys in fresh {
            if let Err(error) = keys.refresh_if_due().await {
                tracing::warn!(
                    "cannot fetch signing keys now: {error}; tokens they sign are refused until a fetch succeeds"
                );
            }
        }
        Ok(Verifiers { executor, oidc })
    }
}
