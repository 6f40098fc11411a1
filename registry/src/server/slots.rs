//! Transfer slots: package uploads or downloads in flight, bounded in total and per user.
//!
//! The server's minimum rates end transfers that stall or crawl, but a client that moves
//! bytes just above the minimum makes progress: a 64 MiB package at 16 KiB/s holds its slot
//! for over an hour. Without a per-user bound, one token holder could hold every slot that
//! way and keep every host from installing; with it, one user holds at most its share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a transfer was not given a slot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// Every slot is taken (503).
    #[error("the registry is serving as many {0} as it allows; retry shortly")]
    Full(&'static str),
    /// The caller holds its share already (429).
    #[error(
        "this user has {1} {0} in flight, as many as one user may; retry when one has finished"
    )]
    Share(&'static str, usize),
}

#[derive(Default)]
struct Held {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// The slots of one kind of transfer.
pub struct Slots {
    /// "uploads" or "downloads", for the refusals.
    what: &'static str,
    max_total: usize,
    max_per_user: usize,
    held: Mutex<Held>,
}

/// A slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    user: String,
}

impl Slots {
    /// At most `max_total` transfers at once, `max_per_user` of them by one user (each at
    /// least one).
    pub fn new(what: &'static str, max_total: usize, max_per_user: usize) -> Arc<Slots> {
        Arc::new(Slots {
            what,
            max_total: max_total.max(1),
            max_per_user: max_per_user.max(1),
            held: Mutex::default(),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `user`, or why there is none.
    pub fn take(self: &Arc<Self>, user: &str) -> Result<Slot, Busy> {
        let mut held = self.held();
        if held.total >= self.max_total {
            return Err(Busy::Full(self.what));
        }
        let mine = held.by_user.get(user).copied().unwrap_or(0);
        if mine >= self.max_per_user {
            return Err(Busy::Share(self.what, mine));
        }
        held.total += 1;
        held.by_user.insert(user.to_string(), mine + 1);
        Ok(Slot {
            slots: self.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        held.total = held.total.saturating_sub(1);
        // Entries go with their last slot, so the map holds only users with transfers.
        if let Some(count) = held.by_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_its_share_and_everyone_at_most_the_total() {
        let slots = Slots::new("downloads", 3, 2);
        let first = slots.take("mallory").unwrap();
        let _second = slots.take("mallory").unwrap();
        assert_eq!(
            slots.take("mallory").err(),
            Some(Busy::Share("downloads", 2))
        );
        let _bob = slots.take("bob").unwrap();
        assert_eq!(slots.take("carol").err(), Some(Busy::Full("downloads")));
        drop(first);
        slots.take("mallory").unwrap();
    }

    #[test]
    fn slots_are_given_back_and_empty_entries_removed() {
        let slots = Slots::new("uploads", 0, 0);
        let only = slots.take("alice").unwrap();
        assert_eq!(slots.take("bob").err(), Some(Busy::Full("uploads")));
        drop(only);
        assert_eq!(slots.held().total, 0);
        assert!(slots.held().by_user.is_empty());
        slots.take("bob").unwrap();
    }
}
