//! Attacks on the sandbox's promises, one module per class, by hostile components written by
//! hand in WAT against the project's WIT (not built with the SDK), except where the attack
//! needs WASI from Rust's standard library (a node filling its directory, sockets), which use
//! SDK test nodes. Each test asserts a measured bound: time past the deadline, bytes kept, peak
//! memory, connections refused.

pub(crate) mod hostile;
mod measure;

mod files;
mod host_calls;
mod memory;
mod network;
mod output;
mod reuse;
mod websocket;
