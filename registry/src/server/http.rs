//! The registry's HTTP API (axum on hyper), served over rustls with HTTP/2 and HTTP/1.1.
//! Every endpoint but `/v1/registry` authenticates the caller and checks one permission.
//! The API is described in `docs/registry.md`.

use super::auth::{self, Permissions};
use super::limits::retry_after_seconds;
use super::slots::{Busy, Slot, Slots};
use super::store::{Caller, DEFAULT_TOKEN_TTL, Store, StoreError};
use crate::protocol::{
    DEFAULT_MAX_PACKAGE_BYTES, MAX_LOG_PAGE_BYTES, MAX_LOG_PAGE_ENTRIES, TokenKind,
};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use warden_server::ServerLimits;

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A rate limit's answer: 429 with `Retry-After` in whole seconds.
fn too_many_requests(message: String, wait: std::time::Duration) -> Response {
    let seconds = retry_after_seconds(wait).to_string();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds)],
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// A store error as an answer; rate limits carry `Retry-After`.
fn store_error_response(error: StoreError) -> Response {
    match error {
        StoreError::TooManyRequests(message, wait) => too_many_requests(message, wait),
        other => ApiError::from(other).into_response(),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
            StoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            StoreError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{error}");
        }
        ApiError(status, error.to_string())
    }
}

type Api<T> = Result<T, ApiError>;

/// What the handlers whose store calls are rate-limited answer: errors are whole responses,
/// so a 429 keeps its `Retry-After`.
type Answer = Result<Response, Response>;

/// Like `blocking`, with a rate limit's error answered 429 and `Retry-After`.
async fn blocking_answer<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(store_error_response),
        Err(error) => {
            Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response())
        }
    }
}

/// Runs a store operation off the async threads (redb waits for the disk).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Api<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
        .map_err(ApiError::from)
}

type Shared = Arc<Store>;

/// What every handler can reach: the store, and the largest package accepted.
#[derive(Clone)]
pub struct AppState {
    store: Shared,
    max_package_bytes: usize,
    /// Package downloads in flight; each holds its package in memory until it is sent.
    downloads: Arc<Slots>,
    /// Package uploads in flight; each holds its package in memory while it is verified.
    uploads: Arc<Slots>,
    /// Where uploads are written while they arrive.
    spool: Arc<PathBuf>,
}

/// Package downloads served at once by default; more wait for none and get 503.
pub const DEFAULT_MAX_DOWNLOADS: usize = 16;
/// Package uploads received at once by default; more wait for none and get 503.
pub const DEFAULT_MAX_UPLOADS: usize = 4;
/// Package downloads one user may have in flight by default; more get 429.
pub const DEFAULT_MAX_DOWNLOADS_PER_USER: usize = 4;
/// Package uploads one user may have in flight by default; more get 429.
pub const DEFAULT_MAX_UPLOADS_PER_USER: usize = 1;

/// What the API holds at once, and where it spools uploads. Memory for packages is bounded by
/// (`max_downloads` + `max_uploads`) × `max_package_bytes`.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    pub max_package_bytes: usize,
    pub max_downloads: usize,
    pub max_uploads: usize,
    /// Downloads and uploads one user may have in flight: a client that moves bytes just
    /// above the minimum rate holds its slot for long, so one user must not hold them all.
    pub max_downloads_per_user: usize,
    pub max_uploads_per_user: usize,
    /// The directory uploads are written to while they arrive (as unnamed files, gone on
    /// every path): the registry's data directory, so they land on the disk the operator
    /// provisioned rather than in a /tmp that may be held in memory.
    pub spool: PathBuf,
}

impl ApiLimits {
    /// The default limits, spooling uploads in `spool`.
    pub fn new(spool: impl Into<PathBuf>) -> ApiLimits {
        ApiLimits {
            max_package_bytes: DEFAULT_MAX_PACKAGE_BYTES,
            max_downloads: DEFAULT_MAX_DOWNLOADS,
            max_uploads: DEFAULT_MAX_UPLOADS,
            max_downloads_per_user: DEFAULT_MAX_DOWNLOADS_PER_USER,
            max_uploads_per_user: DEFAULT_MAX_UPLOADS_PER_USER,
            spool: spool.into(),
        }
    }
}

