//! Admission before instantiation: a run takes a slot of its node and a slot of the host
//! before any sandbox is set up. Each has a bounded wait queue; a request that finds the queue
//! full, or waits past the queue timeout, is turned away with 429 and `Retry-After`, so
//! overload is backpressure to the caller, not a failure at the runtime's instance limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots of one node or of the host, and the requests waiting for one.
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: u32,
    queue: usize,
    waiting: AtomicUsize,
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overloaded {
    /// The wait queue was full.
    QueueFull,
    /// It waited the whole queue timeout.
    Waited,
}

/// A slot held; released when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The place in a queue of a request; counted out when dropped, whatever ends the wait (a
/// slot, the timeout, or the caller leaving).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(capacity: u32, queue: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            queue,
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot, if one is free now.
    pub fn try_acquire(&self) -> Option<Slot> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Takes a slot now if one is free, else waits for one in the queue, at most `timeout`.
    pub async fn acquire(&self, timeout: Duration) -> Result<Slot, Overloaded> {
        if let Some(slot) = self.try_acquire() {
            return Ok(slot);
        }
        let queued = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting < self.queue).then_some(waiting + 1)
            });
        if queued.is_err() {
            return Err(Overloaded::QueueFull);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed; treat it as a full queue if it ever is.
            Ok(Err(_)) => Err(Overloaded::QueueFull),
            Err(_) => Err(Overloaded::Waited),
        }
    }

    /// Slots taken now.
    pub fn in_use(&self) -> u32 {
        self.capacity
            .saturating_sub(self.slots.available_permits() as u32)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn queue(&self) -> usize {
        self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_turns_requests_away_and_a_freed_slot_admits_the_next() {
        let admission = Arc::new(Admission::new(1, 1));
        let held = admission.acquire(Duration::from_secs(5)).await.unwrap();
        assert_eq!(admission.in_use(), 1);
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.acquire(Duration::from_secs(5)).await.is_ok() })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            admission.acquire(Duration::from_secs(5)).await.err(),
            Some(Overloaded::QueueFull)
        );
        drop(held);
        assert!(waiter.await.unwrap());
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.in_use(), 0);
    }

    #[tokio::test]
    async fn a_wait_past_the_timeout_gives_up_and_leaves_the_queue() {
        let admission = Admission::new(1, 4);
        let _held = admission.acquire(Duration::ZERO).await.unwrap();
        assert_eq!(
            admission.acquire(Duration::from_millis(20)).await.err(),
            Some(Overloaded::Waited)
        );
        assert_eq!(admission.waiting(), 0);
    }
}
