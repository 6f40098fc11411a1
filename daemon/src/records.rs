//! Finished runs' records (`GET /v1/runs/{id}`) and idempotency keys, both bounded: a record
//! is kept for the manifest's `run_record_ttl` and at most `run_records` of them, oldest out
//! first. They live in memory: a restart forgets them (the audit log keeps what must last).
//!
//! Idempotency keys are bounded in count (in all and per caller) and in the bytes of the
//! answers kept for replays; a key whose run is still going is never evicted, so a retry
//! cannot run a node twice.

use serde_json::Value as Json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idempotency keys kept, in all and per caller.
/// The cap in all is far above what callers' shares add up to in runs in flight: a key is
/// running only while its request is, so a few callers cannot hold every key.
pub const MAX_IDEMPOTENCY_KEYS: usize = 10_000;
pub const MAX_IDEMPOTENCY_KEYS_PER_CALLER: usize = 250;
/// Bytes of answers kept for replays, per caller and in all; an answer larger than
/// [`MAX_REPLAY_BODY_BYTES`], or one that finds the daemon's budget spent by others, is not
/// kept (its replay points to the run's record instead). A caller's answers make room only
/// among its own: no caller can evict another's keys.
pub const MAX_REPLAY_BYTES_PER_CALLER: usize = 16 * 1024 * 1024;
pub const MAX_REPLAY_BYTES: usize = 256 * 1024 * 1024;
pub const MAX_REPLAY_BODY_BYTES: usize = 1024 * 1024;

pub struct RunRecords {
    state: Mutex<State>,
    cap: usize,
    ttl: Duration,
}

type KeyId = (String, String);

#[derive(Default)]
struct State {
    records: HashMap<String, Arc<Json>>,
    order: VecDeque<(Instant, String)>,
    keys: HashMap<KeyId, Claim>,
    /// Claims in the order they were made, each with its serial: an entry whose serial no
    /// longer matches the key's claim (released and claimed again) is skipped.
    key_order: VecDeque<(Instant, KeyId, u64)>,
    serial: u64,
    /// Keys and replay bytes held, per caller.
    per_caller: HashMap<String, (usize, usize)>,
    replay_bytes: usize,
}

struct Claim {
    serial: u64,
    state: Idempotent,
    /// Bytes of the answer kept.
    bytes: usize,
    /// When its run finished: it expires a TTL after that.
    finished_at: Option<Instant>,
}

/// What an idempotency key (of one caller) stands for.
#[derive(Clone, Debug)]
pub enum Idempotent {
    /// A run with this key is in flight.
    Running {
        run_id: String,
        request_sha256: String,
    },
    /// It finished: the status and the body it answered with (`None` when the body was too
    /// large to keep).
    Finished {
        run_id: String,
        request_sha256: String,
        status: u16,
        body: Option<Arc<Json>>,
    },
}

/// Why a key could not be claimed.
#[derive(Clone, Debug)]
pub enum ClaimRefused {
    /// The key was used before: what it stands for.
    Used(Idempotent),
    /// Every key the caller (or the daemon) may hold belongs to a run still going.
    Full,
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

impl State {
    fn remove_key(&mut self, id: &KeyId) {
        if let Some(claim) = self.keys.remove(id) {
            self.replay_bytes -= claim.bytes;
            if let Some((count, bytes)) = self.per_caller.get_mut(&id.0) {
                *count -= 1;
                *bytes -= claim.bytes;
                if *count == 0 {
                    self.per_caller.remove(&id.0);
                }
            }
        }
        // Entries of keys gone are skipped as they come to the front; past twice the keys
        // held, they are swept, so claims given back cannot pile them up.
        if self.key_order.len() > 2 * self.keys.len() + 64 {
            let keys = &self.keys;
            self.key_order.retain(|(_, id, serial)| {
                keys.get(id).is_some_and(|claim| claim.serial == *serial)
            });
        }
    }

    fn caller_keys(&self, caller: &str) -> usize {
        self.per_caller.get(caller).map_or(0, |held| held.0)
    }