impl axum::extract::FromRef<AppState> for Shared {
    fn from_ref(app: &AppState) -> Shared {
        app.store.clone()
    }
}

/// The largest JSON request body (users, tokens, keys; the largest real one, a key rotation,
/// is under 1 KiB). Small, because an HTTP/2 client may send one on each of its streams at
/// once: 64 streams × 64 connections per address × this is what one address can make the
/// registry hold, and only after it authenticated (see `json_body`).
const MAX_JSON_BODY: usize = 16 * 1024;

/// Reads a JSON request body. Handlers call it only once the caller is authenticated: with
/// axum's `Json` extractor the body was read before the handler ran, so anonymous clients
/// could make the registry buffer a body on every HTTP/2 stream (72 MiB from 16 connections).
async fn json_body<T: serde::de::DeserializeOwned>(body: axum::body::Body) -> Api<T> {
    optional_json_body(body).await?.ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "send the request's JSON body".into(),
        )
    })
}

/// Like `json_body`, with an empty body read as none.
async fn optional_json_body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Api<Option<T>> {
    let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(body_error)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        // As axum's `Json` answered: 422 for a well-formed body of the wrong shape.
        let status = match error.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, format!("the JSON body is not valid: {error}"))
    })
}

/// Why a request body could not be read: too large (413), too slow (408), or broken off.
fn body_error(error: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a JSON body is at most {MAX_JSON_BODY} bytes"),
            );
        }
        source = cause.source();
    }
    match warden_server::body_timeout(&error) {
        Some(timeout) => ApiError(StatusCode::REQUEST_TIMEOUT, timeout.to_string()),
        None => ApiError(
            StatusCode::BAD_REQUEST,
            format!("the request body broke off: {error}"),
        ),
    }
}

/// How long a client may take to send a package.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

async fn caller(store: &Shared, headers: &HeaderMap, permission: Permissions) -> Api<Caller> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (kind, token) = auth::presented(text("x-api-key"), text(header::AUTHORIZATION.as_str()))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "authenticate with `X-API-Key: <key>` or `Authorization: PAT <token>`".into(),
            )
        })?;
    let store = store.clone();
    let caller = blocking(move || store.authenticate(kind, &token)).await?;
    caller.require(permission)?;
    Ok(caller)
}

pub fn router(store: Arc<Store>, max_package_bytes: usize) -> Router {
    router_with(store, max_package_bytes, DEFAULT_MAX_DOWNLOADS)
}

/// The API with at most `max_downloads` package downloads in flight, spooling uploads in the
/// system's temporary directory (`warden registry serve` uses [`api`] with its data directory).
pub fn router_with(store: Arc<Store>, max_package_bytes: usize, max_downloads: usize) -> Router {
    api(
        store,
        ApiLimits {
            max_package_bytes,
            max_downloads,
            ..ApiLimits::new(std::env::temp_dir())
        },
    )
}

