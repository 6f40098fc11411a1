//! Signing keys fetched from a provider: a JWKS URL, or an OpenID Connect issuer's discovery
//! document and the JWKS it names. Keys are cached with a TTL and looked up by `kid`.
//!
//! - A token with a `kid` the cache does not hold triggers one refresh, at most one every
//!   `refresh_interval` (and one at a time): a flood of made-up `kid`s costs the provider one
//!   fetch per interval, and a bad signature never triggers one.
//! - Keys past their TTL are refreshed in the background while they keep verifying.
//! - When the provider cannot be reached, the keys last fetched keep verifying, and a `kid`
//!   they do not hold is refused.

use super::fetch::{FetchError, Fetcher, https_url, origin};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// The largest discovery or JWKS document read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Keys taken from one JWKS at most.
pub const MAX_KEYS: usize = 64;

/// Where the keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A JWKS document at this URL.
    Jwks(String),
    /// An OpenID Connect issuer: `{issuer}/.well-known/openid-configuration`, whose
    /// `jwks_uri` must be on one of `origins`.
    Discovery {
        issuer: String,
        origins: Vec<String>,
    },
}

/// How a key set is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySetConfig {
    pub source: Source,
    /// CA certificates (DER) trusted beside Mozilla's roots.
    pub ca_certs: Vec<Vec<u8>>,
    /// How long fetched keys are fresh.
    pub ttl: Duration,
    /// The least time between two fetches.
    pub refresh_interval: Duration,
}

pub struct KeySet {
    config: KeySetConfig,
    fetcher: Fetcher,
    state: Mutex<State>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Json>>,
    discovery: Option<Arc<Json>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
    fetches: u64,
}

/// What a key set holds now.
#[derive(Clone)]
pub struct Snapshot {
    pub keys: Arc<Vec<Json>>,
    pub discovery: Option<Arc<Json>>,
}

