//! The log and the signed index: appending an entry at the log's own time (which never runs
//! backwards), signing a new index only if it matches what the log replays to, and reading
//! the log whole or a page at a time.

use super::root::registry_id_in;
use super::{KEYS, LOG, META, Store, StoreError, VERSIONS, json, parse, storage, values};
use crate::protocol::{self, Event, Index, IndexEntry, KeyEntry, LOG_ROOT, LogEntry, Signed, now};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

impl Store {
    /// The time the next log entry gets: `now`, or the last entry's time if the clock stepped
    /// back, since hosts refuse a log whose times go backwards. Callers that also store the
    /// time (`published_at`, `added_at`) take it from here, inside the same transaction, so
    /// the table and the log agree.
    pub(super) fn log_time(txn: &WriteTransaction, now: u64) -> Result<u64, StoreError> {
        let log = txn.open_table(LOG).map_err(storage)?;
        let last = match log.last().map_err(storage)? {
            Some((_, bytes)) => parse::<LogEntry>("log entry", bytes.value())?.time,
            None => 0,
        };
        Ok(now.max(last))
    }

    /// Appends to the log and signs a new index, inside the caller's transaction.
    pub(super) fn append(
        &self,
        txn: &WriteTransaction,
        time: u64,
        event: Event,
    ) -> Result<(), StoreError> {
        {
            let mut log = txn.open_table(LOG).map_err(storage)?;
            let (sequence, previous, last_time) = match log.last().map_err(storage)? {
                Some((sequence, bytes)) => {
                    let last: LogEntry = parse("log entry", bytes.value())?;
                    (sequence.value() + 1, last.hash(), last.time)
                }
                None => (0, LOG_ROOT.to_string(), 0),
            };
            let entry = LogEntry {
                sequence,
                // Never below the last entry's time (a clock stepped back).
                time: time.max(last_time),
                previous,
                event,
            };
            log.insert(sequence, json(&entry).as_slice())
                .map_err(storage)?;
        }
        self.reissue_index(txn)
    }

    /// Signs a new index of everything, one version above the last.
    pub(super) fn reissue_index(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let version = match meta.get("index").map_err(storage)? {
            Some(bytes) => {
                let signed: Signed = parse("index", bytes.value())?;
                let index: Index = parse("index", signed.signed.as_bytes())?;
                index.version + 1
            }
            None => 1,
        };
        let packages: Vec<IndexEntry> =
            values(&txn.open_table(VERSIONS).map_err(storage)?, "version")?;
        let keys: Vec<KeyEntry> = values(&txn.open_table(KEYS).map_err(storage)?, "publisher key")?;
        let entries: Vec<LogEntry> = values(&txn.open_table(LOG).map_err(storage)?, "log entry")?;
        let (log_size, log_head) = match entries.last() {
            Some(last) => (entries.len() as u64, last.hash()),
            None => (0, LOG_ROOT.to_string()),
        };
        let issued_at = now();
        let index = Index {
            registry: self.public_key(),
            version,
            issued_at,
            expires_at: issued_at.saturating_add(self.index_ttl),
            log_size,
            log_head,
            packages,
            keys,
        };
        // The tables are not trusted: what is signed must be what the log says happened.
        let registry = registry_id_in(&meta)?;
        protocol::replay(&entries, &registry)
            .and_then(|replayed| protocol::index_matches_log(&index, &replayed))
            .map_err(|error| {
                StoreError::Storage(format!(
                    "refusing to sign an index that disagrees with the log ({error}); run `warden registry check`"
                ))
            })?;
        meta.insert("index", json(&index.sign(&self.key)).as_slice())
            .map_err(storage)?;
        Ok(())
    }

    /// The signed index; re-signed (one version up) once half its lifetime has passed, so what
    /// hosts get is always fresh.
    pub fn index(&self) -> Result<Signed, StoreError> {
        let current = self.stored_index()?;
        let index: Index = parse("index", current.signed.as_bytes())?;
        if now() + self.index_ttl / 2 < index.expires_at {
            return Ok(current);
        }
        let txn = self.write()?;
        self.reissue_index(&txn)?;
        txn.commit().map_err(storage)?;
        self.stored_index()
    }

