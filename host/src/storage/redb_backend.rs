//! The default storage backend: one embedded redb database.

use super::{StorageBackend, StorageError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("data");
const CACHE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("exec_cache");
/// Bytes (keys plus values) held per partition, for quotas.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

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
        txn.commit().map_err(backend)?;
        Ok(RedbStorage { db })
    }

    /// Inserts into `table`, keeping the partition's byte count and refusing to pass `quota`.
    fn put(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        partition: &str,
        key: &str,
        stored: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut data = txn.open_table(table).map_err(backend)?;
            let mut usage = txn.open_table(USAGE).map_err(backend)?;
            let old = data
                .get((partition, key))
                .map_err(backend)?
                .map(|value| (key.len() + value.value().len()) as u64)
                .unwrap_or(0);
            let current = usage
                .get(partition)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0);
            let needed = current.saturating_sub(old) + (key.len() + stored.len()) as u64;
            if needed > quota {
                return Err(StorageError::QuotaExceeded { needed, quota });
            }
            data.insert((partition, key), stored).map_err(backend)?;
            usage.insert(partition, needed).map_err(backend)?;
        }
        txn.commit().map_err(backend)
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
                .map(|value| (key.len() + value.value().len()) as u64);
            if let Some(bytes) = removed {
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

impl StorageBackend for RedbStorage {
    fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        Ok(table
            .get((partition, key))
            .map_err(backend)?
            .map(|value| value.value().to_vec()))
    }

    fn set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        self.put(DATA, partition, key, value, quota)
    }

    fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(DATA, partition, key)
    }

    fn list(
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

    fn usage(&self, partition: &str) -> Result<u64, StorageError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(USAGE).map_err(backend)?;
        Ok(table
            .get(partition)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn cache_get(
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

    fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
    ) -> Result<(), StorageError> {
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&expires_at_ms.to_le_bytes());
        stored.extend_from_slice(value);
        self.put(CACHE, partition, key, &stored, quota)
    }

    fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(CACHE, partition, key)
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
        store.cache_set("c", "k", b"v", 1_000, 100).unwrap();
        assert_eq!(store.cache_get("c", "k", 999).unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.cache_get("c", "k", 1_000).unwrap(), None);
        assert!(store.cache_remove("c", "k").unwrap());
        assert_eq!(store.usage("c").unwrap(), 0);
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
