//! The `cache-read` and `cache-write` capabilities: an execution cache with expiry, in the
//! storage's cache partition of the run's board, optionally narrowed to the node or the user.

use super::common::{check_size, now_ms};
use super::storage::{StorageView, View};
use crate::bindings::warden::node::{cache_read, cache_write};
use crate::bindings::wit::{CacheScope, HostError};
use crate::storage::{cache_partition, validate_key};
use std::time::Duration;
use wasmtime::component::{HasData, Linker};

/// How long a cache entry lives when the node gives no expiry.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest expiry a node may ask for.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The cache sees what storage sees: the storage, the run context and the limits.
struct Cache;

impl HasData for Cache {
    type Data<'a> = View<'a>;
}

pub(crate) fn link<T: StorageView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/cache-read" => cache_read::add_to_linker::<T, Cache>(linker, T::storage)?,
        "warden:node/cache-write" => cache_write::add_to_linker::<T, Cache>(linker, T::storage)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl View<'_> {
    fn cache_partition(&self, scope: CacheScope) -> String {
        cache_partition(
            self.context,
            scope.contains(CacheScope::PER_NODE),
            scope.contains(CacheScope::PER_USER),
        )
    }
}

impl cache_read::Host for View<'_> {
    async fn get(&mut self, key: String, scope: CacheScope) -> Result<Option<Vec<u8>>, HostError> {
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .cache_get(&self.cache_partition(scope), key, now_ms())
            .await?)
    }
}

impl cache_write::Host for View<'_> {
    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        scope: CacheScope,
    ) -> Result<(), HostError> {
        let key = validate_key(&key)?;
        check_size("cache value", value.len(), self.limits.storage_value_bytes)?;
        let ttl = ttl_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_CACHE_TTL);
        if ttl.is_zero() || ttl > MAX_CACHE_TTL {
            return Err(HostError::Invalid(format!(
                "a cache expiry must be between 1 ms and {} days",
                MAX_CACHE_TTL.as_secs() / 86_400
            )));
        }
        let now = now_ms();
        let expires = now.saturating_add(ttl.as_millis() as u64);
        let quota = self.limits.storage_quota_bytes;
        Ok(self
            .storage
            .backend()
            .cache_set(
                &self.cache_partition(scope),
                key,
                &value,
                expires,
                quota,
                now,
            )
            .await?)
    }

    async fn remove(&mut self, key: String, scope: CacheScope) -> Result<bool, HostError> {
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .cache_remove(&self.cache_partition(scope), key)
            .await?)
    }
}
