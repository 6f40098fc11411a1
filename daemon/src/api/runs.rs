//! `POST /v1/runs` (run a node, answered whole or streamed) and `GET /v1/runs/{id}` (a
//! finished run's record).
//!
//! A run executes in a task of its own once admitted, never in the request's: a caller that
//! reads slowly or goes away cannot hold the run's instance. What it streams waits in the
//! response's channel, bounded by the node's own output and stream limits.

use super::error::{limit_code, outcome, run_error};
use super::nodes::unresolved_error;
use super::{ApiError, Caller, Shared};
use crate::admission::{Overloaded, Slot};
use crate::generation::LiveNode;
use crate::records::{ClaimRefused, Idempotent};
use crate::telemetry;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;
use warden_cluster::{QueuedRun, RunState, SyncBegun};
use warden_host::log::LogRecord;
use warden_host::{DataType, Error, Field, RunContext, RunReport, RunRequest, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    /// `node`, `package` (a one-node package) or `package/node`.
    pub(super) node: String,
    /// Kept as their JSON text until typed by the pins: an array of a million zeros stays 2
    /// MB, not the 32 MB it would take as a parsed document.
    #[serde(default)]
    inputs: BTreeMap<String, Box<RawValue>>,
    #[serde(default)]
    context: ContextBody,
    #[serde(default)]
    variables: BTreeMap<String, Box<RawValue>>,
    pub(super) idempotency_key: Option<String>,
    /// `sync` (the default): answered when the run ends, by this daemon. `queued`: answered at
    /// once with the run's id; a worker on any daemon of the cluster runs it.
    #[serde(default)]
    pub(super) mode: Mode,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    #[default]
    Sync,
    Queued,
}

#[derive(Deserialize, Default, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContextBody {
    app_id: Option<String>,
    board_id: Option<String>,
    user_id: Option<String>,
    event_id: Option<String>,
    node_instance_id: Option<String>,
}

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// How the caller asked to get the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Whole,
    NdJson,
    EventStream,
}

fn delivery(headers: &HeaderMap) -> Delivery {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/event-stream") {
        Delivery::EventStream
    } else if accept.contains("application/x-ndjson") {
        Delivery::NdJson
    } else {
        Delivery::Whole
    }
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    warden_package::hex(&Sha256::digest(bytes))
}

/// A JSON value's hash and size, its object keys sorted, so equal values hash equal.
/// The hash and size of inputs as sent: each name with its JSON text, in name order.
fn digest_raw(inputs: &BTreeMap<String, Box<RawValue>>) -> Json {
    let bytes = serde_json::to_vec(inputs).unwrap_or_default();
    json!({ "sha256": sha256_hex(&bytes), "bytes": bytes.len() })
}

fn digest(json: &Json) -> Json {
    let bytes = serde_json::to_vec(&sorted(json)).unwrap_or_default();
    json!({ "sha256": sha256_hex(&bytes), "bytes": bytes.len() })
}

fn sorted(json: &Json) -> Json {
    match json {
        Json::Object(map) => {
            let sorted: BTreeMap<&String, Json> = map.iter().map(|(k, v)| (k, sorted(v))).collect();
            json!(sorted)
        }
        Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub(super) fn run_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's random source does not fail on the systems warden runs on; were it to,
    // the time and a counter still make ids unique in this process.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        bytes[8..].copy_from_slice(&count.to_le_bytes());
    }
    format!("run-{}", warden_package::hex(&bytes))
}

/// Reads the body under the API's cap: 413 over it, 408 when it stalls.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("a request body is at most {limit} bytes (api.max_body)"),
                );
            }
            source = cause.source();
        }
        match warden_server::body_timeout(&error) {
            Some(timeout) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                timeout.to_string(),
            ),
            None => ApiError::bad_request(format!("the request body broke off: {error}")),
        }
    })
}

pub async fn create(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if daemon.is_shutting_down() {
        return Err(shutting_down());
    }
    // Bodies are read and typed a few at a time, each under the API's size cap: what they
    // take in memory is bounded before any run is admitted.
    let timeout = daemon.started_with.host.queue_timeout;
    let reading = daemon.reading.acquire(timeout).await.map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many request bodies are being read; retry later",
        )
        .retry_after(1)
    })?;
    let bytes = read_body(body, daemon.started_with.api.max_body_bytes).await?;
    let mut body: RunBody = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(format!("the JSON body is not a run request: {error}"))
    })?;
    drop(bytes);
    authorize(&daemon, &caller, &mut body.context)?;
    if body.mode == Mode::Queued {
        return super::queued::enqueue(&daemon, &caller, &headers, body).await;
    }
    // An idempotency key is claimed first: a retry gets the first answer even when the node
    // has since gone, and any refusal below gives the key back.
    let (id, claim) = claim_key(&daemon, &caller, &headers, &body).await?;
    // Typed against the node serving now, before waiting for a slot: a bad input is answered
    // at once, and a request waiting in a queue holds typed values, not the body.
    let (resolved, node_name) = daemon
        .current()
        .resolve(&body.node)
        .map_err(unresolved_error)?;
    let (inputs, variables) = convert(&resolved, &node_name, &body)?;
    let context = run_context(&id, &node_name, &body.context)?;
    let inputs_digest = digest_raw(&body.inputs);
    drop(reading);
    let (live, node_name, slots) = admit_current(&daemon, &body.node).await?;
    if live.verified.component_sha256 != resolved.verified.component_sha256 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the node was replaced by another version while this request waited; retry",
        )
        .retry_after(1));
    }
    drop(resolved);
    let delivery = delivery(&headers);
    let (events, receiver) = mpsc::unbounded_channel();
    let events = Events::new(events);
    let waiting = events.waiting.clone();
    let streaming = delivery != Delivery::Whole;
    let request = RunRequest {
        node: Some(node_name.clone()),
        context,
        inputs,
        variables,
        ..match streaming {
            true => streaming_request(&events),
            false => RunRequest::default(),
        }
    };
    let run = Run {
        id: id.clone(),
        node: format!("{}/{node_name}", live.name()),
        caller: caller.name.clone(),
        executor: executor(&caller),
        claim,
        queued: false,
        inputs: inputs_digest,
        context: context_ids(&request.context),
    };
    let task = tokio::spawn(execute(daemon.clone(), live, request, slots, run, events));
    if !streaming {
        let Answer { status, body, .. } = task.await.map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the run's task failed: {error}"),
            )
        })?;
        return Ok(counted_json(&daemon.undelivered, status, &body));
    }
    Ok(stream_response(
        delivery,
        receiver,
        waiting,
        daemon.undelivered.clone(),
        &id,
    ))
}

