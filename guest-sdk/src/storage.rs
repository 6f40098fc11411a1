//! Storage in the run's scopes (features `storage-read`, `storage-write`, `storage-delete`).
//!
//! Keys are relative paths such as `settings/theme`; `..`, absolute paths, empty segments and
//! control characters are refused by the host.

#[allow(unused_imports)]
use crate::{HostError, Scope};

/// The value at `key` in `scope`, or `None`.
#[cfg(feature = "storage-read")]
pub fn get(scope: Scope, key: &str) -> Result<Option<Vec<u8>>, HostError> {
    crate::storage_read::get(scope, key)
}

/// The value at `key` as UTF-8 text (lossy), or `None`.
#[cfg(feature = "storage-read")]
pub fn get_string(scope: Scope, key: &str) -> Result<Option<String>, HostError> {
    Ok(get(scope, key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(feature = "storage-read")]
pub fn exists(scope: Scope, key: &str) -> Result<bool, HostError> {
    crate::storage_read::exists(scope, key)
}

/// Keys under `prefix` (empty for all), sorted, at most `limit`.
#[cfg(feature = "storage-read")]
pub fn list(scope: Scope, prefix: &str, limit: u32) -> Result<Vec<String>, HostError> {
    crate::storage_read::list_keys(scope, prefix, limit)
}

#[cfg(feature = "storage-write")]
pub fn set(scope: Scope, key: &str, value: &[u8]) -> Result<(), HostError> {
    crate::storage_write::set(scope, key, value)
}

/// Deletes `key`; true when it was there.
#[cfg(feature = "storage-delete")]
pub fn delete(scope: Scope, key: &str) -> Result<bool, HostError> {
    crate::storage_delete::delete(scope, key)
}
