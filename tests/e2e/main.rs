//! The end-to-end tests, one binary: each module is one area, and `support` builds real nodes
//! with the SDK (once per process) and runs them. One binary links Wasmtime once; tests that
//! measure the process itself (its memory, its descriptors) run alone in a child process
//! (`support::in_child`, `adversarial::measure::child`).

mod support;

mod adversarial;
mod capabilities;
mod cli;
mod code_cache;
mod daemon;
mod embedder;
mod fuzz_parsers;
mod http;
mod limits;
mod models;
mod network;
mod packages;
mod registry;
mod registry_crash;
mod soak;
mod storage;
mod toolchains;
mod wasi_http;
mod wasi_versions;
mod websocket;