    pub(super) fn stored_index(&self) -> Result<Signed, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let bytes = meta
            .get("index")
            .map_err(storage)?
            .ok_or_else(|| StoreError::Storage("the index is missing".into()))?;
        let signed: Signed = parse("index", bytes.value())?;
        // What is stored is not trusted: a tampered index is an error, not something served.
        Index::verify(&signed, &self.key.verifying_key(), 0)
            .map_err(|error| StoreError::Storage(error.to_string()))?;
        Ok(signed)
    }

    pub fn log(&self) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        values(&txn.open_table(LOG).map_err(storage)?, "log entry")
    }

    /// Entries `from`, `from + 1`, … of the log: at most `limit` of them, and no more once
    /// their JSON reaches `max_bytes` (but always one, if there is one). Empty past the end.
    pub fn log_range(
        &self,
        from: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let log = txn.open_table(LOG).map_err(storage)?;
        let mut page = Vec::new();
        let mut bytes = 0;
        for item in log.range(from..).map_err(storage)? {
            if page.len() as u64 >= limit || (bytes >= max_bytes && !page.is_empty()) {
                break;
            }
            let (_, value) = item.map_err(storage)?;
            bytes += value.value().len() + 1;
            page.push(parse("log entry", value.value())?);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TokenKind;
    use crate::server::store::Caller;
    use warden_package as package;

    fn owner(store: &Store, token: &str) -> Caller {
        store
            .authenticate(TokenKind::Pat, token)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Registers a new key, with its proof of possession, for `publisher`; returns it in hex.
    fn add_new_key(store: &Store, owner: &Caller, publisher: &str) -> String {
        let key = package::generate_key().unwrap_or_else(|error| panic!("{error}"));
        let public = package::public_key_hex(&key);
        let registry = store
            .registry_id()
            .unwrap_or_else(|error| panic!("{error}"));
        let possession = protocol::sign_possession(&registry, publisher, &key);
        store
            .add_key(owner, publisher, &public, &possession, None)
            .unwrap_or_else(|error| panic!("{error}"));
        public
    }

    #[test]
    fn a_clock_stepped_back_does_not_move_log_time_backwards() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        let first = add_new_key(&store, &owner, "acme");
        // As if the clock had been an hour ahead when that entry was written.
        let ahead = now() + 3600;
        {
            let txn = store.write().unwrap_or_else(|error| panic!("{error}"));
            {
                let mut log = txn
                    .open_table(LOG)
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut entry: LogEntry = parse(
                    "log entry",
                    log.get(0)
                        .ok()
                        .flatten()
                        .map(|bytes| bytes.value().to_vec())
                        .unwrap_or_default()
                        .as_slice(),
                )
                .unwrap_or_else(|error| panic!("{error}"));
                entry.time = ahead;
                log.insert(0, json(&entry).as_slice())
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut keys = txn
                    .open_table(KEYS)
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut key: KeyEntry = parse(
                    "key",
                    keys.get(first.as_str())
                        .ok()
                        .flatten()
                        .map(|bytes| bytes.value().to_vec())
                        .unwrap_or_default()
                        .as_slice(),
                )
                .unwrap_or_else(|error| panic!("{error}"));
                key.added_at = ahead;
                keys.insert(first.as_str(), json(&key).as_slice())
                    .unwrap_or_else(|error| panic!("{error}"));
            }
            txn.commit().unwrap_or_else(|error| panic!("{error}"));
        }
        // The next change happens "earlier" by the clock: it is logged at the last time, and
        // the log still replays and signs. "From now" is the second after the log's time.
        let revoked = store
            .revoke_key(&owner, "acme", &first, None, None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(revoked.revoked_at, Some(ahead + 1));
        let log = store.log().unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].time, ahead);
        let registry = store
            .registry_id()
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(protocol::replay(&log, &registry).is_ok());
        assert!(store.check().is_ok());
    }

    #[test]
    fn log_pages_are_bounded_by_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        for publisher in ["a", "b", "c", "d", "e"] {
            add_new_key(&store, &owner, publisher);
        }
        let all = store.log().unwrap_or_else(|error| panic!("{error}"));
        let page = store
            .log_range(1, 2, usize::MAX)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[1..3].to_vec());
        // A byte bound below one entry still returns one entry, so paging always progresses.
        let page = store
            .log_range(0, 1000, 1)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[..1].to_vec());
        let page = store
            .log_range(3, 1000, usize::MAX)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[3..].to_vec());
        assert!(
            store
                .log_range(5, 1000, usize::MAX)
                .unwrap_or_default()
                .is_empty()
        );
        assert!(
            store
                .log_range(u64::MAX, 1000, usize::MAX)
                .unwrap_or_default()
                .is_empty()
        );
    }
}
