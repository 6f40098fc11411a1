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
mod common;
pub mod embedder;
pub mod http;
pub mod models;
pub(crate) mod sockets;
pub(crate) mod storage;
pub(crate) mod streaming;
pub(crate) mod variables;
pub(crate) mod wasi;
pub(crate) mod wasi_http;
pub mod websocket;

use wasmtime::component::Linker;
use wasmtime_wasi::WasiView;

/// Every view the capability families need; the runtime's store data lends each of them (and
/// wasmtime-wasi's `WasiView` for the WASI interfaces), and says so in `runtime/store.rs`.
pub(crate) trait Views:
    base::BaseView
    + storage::StorageView
    + variables::VariablesView
    + streaming::StreamingView
    + a2ui::A2uiView
    + http::HttpView
    + embedder::EmbedderView
    + models::ModelsView
    + websocket::WebSocketView
    + sockets::LookupView
    + WasiView
    + wasmtime_wasi_http::WasiHttpView
{
}

/// A family's linking function: links `interface` if the family provides it.
type Family<T> = fn(&mut Linker<T>, &str) -> wasmtime::Result<bool>;

/// Links `interface` (named without its `@version`) from the family that provides it. Returns
/// false when no family does: the linker treats that as a bug, and a test links every
/// interface the capability table and the baseline name.
pub(crate) fn link<T: Views>(linker: &mut Linker<T>, interface: &str) -> wasmtime::Result<bool> {
    let families: [Family<T>; 13] = [
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
        wasi_http::link,
    ];
    for family in families {
        if family(linker, interface)? {
            return Ok(true);
        }
    }
    Ok(false)
}
