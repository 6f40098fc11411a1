//! Queued runs (`"mode": "queued"`), in a cluster: `POST /v1/runs` answers at once with the
//! run's id, a worker on any daemon runs it (`crate::worker`), and `GET /v1/runs/{id}/result`
//! gives its answer on whichever daemon the caller asks, waiting for it when asked to.

use super::runs::{Answer, RunBody, idempotency_key, request_sha256, run_id};
use super::{ApiError, Caller, Shared};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use warden_cluster::{Enqueued, NewRun, QueueBounds, QueuedRun, RunState, Wakeup};

/// The largest request a queued run keeps (the inputs, variables and context as sent).
pub const MAX_QUEUED_REQUEST_BYTES: usize = 1024 * 1024;
/// The largest answer a queued run keeps; a larger one is answered `answer_too_large`.
pub const MAX_QUEUED_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The longest a caller may wait for a queued run's answer in one request.
pub const MAX_RESULT_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting caller looks again without a notification (one may be lost while the
/// daemon's listener reconnects).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

pub(super) fn queue_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "queue_unavailable",
        "queued runs need a cluster: this daemon has no [cluster] database; leave out \"mode\" to run now",
    )
}

/// What the database's failure looks like to a caller: the detail goes to the log.
pub(crate) fn database_error(error: warden_cluster::ClusterError) -> ApiError {
    tracing::warn!(%error, "a queued run's call to the cluster's database failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the cluster's database did not answer; retry",
    )
    .retry_after(1)
}

/// Queues `body` for `caller`, once its node and inputs check out here: a request that cannot
/// run anywhere is refused now, not by a worker later.
pub(super) async fn enqueue(
    daemon: &Shared,
    caller: &Caller,
    headers: &HeaderMap,
    body: RunBody,
) -> Result<Response, ApiError> {
    if caller.scope.is_some() {
        // An executor's token is for one workflow run, now: it cannot read answers later, and
        // it may have expired by the time a worker takes the run.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an executor token runs nodes synchronously; leave out \"mode\"",
        ));
    }
    let Some(link) = &daemon.cluster else {
        return Err(queue_unavailable());
    };
    let key = idempotency_key(headers, &body)?;
    let request_sha256 = request_sha256(&body);
    if let Some(key) = &key {
        // A retry finds its run first, whatever the daemon it reaches now serves.
        if let Some(existing) = link
            .queue
            .find(&caller.name, key)
            .await
            .map_err(database_error)?
        {
            return existing_run(&existing, &request_sha256);
        }
    }
    let (live, _) = daemon
        .current()
        .resolve(&body.node)
        .map_err(super::nodes::unresolved_error)?;
    super::runs::check_request(daemon, &body)?;
    let id = run_id();
    let stored = super::runs::StoredRun::new(body, caller);
    let request = serde_json::to_string(&stored).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the run could not be queued: {error}"),
        )
    })?;
    if request.len() > MAX_QUEUED_REQUEST_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "a queued run's request is at most {MAX_QUEUED_REQUEST_BYTES} bytes; run larger ones synchronously (leave out \"mode\")"
            ),
        ));
    }
    let settings = &link.settings;
    let queued = link
        .queue
        .enqueue(
            &NewRun {
                id: &id,
                caller: &caller.name,
                idempotency_key: key.as_deref(),
                request_sha256: &request_sha256,
                package: live.name(),
                request: &request,
            },
            QueueBounds {
                per_caller: settings.max_queued_per_caller,
                total: settings.max_queued,
            },
        )
        .await
        .map_err(database_error)?;
    let full = |message: String| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message).retry_after(1)
    };
    match queued {
        Enqueued::Queued => {
            tracing::info!(run_id = %id, node = %stored_node(&request), "run queued");
            Ok(accepted(&id, RunState::Queued, 0, false))
        }
        Enqueued::Existing(existing) => existing_run(&existing, &request_sha256),
        Enqueued::CallerFull => Err(full(format!(
            "you have {} runs queued or running (cluster.max_queued_per_caller); retry when some have finished",
            settings.max_queued_per_caller
        ))),
        Enqueued::QueueFull => Err(full(format!(
            "the cluster's queue holds {} runs (cluster.max_queued); retry later",
            settings.max_queued
        ))),
    }
}

pub(super) fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this idempotency key was used for another request; use a new key for a new request",
    )
}

/// The answer to a request whose idempotency key stands for `existing`: the run, if it is the
/// same request.
fn existing_run(existing: &QueuedRun, request_sha256: &str) -> Result<Response, ApiError> {
    // A key of a run answered at once is another request's.
    if existing.sync || existing.request_sha256 != request_sha256 {
        return Err(key_reused());
    }
    Ok(match existing.state {
        RunState::Finished => answer(existing, true),
        state => accepted(&existing.id, state, existing.attempts, true),
    })
}

