//! The default storage backend: one embedded redb database.

use super::backend::{StorageBackend, StorageError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use std::path::Path;

const DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("data");
const CACHE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("exec_cache");
/// Bytes (keys plus values) held per partition, for quotas.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// The execution cache's entries by (partition, expiry, key), so expired ones are found without
/// a scan.
const EXPIRY: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("exec_cache_expiry");
/// Expired cache entries one write reclaims at most: a write's cost stays bounded, and every
/// entry is reclaimed once, by a write that needed the room.
pub const RECLAIM_PER_WRITE: usize = 4096;

/// The expiry a stored cache entry starts with.
fn expiry_of(stored: &[u8]) -> Option<u64> {
    stored
        .split_first_chunk::<8>()
        .map(|(expiry, _)| u64::from_le_bytes(*expiry))
}

/// Storage in a redb database, on disk or in memory.
pub struct RedbStorage {
    db: Database,
}

fn backend<E: std::fmt::Display>(error: E) -> StorageError {
    StorageError::Backend(error.to_string())
}

impl RedbStorage {
    /// Opens (or creates) a database file.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path).map_err(|error| {
            StorageError::Backend(format!("cannot open {}: {error}", path.display()))
        })?;
        Self::with_tables(db)
    }

    pub fn in_memory() -> Result<Self, StorageError> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(backend)?;
        Self::with_tables(db)
    }

    fn with_tables(db: Database) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(DATA).map_err(backend)?;
        txn.open_table(CACHE).map_err(backend)?;
        txn.open_table(USAGE).map_err(backend)?;
        txn.open_table(EXPIRY).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(RedbStorage { db })
    }

    /// Inserts into `table`, keeping the partition's byte count and refusing to pass `quota`.
    /// For the cache (`now_ms` given), entries expired at `now_ms` are reclaimed first when the
    /// write would not fit, and the expiry index is kept.
    fn put(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        partition: &str,
        key: &str,
        stored: &[u8],
        quota: u64,
        now_ms: Option<u64>,
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let refused = {
            let mut data = txn.open_table(table).map_err(backend)?;
            let mut usage = txn.open_table(USAGE).map_err(backend)?;
            let mut expiries = txn.open_table(EXPIRY).map_err(backend)?;
            let mut reclaimed = false;
            let old = data
                .get((partition, key))
                .map_err(backend)?
                .map(|value| (value.value().len(), expiry_of(value.value())));
            let old_bytes = old.map_or(0, |(len, _)| (key.len() + len) as u64);
            let mut current = usage
                .get(partition)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0);
            let new_bytes = (key.len() + stored.len()) as u64;
            if let Some(now) = now_ms
                && current.saturating_sub(old_bytes) + new_bytes > quota
            {
                let expired: Vec<(u64, String)> = expiries
                    .range((partition, 0, "")..(partition, now.saturating_add(1), ""))
                    .map_err(backend)?
                    .take(RECLAIM_PER_WRITE)
                    .filter_map(|entry| entry.ok())
                    .map(|(index, _)| {
                        let (_, expiry, key) = index.value();
                        (expiry, key.to_string())
                    })
                    .collect();
                for (expiry, expired_key) in expired {
                    // The key being written is replaced below, and counted there; its index
                    // entry goes then too (or stays, if the write is refused).
                    if expired_key == key {
                        continue;
                    }
                    expiries
                        .remove((partition, expiry, expired_key.as_str()))
                        .map_err(backend)?;
                    if let Some(value) = data
                        .remove((partition, expired_key.as_str()))
                        .map_err(backend)?
                    {
                        current = current
                            .saturating_sub((expired_key.len() + value.value().len()) as u64);
                    }
                    reclaimed = true;
                }
            }
            let needed = current.saturating_sub(old_bytes) + new_bytes;
            if needed > quota {
                // What was reclaimed stays reclaimed, so that a partition with more expired
                // entries than one write reclaims makes progress write after write.
                if !reclaimed {
                    return Err(StorageError::QuotaExceeded { needed, quota });
                }
                usage.insert(partition, current).map_err(backend)?;
                Some(StorageError::QuotaExceeded { needed, quota })
            } else {
                if now_ms.is_some() {
                    if let Some((_, Some(old_expiry))) = old {
                        expiries
                            .remove((partition, old_expiry, key))
                            .map_err(backend)?;
                    }
                    if let Some(expiry) = expiry_of(stored) {
                        expiries
                            .insert((partition, expiry, key), ())
                            .map_err(backend)?;
                    }
                }
                data.insert((partition, key), stored).map_err(backend)?;
                usage.insert(partition, needed).map_err(backend)?;
                None
            }
        };
        txn.commit().map_err(backend)?;
        refused.map_or(Ok(()), Err)
    }

    fn remove(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        partition: &str,
        key: &str,
    ) -> Result<bool, StorageError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let removed = {
            let mut data = txn.open_table(table).map_err(backend)?;
            let mut usage = txn.open_table(USAGE).map_err(backend)?;
            let removed = data
                .remove((partition, key))
                .map_err(backend)?
                .map(|value| {
                    let value = value.value();
                    ((key.len() + value.len()) as u64, expiry_of(value))
                });
            if table.name() == CACHE.name()
                && let Some((_, Some(expiry))) = removed
            {
                let mut expiries = txn.open_table(EXPIRY).map_err(backend)?;
                expiries.remove((partition, expiry, key)).map_err(backend)?;
            }
            if let Some((bytes, _)) = removed {
                let current = usage
                    .get(partition)
                    .map_err(backend)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                usage
                    .insert(partition, current.saturating_sub(bytes))
                    .map_err(backend)?;
            }
            removed.is_some()
        };
        txn.commit().map_err(backend)?;
        Ok(removed)
    }
}

