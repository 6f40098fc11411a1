//! Who is calling: the credential a request presents, checked, and what it may do.
//!
//! - `X-API-Key: wdh_key_…`: a technical user's API key from the principal store.
//! - `Authorization: PAT wdh_pat_…` (or the bare token): a person's access token, carrying
//!   exactly that user's permissions at the time of use.
//! - `Authorization: Bearer <jwt>`: the workflow executor's ES256 token, scoped to one app,
//!   board and run; it may only run nodes.
//! - The operator's keys (`WARDEN_API_KEY`, `--api-key-file`, `[[api.keys]]`) by `X-API-Key` or
//!   `Authorization: Bearer`: an admin's key holds every permission, another runs and reads
//!   nodes.
//!
//! Two different credentials in one request are refused, not resolved by guessing.

use super::ApiError;
use super::Shared;
use crate::auth::jwt;
use crate::auth::permissions::Permissions;
use crate::auth::store::{AuthStore, CredentialKind, Refused};
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What an executor token allows: runs in one app and board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorScope {
    pub app_id: String,
    pub board_id: String,
    pub event_id: Option<String>,
    /// The user the workflow runs for (the token's `user_id`, else its `sub`): user-scoped
    /// storage is that user's, never one the request names.
    pub user_id: Option<String>,
    pub run_id: String,
    pub jti: Option<String>,
}

/// Who called, and what it may do.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The name records and idempotency keys are kept under: the key's or user's name.
    pub name: String,
    /// `operator`, `api_key`, `pat` or `executor`.
    pub kind: &'static str,
    /// The principal store's user, for permissions that depend on the app.
    pub user: Option<String>,
    /// What it may do in every app.
    pub permissions: Permissions,
    /// Set for the executor: the run's scope.
    pub scope: Option<ExecutorScope>,
}

impl Caller {
    /// What it may do in `app`: its roles there and everywhere. 503 when the store does not
    /// answer (the caller's permissions are unknown, not none).
    pub fn permissions_in(&self, daemon: &Shared, app: &str) -> Result<Permissions, ApiError> {
        match (&self.user, &daemon.auth) {
            (Some(user), Some(store)) => store.permissions(user, Some(app)).map_err(|error| {
                store_failed(&error);
                super::admin::store_unavailable()
            }),
            _ => Ok(self.permissions),
        }
    }
}

/// Why no caller could be identified: the kind goes to the audit log and the metrics, never
/// to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unidentified(pub &'static str);

/// Why a caller is not identified when the credential store failed (not the caller's fault).
pub const STORE_FAILED: &str = "store_failed";

/// Store lookups for authentication at once, per daemon: a flood of credentials (good or not)
/// holds at most this many threads and database connections; the rest wait their turn.
pub const STORE_LOOKUPS: usize = warden_cluster::PRINCIPALS_CONNECTIONS as usize;
/// How long a request waits for a turn before it is answered 503.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Logs a failure of the store, at most once every 10 s (an outage fails every request).
fn store_failed(error: &crate::auth::store::StoreError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = warden_registry::protocol::now();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last.saturating_add(10)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("the credential store failed (answered 503 store_unavailable): {error}");
    }
}

/// A turn to look credentials up in the store, waited for at most `STORE_WAIT`.
async fn store_turn(daemon: &Shared) -> Result<tokio::sync::SemaphorePermit<'_>, Unidentified> {
    match tokio::time::timeout(STORE_WAIT, daemon.store_lookups.acquire()).await {
        Ok(Ok(turn)) => Ok(turn),
        _ => Err(Unidentified(STORE_FAILED)),
    }
}

/// A lookup the store failed: logged (now and then), and answered 503.
fn lookup_failed(error: crate::auth::store::StoreError) -> Unidentified {
    store_failed(&error);
    Unidentified(STORE_FAILED)
}

/// The user a store credential stands for, and its permissions: one turn of the lookups.
async fn from_store(
    daemon: &Shared,
    token: &str,
    kind: CredentialKind,
    label: &'static str,
    now: u64,
) -> Result<Caller, Unidentified> {
    let store = daemon.auth.as_ref().ok_or(Unidentified("no_store"))?;
    // A token of the wrong shape is no one's: refused without a lookup.
    if !AuthStore::well_formed(token) {
        return Err(Unidentified(Refused::Unknown.kind()));
    }
    let _turn = store_turn(daemon).await?;
    match store
        .authenticate(token, kind, now)
        .map_err(lookup_failed)?
    {
        Ok((user, _credential)) => Ok(Caller {
            // Prefixed: a store user can never share a name (its records, its idempotency
            // keys) with an operator key, whose names hold no `:`.
            name: format!("user:{}", user.name),
            kind: label,
            permissions: store.permissions(&user.name, None).map_err(lookup_failed)?,
            user: Some(user.name),
            scope: None,
        }),
        Err(refused) => Err(Unidentified(refused.kind())),
    }
}