/// Whether `body` would run here now: its node resolves, its inputs and variables match the
/// node's pins, and its context is valid (checked with a stand-in run id).
pub(super) fn check_request(daemon: &Shared, body: &RunBody) -> Result<(), ApiError> {
    let (resolved, node_name) = daemon
        .current()
        .resolve(&body.node)
        .map_err(unresolved_error)?;
    convert(&resolved, &node_name, body)?;
    run_context("run-0", &node_name, &body.context)?;
    Ok(())
}

/// A queued run's request as the queue keeps it: the body as the caller sent it (its context
/// already narrowed to what the caller may use), and who asked.
/// Fields a newer daemon adds are ignored by an older one, which may take its runs during an
/// upgrade.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct StoredRun {
    node: String,
    inputs: BTreeMap<String, Box<RawValue>>,
    context: ContextBody,
    variables: BTreeMap<String, Box<RawValue>>,
    caller: String,
    executor: Option<Json>,
}

impl StoredRun {
    pub(super) fn new(body: RunBody, caller: &Caller) -> Self {
        StoredRun {
            node: body.node,
            inputs: body.inputs,
            context: body.context,
            variables: body.variables,
            caller: caller.name.clone(),
            executor: executor(caller),
        }
    }
}

fn executor(caller: &Caller) -> Option<Json> {
    caller
        .scope
        .as_ref()
        .map(|scope| json!({ "run_id": scope.run_id, "jti": scope.jti }))
}

/// Why a queued run taken by a worker did not run.
pub(crate) enum NotRun {
    /// It cannot run here: its answer (an unknown node, a bad input).
    Refused(ApiError),
    /// Not now (the node's or the host's queue is full, the daemon is stopping): give it back.
    NotNow(ApiError),
}

/// Runs a queued run's request on this daemon, as `POST /v1/runs` would have run it at once.
pub(crate) async fn run_stored(
    daemon: &Shared,
    id: &str,
    stored: StoredRun,
    sink: mpsc::UnboundedSender<Json>,
) -> Result<Answer, NotRun> {
    let body = RunBody {
        node: stored.node,
        inputs: stored.inputs,
        context: stored.context,
        variables: stored.variables,
        idempotency_key: None,
        mode: Mode::Queued,
    };
    let (resolved, node_name) = daemon
        .current()
        .resolve(&body.node)
        .map_err(|error| NotRun::Refused(unresolved_error(error)))?;
    let (inputs, variables) = convert(&resolved, &node_name, &body).map_err(NotRun::Refused)?;
    let context = run_context(id, &node_name, &body.context).map_err(NotRun::Refused)?;
    let (live, node_name, slots) =
        admit_current(daemon, &body.node)
            .await
            .map_err(|error| match error.code.as_str() {
                // Another daemon may run it now (a node stopped here by a reload or a registry may
                // serve elsewhere).
                "overloaded" | "busy" | "shutting_down" | "node_stopped" => NotRun::NotNow(error),
                _ => NotRun::Refused(error),
            })?;
    if live.verified.component_sha256 != resolved.verified.component_sha256 {
        // Replaced while it waited: typed again when taken again.
        return Err(NotRun::NotNow(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the node was replaced while the run waited",
        )));
    }
    drop(resolved);
    // The run's events (logs, chunks, documents) go to `sink` as they come, for the cluster
    // to keep, up to MAX_QUEUED_EVENT_BYTES (the rest counted in one last `dropped`): what
    // waits for the database is bounded. Its answer is recorded whole.
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let events = Events::new(sender);
    let waiting = events.waiting.clone();
    tokio::spawn(async move {
        let (mut bytes, mut dropped) = (0usize, 0u64);
        while let Some((event, size)) = receiver.recv().await {
            waiting.fetch_sub(size, std::sync::atomic::Ordering::SeqCst);
            if matches!(event, Event::Done(..)) {
                break;
            }
            let event = event_json(event).1;
            let size = event.to_string().len();
            if bytes + size > MAX_QUEUED_EVENT_BYTES {
                dropped += 1;
                continue;
            }
            bytes += size;
            if sink.send(event).is_err() {
                return;
            }
        }
        if dropped > 0 {
            let _ = sink.send(json!({ "event": "dropped", "events": dropped, "reason": "a queued run keeps at most 4 MiB of events; its result still carries every output" }));
        }
    });
    let request = RunRequest {
        node: Some(node_name.clone()),
        context,
        inputs,
        variables,
        ..streaming_request(&events)
    };
    let run = Run {
        id: id.to_string(),
        node: format!("{}/{node_name}", live.name()),
        caller: stored.caller,
        executor: stored.executor,
        claim: None,
        queued: true,
        inputs: digest_raw(&body.inputs),
        context: context_ids(&request.context),
    };
    Ok(execute(daemon.clone(), live, request, slots, run, events).await)
}