/// The same operations, synchronous: the backend trait's methods call these, and so can code
/// that holds a `RedbStorage` itself.
impl RedbStorage {
    pub fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        Ok(table
            .get((partition, key))
            .map_err(backend)?
            .map(|value| value.value().to_vec()))
    }

    /// Whether `key` is stored, without copying its value.
    pub fn exists(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        Ok(table.get((partition, key)).map_err(backend)?.is_some())
    }

    pub fn set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        self.put(DATA, partition, key, value, quota, None)
    }

    pub fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(DATA, partition, key)
    }

    pub fn list(
        &self,
        partition: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        let mut keys = Vec::new();
        for entry in table.range((partition, prefix)..).map_err(backend)? {
            if keys.len() >= limit {
                break;
            }
            let (stored, _) = entry.map_err(backend)?;
            let (stored_partition, stored_key) = stored.value();
            if stored_partition != partition || !stored_key.starts_with(prefix) {
                break;
            }
            keys.push(stored_key.to_string());
        }
        Ok(keys)
    }

    pub fn usage(&self, partition: &str) -> Result<u64, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(USAGE).map_err(backend)?;
        Ok(table
            .get(partition)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    pub fn cache_get(
        &self,
        partition: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(CACHE).map_err(backend)?;
        let Some(stored) = table.get((partition, key)).map_err(backend)? else {
            return Ok(None);
        };
        let stored = stored.value();
        let Some((expiry, value)) = stored.split_first_chunk::<8>() else {
            return Err(StorageError::Backend(
                "a cache entry is shorter than its header".into(),
            ));
        };
        if u64::from_le_bytes(*expiry) <= now_ms {
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    pub fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&expires_at_ms.to_le_bytes());
        stored.extend_from_slice(value);
        self.put(CACHE, partition, key, &stored, quota, Some(now_ms))
    }

    pub fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(CACHE, partition, key)
    }
}

