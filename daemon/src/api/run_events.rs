//! `GET /v1/runs/{id}/events`: a queued run's events (logs, chunks, documents), as the worker on
//! whichever daemon runs it keeps them in the cluster's database, then its answer, streamed to
//! a caller connected to any daemon.

use super::queued::{database_error, owned_run, queue_unavailable};
use super::runs::{done_json, streamed};
use super::{ApiError, Caller, Shared};
use crate::cluster::ClusterLink;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use warden_cluster::{RunState, Wakeup};

/// The longest one request follows a run; the caller asks again with `after`.
pub const MAX_EVENTS_WAIT: Duration = Duration::from_secs(600);
/// How long it follows unless asked.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Events read from the database at a time.
const PAGE: u32 = 256;
/// How often a follower looks again without a notification.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events numbered after this one (of `attempt`, or of the run's current attempt).
    #[serde(default)]
    after: Option<i32>,
    /// The take `after` counts in (as the `waiting` event gave it): when the run was taken
    /// again since, the new take's events are sent from its first, after `redelivered`.
    #[serde(default)]
    attempt: Option<i32>,
    /// Seconds to follow the run, at most [`MAX_EVENTS_WAIT`].
    #[serde(default)]
    wait: Option<u64>,
}

pub async fn events(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(super::path_rejected)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the query is not usable: {}; write ?after=SEQ&wait=SECONDS",
            rejection.body_text()
        ))
    })?;
    let link = daemon.cluster.clone().ok_or_else(queue_unavailable)?;
    // Subscribed before the first look: nothing announced in between is missed.
    let wakeups = link.wakeups();
    let run = owned_run(&link, &caller, &id).await?;
    let event_stream = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let wait = query
        .wait
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_EVENTS_WAIT);
    let follow = Follow {
        link,
        id: run.id,
        attempt: query.attempt.unwrap_or(run.attempts).clamp(0, run.attempts),
        after: query.after.unwrap_or(0).max(0),
        deadline: tokio::time::Instant::now() + wait,
        wakeups,
        event_stream,
        lines: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(line) = follow.lines.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(line), follow));
            }
            if follow.done {
                return None;
            }
            follow.step().await;
        }
    });
    Ok(streamed(Body::from_stream(stream), event_stream))
}

/// Following one run: where it is, and the lines ready to send.
struct Follow {
    link: Arc<ClusterLink>,
    id: String,
    /// The attempt whose events are read (0 while the run waits to be taken).
    attempt: i32,
    /// The last event sent.
    after: i32,
    deadline: tokio::time::Instant,
    wakeups: broadcast::Receiver<Wakeup>,
    event_stream: bool,
    lines: VecDeque<Bytes>,
    done: bool,
}

impl Follow {
    fn push(&mut self, event: &Json) {
        let name = event["event"].as_str().unwrap_or("event");
        let line = match self.event_stream {
            true => format!("event: {name}\ndata: {event}\n\n"),
            false => format!("{event}\n"),
        };
        self.lines.push_back(Bytes::from(line));
    }

    fn end_with(&mut self, event: &Json) {
        self.push(event);
        self.done = true;
    }

    /// Reads what is new, or waits for it; sets `done` once the answer (or an end) is queued.
    async fn step(&mut self) {
        let link = self.link.clone();
        let queue = &link.queue;
        let run = match queue.get(&self.id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                let error = json!({ "event": "error", "status": 404, "error": { "code": "unknown_run", "message": "the run's answer has expired (host.run_record_ttl)" } });
                return self.end_with(&error);
            }
            Err(error) => {
                let body = database_error(error).body();
                return self
                    .end_with(&json!({ "event": "error", "status": 503, "error": body["error"] }));
            }
        };
        if run.attempts > self.attempt {
            // Taken (again, after a lease ran out): its events start anew.
            if self.attempt > 0 {
                self.push(&json!({ "event": "redelivered", "attempt": run.attempts }));
            }
            self.attempt = run.attempts;
            self.after = 0;
        }
        if self.attempt > 0 {
            match queue.events(&self.id, self.attempt, self.after, PAGE).await {
                Ok(events) => {
                    let full = events.len() == PAGE as usize;
                    for (seq, event) in events {
                        if let Ok(Json::Object(mut event)) = serde_json::from_str::<Json>(&event) {
                            event.insert("seq".into(), json!(seq));
                            event.insert("attempt".into(), json!(self.attempt));
                            self.push(&Json::Object(event));
                        }
                        self.after = seq;
                    }
                    if full {
                        return;
                    }
                }
                Err(error) => {
                    let body = database_error(error).body();
                    return self.end_with(
                        &json!({ "event": "error", "status": 503, "error": body["error"] }),
                    );
                }
            }
        }
        // A worker writes a run's events before its answer: a run seen finished has no more.
        if run.state == RunState::Finished {
            let status = run
                .status
                .and_then(|status| u16::try_from(status).ok())
                .and_then(|status| StatusCode::from_u16(status).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = run
                .result
                .as_deref()
                .and_then(|result| serde_json::from_str(result).ok())
                .unwrap_or(Json::Null);
            return self.end_with(&done_json(status, body).1);
        }
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            let waiting = json!({
                "event": "waiting",
                "state": run.state.name(),
                "attempt": self.attempt,
                "after": self.after,
            });
            return self.end_with(&waiting);
        }
        let look_again = self.deadline.min(now + LOOK_AGAIN);
        loop {
            tokio::select! {
                wakeup = self.wakeups.recv() => match wakeup {
                    Ok(Wakeup::Events(run) | Wakeup::Finished(run)) if run != self.id => continue,
                    Ok(Wakeup::Queued(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(look_again).await
                    }
                    _ => {}
                },
                () = tokio::time::sleep_until(look_again) => {}
            }
            return;
        }
    }
}