/// The most bytes of events a queued run keeps (per take); past it, the rest are dropped and
/// counted in one last `dropped` event. Its answer still carries every output.
pub const MAX_QUEUED_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// A request whose logs, chunks and documents go to `events` as the node makes them.
fn streaming_request(events: &Events) -> RunRequest {
    let (log, chunk, ui) = (events.clone(), events.clone(), events.clone());
    RunRequest {
        on_log: Some(Arc::new(move |record: &LogRecord| {
            log.send(Event::Log(json!(record)));
        }) as warden_host::log::LogSink),
        on_stream: Some(Arc::new(move |value: &Value| {
            chunk.send(Event::Chunk(value.to_json()));
        }) as warden_host::StreamSink),
        on_ui: Some(Arc::new(move |document: &Json| {
            ui.send(Event::Ui(document.clone()));
        }) as Arc<dyn Fn(&Json) + Send + Sync>),
        ..RunRequest::default()
    }
}

/// An event as a streamed answer sends it: its name (for an event stream) and its JSON.
fn event_json(event: Event) -> (&'static str, Json) {
    match event {
        Event::Log(record) => ("log", json!({ "event": "log", "record": record })),
        Event::Chunk(value) => ("chunk", json!({ "event": "chunk", "value": value })),
        Event::Ui(document) => ("ui", json!({ "event": "ui", "document": document })),
        Event::Done(status, body) => done_json(status, body),
        Event::Dropped(count) => (
            "dropped",
            json!({ "event": "dropped", "events": count, "reason": "the caller read too slowly; the result below still carries every output" }),
        ),
    }
}

/// The last event of a streamed answer: the result, or the error.
pub(super) fn done_json(status: StatusCode, body: Json) -> (&'static str, Json) {
    if status.is_success() {
        let mut body = body;
        body["event"] = json!("result");
        return ("result", body);
    }
    (
        "error",
        json!({ "event": "error", "status": status.as_u16(), "error": body["error"] }),
    )
}

/// Whether `caller` may run in the request's context: an executor only in its token's app,
/// board (and event), which become the context; anyone else with `ExecuteBoards`, or
/// `ExecuteEvents` for a run that names an event, in the run's app.
fn authorize(daemon: &Shared, caller: &Caller, context: &mut ContextBody) -> Result<(), ApiError> {
    let out_of_scope = |field: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            format!("the credential is for another {field}"),
        )
    };
    if let Some(scope) = &caller.scope {
        // User-scoped storage is the token's user's (or the app's executor's), never one the
        // request names.
        let user = scope
            .user_id
            .clone()
            .unwrap_or_else(|| format!("executor:{}", scope.app_id));
        if context.user_id.as_ref().is_some_and(|given| *given != user) {
            return Err(out_of_scope("user_id"));
        }
        context.user_id = Some(user);
        let pinned = [
            ("app_id", &mut context.app_id, Some(&scope.app_id)),
            ("board_id", &mut context.board_id, Some(&scope.board_id)),
            ("event_id", &mut context.event_id, scope.event_id.as_ref()),
        ];
        for (field, given, allowed) in pinned {
            if given.is_some() && given.as_ref() != allowed {
                return Err(out_of_scope(field));
            }
            *given = allowed.cloned();
        }
    }
    let event = context
        .event_id
        .as_deref()
        .is_some_and(|event| !event.is_empty());
    let needed = match event {
        true => crate::auth::Permissions::EXECUTE_EVENTS,
        false => crate::auth::Permissions::EXECUTE_BOARDS,
    };
    let app = context
        .app_id
        .clone()
        .unwrap_or_else(|| RunContext::for_node("").app_id);
    let permissions = caller.permissions_in(daemon, &app)?;
    if !permissions.allows(needed) {
        return Err(super::forbidden(needed));
    }
    // A caller's user-scoped storage is its own unless it names another, which takes an
    // admin.
    if caller.scope.is_none() {
        let own = caller.name.clone();
        let admin = permissions.allows(crate::auth::Permissions::ADMIN);
        match &context.user_id {
            Some(given) if *given != own && !admin => return Err(out_of_scope("user_id")),
            Some(_) => {}
            None => context.user_id = Some(own),
        }
    }
    Ok(())
}