/// The API under `limits`.
pub fn api(store: Arc<Store>, limits: ApiLimits) -> Router {
    Router::new()
        .route("/v1/registry", get(registry_info))
        .route("/v1/roots", get(roots))
        .route("/v1/index", get(index))
        .route("/v1/log", get(log))
        .route("/v1/audit", get(audit))
        .route("/v1/packages", post(publish))
        .route("/v1/packages/{name}", get(versions))
        .route("/v1/packages/{name}/{version}", get(download))
        .route("/v1/packages/{name}/{version}/yank", post(yank))
        .route("/v1/publishers/{publisher}/keys", post(add_key))
        .route(
            "/v1/publishers/{publisher}/keys/{key}/revoke",
            post(revoke_key),
        )
        .route("/v1/users", post(create_user))
        .route("/v1/tokens", post(issue_token))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .layer(axum::middleware::from_fn_with_state(
            store.clone(),
            limit_failed_authentications,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(AppState {
            store,
            max_package_bytes: limits.max_package_bytes,
            downloads: Slots::new(
                "downloads",
                limits.max_downloads,
                limits.max_downloads_per_user,
            ),
            uploads: Slots::new("uploads", limits.max_uploads, limits.max_uploads_per_user),
            spool: Arc::new(limits.spool),
        })
}

/// Counts each 401 against the source address, and answers 429 without running the handler
/// once an address has failed too often. The address comes from axum's `ConnectInfo`, which
/// the serve loop adds to each request; without it (a router served some other way) nothing is
/// limited here.
async fn limit_failed_authentications(
    State(store): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let Some(address) = address else {
        return next.run(request).await;
    };
    if let Err(wait) = store.authentication_allowed(address) {
        return too_many_requests(
            "too many failed authentications from this address".into(),
            wait,
        );
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        store.authentication_failed(address);
    }
    response
}

async fn registry_info(State(store): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({ "public_key": store.public_key() }))
}

/// The root documents are public: they are how a host learns, from the key it pinned, which
/// keys the registry signs with now.
async fn roots(State(store): State<Shared>) -> Api<Response> {
    Ok(Json(blocking(move || store.roots()).await?).into_response())
}

async fn index(State(store): State<Shared>, headers: HeaderMap) -> Api<Response> {
    caller(&store, &headers, Permissions::READ_NODES).await?;
    let signed = blocking(move || store.index()).await?;
    Ok(Json(signed).into_response())
}

/// The whole log without a query (what older hosts ask for); with `?from=N[&limit=M]` one page
/// of entries from N on, bounded by `protocol::MAX_LOG_PAGE_ENTRIES` and `MAX_LOG_PAGE_BYTES`,
/// so hosts fetch only what they have not verified yet.
async fn log(
    State(store): State<Shared>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Api<Response> {
    caller(&store, &headers, Permissions::READ_NODES).await?;
    let Some(query) = query else {
        return Ok(Json(blocking(move || store.log()).await?).into_response());
    };
    let (from, limit) =
        log_page(&query).map_err(|why| ApiError(StatusCode::BAD_REQUEST, why.to_string()))?;
    let page = blocking(move || store.log_range(from, limit, MAX_LOG_PAGE_BYTES)).await?;
    Ok(Json(page).into_response())
}

/// Why a log page request is refused (400).
#[derive(Debug, thiserror::Error)]
enum LogQueryError {
    #[error("`{name}` must be a whole number, not `{value}`")]
    NotANumber { name: String, value: String },
    #[error("unknown query parameter `{name}`; give from=N and limit=M")]
    UnknownParameter { name: String },
    #[error("a page of the log needs from=N (the first entry wanted)")]
    NoFrom,
}

/// `from` (required) and `limit` (at most `MAX_LOG_PAGE_ENTRIES`, which is also the default)
/// of a log page request; anything else is refused.
fn log_page(query: &str) -> Result<(u64, u64), LogQueryError> {
    let mut from = None;
    let mut limit = MAX_LOG_PAGE_ENTRIES;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let number = value
            .parse::<u64>()
            .map_err(|_| LogQueryError::NotANumber {
                name: name.to_string(),
                value: value.to_string(),
            })?;
        match name.as_ref() {
            "from" => from = Some(number),
            "limit" => limit = number.clamp(1, MAX_LOG_PAGE_ENTRIES),
            _ => {
                return Err(LogQueryError::UnknownParameter {
                    name: name.to_string(),
                });
            }
        }
    }
    let from = from.ok_or(LogQueryError::NoFrom)?;
    Ok((from, limit))
}

async fn audit(State(store): State<Shared>, headers: HeaderMap) -> Api<Response> {
    caller(&store, &headers, Permissions::READ_AUDIT).await?;
    Ok(Json(blocking(move || store.audit_trail()).await?).into_response())
}

async fn publish(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Api<Response> {
    let store = app.store;
    // Authenticate before reading anything: an anonymous caller cannot make the registry
    // spool a package.
    let who = caller(&store, &headers, Permissions::PUBLISH_NODES).await?;
    let too_large = too_large(app.max_package_bytes);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > app.max_package_bytes as u64) {
        return Err(too_large);
    }
    // Held until the package is committed or refused: it bounds the packages in memory.
    let _slot = match app.uploads.take(&who.user.name) {
        Ok(slot) => slot,
        Err(refused) => return Ok(busy(refused)),
    };
    // Over its publish rate, a caller is refused before its upload is read; an admitted upload
    // has paid already.
    if let Err(error) = store.admit_publish(&who) {
        return Ok(store_error_response(error));
    }
    let (mut file, length) = tokio::time::timeout(
        UPLOAD_TIMEOUT,
        spool(body, app.max_package_bytes, &app.spool),
    )
    .await
    .map_err(|_| {
        ApiError(
            StatusCode::REQUEST_TIMEOUT,
            "the package did not arrive in time".into(),
        )
    })??;
    let entry = blocking(move || {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(length);
        file.read_to_end(&mut bytes).map_err(|error| {
            StoreError::Storage(format!("cannot read a spooled upload: {error}"))
        })?;
        store.publish(&who, &bytes)
    })
    .await?;
    tracing::info!(name = %entry.name, version = %entry.version, "published");
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

/// No transfer slot: 503 when the registry is full, 429 when the caller holds its share
/// (with a `Retry-After` guess: a transfer in flight takes seconds at least).
fn busy(busy: Busy) -> Response {
    match busy {
        Busy::Full(_) => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, busy.to_string()).into_response()
        }
        Busy::Share(..) => too_many_requests(busy.to_string(), std::time::Duration::from_secs(5)),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the package is over this registry's {limit}-byte limit"),
    )
}

