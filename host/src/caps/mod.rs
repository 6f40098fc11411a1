//! The host side of each capability family, one file each: its `Host` impls, its linking
//! function, and the narrow view of the run's state it may touch.
//!
//! A family's host functions see only their view (`storage::View` holds the storage, the run
//! context and the limits, nothing else), which the runtime's store data hands out through
//! [`Views`], as wasmtime-wasi's per-interface views do. Which interfaces a run gets is decided
//! by the capability table and the grant (`runtime::linker`); [`link`] finds the family that
//! provides an interface.

pub(crate) mod a2ui;
pub(crate) mod base;
pub(crate) mod cache;
pub mod embedder;
pub mod http;
pub mod models;
pub(crate) mod sockets;
pub(crate) mod storage;
pub(crate) mod streaming;
pub(crate) mod variables;
pub(crate) mod wasi;
pub mod websocket;

use crate::bindings::wit::HostError;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::component::Linker;

/// The narrow views of a run's state, one per capability family. The runtime's store data
/// implements it; each family's host functions get only their own view.
pub(crate) trait Views: wasmtime_wasi::WasiView + Send + 'static {
    fn base(&mut self) -> base::View<'_>;
    fn storage(&mut self) -> storage::View<'_>;
    fn variables(&mut self) -> variables::View<'_>;
    fn streaming(&mut self) -> streaming::View<'_>;
    fn a2ui(&mut self) -> a2ui::View<'_>;
    fn http(&mut self) -> http::View<'_>;
    fn embedder(&mut self) -> embedder::View<'_>;
    fn models(&mut self) -> models::View<'_>;
    fn websocket(&mut self) -> websocket::View<'_>;
    fn lookup(&mut self) -> sockets::GuardedLookup<'_>;
}

/// A family's linking function: links `interface` if the family provides it.
type Family<T> = fn(&mut Linker<T>, &str) -> wasmtime::Result<bool>;

/// Links `interface` (named without its `@version`) from the family that provides it. Returns
/// false when no family does: the linker treats that as a bug, and a test links every
/// interface the capability table and the baseline name.
pub(crate) fn link<T: Views>(linker: &mut Linker<T>, interface: &str) -> wasmtime::Result<bool> {
    let families: [Family<T>; 12] = [
        base::link,
        wasi::link,
        storage::link,
        cache::link,
        variables::link,
        streaming::link,
        a2ui::link,
        http::link,
        embedder::link,
        models::link,
        websocket::link,
        sockets::link,
    ];
    for family in families {
        if family(linker, interface)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses a value larger than the host accepts.
pub(crate) fn check_size(what: &str, size: usize, cap: usize) -> Result<(), HostError> {
    if size > cap {
        return Err(HostError::TooLarge(format!(
            "the {what} is {size} bytes; the host accepts at most {cap}"
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}