/// The run's id, and its idempotency key (its `idempotency_key` or the `Idempotency-Key`
/// header) claimed for it; `None` without one. A key used before answers with what it stands
/// for. In a cluster the key is claimed in the cluster's database, so a retry reaching another
/// daemon finds it; a run whose daemon died is taken over under its first id.
async fn claim_key(
    daemon: &Shared,
    caller: &Caller,
    headers: &HeaderMap,
    body: &RunBody,
) -> Result<(String, Option<KeyClaim>), ApiError> {
    let id = run_id();
    let Some(key) = idempotency_key(headers, body)? else {
        return Ok((id, None));
    };
    let request_sha256 = request_sha256(body);
    let claim = |holder| KeyClaim {
        daemon: daemon.clone(),
        holder,
        armed: true,
    };
    if let Some(link) = &daemon.cluster {
        let begun = link
            .queue
            .begin_sync(&id, &caller.name, &key, &request_sha256, sync_lease(daemon))
            .await
            .map_err(super::queued::database_error)?;
        return match begun {
            SyncBegun::Started { id, attempt } => {
                let (renewing, stop) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(renew_key(link.clone(), id.clone(), attempt, stop));
                let holder = Holder::Cluster {
                    id: id.clone(),
                    attempt,
                    _renewing: renewing,
                };
                Ok((id, Some(claim(holder))))
            }
            // The key stands for a queued run: this request is another.
            SyncBegun::Existing(run) if !run.sync => Err(super::queued::key_reused()),
            SyncBegun::Existing(run) => Err(replay(stored_key(&run), &request_sha256)),
        };
    }
    match daemon.records.claim(&caller.name, &key, &id, &request_sha256) {
        Ok(()) => {
            let holder = Holder::Local {
                caller: caller.name.clone(),
                key,
            };
            Ok((id, Some(claim(holder))))
        }
        Err(ClaimRefused::Full) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "every idempotency key you may hold belongs to a run still going; retry when one has finished",
        )
        .retry_after(1)),
        Err(ClaimRefused::Used(existing)) => Err(replay(existing, &request_sha256)),
    }
}

/// Keeps the lease of a key claimed in the cluster while its run goes on (renewed every third
/// of it), until `stop` is dropped: a key is taken over only when its daemon stops renewing.
async fn renew_key(
    link: Arc<crate::cluster::ClusterLink>,
    id: String,
    attempt: i32,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let lease = link.settings.lease;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {
                let renewed = tokio::time::timeout(lease / 3, link.queue.renew_attempt(&id, attempt, lease)).await;
                if matches!(renewed, Ok(Ok(false))) {
                    return;
                }
            }
        }
    }
}

/// The first lease of a key claimed for a run answered at once: the wait for a slot, the
/// longest timeout of the nodes serving now, and a margin (after that, the key's lease is
/// renewed every third of `cluster.lease` while the run goes on). A key whose lease runs out is
/// taken over by a retry (its daemon is taken to have died).
fn sync_lease(daemon: &Shared) -> std::time::Duration {
    let longest = daemon
        .current()
        .nodes
        .iter()
        .map(|live| live.config.limits.timeout)
        .max()
        .unwrap_or_default();
    daemon.started_with.host.queue_timeout + longest + std::time::Duration::from_secs(30)
}

/// What a key's row in the cluster's database stands for, as this daemon's own keys say it.
fn stored_key(run: &QueuedRun) -> Idempotent {
    match run.state {
        RunState::Finished => Idempotent::Finished {
            run_id: run.id.clone(),
            request_sha256: run.request_sha256.clone(),
            status: run
                .status
                .and_then(|status| u16::try_from(status).ok())
                .unwrap_or(500),
            body: run
                .result
                .as_deref()
                .and_then(|result| serde_json::from_str(result).ok())
                .map(Arc::new),
        },
        _ => Idempotent::Running {
            run_id: run.id.clone(),
            request_sha256: run.request_sha256.clone(),
        },
    }
}

/// The request's idempotency key (its `idempotency_key` or the `Idempotency-Key` header), if it
/// has one.
pub(super) fn idempotency_key(
    headers: &HeaderMap,
    body: &RunBody,
) -> Result<Option<String>, ApiError> {
    let key = match (&body.idempotency_key, headers.get("idempotency-key")) {
        (Some(key), _) => key.clone(),
        (None, Some(value)) => value
            .to_str()
            .map_err(|_| ApiError::bad_request("the Idempotency-Key header is not text"))?
            .to_string(),
        (None, None) => return Ok(None),
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::bad_request(format!(
            "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"
        )));
    }
    Ok(Some(key))
}

/// The hash of a request as sent (inputs and variables in name order, each as its JSON text):
/// an idempotency key stands for this request only.
pub(super) fn request_sha256(body: &RunBody) -> String {
    sha256_hex(
        &serde_json::to_vec(&(&body.node, &body.inputs, &body.context, &body.variables))
            .unwrap_or_default(),
    )
}

/// A claimed idempotency key: given back when dropped armed (the request was refused, the
/// caller left before its run started, or the run's task failed), kept once its answer is
/// recorded.
struct KeyClaim {
    daemon: Shared,
    holder: Holder,
    armed: bool,
}

/// Where a claimed key is kept.
enum Holder {
    /// In this daemon's memory (one machine).
    Local { caller: String, key: String },
    /// In the cluster's database: attempt `attempt` of run `id`, whose lease is renewed until
    /// `_renewing` is dropped.
    Cluster {
        id: String,
        attempt: i32,
        _renewing: tokio::sync::oneshot::Sender<()>,
    },
}