/// The credential of a request: the `X-API-Key` header, and the scheme and token of
/// `Authorization` (no scheme for a bare token).
fn presented(headers: &HeaderMap) -> Result<Option<(Option<String>, String)>, Unidentified> {
    // One header of each at most: a second could override what a proxy set.
    if headers.get_all("x-api-key").iter().count() > 1
        || headers.get_all(header::AUTHORIZATION).iter().count() > 1
    {
        return Err(Unidentified("two_credentials"));
    }
    let api_key = headers
        .get("x-api-key")
        .map(|value| value.to_str().map(str::trim))
        .transpose()
        .map_err(|_| Unidentified("malformed_header"))?
        .filter(|key| !key.is_empty());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().map(str::trim))
        .transpose()
        .map_err(|_| Unidentified("malformed_header"))?
        .filter(|value| !value.is_empty())
        .map(|value| match value.split_once(' ') {
            Some((scheme, token)) => (Some(scheme.to_ascii_lowercase()), token.trim().to_string()),
            None => (None, value.to_string()),
        });
    // `x-api-key` names the header; as an `Authorization` scheme it is refused.
    if authorization
        .as_ref()
        .is_some_and(|(scheme, _)| scheme.as_deref() == Some("x-api-key"))
    {
        return Err(Unidentified("wrong_scheme"));
    }
    match (api_key, authorization) {
        (None, None) => Ok(None),
        (Some(key), None) => Ok(Some((Some("x-api-key".into()), key.to_string()))),
        (None, Some(authorization)) => Ok(Some(authorization)),
        (Some(key), Some((_, token))) if key == token => {
            Ok(Some((Some("x-api-key".into()), key.to_string())))
        }
        (Some(_), Some(_)) => Err(Unidentified("two_credentials")),
    }
}

/// Identifies the caller of a request, at `now` (Unix seconds). From a `held` source (one
/// past its failures), operator keys are not compared: they are the one credential a person
/// chooses, so the one that could be guessed.
pub async fn identify(
    daemon: &Shared,
    headers: &HeaderMap,
    now: u64,
    held: bool,
) -> Result<Caller, Unidentified> {
    let Some((scheme, token)) = presented(headers)? else {
        return Err(Unidentified("missing"));
    };
    let scheme = scheme.as_deref();
    if token.starts_with(CredentialKind::ApiKey.prefix()) {
        return match scheme {
            Some("x-api-key") => {
                from_store(daemon, &token, CredentialKind::ApiKey, "api_key", now).await
            }
            _ => Err(Unidentified("wrong_scheme")),
        };
    }
    if token.starts_with(CredentialKind::Pat.prefix()) {
        return match scheme {
            Some("pat") | None => from_store(daemon, &token, CredentialKind::Pat, "pat", now).await,
            _ => Err(Unidentified("wrong_scheme")),
        };
    }
    if token.split('.').count() == 3 && scheme == Some("bearer") {
        return bearer_jwt(daemon, &token, now).await;
    }
    if !matches!(scheme, Some("x-api-key" | "bearer")) {
        return Err(Unidentified("wrong_scheme"));
    }
    if held {
        return Err(Unidentified("throttled"));
    }
    // The operator's keys: every one compared, in constant time, whichever matches.
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut matched = None;
    for key in daemon.keys() {
        if bool::from(key.sha256.ct_eq(&digest)) {
            matched = Some(Caller {
                name: key.name.clone(),
                kind: "operator",
                user: None,
                permissions: match key.admin {
                    true => Permissions::OWNER.effective(),
                    false => {
                        Permissions::EXECUTE_BOARDS
                            | Permissions::EXECUTE_EVENTS
                            | Permissions::READ_BOARDS
                    }
                },
                scope: None,
            });
        }
    }
    matched.ok_or(Unidentified("unknown_key"))
}

/// The issuer a token claims, read before its signature is checked: it only picks which
/// checker (executor or OpenID Connect) verifies the token in full.
fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    jwt::part(payload, "payload").ok()?["iss"]
        .as_str()
        .map(str::to_string)
}

/// A bearer JWT: the executor's when its issuer is the executor's, else a person's OpenID
/// Connect access token.
async fn bearer_jwt(daemon: &Shared, token: &str, now: u64) -> Result<Caller, Unidentified> {
    let verifiers = daemon.verifiers();
    let issuer = claimed_issuer(token);
    let for_executor = match (&verifiers.executor, &verifiers.oidc) {
        (Some(executor), Some(_)) => issuer.as_deref() == Some(&executor.auth.policy.issuer),
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => return Err(Unidentified("jwt_not_configured")),
    };
    if for_executor {
        let Some(executor) = &verifiers.executor else {
            return Err(Unidentified("jwt_not_configured"));
        };
        return match executor.verify(token, now).await {
            Ok(claims) => Ok(Caller {
                // Named by its whole scope: tokens for other apps, boards or runs are other
                // callers (records, idempotency keys).
                name: format!(
                    "executor:{}/{}/{}",
                    claims.app_id, claims.board_id, claims.run_id
                ),
                kind: "executor",
                user: None,
                permissions: Permissions::EXECUTE_BOARDS | Permissions::EXECUTE_EVENTS,
                scope: Some(ExecutorScope {
                    app_id: claims.app_id,
                    board_id: claims.board_id,
                    event_id: claims.event_id,
                    user_id: claims.user_id.or(claims.subject),
                    run_id: claims.run_id,
                    jti: claims.jti,
                }),
            }),
            Err(error) => Err(Unidentified(error.kind())),
        };
    }
    let Some(oidc) = &verifiers.oidc else {
        return Err(Unidentified("jwt_not_configured"));
    };
    let claims = oidc
        .verify(token, now)
        .await
        .map_err(|error| Unidentified(error.kind()))?;
    let store = daemon.auth.as_ref().ok_or(Unidentified("no_store"))?;
    let _turn = store_turn(daemon).await?;
    // The subject is a user of this daemon's store, or no one: signing in at the provider
    // grants nothing by itself.
    let user = store
        .user_by_subject(&claims.subject)
        .map_err(lookup_failed)?
        .ok_or(Unidentified("unknown_subject"))?;
    Ok(Caller {
        name: format!("user:{}", user.name),
        kind: "oidc",
        permissions: store.permissions(&user.name, None).map_err(lookup_failed)?,
        user: Some(user.name),
        scope: None,
    })
}
