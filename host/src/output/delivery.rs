//! Hands what a node produces (log records, streamed chunks, UI documents) to the embedder's
//! sinks on a thread of their own, in the order the node produced them.
//!
//! A sink is embedder code: it may block (a terminal nobody reads, a slow socket) or panic.
//! Called from inside a host call it would hold the node's run past its deadline, and a panic
//! would unwind through Wasmtime into the embedder's task. Queued instead, a host call only
//! appends to a channel; the run waits for the queue to drain until its deadline, and a sink
//! that panicked makes the run fail with [`CallbackFailed`]. The queue needs no bound of its
//! own: everything put on it is already capped per run (the log, the stream, UI documents).

use crate::node::value::Value;
use crate::output::record::{LogRecord, LogSink};
use serde_json::Value as Json;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Called with each streamed chunk as the node emits it.
pub type StreamSink = Arc<dyn Fn(&Value) + Send + Sync>;
/// Called with each UI document a node renders (already validated).
pub type UiSink = Arc<dyn Fn(&Json) + Send + Sync>;

/// An embedder callback (a host function or a sink) panicked or could not finish in time; the
/// run is failed with it. This is the embedder's fault, never the node's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the embedder's {callback} {failure}")]
pub struct CallbackFailed {
    /// Which callback: "log sink", "host function `name`", ...
    pub callback: String,
    /// What went wrong: "panicked: …", "did not return before the run's deadline".
    pub failure: String,
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// The embedder's sinks for one run.
#[derive(Clone, Default)]
pub(crate) struct Sinks {
    pub log: Option<LogSink>,
    pub stream: Option<StreamSink>,
    pub ui: Option<UiSink>,
}

enum Event {
    Log(LogRecord),
    Chunk(Value),
    Ui(Json),
}

/// The queue of one run. Clones share it.
#[derive(Clone)]
pub(crate) struct Delivery {
    inner: Arc<Mutex<Queue>>,
}

struct Queue {
    sinks: Sinks,
    /// Started with the first event, so runs without sinks or events start no thread.
    sender: Option<mpsc::Sender<Event>>,
    done: Option<tokio::sync::oneshot::Receiver<Result<(), CallbackFailed>>>,
    /// Set when the thread could not be started: events are then delivered inline.
    inline_failure: Option<CallbackFailed>,
}

impl Delivery {
    pub fn new(sinks: Sinks) -> Self {
        Delivery {
            inner: Arc::new(Mutex::new(Queue {
                sinks,
                sender: None,
                done: None,
                inline_failure: None,
            })),
        }
    }

    /// A queue with no sinks: events are dropped.
    pub fn none() -> Self {
        Self::new(Sinks::default())
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn log(&self, record: &LogRecord) {
        let mut queue = self.queue();
        if queue.sinks.log.is_some() {
            queue.send(Event::Log(record.clone()));
        }
    }

    pub fn chunk(&self, chunk: Value) {
        let mut queue = self.queue();
        if queue.sinks.stream.is_some() {
            queue.send(Event::Chunk(chunk));
        }
    }

    pub fn ui(&self, document: Json) {
        let mut queue = self.queue();
        if queue.sinks.ui.is_some() {
            queue.send(Event::Ui(document));
        }
    }

    /// Waits until every queued event has been handed to its sink, or until `deadline`.
    pub async fn finish(&self, deadline: Instant) -> Result<(), CallbackFailed> {
        let (done, inline_failure) = {
            let mut queue = self.queue();
            // Closing the channel ends the thread once it has drained it.
            queue.sender = None;
            (queue.done.take(), queue.inline_failure.take())
        };
        if let Some(failure) = inline_failure {
            return Err(failure);
        }
        let Some(done) = done else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, done).await {
            Ok(Ok(result)) => result,
            // The thread ended without a word: it can only have been killed with the process.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(CallbackFailed {
                callback: "log, stream or UI sink".into(),
                failure: "did not return before the run's deadline".into(),
            }),
        }
    }
}