impl KeySet {
    pub fn new(config: KeySetConfig) -> Result<Arc<KeySet>, String> {
        let fetcher = Fetcher::new(&config.ca_certs)?;
        Ok(Arc::new(KeySet {
            config,
            fetcher,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn config(&self) -> &KeySetConfig {
        &self.config
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What it holds now, without fetching.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            keys: state.keys.clone(),
            discovery: state.discovery.clone(),
        }
    }

    /// The fetches made so far and the last failure, for logs and tests.
    pub fn status(&self) -> (u64, Option<String>) {
        let state = self.state();
        (state.fetches, state.last_error.clone())
    }

    /// The keys to verify a token with `kid`: refreshed first when that `kid` is unknown (at
    /// most once per refresh interval), refreshed in the background when stale.
    pub async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Snapshot {
        let now = Instant::now();
        let (known, stale, may_fetch) = {
            let state = self.state();
            let known = kid.is_none_or(|kid| {
                state
                    .keys
                    .iter()
                    .any(|key| key["kid"].as_str() == Some(kid))
            });
            let stale = state
                .fetched_at
                .is_none_or(|at| now.duration_since(at) >= self.config.ttl);
            let may_fetch = state
                .attempted_at
                .is_none_or(|at| now.duration_since(at) >= self.config.refresh_interval);
            (known, stale, may_fetch)
        };
        if !known && may_fetch {
            let _ = self.refresh_if_due().await;
        } else if stale && may_fetch {
            let keys = self.clone();
            tokio::spawn(async move {
                let _ = keys.refresh_if_due().await;
            });
        }
        self.snapshot()
    }

    /// Fetches unless a fetch was attempted within the refresh interval (by this caller or
    /// one it waited for).
    pub async fn refresh_if_due(&self) -> Result<(), FetchError> {
        let _one = self.refreshing.lock().await;
        let due = self
            .state()
            .attempted_at
            .is_none_or(|at| Instant::now().duration_since(at) >= self.config.refresh_interval);
        if !due {
            return Ok(());
        }
        self.state().attempted_at = Some(Instant::now());
        let fetched = self.fetch().await;
        let mut state = self.state();
        state.fetches += 1;
        match fetched {
            Ok((keys, discovery)) => {
                state.keys = Arc::new(keys);
                state.discovery = discovery.map(Arc::new);
                state.fetched_at = Some(Instant::now());
                state.last_error = None;
                Ok(())
            }
            Err(error) => {
                // The keys held keep verifying: a provider down does not lock everyone out.
                tracing::warn!(
                    "cannot refresh signing keys: {error}; {} cached key(s) keep verifying",
                    state.keys.len()
                );
                state.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Json>, Option<Json>), FetchError> {
        let (jwks_url, discovery) = match &self.config.source {
            Source::Jwks(url) => (https_url(url)?, None),
            Source::Discovery { issuer, origins } => {
                let url = discovery_url(issuer)?;
                let document = self.fetcher.get_json(&url, MAX_DOCUMENT_BYTES).await?;
                // The document is the issuer's own: an `issuer` that differs is another's.
                if document["issuer"].as_str() != Some(issuer.as_str()) {
                    return Err(FetchError::Malformed(
                        url.to_string(),
                        "its `issuer` is not the configured issuer".into(),
                    ));
                }
                let jwks = endpoint(&document, "jwks_uri", origins)?.ok_or_else(|| {
                    FetchError::Malformed(url.to_string(), "it has no `jwks_uri`".into())
                })?;
                (jwks, Some(document))
            }
        };
        let document = self.fetcher.get_json(&jwks_url, MAX_DOCUMENT_BYTES).await?;
        let keys: Vec<Json> = document["keys"]
            .as_array()
            .ok_or_else(|| FetchError::Malformed(jwks_url.to_string(), "no `keys` array".into()))?
            .iter()
            .filter(|key| key.is_object())
            .take(MAX_KEYS)
            .cloned()
            .collect();
        Ok((keys, discovery))
    }
}

/// `{issuer}/.well-known/openid-configuration`.
pub fn discovery_url(issuer: &str) -> Result<Url, FetchError> {
    https_url(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
}

/// The endpoint `name` of a discovery document, when it has one: an https URL on one of
/// `origins`, else an error (a document naming another host is not followed).
pub fn endpoint(
    document: &Json,
    name: &str,
    origins: &[String],
) -> Result<Option<Url>, FetchError> {
    let Some(text) = document[name].as_str() else {
        return Ok(None);
    };
    let url = https_url(text)?;
    if !origins.contains(&origin(&url)) {
        return Err(FetchError::Url(
            name.to_string(),
            format!(
                "it is on {}, not on the provider ({})",
                origin(&url),
                origins.join(", ")
            ),
        ));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_discovery_document_is_followed_only_to_the_providers_origins() {
        let origins = vec!["https://idp.example".to_string()];
        let document = json!({
            "jwks_uri": "https://idp.example/keys",
            "token_endpoint": "https://evil.example/token",
            "userinfo_endpoint": "http://idp.example/userinfo",
            "revocation_endpoint": "https://user:pw@idp.example/revoke",
            "authorization_endpoint": "https://idp.example:8443/authorize",
        });
        assert_eq!(
            endpoint(&document, "jwks_uri", &origins)
                .unwrap()
                .unwrap()
                .as_str(),
            "https://idp.example/keys"
        );
        for refused in [
            "token_endpoint",
            "userinfo_endpoint",
            "revocation_endpoint",
            "authorization_endpoint",
        ] {
            assert!(endpoint(&document, refused, &origins).is_err(), "{refused}");
        }
        assert!(
            endpoint(&document, "end_session_endpoint", &origins)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            discovery_url("https://idp.example/realms/a/")
                .unwrap()
                .as_str(),
            "https://idp.example/realms/a/.well-known/openid-configuration"
        );
        assert!(discovery_url("http://idp.example").is_err());
    }
}
