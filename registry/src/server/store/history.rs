//! Each publisher's history quota: how many versions and key events it may have logged.

use super::{Caller, HISTORY, LOG, Store, StoreError, parse, storage};
use crate::protocol::{Event, LogEntry};
use redb::{ReadableTable, WriteTransaction};

impl Store {
    /// Counts one more event of `kind` in `publisher`'s history, refusing past the quota
    /// unless `refusable` is false. An admin's key events are not counted against it (an admin
    /// recovers a locked-out publisher whatever its history), nor are revocations: a publisher
    /// must always be able to revoke a stolen key, and revocations are bounded by additions
    /// anyway (a key is revoked once).
    pub(super) fn charge_history(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        publisher: &str,
        kind: History,
        refusable: bool,
    ) -> Result<(), StoreError> {
        let count = history_count(txn, publisher, kind)?;
        let quotas = &self.rates.quotas;
        let (limit, flag) = match kind {
            History::Versions => (
                quotas.versions_per_publisher,
                "--max-versions-per-publisher",
            ),
            History::KeyEvents => (
                quotas.key_events_per_publisher,
                "--max-key-events-per-publisher",
            ),
        };
        let exempt = !refusable || (kind == History::KeyEvents && caller.is_admin());
        if count >= limit && !exempt {
            return Err(StoreError::Conflict(format!(
                "`{publisher}` has {count} {} in its history, the most this registry allows; ask the registry's operator to raise {flag}",
                kind.name()
            )));
        }
        txn.open_table(HISTORY)
            .map_err(storage)?
            .insert((publisher, kind.name()), count + 1)
            .map_err(storage)?;
        Ok(())
    }
}

/// What a publisher's history quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum History {
    Versions,
    KeyEvents,
}

impl History {
    fn name(self) -> &'static str {
        match self {
            History::Versions => "versions",
            History::KeyEvents => "key events",
        }
    }

    fn counts(self, event: &Event, of: &str) -> bool {
        match (self, event) {
            (History::Versions, Event::Publish { publisher, .. }) => publisher == of,
            (History::KeyEvents, Event::KeyAdded { publisher, .. })
            | (History::KeyEvents, Event::KeyRevoked { publisher, .. }) => publisher == of,
            _ => false,
        }
    }
}

/// How many events of `kind` `publisher`'s history holds: the kept count, or (for a database
/// from before the counts, or a new publisher) counted from the log.
pub(super) fn history_count(
    txn: &WriteTransaction,
    publisher: &str,
    kind: History,
) -> Result<u64, StoreError> {
    if let Some(count) = txn
        .open_table(HISTORY)
        .map_err(storage)?
        .get((publisher, kind.name()))
        .map_err(storage)?
    {
        return Ok(count.value());
    }
    let mut count = 0;
    for item in txn
        .open_table(LOG)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, bytes) = item.map_err(storage)?;
        let entry: LogEntry = parse("log entry", bytes.value())?;
        count += u64::from(kind.counts(&entry.event, publisher));
    }
    Ok(count)
}