impl Queue {
    fn send(&mut self, event: Event) {
        if self.inline_failure.is_some() {
            return;
        }
        if self.sender.is_none() && self.done.is_none() {
            self.start();
        }
        match &self.sender {
            Some(sender) => {
                // A closed channel means the thread stopped after a sink panicked; that
                // failure is reported by `finish`.
                let _ = sender.send(event);
            }
            None => {
                if let Err(failure) = deliver(&self.sinks, &event) {
                    self.inline_failure = Some(failure);
                }
            }
        }
    }

    fn start(&mut self) {
        let (sender, receiver) = mpsc::channel::<Event>();
        let (done_sender, done) = tokio::sync::oneshot::channel();
        let sinks = self.sinks.clone();
        let started = std::thread::Builder::new()
            .name("warden-sinks".into())
            .spawn(move || {
                let mut result = Ok(());
                for event in receiver {
                    if let Err(failure) = deliver(&sinks, &event) {
                        result = Err(failure);
                        break;
                    }
                }
                let _ = done_sender.send(result);
            });
        if started.is_ok() {
            self.sender = Some(sender);
            self.done = Some(done);
        }
        // Without a thread (the process is out of threads), events are delivered inline.
    }
}

fn deliver(sinks: &Sinks, event: &Event) -> Result<(), CallbackFailed> {
    match event {
        Event::Log(record) => call("log sink", sinks.log.as_deref(), record),
        Event::Chunk(chunk) => call("stream sink", sinks.stream.as_deref(), chunk),
        Event::Ui(document) => call("UI sink", sinks.ui.as_deref(), document),
    }
}

/// Calls `sink` (when there is one) with `value`, turning a panic into [`CallbackFailed`].
fn call<T: ?Sized>(
    callback: &str,
    sink: Option<&(dyn Fn(&T) + Send + Sync)>,
    value: &T,
) -> Result<(), CallbackFailed> {
    let Some(sink) = sink else {
        return Ok(());
    };
    catch_unwind(AssertUnwindSafe(|| sink(value))).map_err(|payload| CallbackFailed {
        callback: callback.into(),
        failure: format!("panicked: {}", panic_message(payload.as_ref())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::log::{Level, Source};
    use std::time::Duration;

    fn record(message: &str) -> LogRecord {
        LogRecord {
            level: Level::Info,
            source: Source::Log,
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_finish_waits_for_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log_seen, chunk_seen) = (seen.clone(), seen.clone());
        let delivery = Delivery::new(Sinks {
            log: Some(Arc::new(move |record: &LogRecord| {
                std::thread::sleep(Duration::from_millis(1));
                log_seen.lock().unwrap().push(record.message.clone());
            })),
            stream: Some(Arc::new(move |chunk: &Value| {
                chunk_seen.lock().unwrap().push(format!("{chunk:?}"));
            })),
            ui: None,
        });
        for index in 0..20 {
            delivery.log(&record(&index.to_string()));
        }
        delivery.chunk(Value::Integer(7));
        delivery.ui(Json::Null); // no UI sink: dropped
        let deadline = Instant::now() + Duration::from_secs(10);
        delivery.finish(deadline).await.unwrap();
        let seen = seen.lock().unwrap();
        let expected: Vec<String> = (0..20)
            .map(|index| index.to_string())
            .chain(["Integer(7)".to_string()])
            .collect();
        assert_eq!(*seen, expected);
    }

    #[tokio::test]
    async fn a_panicking_sink_fails_the_run() {
        let delivery = Delivery::new(Sinks {
            log: Some(Arc::new(|_: &LogRecord| panic!("sink exploded"))),
            ..Sinks::default()
        });
        delivery.log(&record("x"));
        delivery.log(&record("y"));
        let error = delivery
            .finish(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(error.callback, "log sink");
        assert!(error.failure.contains("sink exploded"), "{error}");
    }

    #[tokio::test]
    async fn a_blocking_sink_does_not_hold_the_run_past_its_deadline() {
        let delivery = Delivery::new(Sinks {
            log: Some(Arc::new(|_: &LogRecord| {
                std::thread::sleep(Duration::from_secs(5))
            })),
            ..Sinks::default()
        });
        let started = Instant::now();
        delivery.log(&record("x"));
        assert!(started.elapsed() < Duration::from_secs(1), "send blocked");
        let error = delivery
            .finish(Instant::now() + Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(error.failure.contains("deadline"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
