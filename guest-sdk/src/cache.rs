//! The execution cache (features `cache-read`, `cache-write`): entries expire, and are shared
//! by the board unless `CacheScope::PER_NODE` and/or `CacheScope::PER_USER` narrow them.

#[allow(unused_imports)]
use crate::{CacheScope, HostError};

#[cfg(feature = "cache-read")]
pub fn get(key: &str, scope: CacheScope) -> Result<Option<Vec<u8>>, HostError> {
    crate::cache_read::get(key, scope)
}

/// Stores `value` for `ttl` (the host's default, an hour, when `None`).
#[cfg(feature = "cache-write")]
pub fn set(
    key: &str,
    value: &[u8],
    ttl: Option<core::time::Duration>,
    scope: CacheScope,
) -> Result<(), HostError> {
    crate::cache_write::set(key, value, ttl.map(|ttl| ttl.as_millis() as u64), scope)
}

#[cfg(feature = "cache-write")]
pub fn remove(key: &str, scope: CacheScope) -> Result<bool, HostError> {
    crate::cache_write::remove(key, scope)
}