/// How long recording a key's answer in the cluster's database may take. Past it the answer
/// still goes out; the key's run is taken over once its lease runs out.
const KEY_FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl KeyClaim {
    /// Keeps the answer for replays (in a cluster, with the run's record); answers worth
    /// retrying (the host's trouble, a stopped node) give the key back instead. True when the
    /// record went to the cluster's database with the answer.
    async fn finish(mut self, status: StatusCode, body: &Json, record: &Json) -> bool {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            // Given back before the answer goes out: a retry right after it finds the key free.
            if let (Holder::Cluster { id, attempt, .. }, Some(link)) =
                (&self.holder, &self.daemon.cluster)
            {
                self.armed = false;
                let _ =
                    tokio::time::timeout(KEY_FINISH_TIMEOUT, link.queue.release_sync(id, *attempt))
                        .await;
            }
            return false;
        }
        self.armed = false;
        match &self.holder {
            Holder::Local { caller, key } => {
                self.daemon.records.finish_idempotent(
                    caller,
                    key,
                    status.as_u16(),
                    Arc::new(body.clone()),
                );
                false
            }
            Holder::Cluster { id, attempt, .. } => {
                let Some(link) = &self.daemon.cluster else {
                    return false;
                };
                // As on one machine, a larger answer is not kept for replays (410 then).
                let result = serde_json::to_string(body)
                    .ok()
                    .filter(|text| text.len() <= crate::records::MAX_REPLAY_BODY_BYTES);
                let finished = tokio::time::timeout(
                    KEY_FINISH_TIMEOUT,
                    link.queue.finish_attempt(
                        id,
                        *attempt,
                        status.as_u16(),
                        result.as_deref(),
                        &record.to_string(),
                    ),
                )
                .await;
                let recorded = matches!(finished, Ok(Ok(true)));
                if !recorded {
                    tracing::warn!(run_id = %id, "the answer of a run with an idempotency key was not recorded in the cluster's database; a retry after its lease runs it again");
                }
                recorded
            }
        }
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.holder {
            Holder::Local { caller, key } => self.daemon.records.release(caller, key),
            Holder::Cluster { id, attempt, .. } => {
                let (Some(link), Ok(runtime)) = (
                    self.daemon.cluster.clone(),
                    tokio::runtime::Handle::try_current(),
                ) else {
                    return;
                };
                let (id, attempt) = (id.clone(), *attempt);
                // Not given back (the database failed): the key is free once its lease runs out.
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(
                        KEY_FINISH_TIMEOUT,
                        link.queue.release_sync(&id, attempt),
                    )
                    .await;
                });
            }
        }
    }
}

/// The answer to a request whose idempotency key was used before, as an error to return
/// (a replay of a finished run is returned through the same path, with its own status).
fn replay(existing: Idempotent, request_sha256: &str) -> ApiError {
    if existing.request_sha256() != request_sha256 {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this idempotency key was used for another request; use a new key for a new request",
        );
    }
    match existing {
        Idempotent::Running { run_id, .. } => ApiError::new(
            StatusCode::CONFLICT,
            "run_in_progress",
            "a run with this idempotency key is in progress; ask again when it has finished",
        )
        .with("run_id", json!(run_id))
        .retry_after(1),
        Idempotent::Finished {
            run_id, body: None, ..
        } => ApiError::new(
            StatusCode::GONE,
            "replay_unavailable",
            "this key's run finished, but its answer was too large to keep for replays; read its record at /v1/runs/{run_id}",
        )
        .with("run_id", json!(run_id)),
        Idempotent::Finished {
            status, body: Some(body), ..
        } => ApiError::replay(status, body),
    }
}

/// Resolves `name` in the serving generation and takes its slots. A node replaced by a
/// reload while the request waited is resolved again in the new generation, so a request
/// never starts on a generation that is no longer serving.
async fn admit_current(
    daemon: &Shared,
    name: &str,
) -> Result<(Arc<LiveNode>, String, (Slot, Slot)), ApiError> {
    for _ in 0..3 {
        let generation = daemon.current();
        let (live, node_name) = generation.resolve(name).map_err(unresolved_error)?;
        if let Some(reason) = live.stopped() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopped",
                reason,
            ));
        }
        // A request waiting for a slot of a node that a reload replaces or removes meanwhile
        // is resolved again at once, not when a slot of the old node comes free.
        let slots = tokio::select! {
            slots = admit(daemon, &live) => slots?,
            () = live.until_retired() => continue,
            reason = live.until_stopped() => {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", reason));
            }
        };
        if daemon.is_shutting_down() {
            return Err(shutting_down());
        }
        if let Some(reason) = live.stopped() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopped",
                reason,
            ));
        }
        if !live.is_retired() {
            return Ok((live, node_name, slots));
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the node was replaced by reloads while this request waited; retry",
    )
    .retry_after(1))
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the daemon is shutting down; retry on another host",
    )
    .retry_after(1)
}

/// Takes the node's slot, then the host's, each waiting in its bounded queue.
async fn admit(daemon: &Shared, live: &Arc<LiveNode>) -> Result<(Slot, Slot), ApiError> {
    // Answers callers have not taken yet are memory the daemon holds for them: past the
    // budget, no new run starts until they are taken.
    let undelivered = daemon.undelivered.load(std::sync::atomic::Ordering::SeqCst);
    if undelivered > crate::daemon::MAX_UNDELIVERED_BYTES {
        metrics::counter!(telemetry::REJECTED, "node" => "*").increment(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "{undelivered} bytes of answers wait for their callers to read them; retry later"
            ),
        )
        .retry_after(1));
    }
    let timeout = daemon.started_with.host.queue_timeout;
    let node = live.name().to_string();
    let overloaded = |which: &str, why: Overloaded| {
        metrics::counter!(telemetry::REJECTED, "node" => which.to_string()).increment(1);
        let message = match why {
            Overloaded::QueueFull => format!("the queue of {which} is full"),
            Overloaded::Waited => format!("no slot of {which} came free within {timeout:?}"),
        };
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!("{message}; retry later"),
        )
        .retry_after(1)
    };
    let node_slot = match live.admission.try_acquire() {
        // A free slot: no wait, no yield (which would wake another worker thread).
        Some(slot) => slot,
        None => {
            let observing = async {
                // The queue's depth is sampled once the wait has begun.
                tokio::task::yield_now().await;
                observe(live);
            };
            let (node_slot, ()) = tokio::join!(live.admission.acquire(timeout), observing);
            node_slot.map_err(|why| {
                observe(live);
                overloaded(&node, why)
            })?
        }
    };
    let host_slot = daemon.admission.acquire(timeout).await.map_err(|why| {
        observe(live);
        overloaded("*", why)
    })?;
    observe(live);
    Ok((node_slot, host_slot))
}

