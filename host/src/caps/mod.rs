//! The host side of each capability family, one file each: its `Host` impls, its linking
//! function, and the narrow view of the run's state it may touch.

pub mod embedder;
pub mod http;
pub mod models;
pub(crate) mod wasi;
pub mod websocket;
