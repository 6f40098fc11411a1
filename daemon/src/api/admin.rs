//! `/v1/admin/...` (users, roles, assignments, credentials: Admin), `/v1/me...` (a caller's
//! own identity and PATs), `GET /v1/audit` (ReadLogs) and `GET /v1/metrics` (ReadAnalytics).
//! The operations themselves are [`crate::admin`]'s, shared with `warden serve admin`.

use super::{ApiError, Caller, Shared};
use crate::admin::{self, AssignmentRequest, IssueRequest, NewUser, RoleRequest};
use crate::auth::store::{AuthStore, CredentialKind, StoreError};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, http::header};
use serde::Deserialize;
use serde_json::{Value, json};

type Answer = Result<Json<Value>, ApiError>;

/// 503: the user store did not answer (in a cluster, its database is away).
pub fn store_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the credential store did not answer; retry",
    )
    .retry_after(1)
}

pub fn store_error(error: StoreError) -> ApiError {
    match &error {
        StoreError::UnknownUser(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_user", error.to_string())
        }
        StoreError::UnknownRole(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_role", error.to_string())
        }
        StoreError::UnknownCredential(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_credential",
            error.to_string(),
        ),
        StoreError::UserExists(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
        }
        StoreError::Invalid(message) => ApiError::bad_request(message.clone()),
        StoreError::Storage { .. } if error.in_cluster() => {
            tracing::warn!("the auth store failed: {error}");
            store_unavailable()
        }
        StoreError::Storage { .. } => {
            tracing::error!("the auth store failed: {error}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                "the daemon's auth store failed; its log says why",
            )
        }
    }
}

fn store(daemon: &Shared) -> Result<&AuthStore, ApiError> {
    daemon.auth.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the daemon has no auth store",
        )
    })
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

fn now() -> u64 {
    warden_registry::protocol::now()
}

/// Records an administrative change: who made it, and what (never a secret).
fn audit(daemon: &Shared, caller: &Caller, action: &str, fields: Value) {
    daemon.audit.record(
        "admin",
        json!({ "action": action, "caller": caller.name, "details": fields }),
    );
}

pub async fn users(State(daemon): State<Shared>) -> Answer {
    admin::users(store(&daemon)?).map(Json).map_err(store_error)
}

pub async fn create_user(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let name = request.name.clone();
    let answer = admin::create_user(store(&daemon)?, request, now()).map_err(store_error)?;
    audit(&daemon, &caller, "create_user", json!({ "user": name }));
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub async fn roles(State(daemon): State<Shared>) -> Answer {
    admin::roles(store(&daemon)?).map(Json).map_err(store_error)
}

pub async fn put_role(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    request: Result<Json<RoleRequest>, JsonRejection>,
) -> Answer {
    let Path(name) = name.map_err(super::path_rejected)?;
    let request = body(request)?;
    let answer = admin::put_role(store(&daemon)?, &name, request).map_err(store_error)?;
    audit(&daemon, &caller, "put_role", answer["role"].clone());
    Ok(Json(answer))
}

pub async fn assign(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<AssignmentRequest>, JsonRejection>,
) -> Answer {
    let answer = admin::assign(store(&daemon)?, body(request)?).map_err(store_error)?;
    audit(&daemon, &caller, "assign", answer["assigned"].clone());
    Ok(Json(answer))
}

pub async fn unassign(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<AssignmentRequest>, JsonRejection>,
) -> Answer {
    let answer = admin::unassign(store(&daemon)?, body(request)?).map_err(store_error)?;
    audit(&daemon, &caller, "unassign", answer["unassigned"].clone());
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFilter {
    user: Option<String>,
}

pub async fn credentials(
    State(daemon): State<Shared>,
    filter: Result<Query<CredentialFilter>, QueryRejection>,
) -> Answer {
    let Query(filter) = filter.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    admin::credentials(store(&daemon)?, filter.user.as_deref(), now())
        .map(Json)
        .map_err(store_error)
}

pub async fn issue(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<IssueRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let answer = admin::issue(store(&daemon)?, body(request)?, now()).map_err(store_error)?;
    audit(&daemon, &caller, "issue", answer["credential"].clone());
    Ok(no_store(
        (StatusCode::CREATED, Json(answer)).into_response(),
    ))
}

pub async fn revoke(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(id) = id.map_err(super::path_rejected)?;
    let answer = admin::revoke(store(&daemon)?, &id, None, now()).map_err(store_error)?;
    if answer["changed"] == true {
        audit(&daemon, &caller, "revoke", answer["revoked"].clone());
    }
    Ok(Json(answer))
}

/// An answer holding a secret is not kept by caches on the way.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /v1/me`: who the daemon takes the caller for, and what it may do in every app.
pub async fn me(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({
        "name": caller.name,
        "kind": caller.kind,
        "user": caller.user,
        "permissions": caller.permissions.names(),
    }))
}

/// The caller's store user, for the routes about its own PATs.
fn person(caller: &Caller) -> Result<&str, ApiError> {
    caller.user.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only users of the daemon's user store have personal access tokens; this caller is an operator key",
        )
    })
}

