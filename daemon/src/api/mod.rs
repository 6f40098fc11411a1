//! The daemon's HTTPS API, under `/v1`, JSON in and out. Every error is
//! `{"error": {"code": "...", "message": "..."}}` with a stable code (docs/daemon.md lists
//! them). Everything but `/healthz`, `/readyz` and the `/auth` proxy needs a credential
//! (docs/auth.md).

mod admin;
mod auth_proxy;
mod error;
mod identity;
mod nodes;
pub(crate) mod queued;
mod run_events;
pub(crate) mod runs;

pub use admin::SELF_ISSUED_PER_HOUR;
pub use identity::{Caller, ExecutorScope, STORE_LOOKUPS};

pub use error::ApiError;

use crate::auth::permissions::{self, Needs, Permissions};
use crate::daemon::Daemon;
use crate::telemetry;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use identity::{STORE_FAILED, identify};
use serde_json::json;
use std::sync::Arc;

pub type Shared = Arc<Daemon>;

/// The API's router.
pub fn router(daemon: Shared) -> Router {
    let authenticated = Router::new()
        .route("/v1/runs", post(runs::create))
        .route("/v1/runs/{id}", get(runs::record))
        .route("/v1/runs/{id}/result", get(queued::result))
        .route("/v1/runs/{id}/events", get(run_events::events))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{*name}", get(nodes::one))
        .route("/v1/admin/reload", post(nodes::reload))
        .route(
            "/v1/admin/users",
            get(admin::users).post(admin::create_user),
        )
        .route("/v1/admin/roles", get(admin::roles))
        .route("/v1/admin/roles/{name}", put(admin::put_role))
        .route(
            "/v1/admin/assignments",
            post(admin::assign).delete(admin::unassign),
        )
        .route(
            "/v1/admin/credentials",
            get(admin::credentials).post(admin::issue),
        )
        .route("/v1/admin/credentials/{id}", delete(admin::revoke))
        .route("/v1/me", get(admin::me))
        .route("/v1/me/pats", get(admin::my_pats).post(admin::issue_my_pat))
        .route("/v1/me/pats/{id}", delete(admin::revoke_my_pat))
        .route("/v1/audit", get(admin::audit_tail))
        .route("/v1/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(daemon.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/auth/discovery", get(auth_proxy::discovery_document))
        .route("/auth/jwks", get(auth_proxy::jwks))
        .route("/auth/authorize", get(auth_proxy::authorize))
        .route("/auth/token", post(auth_proxy::token))
        .route("/auth/userinfo", get(auth_proxy::userinfo))
        .route("/auth/revoke", post(auth_proxy::revoke))
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(count_requests))
        .with_state(daemon)
}

/// The metrics listener's router: `/metrics` only, for a caller with ReadAnalytics (as
/// `GET /v1/metrics` on the API).
pub fn metrics_router(daemon: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(daemon.clone(), authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(daemon)
}

/// The metrics in Prometheus text format.
async fn metrics_text(State(daemon): State<Shared>) -> impl IntoResponse {
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
    if let Some(cluster) = &daemon.cluster
        && !cluster.reachable()
    {
        // Why stays in the log: this answer is public.
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the cluster's database does not answer this daemon; the daemon's log says why",
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

/// Every route but the public ones needs a caller with the permission the route table
/// (`auth::permissions::ROUTES`) names, checked here before any handler runs. A route the table
/// does not know is refused: the table fails closed.
async fn authenticate(State(daemon): State<Shared>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    let needs = permissions::needs(request.method().as_str(), &route);
    let caller = match needs {
        Some(Needs::Public) => return next.run(request).await,
        None => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route has no entry in the permission table",
            )
            .into_response();
        }
        Some(_) => {
            let peer = peer(&request);
            let now = std::time::Instant::now();
            let held = daemon.throttle.blocked(peer, now);
            match identify(
                &daemon,
                request.headers(),
                warden_registry::protocol::now(),
                held.is_some(),
            )
            .await
            {
                Ok(caller) => caller,
                // The store did not answer (in a cluster, the database is away): the caller's
                // credential may be good, so this is neither a 401 nor a failure of theirs.
                Err(unidentified) if unidentified.0 == STORE_FAILED => {
                    metrics::counter!(telemetry::AUTH_FAILURES, "kind" => STORE_FAILED)
                        .increment(1);
                    return admin::store_unavailable().into_response();
                }
                Err(unidentified) => {
                    record_failure(&daemon, &request, unidentified.0);
                    // A held source's failures are 429 (and its operator-key guesses were not
                    // even compared); a good store secret or signed token still got through.
                    if let Some(wait) = held {
                        return ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too_many_failures",
                            "too many failed authentications from this address; wait before trying again",
                        )
                        .retry_after(wait.as_secs().max(1))
                        .into_response();
                    }
                    daemon.throttle.failed(peer, now);
                    return unauthenticated();
                }
            }
        }
    };
    // The executor's token runs nodes in its scope, and does nothing else.
    if caller.scope.is_some() && needs != Some(Needs::Run) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an executor token runs nodes (POST /v1/runs) in its scope and does nothing else",
        )
        .into_response();
    }
    if let Some(Needs::Permission(needed)) = needs
        && !caller.permissions.allows(needed)
    {
        return forbidden(needed).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// 403 naming the permission that was missing.
pub fn forbidden(needed: Permissions) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this needs the permission {}", needed.names().join(" or ")),
    )
    .with("permission", json!(needed.names()))
}

/// The address a request came from.
fn peer(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Counts a refused credential by kind, and writes it to the audit log (sampled per address:
/// a flood of bad keys cannot flood the log).
fn record_failure(daemon: &Daemon, request: &Request, kind: &'static str) {
    metrics::counter!(telemetry::AUTH_FAILURES, "kind" => kind).increment(1);
    let peer = peer(request);
    if let Some(note) = daemon.auth_failures.note(peer) {
        daemon.audit.record(
            "authentication_failed",
            json!({
                "reason": kind,
                "peer": peer.map(|ip| ip.to_string()),
                "route": request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string()),
                "failures_since_last_record": note.since_last,
                "unrecorded_elsewhere": note.unrecorded_elsewhere,
            }),
        );
    }
}

/// 401, the same whatever was wrong.
fn unauthenticated() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        // What was wrong with it is the audit log's to know, not the caller's.
        "no usable credential: send `X-API-Key: <key>`, `Authorization: PAT <token>` or `Authorization: Bearer <token>`",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}
