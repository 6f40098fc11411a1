//! Storage for the storage and cache capabilities: a small backend trait, the redb backend, and
//! the scope rules every backend shares.

mod backend;
mod key;
mod redb_backend;

pub use backend::{StorageBackend, StorageError};
pub use key::{
    KeyError, MAX_KEY_BYTES, MAX_KEY_SEGMENTS, Scope, cache_partition, validate_key,
    validate_prefix,
};
pub use redb_backend::RedbStorage;

use crate::node::context::RunContext;
use std::sync::Arc;

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
    pub async fn get(
        &self,
        context: &RunContext,
        scope: Scope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ScopedError> {
        let key = validate_key(key)?;
        Ok(self.backend.get(&scope.partition(context), key).await?)
    }

    /// Writes a key of any scope, the upload scope included: this is the embedder's door.
    pub async fn put(
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
            .set(&scope.partition(context), key, value, quota)
            .await?)
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