    fn caller_bytes(&self, caller: &str) -> usize {
        self.per_caller.get(caller).map_or(0, |held| held.1)
    }

    /// Evicts `caller`'s oldest finished key; false when it has none.
    fn evict_finished(&mut self, caller: &str) -> bool {
        let position = self.key_order.iter().position(|(_, id, serial)| {
            id.0 == caller
                && self.keys.get(id).is_some_and(|claim| {
                    claim.serial == *serial && matches!(claim.state, Idempotent::Finished { .. })
                })
        });
        match position.and_then(|position| self.key_order.remove(position)) {
            Some((_, id, _)) => {
                self.remove_key(&id);
                true
            }
            None => false,
        }
    }
}

impl RunRecords {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        RunRecords {
            state: Mutex::new(State::default()),
            cap,
            ttl,
        }
    }

    pub fn insert(&self, run_id: &str, record: Arc<Json>) {
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
        state.records.insert(run_id.to_string(), record);
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

    /// Claims `key` of `caller` for a new run, or says why it cannot.
    pub fn claim(
        &self,
        caller: &str,
        key: &str,
        run_id: &str,
        request_sha256: &str,
    ) -> Result<(), ClaimRefused> {
        let mut state = lock(&self.state);
        self.expire(&mut state);
        let id = (caller.to_string(), key.to_string());
        if let Some(existing) = state.keys.get(&id) {
            return Err(ClaimRefused::Used(existing.state.clone()));
        }
        while state.caller_keys(caller) >= MAX_IDEMPOTENCY_KEYS_PER_CALLER
            || state.keys.len() >= MAX_IDEMPOTENCY_KEYS
        {
            if !state.evict_finished(caller) {
                return Err(ClaimRefused::Full);
            }
        }
        state.serial += 1;
        let serial = state.serial;
        state.keys.insert(
            id.clone(),
            Claim {
                serial,
                state: Idempotent::Running {
                    run_id: run_id.to_string(),
                    request_sha256: request_sha256.to_string(),
                },
                bytes: 0,
                finished_at: None,
            },
        );
        state.per_caller.entry(caller.to_string()).or_default().0 += 1;
        state.key_order.push_back((Instant::now(), id, serial));
        Ok(())
    }

    /// Records the answer of the run that claimed `key`. A body over
    /// [`MAX_REPLAY_BODY_BYTES`] is not kept; older answers make room for one that is.
    pub fn finish_idempotent(&self, caller: &str, key: &str, status: u16, body: Arc<Json>) {
        let size = serde_json::to_vec(body.as_ref())
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        let mut state = lock(&self.state);
        let id = (caller.to_string(), key.to_string());
        let Some(Idempotent::Running {
            run_id,
            request_sha256,
        }) = state.keys.get(&id).map(|claim| claim.state.clone())
        else {
            return;
        };
        let mut kept = size <= MAX_REPLAY_BODY_BYTES;
        if kept {
            while state.caller_bytes(caller) + size > MAX_REPLAY_BYTES_PER_CALLER {
                if !state.evict_finished(caller) {
                    break;
                }
            }
            kept = state.caller_bytes(caller) + size <= MAX_REPLAY_BYTES_PER_CALLER
                && state.replay_bytes + size <= MAX_REPLAY_BYTES;
        }
        let bytes = if kept { size } else { 0 };
        let Some(claim) = state.keys.get_mut(&id) else {
            return;
        };
        claim.state = Idempotent::Finished {
            run_id,
            request_sha256,
            status,
            body: kept.then_some(body),
        };
        claim.bytes = bytes;
        claim.finished_at = Some(Instant::now());
        let serial = claim.serial;
        state.replay_bytes += bytes;
        state.per_caller.entry(caller.to_string()).or_default().1 += bytes;
        // Its time to live runs from now: a run that outlived the TTL (or waited long in a
        // queue) still keeps its answer for a whole TTL.
        state.key_order.push_back((Instant::now(), id, serial));
    }

    /// Forgets `key`: its run never started, or ended in a way worth retrying.
    pub fn release(&self, caller: &str, key: &str) {
        let mut state = lock(&self.state);
        state.remove_key(&(caller.to_string(), key.to_string()));
    }

    /// Entries in the claims' order (for tests of its bound).
    pub fn order_len(&self) -> usize {
        lock(&self.state).key_order.len()
    }

    /// Bytes of answers kept for replays now.
    pub fn replay_bytes(&self) -> usize {
        lock(&self.state).replay_bytes
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
        while let Some((at, _, _)) = state.key_order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            let Some((_, id, serial)) = state.key_order.pop_front() else {
                break;
            };
            // A run still going keeps its key past the TTL; a key claimed again since keeps
            // its newer claim.
            let expired = state.keys.get(&id).is_some_and(|claim| {
                claim.serial == serial
                    && claim
                        .finished_at
                        .is_some_and(|finished| now.duration_since(finished) >= self.ttl)
            });
            if expired {
                state.remove_key(&id);
            }
        }
        // Order entries of keys released or claimed again are dropped as they reach the front.
        while let Some((_, id, serial)) = state.key_order.front() {
            if state
                .keys
                .get(id)
                .is_some_and(|claim| claim.serial == *serial)
            {
                break;
            }
            state.key_order.pop_front();
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
            records.insert(id, Arc::new(json!({ "run_id": id })));
        }
        assert!(records.get("a").is_none(), "the oldest went first");
        assert_eq!(records.get("c").unwrap()["run_id"], "c");
        assert_eq!(records.len(), 2);

        let records = RunRecords::new(10, Duration::from_millis(1));
        records.insert("a", Arc::new(json!({})));
        std::thread::sleep(Duration::from_millis(5));
        assert!(records.get("a").is_none());
    }