/// How much of an upload is gathered in memory before it is written out.
const SPOOL_CHUNK: usize = 1024 * 1024;

/// Writes a request body to an unnamed file in `dir` as it arrives, so an upload costs disk
/// rather than memory until it is whole (at most `SPOOL_CHUNK` of it is in memory). Returns
/// the file, rewound, and its length.
async fn spool(
    mut body: axum::body::Body,
    limit: usize,
    dir: &FsPath,
) -> Api<(std::fs::File, usize)> {
    let place = dir.to_path_buf();
    let file = on_disk(
        move || tempfile::tempfile_in(&place),
        || format!("cannot create a file in {}", dir.display()),
    )
    .await?;
    let mut spooled = Spooled {
        file,
        pending: Vec::with_capacity(SPOOL_CHUNK),
        length: 0,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| match warden_server::body_timeout(&error) {
            Some(timeout) => ApiError(StatusCode::REQUEST_TIMEOUT, timeout.to_string()),
            None => ApiError(
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {error}"),
            ),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        spooled.length += data.len();
        if spooled.length > limit {
            return Err(too_large(limit));
        }
        spooled.pending.extend_from_slice(&data);
        if spooled.pending.len() >= SPOOL_CHUNK {
            spooled = on_disk(
                move || spooled.write_out().map(|()| spooled),
                || "cannot write an upload".into(),
            )
            .await?;
        }
    }
    let length = spooled.length;
    let file = on_disk(
        move || {
            spooled.write_out()?;
            let mut file = spooled.file;
            std::io::Seek::rewind(&mut file)?;
            Ok(file)
        },
        || "cannot write an upload".into(),
    )
    .await?;
    Ok((file, length))
}

/// An upload on its way to disk.
struct Spooled {
    file: std::fs::File,
    pending: Vec<u8>,
    length: usize,
}

impl Spooled {
    fn write_out(&mut self) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.file, &self.pending)?;
        self.pending.clear();
        Ok(())
    }
}

/// Runs file work off the async threads; a failure is the registry's (500), logged.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    what: impl FnOnce() -> String,
) -> Api<T> {
    let done = tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    done.map_err(|error| {
        let what = what();
        tracing::error!("{what}: {error}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the registry cannot store uploads: {what}: {error}"),
        )
    })
}

async fn versions(
    State(store): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Api<Response> {
    caller(&store, &headers, Permissions::READ_NODES).await?;
    let found = blocking(move || store.versions(&name)).await?;
    Ok(Json(found).into_response())
}

async fn download(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Api<Response> {
    let store = app.store;
    let who = caller(&store, &headers, Permissions::READ_NODES).await?;
    let slot = match app.downloads.take(&who.user.name) {
        Ok(slot) => slot,
        Err(refused) => return Ok(busy(refused)),
    };
    let bytes = blocking(move || store.package(&name, &version)).await?;
    let body = HeldBody {
        bytes: Bytes::from(bytes),
        _slot: slot,
    };
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::new(body),
    )
        .into_response())
}

