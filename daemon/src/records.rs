//! Finished runs' records (`GET /v1/runs/{id}`) and idempotency keys, both bounded: a record
//! is kept for the manifest's `run_record_ttl` and at most `run_records` of them, oldest out
//! first. They live in memory: a restart forgets them (the audit log keeps what must last).

use serde_json::Value as Json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Responses kept for idempotent replays, at most: each may hold a run's outputs.
pub const MAX_IDEMPOTENT_RESPONSES: usize = 1000;

pub struct RunRecords {
    state: Mutex<State>,
    cap: usize,
    ttl: Duration,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Arc<Json>>,
    order: VecDeque<(Instant, String)>,
    idempotent: HashMap<(String, String), Idempotent>,
    idempotent_order: VecDeque<(Instant, (String, String))>,
}

/// What an idempotency key (of one caller) stands for.
#[derive(Clone, Debug)]
pub enum Idempotent {
    /// A run with this key is in flight.
    Running {
        run_id: String,
        request_sha256: String,
    },
    /// It finished: the status and body it answered with.
    Finished {
        run_id: String,
        request_sha256: String,
        status: u16,
        body: Arc<Json>,
    },
}

impl Idempotent {
    pub fn request_sha256(&self) -> &str {
        match self {
            Idempotent::Running { request_sha256, .. }
            | Idempotent::Finished { request_sha256, .. } => request_sha256,
        }
    }
}

fn lock(mutex: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RunRecords {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        RunRecords {
            state: Mutex::new(State::default()),
            cap,
            ttl,
        }
    }

    pub fn insert(&self, run_id: &str, record: Json) {
        let mut state = lock(&self.state);
        self.expire(&mut state);
        if self.cap == 0 {
            return;
        }
        while state.records.len() >= self.cap {
            match state.order.pop_front() {
                Some((_, oldest)) => {
                    state.records.remove(&oldest);
                }
                None => break,
            }
        }
        state.records.insert(run_id.to_string(), Arc::new(record));
        state.order.push_back((Instant::now(), run_id.to_string()));
    }

    pub fn get(&self, run_id: &str) -> Option<Arc<Json>> {
        let mut state = lock(&self.state);
        self.expire(&mut state);
        state.records.get(run_id).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.state).records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims `key` of `caller` for a new run, or returns what the key already stands for.
    pub fn claim(
        &self,
        caller: &str,
        key: &str,
        run_id: &str,
        request_sha256: &str,
    ) -> Result<(), Idempotent> {
        let mut state = lock(&self.state);
        self.expire(&mut state);
        let id = (caller.to_string(), key.to_string());
        if let Some(existing) = state.idempotent.get(&id) {
            return Err(existing.clone());
        }
        while state.idempotent.len() >= MAX_IDEMPOTENT_RESPONSES {
            match state.idempotent_order.pop_front() {
                Some((_, oldest)) => {
                    state.idempotent.remove(&oldest);
                }
                None => break,
            }
        }
        state.idempotent.insert(
            id.clone(),
            Idempotent::Running {
                run_id: run_id.to_string(),
                request_sha256: request_sha256.to_string(),
            },
        );
        state.idempotent_order.push_back((Instant::now(), id));
        Ok(())
    }

    /// Records the answer of the run that claimed `key`.
    pub fn finish_idempotent(&self, caller: &str, key: &str, status: u16, body: Arc<Json>) {
        let mut state = lock(&self.state);
        let id = (caller.to_string(), key.to_string());
        if let Some(Idempotent::Running {
            run_id,
            request_sha256,
        }) = state.idempotent.get(&id).cloned()
        {
            state.idempotent.insert(
                id,
                Idempotent::Finished {
                    run_id,
                    request_sha256,
                    status,
                    body,
                },
            );
        }
    }

    /// Forgets `key`: its run was never started (turned away before admission), so a retry
    /// with the same key must run.
    pub fn release(&self, caller: &str, key: &str) {
        let mut state = lock(&self.state);
        state
            .idempotent
            .remove(&(caller.to_string(), key.to_string()));
    }

    fn expire(&self, state: &mut State) {
        let now = Instant::now();
        while let Some((at, _)) = state.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, id)) = state.order.pop_front() {
                state.records.remove(&id);
            }
        }
        while let Some((at, _)) = state.idempotent_order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, id)) = state.idempotent_order.pop_front() {
                state.idempotent.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_bounded_by_count_and_time() {
        let records = RunRecords::new(2, Duration::from_secs(3600));
        for id in ["a", "b", "c"] {
            records.insert(id, json!({ "run_id": id }));
        }
        assert!(records.get("a").is_none(), "the oldest went first");
        assert_eq!(records.get("c").unwrap()["run_id"], "c");
        assert_eq!(records.len(), 2);

        let records = RunRecords::new(10, Duration::from_millis(1));
        records.insert("a", json!({}));
        std::thread::sleep(Duration::from_millis(5));
        assert!(records.get("a").is_none());
    }

    #[test]
    fn an_idempotency_key_stands_for_one_run_per_caller() {
        let records = RunRecords::new(10, Duration::from_secs(3600));
        records.claim("alice", "k", "run-1", "h1").unwrap();
        assert!(matches!(
            records.claim("alice", "k", "run-2", "h1"),
            Err(Idempotent::Running { .. })
        ));
        records.claim("bob", "k", "run-3", "h1").unwrap();
        records.finish_idempotent("alice", "k", 200, Arc::new(json!({"ok": true})));
        match records.claim("alice", "k", "run-4", "h2") {
            Err(Idempotent::Finished {
                run_id,
                status,
                request_sha256,
                ..
            }) => {
                assert_eq!(
                    (run_id.as_str(), status, request_sha256.as_str()),
                    ("run-1", 200, "h1")
                );
            }
            _ => panic!("the finished run is replayed"),
        }
        records.release("bob", "k");
        records.claim("bob", "k", "run-5", "h1").unwrap();
    }
}