pub async fn my_pats(State(daemon): State<Shared>, Extension(caller): Extension<Caller>) -> Answer {
    let user = person(&caller)?;
    let now = now();
    let pats: Vec<Value> = store(&daemon)?
        .credentials(Some(user))
        .map_err(store_error)?
        .iter()
        .filter(|credential| credential.kind == CredentialKind::Pat)
        .map(|credential| admin::credential_view(credential, now))
        .collect();
    Ok(Json(json!({ "pats": pats })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPat {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
}

/// PATs a person may issue itself an hour.
pub const SELF_ISSUED_PER_HOUR: u32 = 10;

/// `POST /v1/me/pats`: a person signed in through OpenID Connect issues a PAT for itself. A
/// PAT cannot issue PATs: one that could would outlive its own expiry and revocation.
pub async fn issue_my_pat(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<NewPat>, JsonRejection>,
) -> Result<Response, ApiError> {
    let user = person(&caller)?.to_string();
    if caller.kind != "oidc" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a personal access token is issued by its person signed in through OpenID Connect, or by an admin; a PAT or API key cannot issue one",
        ));
    }
    let request = body(request)?;
    // A person mints a few PATs an hour, not a stream of them (each is a record and an audit
    // line).
    if let Err(wait) = daemon
        .self_service
        .try_take(user.clone(), std::time::Instant::now())
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "a person issues itself at most {SELF_ISSUED_PER_HOUR} PATs an hour; wait before the next"
            ),
        )
        .retry_after(wait.as_secs().max(1)));
    }
    // A sign-in of minutes mints a PAT of at most the default lifetime; longer ones come from
    // an admin.
    let lifetime = admin::lifetime(request.expires_in.as_deref()).map_err(store_error)?;
    if lifetime > admin::DEFAULT_LIFETIME {
        return Err(ApiError::bad_request(format!(
            "a PAT issued for oneself lives at most {} days; an admin can issue a longer one",
            admin::DEFAULT_LIFETIME / 86400
        )));
    }
    let answer = admin::issue(
        store(&daemon)?,
        IssueRequest {
            user,
            label: request.label,
            expires_in: request.expires_in,
        },
        now(),
    )
    .map_err(store_error)?;
    audit(&daemon, &caller, "issue", answer["credential"].clone());
    Ok(no_store(
        (StatusCode::CREATED, Json(answer)).into_response(),
    ))
}

pub async fn revoke_my_pat(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(id) = id.map_err(super::path_rejected)?;
    let user = person(&caller)?;
    let store = store(&daemon)?;
    let is_own_pat = store
        .credential(&id)
        .map_err(store_error)?
        .is_some_and(|credential| {
            credential.user == user && credential.kind == CredentialKind::Pat
        });
    if !is_own_pat {
        return Err(store_error(StoreError::UnknownCredential(id)));
    }
    let answer = admin::revoke(store, &id, Some(user), now()).map_err(store_error)?;
    if answer["changed"] == true {
        audit(&daemon, &caller, "revoke", answer["revoked"].clone());
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
}

/// The most audit records one answer holds.
pub const MAX_AUDIT_RECORDS: usize = 1000;

/// `GET /v1/audit?limit=N`: the last N audit records (100 unless given, 1000 at most).
pub async fn audit_tail(
    State(daemon): State<Shared>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_AUDIT_RECORDS);
    let records = daemon.audit.tail(limit).await.map_err(|error| {
        tracing::error!("cannot read the audit log: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            "the audit log cannot be read; the daemon's log says why",
        )
    })?;
    Ok(Json(json!({ "records": records })))
}