#[async_trait::async_trait]
impl StorageBackend for RedbStorage {
    // redb answers from memory or a local file, in microseconds: the work runs inline, as every
    // other host call does, rather than on a blocking thread.
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        RedbStorage::get(self, partition, key)
    }

    async fn exists(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        RedbStorage::exists(self, partition, key)
    }

    async fn set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        RedbStorage::set(self, partition, key, value, quota)
    }

    async fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        RedbStorage::delete(self, partition, key)
    }

    async fn list(
        &self,
        partition: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        RedbStorage::list(self, partition, prefix, limit)
    }

    async fn usage(&self, partition: &str) -> Result<u64, StorageError> {
        RedbStorage::usage(self, partition)
    }

    async fn cache_get(
        &self,
        partition: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        RedbStorage::cache_get(self, partition, key, now_ms)
    }

    async fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        RedbStorage::cache_set(self, partition, key, value, expires_at_ms, quota, now_ms)
    }

    async fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        RedbStorage::cache_remove(self, partition, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_list_delete_and_usage() {
        let store = RedbStorage::in_memory().unwrap();
        store.set("p", "a/1", b"one", 1000).unwrap();
        store.set("p", "a/2", b"two", 1000).unwrap();
        store.set("p", "b", b"three", 1000).unwrap();
        store.set("q", "a/3", b"other partition", 1000).unwrap();
        assert_eq!(store.get("p", "a/1").unwrap(), Some(b"one".to_vec()));
        assert_eq!(store.get("q", "a/1").unwrap(), None);
        assert_eq!(store.list("p", "a/", 10).unwrap(), vec!["a/1", "a/2"]);
        assert_eq!(store.list("p", "", 10).unwrap(), vec!["a/1", "a/2", "b"]);
        assert_eq!(store.list("p", "", 2).unwrap(), vec!["a/1", "a/2"]);
        assert_eq!(store.usage("p").unwrap(), (3 + 3) + (3 + 3) + (1 + 5));
        assert!(store.delete("p", "a/1").unwrap());
        assert!(!store.delete("p", "a/1").unwrap());
        assert_eq!(store.usage("p").unwrap(), 6 + 6);
    }

    #[test]
    fn quota_counts_replacements_once() {
        let store = RedbStorage::in_memory().unwrap();
        store.set("p", "k", &[0; 10], 20).unwrap();
        store.set("p", "k", &[0; 19], 20).unwrap();
        assert_eq!(
            store.set("p", "k2", &[0; 1], 20),
            Err(StorageError::QuotaExceeded {
                needed: 20 + 3,
                quota: 20
            })
        );
        assert_eq!(store.get("p", "k2").unwrap(), None);
    }

    #[test]
    fn cache_entries_expire() {
        let store = RedbStorage::in_memory().unwrap();
        store.cache_set("c", "k", b"v", 1_000, 100, 0).unwrap();
        assert_eq!(store.cache_get("c", "k", 999).unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.cache_get("c", "k", 1_000).unwrap(), None);
        assert!(store.cache_remove("c", "k").unwrap());
        assert_eq!(store.usage("c").unwrap(), 0);
    }

    #[test]
    fn expired_cache_entries_stop_counting_against_the_quota() {
        let store = RedbStorage::in_memory().unwrap();
        // 10 entries of 1 + 8 + 10 bytes fill a quota of 190.
        for index in 0..10u8 {
            let key = [b'a' + index];
            let key = std::str::from_utf8(&key).unwrap();
            store.cache_set("c", key, &[0; 10], 1_000, 190, 0).unwrap();
        }
        let full = store.cache_set("c", "z", &[0; 10], 5_000, 190, 999);
        assert!(
            matches!(full, Err(StorageError::QuotaExceeded { .. })),
            "{full:?}"
        );
        // Once they have expired, the same write fits, and only what lives is counted.
        store
            .cache_set("c", "z", &[0; 10], 5_000, 190, 1_000)
            .unwrap();
        assert_eq!(store.usage("c").unwrap(), 19);
        assert_eq!(store.cache_get("c", "a", 1_000).unwrap(), None);
        assert_eq!(store.cache_get("c", "z", 1_000).unwrap(), Some(vec![0; 10]));
        // Replacing and removing keep the index: nothing is reclaimed twice.
        store
            .cache_set("c", "z", &[1; 10], 9_000, 190, 1_000)
            .unwrap();
        assert!(store.cache_remove("c", "z").unwrap());
        assert_eq!(store.usage("c").unwrap(), 0);
        store
            .cache_set("c", "y", &[0; 100], 9_000, 190, 10_000)
            .unwrap();
        assert_eq!(store.usage("c").unwrap(), 109);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        RedbStorage::open(&path)
            .unwrap()
            .set("p", "k", b"kept", 100)
            .unwrap();
        assert_eq!(
            RedbStorage::open(&path).unwrap().get("p", "k").unwrap(),
            Some(b"kept".to_vec())
        );
    }
}
