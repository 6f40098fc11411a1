//! What a storage backend does, and how it fails: the trait every backend implements.

/// A backend failure or a refused write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error(
        "storing this would put the scope at {needed} bytes, over its quota of {quota} bytes; delete keys first"
    )]
    QuotaExceeded { needed: u64, quota: u64 },
    #[error("the storage backend failed: {0}")]
    Backend(String),
}

/// What a storage backend does. Keys arrive validated and partitioned; a backend only stores.
///
/// The methods are async because a backend may be across the network (PostgreSQL, for a
/// cluster of daemons); the host functions that call them are async imports, so a node waiting
/// on a remote store gives its thread back, as a node waiting on HTTP does.
///
/// Implementations keep a byte count (keys plus values) per partition and refuse a `set` that
/// would take it over `quota`.
#[async_trait::async_trait]
pub trait StorageBackend: Send + Sync {
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Whether `key` is stored. Backends answer without reading the value where they can: a
    /// value may be megabytes, and a node may ask often.
    async fn exists(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        Ok(self.get(partition, key).await?.is_some())
    }
    async fn set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError>;
    async fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError>;
    /// Keys of `partition` that start with `prefix`, sorted, at most `limit`.
    async fn list(
        &self,
        partition: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Bytes the partition holds.
    async fn usage(&self, partition: &str) -> Result<u64, StorageError>;

    /// An execution-cache entry, if it has not expired at `now_ms`.
    async fn cache_get(
        &self,
        partition: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores an execution-cache entry. Entries expired at `now_ms` stop counting against
    /// `quota`: a backend reclaims them (a bounded number per call) before it refuses a write.
    async fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
        now_ms: u64,
    ) -> Result<(), StorageError>;
    async fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError>;
}
