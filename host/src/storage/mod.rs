//! Storage for the storage and cache capabilities: a small backend trait, the redb backend, and
//! the scope rules every backend shares.

mod key;
mod redb_backend;

pub use key::{
    KeyError, MAX_KEY_BYTES, MAX_KEY_SEGMENTS, Scope, cache_partition, validate_key,
    validate_prefix,
};
pub use redb_backend::RedbStorage;

use crate::node::context::RunContext;
use std::sync::Arc;

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
/// Implementations keep a byte count (keys plus values) per partition and refuse a `set` that
/// would take it over `quota`.
pub trait StorageBackend: Send + Sync {
    fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    fn set(&self, partition: &str, key: &str, value: &[u8], quota: u64)
    -> Result<(), StorageError>;
    fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError>;
    /// Keys of `partition` that start with `prefix`, sorted, at most `limit`.
    fn list(
        &self,
        partition: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Bytes the partition holds.
    fn usage(&self, partition: &str) -> Result<u64, StorageError>;

    /// An execution-cache entry, if it has not expired at `now_ms`.
    fn cache_get(
        &self,
        partition: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores an execution-cache entry. Entries expired at `now_ms` stop counting against
    /// `quota`: a backend reclaims them (a bounded number per call) before it refuses a write.
    fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
        now_ms: u64,
    ) -> Result<(), StorageError>;
    fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError>;
}

/// A storage handle for embedders: scope-aware access for putting uploads or reading results.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn StorageBackend>,
}

impl Storage {
    pub fn new(backend: Arc<dyn StorageBackend>) -> Self {
        Storage { backend }
    }

    /// An in-memory store: nothing outlives the process.
    pub fn in_memory() -> Result<Self, StorageError> {
        Ok(Storage::new(Arc::new(RedbStorage::in_memory()?)))
    }

    /// A store in a redb file, created when missing.
    pub fn open(path: &std::path::Path) -> Result<Self, StorageError> {
        Ok(Storage::new(Arc::new(RedbStorage::open(path)?)))
    }

    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// Reads a key of a scope as a node of `context` would see it.
    pub fn get(
        &self,
        context: &RunContext,
        scope: Scope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ScopedError> {
        let key = validate_key(key)?;
        Ok(self.backend.get(&scope.partition(context), key)?)
    }

    /// Writes a key of any scope, the upload scope included: this is the embedder's door.
    pub fn put(
        &self,
        context: &RunContext,
        scope: Scope,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), ScopedError> {
        let key = validate_key(key)?;
        Ok(self
            .backend
            .set(&scope.partition(context), key, value, quota)?)
    }
}

/// A storage call refused for its key or failed in the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopedError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