fn observe(live: &LiveNode) {
    let node = live.name().to_string();
    metrics::gauge!(telemetry::INSTANCES_IN_USE, "node" => node.clone())
        .set(f64::from(live.admission.in_use()));
    metrics::gauge!(telemetry::QUEUE_DEPTH, "node" => node).set(live.admission.waiting() as f64);
}

/// The inputs and variables of the request, typed by the node's pins.
fn convert(
    live: &LiveNode,
    node: &str,
    body: &RunBody,
) -> Result<(Vec<Field>, BTreeMap<String, Value>), ApiError> {
    let invalid =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message);
    let info = live
        .prepared
        .node(Some(node))
        .map_err(|error| run_error(&error))?;
    let mut inputs = Vec::new();
    for (name, json) in &body.inputs {
        let pin = info.inputs().find(|pin| &pin.name == name).ok_or_else(|| {
            let known: Vec<&str> = info.inputs().map(|pin| pin.name.as_str()).collect();
            invalid(format!(
                "node `{node}` has no input `{}`; its inputs are: {}",
                name.chars().take(128).collect::<String>(),
                known.join(", ")
            ))
        })?;
        let value = typed(json, pin.data_type)
            .map_err(|error| invalid(format!("input `{name}`: {error}")))?;
        inputs.push(Field::new(name.clone(), value));
    }
    let mut variables = BTreeMap::new();
    for (name, json) in &body.variables {
        let value = typed(json, DataType::Any)
            .map_err(|error| invalid(format!("variable `{name}`: {error}")))?;
        variables.insert(name.clone(), value);
    }
    Ok((inputs, variables))
}

/// A value of `data_type` from its JSON text. A JSON document (a `json` pin, or an array or
/// object on an `any` pin) keeps the text as sent, never parsed into a tree; the rest is
/// small once parsed.
fn typed(
    raw: &RawValue,
    data_type: DataType,
) -> Result<Value, warden_host::value::ParseValueError> {
    let text = raw.get().trim();
    match (data_type, text.as_bytes().first()) {
        (DataType::Json, _) | (DataType::Any, Some(b'[' | b'{')) => {
            Ok(Value::Json(text.to_string()))
        }
        _ => {
            let json: Json = serde_json::from_str(text).unwrap_or(Json::Null);
            Value::from_json(&json, data_type)
        }
    }
}

fn run_context(id: &str, node: &str, given: &ContextBody) -> Result<RunContext, ApiError> {
    let defaults = RunContext::for_node(node);
    let context = RunContext {
        run_id: id.to_string(),
        app_id: given.app_id.clone().unwrap_or(defaults.app_id),
        board_id: given.board_id.clone().unwrap_or(defaults.board_id),
        user_id: given.user_id.clone().unwrap_or(defaults.user_id),
        event_id: given.event_id.clone().unwrap_or(defaults.event_id),
        node_instance_id: given
            .node_instance_id
            .clone()
            .unwrap_or(defaults.node_instance_id),
    };
    context.validate().map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_context",
            format!("context: {error}"),
        )
    })?;
    Ok(context)
}

/// The run's context ids, as its record shows them.
fn context_ids(context: &RunContext) -> Json {
    json!({
        "app_id": context.app_id,
        "board_id": context.board_id,
        "user_id": context.user_id,
        "event_id": context.event_id,
        "node_instance_id": context.node_instance_id,
    })
}

/// What the record of a run needs beside its outcome.
struct Run {
    id: String,
    node: String,
    caller: String,
    /// The executor token's run id and `jti`, for a run the executor asked for.
    executor: Option<Json>,
    claim: Option<KeyClaim>,
    /// A queued run: its record is kept with it in the cluster's queue (with its state and
    /// attempts), not in this daemon's memory.
    queued: bool,
    inputs: Json,
    /// The run's context ids, as the node saw them.
    context: Json,
}

enum Event {
    Log(Json),
    Chunk(Json),
    Ui(Json),
    Done(StatusCode, Json),
    /// Events dropped because the caller read too slowly (sent before `Done`).
    Dropped(u64),
}

/// Bytes of a streamed answer that may wait for a slow caller; past it, events are dropped
/// and counted (the final event still carries every output).
pub const MAX_STREAM_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// The sending side of a streamed answer, bounded by the bytes waiting in it.
#[derive(Clone)]
struct Events {
    sender: mpsc::UnboundedSender<(Event, usize)>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Events {
    fn new(sender: mpsc::UnboundedSender<(Event, usize)>) -> Self {
        Events {
            sender,
            waiting: Arc::default(),
            dropped: Arc::default(),
        }
    }

    fn send(&self, event: Event) {
        use std::sync::atomic::Ordering;
        let size = match &event {
            Event::Log(json) | Event::Chunk(json) | Event::Ui(json) => json.to_string().len(),
            _ => 0,
        };
        let admitted = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting + size <= MAX_STREAM_BACKLOG_BYTES).then_some(waiting + size)
            })
            .is_ok();
        if !admitted || self.sender.send((event, size)).is_err() {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn finish(&self, done: Event) {
        let dropped = self.dropped.load(std::sync::atomic::Ordering::SeqCst);
        if dropped > 0 {
            let _ = self.sender.send((Event::Dropped(dropped), 0));
        }
        let _ = self.sender.send((done, 0));
    }
}