fn stored_node(request: &str) -> String {
    serde_json::from_str::<Json>(request)
        .ok()
        .and_then(|json| json["node"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// 202: the run is queued (or running); its answer is at `result`.
fn accepted(id: &str, state: RunState, attempts: i32, replay: bool) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "run_id": id,
            "state": state.name(),
            "attempts": attempts,
            "result": format!("/v1/runs/{id}/result"),
        })),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{id}/result")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replay {
        response
            .headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    response
}

/// A finished run's answer, with its own status, as a run answered at once would have had it.
fn answer(run: &QueuedRun, replay: bool) -> Response {
    let status = run
        .status
        .and_then(|status| u16::try_from(status).ok())
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = run.result.clone().unwrap_or_else(|| "{}".to_string());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replay {
        response
            .headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultQuery {
    /// Seconds to wait for the answer, at most [`MAX_RESULT_WAIT`].
    #[serde(default)]
    wait: Option<u64>,
}

/// Run `id` of the queue, if it is `caller`'s (or `caller` is an admin): a run's answer is its
/// caller's; another's is one that does not exist.
pub(super) async fn owned_run(
    link: &crate::cluster::ClusterLink,
    caller: &Caller,
    id: &str,
) -> Result<QueuedRun, ApiError> {
    link.queue
        .get(id)
        .await
        .map_err(database_error)?
        // A run answered at once has no queued answer or events here.
        .filter(|run| !run.sync)
        .filter(|run| {
            run.caller == caller.name || caller.permissions.allows(crate::auth::Permissions::ADMIN)
        })
        .ok_or_else(unknown_run)
}

fn unknown_run() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_run",
        "no queued run with this id: it was never queued, or its answer has expired (host.run_record_ttl)",
    )
}

/// `GET /v1/runs/{id}/result[?wait=SECONDS]`: a queued run's answer once it has finished
/// (its status and body, as a run answered at once); 202 with its state until then.
pub async fn result(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<ResultQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(super::path_rejected)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the query is not usable: {}; write ?wait=SECONDS",
            rejection.body_text()
        ))
    })?;
    let Some(link) = &daemon.cluster else {
        return Err(queue_unavailable());
    };
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_RESULT_WAIT);
    // Subscribed before the first look: a run finishing between the two is not missed.
    let mut wakeups = link.wakeups();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let run = owned_run(link, &caller, &id).await?;
        if run.state == RunState::Finished {
            return Ok(answer(&run, false));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || daemon.is_shutting_down() {
            return Ok(accepted(&run.id, run.state, run.attempts, false));
        }
        let look_again = deadline.min(now + LOOK_AGAIN);
        loop {
            tokio::select! {
                wakeup = wakeups.recv() => match wakeup {
                    Ok(Wakeup::Finished(finished)) if finished != id => continue,
                    Ok(Wakeup::Queued(_) | Wakeup::Events(_)) => continue,
                    Err(RecvError::Closed) => tokio::time::sleep_until(look_again).await,
                    // This run, a lost connection, or notifications missed: look.
                    _ => {}
                },
                () = tokio::time::sleep_until(look_again) => {}
            }
            break;
        }
    }
}

/// `GET /v1/runs/{id}` for a run this daemon has no record of in memory: a queued run's row,
/// from the queue. `None` when there is no such run, or not in a cluster.
pub async fn record(daemon: &Shared, id: &str) -> Result<Option<Json>, ApiError> {
    let Some(link) = &daemon.cluster else {
        return Ok(None);
    };
    let Some(run) = link.queue.get(id).await.map_err(database_error)? else {
        return Ok(None);
    };
    let record = run
        .record
        .as_deref()
        .and_then(|record| serde_json::from_str::<Json>(record).ok());
    Ok(Some(match record {
        Some(Json::Object(mut record)) => {
            record.insert("state".into(), json!(run.state.name()));
            record.insert("attempts".into(), json!(run.attempts));
            Json::Object(record)
        }
        _ => json!({
            "run_id": run.id,
            "caller": run.caller,
            "package": run.package,
            "state": run.state.name(),
            "attempts": run.attempts,
            "status": run.status,
        }),
    }))
}

/// The answer a worker records for a queued run that could not start (its node or inputs do
/// not check out on the daemon that took it), as a run answered at once would have had it.
pub(crate) fn refused(id: &str, caller: &str, error: ApiError) -> Answer {
    let error = error.with("run_id", json!(id));
    let body = error.body();
    let record = json!({
        "run_id": id,
        "caller": caller,
        "outcome": "refused",
        "status": error.status.as_u16(),
        "error": body["error"],
    });
    Answer {
        status: error.status,
        body,
        record: std::sync::Arc::new(record),
    }
}
