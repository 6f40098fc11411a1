//! warden's host runtime: runs workflow nodes, WebAssembly components, in Wasmtime sandboxes
//! that hold only the capabilities granted to them, under enforced resource limits.
//!
//! ```no_run
//! # async fn example(bytes: Vec<u8>) -> Result<(), warden_host::Error> {
//! use warden_host::{Capabilities, NodeComponent, RunRequest, Runtime, WasmSecurityConfig};
//! let runtime = Runtime::new()?;
//! let node = NodeComponent::from_bytes(bytes)?;
//! let config = WasmSecurityConfig { capabilities: Capabilities::STORAGE_ALL, ..Default::default() };
//! let prepared = runtime.prepare(&node, &config).await?; // refuses ungranted imports
//! let outcome = prepared.run(RunRequest::default()).await?;
//! # Ok(()) }
//! ```

pub mod allowlist;
mod bindings;
pub mod capability;
pub mod component;
pub mod config;
pub mod context;
mod delivery;
pub mod embedder;
pub mod error;
mod files_quota;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod http;
mod limiter;
pub mod limits;
mod linker;
pub mod log;
pub mod models;
mod network;
pub mod node_info;
pub mod preflight;
mod runtime;
mod state;
pub mod storage;
pub mod value;
mod wasi;
pub mod websocket;

pub use capability::{CAPABILITIES, Capabilities, CapabilityInfo};
pub use config::WasmSecurityConfig;
pub use context::RunContext;
pub use delivery::{CallbackFailed, StreamSink};
pub use error::Error;
pub use limiter::LimitExceeded;
pub use limits::{HostLimits, LimitKind, Limits, Preset};
pub use node_info::{DataType, Direction, NodeInfo, Pin};
pub use runtime::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_CONNECTIONS, EPOCH_TICK, MAX_CONCURRENCY, NodeComponent,
    PreparedNode, RunOutcome, RunRequest, Runtime, RuntimeSettings, WarningSink,
    pool_reservation_bytes,
};
pub use storage::{Scope, Storage};
pub use value::{Field, Value};