/// Runs the node in its own task, under its slots, until it ends or is stopped; records it,
/// counts it, and answers.
async fn execute(
    daemon: Shared,
    live: Arc<LiveNode>,
    request: RunRequest,
    slots: (Slot, Slot),
    run: Run,
    events: Events,
) -> Answer {
    let context = &request.context;
    let span = tracing::info_span!(
        "run",
        run_id = %run.id,
        node = %run.node,
        app_id = %context.app_id,
        board_id = %context.board_id,
        user_id = %context.user_id,
        event_id = %context.event_id,
        node_instance_id = %context.node_instance_id,
    );
    let started = Instant::now();
    let started_at = warden_registry::protocol::now();
    let (result, report) = async {
        tokio::select! {
            (result, report) = live.prepared.run_reported(request) => (result.map_err(Stop::Run), report),
            reason = live.until_stopped() => (Err(Stop::Node(reason)), RunReport::default()),
            () = daemon.until_hard_stop() => (Err(Stop::Shutdown), RunReport::default()),
        }
    }
    .instrument(span.clone())
    .await;
    drop(slots);
    observe(&live);
    let duration = started.elapsed();
    let (status, body, error_json) = match &result {
        Ok(outcome) => {
            let outputs: Map<String, Json> = outcome
                .outputs
                .iter()
                .map(|field| (field.name.clone(), field.value.to_json()))
                .collect();
            let variables: Map<String, Json> = outcome
                .variables
                .iter()
                .map(|(name, value)| (name.clone(), value.to_json()))
                .collect();
            let body = json!({
                "run_id": run.id,
                "node": run.node,
                "version": live.verified.version,
                "outputs": outputs,
                "variables": variables,
                "log": outcome.log,
                "log_dropped_bytes": outcome.log_dropped_bytes,
                "usage": usage(&report, duration),
                "denials": report.denials,
            });
            (StatusCode::OK, body, Json::Null)
        }
        Err(stop) => {
            let error = match stop {
                Stop::Run(error) => run_error(error),
                Stop::Node(reason) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node_stopped",
                    format!("the run was stopped: {reason}"),
                ),
                Stop::Shutdown => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the run was stopped: the daemon is shutting down and its grace ran out",
                )
                .retry_after(1),
            }
            .with("run_id", json!(run.id))
            .with("usage", usage(&report, duration))
            .with("denials", json!(report.denials));
            let body = error.body();
            (error.status, body.clone(), body["error"].clone())
        }
    };
    let label = match &result {
        Ok(_) => "ok",
        Err(Stop::Run(error)) => outcome(Some(error)),
        Err(_) => "stopped",
    };
    let limit = match &result {
        Err(Stop::Run(error)) => error.limit(),
        _ => None,
    };
    let outputs = match &body["outputs"] {
        Json::Null => Json::Null,
        outputs => digest(outputs),
    };
    let record = json!({
        "run_id": run.id,
        "node": run.node,
        "package": live.name(),
        "version": live.verified.version,
        "package_sha256": live.verified.package_sha256,
        "generation": live.generation,
        "grant": live.config.capabilities.names(),
        "allowed_hosts": live.verified.allowed_hosts,
        "caller": run.caller,
        "executor": run.executor,
        "context": run.context,
        "inputs": run.inputs,
        "outputs": outputs,
        "started_at": started_at,
        "duration_ms": duration.as_secs_f64() * 1000.0,
        "fuel": report.fuel_consumed,
        "peak_memory_bytes": report.memory_peak_bytes,
        "outcome": label,
        "status": status.as_u16(),
        "error": error_json,
        "limit": limit.map(|kind| kind.name()),
        "denials": report.denials,
        "denied": report.denied,
    });
    // A run the executor asked for is in the audit log with its token's run id and jti: what
    // a workflow run did can be traced from the executor's side.
    if let Some(executor) = &run.executor {
        daemon.audit.record(
            "executor_run",
            json!({
                "run_id": run.id,
                "node": run.node,
                "executor": executor,
                "context": run.context,
                "outcome": label,
            }),
        );
    }
    let record = Arc::new(record);
    if !run.queued {
        daemon.records.insert(&run.id, record.clone());
    }
    let shared = match run.claim {
        Some(claim) => claim.finish(status, &body, &record).await,
        None => false,
    };
    // In a cluster, every daemon finds the record (a queued run's is kept with its answer).
    if !run.queued
        && !shared
        && let Some(link) = &daemon.cluster
    {
        link.share_record(&run.id, &run.caller, status.as_u16(), &record);
    }
    let node = live.name().to_string();
    metrics::counter!(telemetry::RUNS, "node" => node.clone(), "outcome" => label).increment(1);
    metrics::histogram!(telemetry::RUN_DURATION, "node" => node.clone())
        .record(duration.as_secs_f64());
    if let Some(fuel) = report.fuel_consumed {
        metrics::counter!(telemetry::FUEL, "node" => node.clone()).increment(fuel);
    }
    for denial in &report.denials {
        metrics::counter!(telemetry::DENIALS, "capability" => denial.capability).increment(1);
    }
    if !report.denials.is_empty() {
        daemon.audit.record(
            "capability_denied",
            json!({ "run_id": run.id, "node": run.node, "executor": run.executor, "denials": report.denials, "denied": report.denied }),
        );
    }
    if let Some(kind) = limit {
        metrics::counter!(telemetry::LIMIT_HITS, "limit" => kind.name()).increment(1);
        daemon.audit.record(
            "limit_kill",
            json!({ "run_id": run.id, "node": run.node, "executor": run.executor, "limit": kind.name(), "code": limit_code(kind) }),
        );
    }
    span.in_scope(|| {
        tracing::info!(
            outcome = label,
            status = status.as_u16(),
            duration_ms = duration.as_millis() as u64,
            "run finished"
        )
    });
    events.finish(Event::Done(status, body.clone()));
    Answer {
        status,
        body,
        record,
    }
}

