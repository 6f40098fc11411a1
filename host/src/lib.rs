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

// The layers, from the pure policy up to the runtime; docs/ARCHITECTURE.md is their map.
mod bindings;
mod caps;
pub mod error;
#[doc(hidden)]
pub mod fuzz_targets;
mod net;
mod node;
mod output;
mod policy;
mod runtime;
pub mod storage;

// The public modules under the names the crate has always used, whatever layer holds them.
pub use caps::{embedder, http, models, websocket};
pub use net::tls;
pub use node::{component, context, info as node_info, pins, value};
pub use output::log;
pub use policy::{allowlist, capability, config, limits, preflight, units};

pub use capability::{CAPABILITIES, Capabilities, CapabilityInfo};
pub use config::WasmSecurityConfig;
pub use context::RunContext;
pub use error::Error;
pub use limits::{HostLimits, LimitKind, Limits, Preset};
pub use node_info::{Direction, NodeInfo, Pin};
pub use output::delivery::{CallbackFailed, StreamSink};
pub use runtime::code_cache::{CodeCache, CodeCacheError, CodeCacheStats};
pub use runtime::limiter::LimitExceeded;
pub use runtime::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_CONNECTIONS, EPOCH_TICK, MAX_CONCURRENCY, NodeComponent,
    PreparedNode, RunOutcome, RunReport, RunRequest, Runtime, RuntimeConfig, WarningSink,
    pool_reservation_bytes,
};
pub use storage::{Scope, Storage};
pub use value::{DataType, Field, Value};