    #[test]
    fn an_idempotency_key_stands_for_one_run_per_caller() {
        let records = RunRecords::new(10, Duration::from_secs(3600));
        records.claim("alice", "k", "run-1", "h1").unwrap();
        assert!(matches!(
            records.claim("alice", "k", "run-2", "h1"),
            Err(ClaimRefused::Used(Idempotent::Running { .. }))
        ));
        records.claim("bob", "k", "run-3", "h1").unwrap();
        records.finish_idempotent("alice", "k", 200, Arc::new(json!({"ok": true})));
        match records.claim("alice", "k", "run-4", "h2") {
            Err(ClaimRefused::Used(Idempotent::Finished {
                run_id,
                status,
                request_sha256,
                body,
            })) => {
                assert_eq!(
                    (run_id.as_str(), status, request_sha256.as_str()),
                    ("run-1", 200, "h1")
                );
                assert_eq!(body.unwrap()["ok"], true);
            }
            other => panic!("the finished run is replayed: {other:?}"),
        }
        records.release("bob", "k");
        records.claim("bob", "k", "run-5", "h1").unwrap();
    }

    #[test]
    fn running_keys_are_never_evicted_and_callers_have_their_own_share() {
        let records = RunRecords::new(10, Duration::from_secs(3600));
        for index in 0..MAX_IDEMPOTENCY_KEYS_PER_CALLER {
            records
                .claim("alice", &format!("k{index}"), "r", "h")
                .unwrap();
        }
        // Every one of alice's keys is running: she gets no more, and bob is not affected.
        assert!(matches!(
            records.claim("alice", "more", "r", "h"),
            Err(ClaimRefused::Full)
        ));
        records.claim("bob", "k0", "r", "h").unwrap();
        // A finished one of hers makes room, oldest first.
        records.finish_idempotent("alice", "k7", 200, Arc::new(json!({})));
        records.claim("alice", "more", "r", "h").unwrap();
        assert!(matches!(
            records.claim("alice", "k0", "r", "h"),
            Err(ClaimRefused::Used(Idempotent::Running { .. }))
        ));
        // k7 made the room: it is forgotten, and alice is full again.
        assert!(matches!(
            records.claim("alice", "k7", "r", "h"),
            Err(ClaimRefused::Full)
        ));
    }

