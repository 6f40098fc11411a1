//! The `storage-read`, `storage-write` and `storage-delete` capabilities: keys in the run's
//! storage scopes (board, node, user, upload, cache), each scope a partition the run context
//! names, so a node reaches only its own board's, node's and user's data. The upload scope is
//! read-only for nodes: only the host puts files there.

use super::common::check_size;
use crate::bindings::warden::node::{storage_delete, storage_read, storage_write};
use crate::bindings::wit::{HostError, Scope as WitScope};
use crate::node::context::RunContext;
use crate::policy::limits::HostLimits;
use crate::storage::{KeyError, Scope, Storage, StorageError, validate_key, validate_prefix};
use wasmtime::component::{HasData, Linker};

/// The most keys one `list` returns.
pub const MAX_LIST: u32 = 10_000;

/// What the storage (and cache) host functions may touch: the storage, the run context that
/// names the partitions, and the size limits.
pub(crate) struct View<'a> {
    pub storage: &'a Storage,
    pub context: &'a RunContext,
    pub limits: &'a HostLimits,
}

struct StorageFamily;

impl HasData for StorageFamily {
    type Data<'a> = View<'a>;
}

/// What the store data lends the storage host functions: their view, and nothing else.
pub(crate) trait StorageView: Send + 'static {
    fn storage(&mut self) -> View<'_>;
}

pub(crate) fn link<T: StorageView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/storage-read" => {
            storage_read::add_to_linker::<T, StorageFamily>(linker, T::storage)?
        }
        "warden:node/storage-write" => {
            storage_write::add_to_linker::<T, StorageFamily>(linker, T::storage)?
        }
        "warden:node/storage-delete" => {
            storage_delete::add_to_linker::<T, StorageFamily>(linker, T::storage)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn scope(scope: WitScope) -> Scope {
    match scope {
        WitScope::Board => Scope::Board,
        WitScope::Node => Scope::Node,
        WitScope::User => Scope::User,
        WitScope::Upload => Scope::Upload,
        WitScope::Cache => Scope::Cache,
    }
}

impl From<KeyError> for HostError {
    fn from(error: KeyError) -> Self {
        HostError::Invalid(error.to_string())
    }
}

impl From<StorageError> for HostError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::QuotaExceeded { .. } => HostError::QuotaExceeded(error.to_string()),
            StorageError::Backend(_) => HostError::Unavailable(error.to_string()),
        }
    }
}

fn writable(scope: Scope) -> Result<(), HostError> {
    if scope.writable_by_nodes() {
        Ok(())
    } else {
        Err(HostError::Denied(format!(
            "the {} scope is read-only for nodes; only the host puts files there",
            scope.name()
        )))
    }
}

impl storage_read::Host for View<'_> {
    async fn get(&mut self, scope_: WitScope, key: String) -> Result<Option<Vec<u8>>, HostError> {
        let scope = scope(scope_);
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .get(&scope.partition(self.context), key)
            .await?)
    }

    async fn exists(&mut self, scope_: WitScope, key: String) -> Result<bool, HostError> {
        let scope = scope(scope_);
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .exists(&scope.partition(self.context), key)
            .await?)
    }

    async fn list_keys(
        &mut self,
        scope_: WitScope,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, HostError> {
        let scope = scope(scope_);
        let prefix = validate_prefix(&prefix)?;
        let limit = limit.min(MAX_LIST) as usize;
        Ok(self
            .storage
            .backend()
            .list(&scope.partition(self.context), &prefix, limit)
            .await?)
    }
}

impl storage_write::Host for View<'_> {
    async fn set(
        &mut self,
        scope_: WitScope,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), HostError> {
        let scope = scope(scope_);
        writable(scope)?;
        let key = validate_key(&key)?;
        check_size("value", value.len(), self.limits.storage_value_bytes)?;
        let quota = self.limits.storage_quota_bytes;
        Ok(self
            .storage
            .backend()
            .set(&scope.partition(self.context), key, &value, quota)
            .await?)
    }
}

impl storage_delete::Host for View<'_> {
    async fn delete(&mut self, scope_: WitScope, key: String) -> Result<bool, HostError> {
        let scope = scope(scope_);
        writable(scope)?;
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .delete(&scope.partition(self.context), key)
            .await?)
    }
}
