//! The daemon's HTTPS API, under `/v1`, JSON in and out. Every error is
//! `{"error": {"code": "...", "message": "..."}}` with a stable code (docs/daemon.md lists
//! them). Everything but `/healthz` and `/readyz` needs an API key.

mod error;
mod nodes;
mod runs;

pub use error::ApiError;

use crate::daemon::Daemon;
use crate::telemetry;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub type Shared = Arc<Daemon>;

/// Who called: the name of the API key presented, and whether it is an admin's.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
}

impl Caller {
    /// Refuses a caller that is not an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.admin {
            true => Ok(()),
            false => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an admin key (`admin = true` in [[api.keys]], or the operator's key)",
            )),
        }
    }
}

/// The API's router.
pub fn router(daemon: Shared) -> Router {
    let authenticated = Router::new()
        .route("/v1/runs", post(runs::create))
        .route("/v1/runs/{id}", get(runs::record))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{*name}", get(nodes::one))
        .route("/v1/admin/reload", post(nodes::reload))
        .route_layer(middleware::from_fn_with_state(daemon.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(count_requests))
        .with_state(daemon)
}

/// The metrics listener's router: `/metrics` only.
pub fn metrics_router(daemon: Shared) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(daemon): State<Shared>| async move {
                if let Some(cache) = &daemon.code_cache {
                    let stats = cache.stats();
                    for (event, count) in [
                        ("hit", stats.hits),
                        ("miss", stats.misses),
                        ("rejected", stats.rejected),
                        ("stored", stats.stored),
                    ] {
                        metrics::counter!(telemetry::CODE_CACHE, "event" => event).absolute(count);
                    }
                }
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    telemetry::render(),
                )
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(daemon)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "alive" }))
}

async fn readyz(State(daemon): State<Shared>) -> Response {
    let generation = daemon.current();
    if daemon.is_shutting_down() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down",
        )
        .into_response();
    }
    if !generation.missing.is_empty() {
        // Every manifest node prepared is what ready means: one blocked by its registry is not.
        let missing: Vec<_> = generation
            .missing
            .iter()
            .map(|(node, reason)| json!({ "node": node, "reason": reason }))
            .collect();
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{} manifest node(s) are not serving", missing.len()),
        )
        .with("missing", json!(missing))
        .with("generation", json!(generation.number))
        .into_response();
    }
    axum::Json(json!({
        "status": "ready",
        "generation": generation.number,
        "nodes": generation.nodes.len(),
    }))
    .into_response()
}

/// A path parameter that is not text (`%FF`): the one error shape, not axum's plain text.
pub(crate) fn path_rejected(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::bad_request(format!("the path is not usable: {}", rejection.body_text()))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; the API is under /v1 (see docs/daemon.md)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Counts each answer by route pattern (never the raw path, which a caller chooses) and
/// status.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    // An empty `X-API-Key` is no key: a valid `Authorization` beside it still counts.
    if let Some(key) = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
    {
        return Some(key);
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

async fn authenticate(State(daemon): State<Shared>, mut request: Request, next: Next) -> Response {
    let digest: [u8; 32] = match presented(request.headers()) {
        Some(key) if !key.is_empty() => Sha256::digest(key.as_bytes()).into(),
        _ => {
            return unauthenticated(&daemon, &request, "no API key was presented");
        }
    };
    // Every key is compared, in constant time, whichever matches.
    let mut matched = None;
    for key in daemon.keys() {
        if bool::from(key.sha256.ct_eq(&digest)) {
            matched = Some(Caller {
                name: key.name.clone(),
                admin: key.admin,
            });
        }
    }
    match matched {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => unauthenticated(&daemon, &request, "the API key is not known"),
    }
}

fn unauthenticated(daemon: &Daemon, request: &Request, why: &str) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    // One record per address per interval, counting the failures in between: a flood of bad
    // keys cannot flood the audit log.
    if let Some(note) = daemon.auth_failures.note(peer) {
        daemon.audit.record(
            "authentication_failed",
            json!({
                "reason": why,
                "peer": peer.map(|ip| ip.to_string()),
                "route": request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string()),
                "failures_since_last_record": note.since_last,
                "unrecorded_elsewhere": note.unrecorded_elsewhere,
            }),
        );
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        format!("{why}: send `Authorization: Bearer <key>` with a key the daemon was given"),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}