    #[test]
    fn answers_kept_for_replay_are_bounded_in_bytes() {
        let records = RunRecords::new(10, Duration::from_secs(3600));
        let big = Arc::new(json!("x".repeat(MAX_REPLAY_BODY_BYTES + 1)));
        records.claim("alice", "big", "r", "h").unwrap();
        records.finish_idempotent("alice", "big", 200, big);
        assert_eq!(records.replay_bytes(), 0);
        match records.claim("alice", "big", "r", "h") {
            Err(ClaimRefused::Used(Idempotent::Finished { body: None, .. })) => {}
            other => panic!("{other:?}"),
        }
        let body = Arc::new(json!("y".repeat(MAX_REPLAY_BODY_BYTES - 16)));
        // Bob's answer is kept whatever alice does: her answers make room only among hers.
        records.claim("bob", "payment-42", "r-bob", "h").unwrap();
        records.finish_idempotent("bob", "payment-42", 200, body.clone());
        for index in 0..100 {
            records
                .claim("alice", &format!("k{index}"), "r", "h")
                .unwrap();
            records.finish_idempotent("alice", &format!("k{index}"), 200, body.clone());
            assert!(records.replay_bytes() <= 2 * MAX_REPLAY_BYTES_PER_CALLER);
        }
        match records.claim("bob", "payment-42", "r2", "h") {
            Err(ClaimRefused::Used(Idempotent::Finished {
                body: Some(_),
                run_id,
                ..
            })) => {
                assert_eq!(run_id, "r-bob")
            }
            other => panic!("bob's answer was evicted: {other:?}"),
        }
    }

    #[test]
    fn a_key_whose_run_outlived_the_ttl_expires_a_ttl_after_it_finished() {
        let records = RunRecords::new(10, Duration::from_millis(40));
        records.claim("bob", "slow", "r", "h").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        // Still running past the TTL: kept.
        assert!(matches!(
            records.claim("bob", "slow", "r2", "h"),
            Err(ClaimRefused::Used(Idempotent::Running { .. }))
        ));
        records.finish_idempotent("bob", "slow", 200, Arc::new(json!({})));
        assert!(matches!(
            records.claim("bob", "slow", "r2", "h"),
            Err(ClaimRefused::Used(Idempotent::Finished { .. }))
        ));
        std::thread::sleep(Duration::from_millis(60));
        // A TTL after it finished, it is gone, and bob's share is free again.
        records.claim("bob", "slow", "r3", "h").unwrap();
        for index in 0..MAX_IDEMPOTENCY_KEYS_PER_CALLER - 1 {
            records
                .claim("bob", &format!("k{index}"), "r", "h")
                .unwrap();
        }
    }

    #[test]
    fn claims_given_back_do_not_pile_up() {
        let records = RunRecords::new(10, Duration::from_secs(3600));
        records.claim("alice", "kept", "r", "h").unwrap();
        records.finish_idempotent("alice", "kept", 200, Arc::new(json!({})));
        for index in 0..10_000 {
            records
                .claim("bob", &format!("k{index}"), "r", "h")
                .unwrap();
            records.release("bob", &format!("k{index}"));
        }
        assert!(records.order_len() < 200, "{}", records.order_len());
    }

    #[test]
    fn a_key_released_and_claimed_again_keeps_its_new_claim() {
        let records = RunRecords::new(10, Duration::from_millis(50));
        records.claim("alice", "k", "r1", "h").unwrap();
        records.release("alice", "k");
        std::thread::sleep(Duration::from_millis(30));
        records.claim("alice", "k", "r2", "h").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        // The first claim's order entry has expired; the second claim is still there.
        assert!(matches!(
            records.claim("alice", "k", "r3", "h"),
            Err(ClaimRefused::Used(Idempotent::Running { .. }))
        ));
    }
}
