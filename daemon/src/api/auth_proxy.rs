//! `/auth/...`: the OpenID Connect provider's endpoints, served by the daemon so that a client
//! needs to know only the daemon. Discovery and JWKS come from the daemon's cache; authorize is
//! a redirect; token, userinfo and revoke are forwarded. Only endpoints the provider's own
//! discovery document names, on the provider's origins, are ever reached: a request cannot
//! choose the host. Bodies both ways are capped, and every exchange has a timeout.

use super::{ApiError, Shared};
use crate::auth::fetch::FetchError;
use crate::auth::keyset::endpoint;
use crate::auth::verifiers::OidcVerifier;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The largest request body forwarded (a token or revocation form).
pub const MAX_FORWARD_BYTES: usize = 64 * 1024;
/// The largest answer passed back.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The longest authorize query passed on.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

fn provider(daemon: &Shared) -> Result<Arc<OidcVerifier>, ApiError> {
    daemon.verifiers().oidc.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "oidc_not_configured",
            "this daemon has no OpenID Connect provider ([auth.oidc] in its manifest)",
        )
    })
}

fn unavailable(why: impl std::fmt::Display) -> ApiError {
    tracing::warn!("the OpenID Connect provider: {why}");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
        "the identity provider cannot be reached now; try again later",
    )
}

/// The provider's discovery document, fetched now if none is cached.
async fn discovery(oidc: &OidcVerifier) -> Result<Arc<serde_json::Value>, ApiError> {
    if let Some(document) = oidc.keys.snapshot().discovery {
        return Ok(document);
    }
    let _ = oidc.keys.refresh_if_due().await;
    oidc.keys.snapshot().discovery.ok_or_else(|| {
        unavailable(
            oidc.keys
                .status()
                .1
                .unwrap_or_else(|| "no discovery document yet".into()),
        )
    })
}

/// The provider's endpoint `name`, checked to be on the provider's origins.
async fn endpoint_of(oidc: &OidcVerifier, name: &str) -> Result<url::Url, ApiError> {
    let document = discovery(oidc).await?;
    let origins = match &oidc.auth.keys.source {
        crate::auth::keyset::Source::Discovery { origins, .. } => origins.clone(),
        crate::auth::keyset::Source::Jwks(_) => Vec::new(),
    };
    match endpoint(&document, name, &origins) {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_offered",
            format!("the provider's discovery document has no `{name}`"),
        )),
        Err(error) => Err(unavailable(error)),
    }
}

pub async fn discovery_document(State(daemon): State<Shared>) -> Result<Response, ApiError> {
    let oidc = provider(&daemon)?;
    Ok(axum::Json(discovery(&oidc).await?.as_ref().clone()).into_response())
}

pub async fn jwks(State(daemon): State<Shared>) -> Result<Response, ApiError> {
    let oidc = provider(&daemon)?;
    let snapshot = oidc.keys.snapshot();
    if snapshot.keys.is_empty() {
        let _ = oidc.keys.refresh_if_due().await;
    }
    let keys = oidc.keys.snapshot().keys;
    if keys.is_empty() {
        return Err(unavailable("no keys fetched yet"));
    }
    Ok(axum::Json(json!({ "keys": keys.as_ref() })).into_response())
}

/// `GET /auth/authorize?...`: a redirect to the provider's authorization endpoint with the
/// same query; the browser goes there itself.
pub async fn authorize(
    State(daemon): State<Shared>,
    request: Request,
) -> Result<Response, ApiError> {
    let oidc = provider(&daemon)?;
    let query = request.uri().query().unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the query is over {MAX_QUERY_BYTES} bytes"
        )));
    }
    let mut target = endpoint_of(&oidc, "authorization_endpoint").await?;
    if !query.is_empty() {
        // Appended to the endpoint's own query, if it has one.
        let joined = match target.query() {
            Some(own) if !own.is_empty() => format!("{own}&{query}"),
            _ => query.to_string(),
        };
        target.set_query(Some(&joined));
    }
    let location = HeaderValue::from_str(target.as_str())
        .map_err(|_| ApiError::bad_request("the query cannot be passed on"))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

pub async fn token(State(daemon): State<Shared>, request: Request) -> Result<Response, ApiError> {
    forward(&daemon, "token_endpoint", request).await
}

pub async fn userinfo(
    State(daemon): State<Shared>,
    request: Request,
) -> Result<Response, ApiError> {
    forward(&daemon, "userinfo_endpoint", request).await
}

pub async fn revoke(State(daemon): State<Shared>, request: Request) -> Result<Response, ApiError> {
    forward(&daemon, "revocation_endpoint", request).await
}

/// Forwards the request (its method, body, and the headers a token exchange needs) to the
/// provider's endpoint `name`, and passes back the status, content type and body.
async fn forward(daemon: &Shared, name: &str, request: Request) -> Result<Response, ApiError> {
    let oidc = provider(daemon)?;
    let url = endpoint_of(&oidc, name).await?;
    let method = request.method().clone();
    let mut headers = Vec::new();
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(value) = request.headers().get(&name) {
            headers.push((name, value.clone()));
        }
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_FORWARD_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is over {MAX_FORWARD_BYTES} bytes"),
            )
        })?;
    let method = if method == Method::POST {
        Method::POST
    } else {
        Method::GET
    };
    let answer = oidc
        .keys
        .fetcher()
        .send(method, &url, &headers, body, MAX_ANSWER_BYTES)
        .await
        .map_err(|error: FetchError| unavailable(error))?;
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
        if let Some(value) = answer.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    // Tokens in answers are not for caches on the way.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