/// A response body that hands out its bytes a slice at a time, so the connection pulls them
/// as it sends, and keeps its download slot until the last slice is taken or the connection
/// is gone.
struct HeldBody {
    bytes: Bytes,
    _slot: Slot,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        const SLICE: usize = 64 * 1024;
        let this = self.get_mut();
        if this.bytes.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let slice = this.bytes.split_to(SLICE.min(this.bytes.len()));
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.len() as u64)
    }
}

async fn yank(
    State(store): State<Shared>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Api<Response> {
    let who = caller(&store, &headers, Permissions::YANK_NODES).await?;
    Ok(Json(blocking(move || store.yank(&who, &name, &version)).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKey {
    public_key: String,
    /// The new key's own signature over the possession statement (registry, publisher, key);
    /// missing, it is refused like a wrong one.
    #[serde(default)]
    possession: String,
    /// For a rotation: the current key that signs the new one in, and its signature.
    signed_by: Option<String>,
    signature: Option<String>,
}

async fn add_key(
    State(store): State<Shared>,
    headers: HeaderMap,
    Path(publisher): Path<String>,
    body: axum::body::Body,
) -> Api<Response> {
    let who = caller(&store, &headers, Permissions::MANAGE_KEYS).await?;
    let body: AddKey = json_body(body).await?;
    let entry = blocking(move || {
        let signed_by = body.signed_by.as_deref().zip(body.signature.as_deref());
        store.add_key(
            &who,
            &publisher,
            &body.public_key,
            &body.possession,
            signed_by,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeKey {
    /// Unix seconds from which the key's signatures are refused; now by default.
    revoked_at: Option<u64>,
    /// For a back-dated revocation: another current key of the publisher and its signature
    /// over the revocation statement (an admin may back-date without one).
    signed_by: Option<String>,
    signature: Option<String>,
}

async fn revoke_key(
    State(store): State<Shared>,
    headers: HeaderMap,
    Path((publisher, key)): Path<(String, String)>,
    body: axum::body::Body,
) -> Api<Response> {
    let who = caller(&store, &headers, Permissions::MANAGE_KEYS).await?;
    // The body is optional: none revokes from now.
    let body: RevokeKey = optional_json_body(body).await?.unwrap_or_default();
    let revoked = blocking(move || {
        let signed_by = body.signed_by.as_deref().zip(body.signature.as_deref());
        store.revoke_key(&who, &publisher, &key, body.revoked_at, signed_by)
    })
    .await?;
    Ok(Json(revoked).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    roles: Vec<String>,
    publisher: Option<String>,
}

async fn create_user(
    State(store): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Api<Response> {
    let who = caller(&store, &headers, Permissions::MANAGE_USERS).await?;
    let body: NewUser = json_body(body).await?;
    let user =
        blocking(move || store.create_user(&who, &body.name, &body.roles, body.publisher)).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Whose token; the caller's own by default.
    user: Option<String>,
    kind: TokenKind,
    /// Lifetime in seconds; 90 days by default.
    ttl: Option<u64>,
}

async fn issue_token(
    State(store): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let who = caller(&store, &headers, Permissions::empty())
        .await
        .map_err(IntoResponse::into_response)?;
    let body: NewToken = json_body(body).await.map_err(IntoResponse::into_response)?;
    let (token, record) = blocking_answer(move || {
        let user = body.user.unwrap_or_else(|| who.user.name.clone());
        store.issue_token(
            &who,
            &user,
            body.kind,
            body.ttl.unwrap_or(DEFAULT_TOKEN_TTL),
        )
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "record": record })),
    )
        .into_response())
}

async fn revoke_token(
    State(store): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Api<Response> {
    let who = caller(&store, &headers, Permissions::empty()).await?;
    blocking(move || store.revoke_token(&who, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Serves `router` over TLS on `listener` under the default [`ServerLimits`] until the task
/// is dropped. The connection handling (timeouts, caps) is warden-server's.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    warden_server::serve(listener, tls, router, ServerLimits::default()).await
}

/// Serves `router` under `limits` until `shutdown` completes, then lets connections finish
/// within `limits.shutdown_grace`.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    warden_server::serve_with_shutdown(listener, tls, router, limits, shutdown).await
}