/// A run's answer and its record.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Json,
    pub record: Arc<Json>,
}

/// Why a run ended without an outcome.
enum Stop {
    Run(Error),
    Node(String),
    Shutdown,
}

fn usage(report: &RunReport, duration: std::time::Duration) -> Json {
    json!({
        "fuel": report.fuel_consumed,
        "duration_ms": duration.as_secs_f64() * 1000.0,
        "peak_memory_bytes": report.memory_peak_bytes,
    })
}

/// Bytes of an answer made and not yet taken by its caller: counted in the daemon's
/// `undelivered` while it exists.
struct Undelivered {
    counter: Arc<std::sync::atomic::AtomicUsize>,
    bytes: usize,
}

impl Undelivered {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>, bytes: usize) -> Self {
        counter.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
        Undelivered {
            counter: counter.clone(),
            bytes,
        }
    }
}

impl Drop for Undelivered {
    fn drop(&mut self) {
        self.counter
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Pieces an answer is handed to the connection in: the connection's own buffer is then all
/// that is taken off the count before the caller has read it.
const PIECE: usize = 64 * 1024;

/// `bytes` as a body sent in pieces, counted as undelivered until the last is taken or the
/// connection ends.
fn counted_body(counter: &Arc<std::sync::atomic::AtomicUsize>, bytes: Bytes) -> Body {
    let guard = Undelivered::new(counter, bytes.len());
    let stream = futures_util::stream::unfold((bytes, guard), |(mut rest, guard)| async move {
        if rest.is_empty() {
            return None;
        }
        let piece = rest.split_to(rest.len().min(PIECE));
        Some((Ok::<_, std::convert::Infallible>(piece), (rest, guard)))
    });
    Body::from_stream(stream)
}

/// A whole answer, counted as undelivered until taken.
fn counted_json(
    counter: &Arc<std::sync::atomic::AtomicUsize>,
    status: StatusCode,
    body: &Json,
) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut response = Response::new(counted_body(counter, bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn stream_response(
    delivery: Delivery,
    receiver: mpsc::UnboundedReceiver<(Event, usize)>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    undelivered: Arc<std::sync::atomic::AtomicUsize>,
    id: &str,
) -> Response {
    /// What the stream holds between pieces: events to come, and the rest of the one being
    /// sent (the final one counted as undelivered).
    struct State {
        receiver: mpsc::UnboundedReceiver<(Event, usize)>,
        rest: Bytes,
        last: Option<Undelivered>,
        done: bool,
    }
    let state = State {
        receiver,
        rest: Bytes::new(),
        last: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut state| {
        let waiting = waiting.clone();
        let undelivered = undelivered.clone();
        async move {
            if !state.rest.is_empty() {
                let piece = state.rest.split_to(state.rest.len().min(PIECE));
                return Some((Ok::<_, std::convert::Infallible>(piece), state));
            }
            if state.done {
                return None;
            }
            let (event, size) = state.receiver.recv().await?;
            waiting.fetch_sub(size, std::sync::atomic::Ordering::SeqCst);
            let finished = matches!(event, Event::Done(..));
            let (name, data) = event_json(event);
            let text = match delivery {
                Delivery::EventStream => format!("event: {name}\ndata: {data}\n\n"),
                _ => format!("{data}\n"),
            };
            let mut text = Bytes::from(text);
            if finished {
                state.done = true;
                state.last = Some(Undelivered::new(&undelivered, text.len()));
            }
            let piece = text.split_to(text.len().min(PIECE));
            state.rest = text;
            Some((Ok(piece), state))
        }
    });
    let mut response = streamed(Body::from_stream(stream), delivery == Delivery::EventStream);
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-warden-run-id", value);
    }
    response
}

/// A streamed answer: NDJSON, or server-sent events, never cached.
pub(super) fn streamed(body: Body, event_stream: bool) -> Response {
    let content_type = match event_stream {
        true => "text/event-stream",
        false => "application/x-ndjson",
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn record(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(super::path_rejected)?;
    // A caller reads its own runs' records (an admin reads all); another's answers as one
    // that does not exist.
    let record = match daemon.records.get(&id) {
        Some(record) => Some(record.as_ref().clone()),
        // A queued run, run by this daemon or another.
        None => super::queued::record(&daemon, &id).await?,
    };
    let record = record.filter(|record| {
        caller
            .permissions
            .allows(crate::auth::Permissions::READ_LOGS)
            || record["caller"] == caller.name.as_str()
    });
    match record {
        Some(record) => Ok(axum::Json(record).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            "no record of this run: it never ran here, or its record has expired (host.run_records, host.run_record_ttl)",
        )),
    }
}
