//! The runtime: engines with an epoch ticker they own, compile-once caches, and runs.

pub mod code_cache;
pub(crate) mod files_quota;
pub(crate) mod limiter;
pub(crate) mod linker;
pub(crate) mod store;
pub(crate) mod stubs;

use crate::bindings::{NodeHostPre, wit};
use crate::caps::embedder::{Credentials, Functions};
use crate::caps::models::ModelProvider;
use crate::caps::variables::Variables;
use crate::caps::websocket::Connections;
use crate::caps::{wasi, wasi_http};
use crate::error::Error;
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::node::component::{self, ComponentSummary};
use crate::node::context::RunContext;
use crate::node::info::NodeInfo;
use crate::node::pins::check_inputs;
use crate::node::value::{Field, Value};
use crate::output::delivery::{CallbackFailed, Delivery, Sinks, StreamSink, UiSink};
use crate::output::log::{LogRecord, LogSink, RunLog, Source, one_line};
use crate::policy::allowlist::AllowedHosts;
use crate::policy::capability::Capabilities;
use crate::policy::config::WasmSecurityConfig;
use crate::policy::limits::{LimitKind, Limits};
use crate::policy::preflight;
use crate::runtime::code_cache::CodeCache;
use crate::runtime::limiter::{LimitExceeded, Limiter};
use crate::runtime::store::StoreData;
use crate::storage::{Storage, StorageError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    Store, Trap, UpdateDeadline, WasmBacktrace,
};

/// The most bytes of an error a node returns that the host keeps (the rest is cut, marked `…`).
pub const MAX_NODE_ERROR_BYTES: usize = 4096;

/// Nodes one runtime runs at once by default.
pub const DEFAULT_CONCURRENCY: u32 = 64;

/// The most runs one runtime may be sized for (`RuntimeConfig::concurrency` is clamped to it).
pub const MAX_CONCURRENCY: u32 = 4096;

/// Bytes of guard region Wasmtime places after each pooled linear memory (its 64-bit default).
const MEMORY_GUARD_BYTES: u64 = 32 * 1024 * 1024;
const WASM_PAGE: u64 = 64 * 1024;

/// What a warning of the runtime is handed to: one line, without a trailing newline.
pub type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The largest limits each field of `limits` may reach in a pool: the permissive preset.
fn clamp_to_ceiling(limits: &Limits) -> Limits {
    let ceiling = Limits::permissive();
    Limits {
        memory_bytes: limits.memory_bytes.clamp(WASM_PAGE, ceiling.memory_bytes),
        max_tables: limits.max_tables.min(ceiling.max_tables),
        max_table_elements: limits.max_table_elements.min(ceiling.max_table_elements),
        max_memories: limits.max_memories.min(ceiling.max_memories),
        max_instances: limits.max_instances.min(ceiling.max_instances),
        ..limits.clone()
    }
}

/// Whether a run under `limits` fits in slots sized for `pool`.
fn fits_pool(limits: &Limits, pool: &Limits) -> bool {
    limits.memory_bytes <= pool.memory_bytes
        && limits.max_memories <= pool.max_memories
        && limits.max_tables <= pool.max_tables
        && limits.max_instances <= pool.max_instances
        && limits.max_table_elements <= pool.max_table_elements
}

/// The bytes each pooled linear memory slot may grow to: the pool's memory limit, in whole
/// wasm pages (every memory of a run together stays under the run's limit, so one memory can
/// never need more).
fn memory_slot_bytes(pool: &Limits) -> u64 {
    pool.memory_bytes.div_ceil(WASM_PAGE).max(1) * WASM_PAGE
}

/// Instances, memories, tables and fiber stacks come from pools sized for `concurrency` runs
/// under `pool` (every count is per run times the runs, so `concurrency` runs always fit).
/// The per-run limits are still enforced by the store's limiter; the pool bounds are the
/// ceiling above them.
fn pooling(concurrency: u32, pool: &Limits) -> PoolingAllocationConfig {
    let mut config = PoolingAllocationConfig::new();
    config
        .total_component_instances(concurrency)
        .total_core_instances(concurrency.saturating_mul(pool.max_instances.max(1)))
        .total_memories(concurrency.saturating_mul(pool.max_memories))
        .total_tables(concurrency.saturating_mul(pool.max_tables))
        .total_stacks(concurrency)
        .max_core_instances_per_component(pool.max_instances)
        .max_memories_per_component(pool.max_memories)
        .max_tables_per_component(pool.max_tables)
        // One core module may define every memory and table the run is allowed.
        .max_memories_per_module(pool.max_memories)
        .max_tables_per_module(pool.max_tables)
        .table_elements(pool.max_table_elements)
        .max_memory_size(memory_slot_bytes(pool) as usize);
    // Slots are reset for their next run with `madvise`, which costs a TLB shootdown per run
    // on a multi-threaded host. Wasmtime's in-place reset (`pagemap_scan` with
    // `*_keep_resident`) avoids that and doubled the runs per second here, but in Wasmtime 48
    // it neither resets nor releases a written page that is swapped out or migrating during the
    // scan, so the slot's next run, perhaps another tenant's, would read it (and a stale table
    // entry would point into a freed instance): bytecodealliance/wasmtime#14357. Off until
    // that is fixed. Resetting finished runs' slots in batches (`decommit_batch_size`, one
    // `process_madvise` for many) was measured too and is off as well: waiting slots keep
    // everything their runs wrote (up to 31 memories per queue shard, each up to
    // `memory_bytes`), and while another thread resets a batch its slots are neither free nor
    // queued, so a run within the concurrency could be refused as busy.
    config
}

/// Bytes of address space a pool for `concurrency` runs under `pool` reserves, roughly: the
/// memory slots with their guards, the tables and the fiber stacks.
pub fn pool_reservation_bytes(concurrency: u32, pool: &Limits) -> u64 {
    let concurrency = u64::from(concurrency);
    let memories = concurrency * u64::from(pool.max_memories);
    let tables = concurrency * u64::from(pool.max_tables);
    let stack = pool.wasm_stack_bytes as u64 + 2 * 1024 * 1024 + 4096;
    memories * (memory_slot_bytes(pool) + MEMORY_GUARD_BYTES)
        + tables * (pool.max_table_elements as u64 * 16)
        + concurrency * stack
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// An engine of the runtime: one per wasm stack size (Wasmtime sets the stack limit per
/// engine), pooled or allocating on demand.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct EngineKey {
    stack: usize,
    pooled: bool,
}

/// How often the epoch ticker advances every engine's epoch: the timeout's resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How a runtime is set up. `RuntimeConfig::new(storage)` gives the defaults.
#[derive(Clone)]
pub struct RuntimeConfig {
    pub storage: Storage,
    /// Nodes run at once (describing a component counts as a run); a run beyond that fails
    /// with [`Error::Busy`]. At most [`MAX_CONCURRENCY`].
    pub concurrency: u32,
    /// The largest limits the sandbox pool is sized for: `concurrency` runs under these always
    /// find a slot. A run whose limits exceed them (more memory, memories, tables, instances
    /// or table elements) runs on an engine that maps its memories on demand instead. The
    /// default preset by default; the pool reserves address space (see
    /// [`pool_reservation_bytes`]), so size it for what will actually run.
    pub pool_limits: Limits,
    /// Where the runtime's warnings go (one line each): `tracing::warn!` when `None`.
    pub on_warning: Option<WarningSink>,
    /// Certificates (DER) the HTTP clients trust beside Mozilla's roots: an operator's CA.
    pub root_certificates: Vec<Vec<u8>>,
    /// Where node instances' private directories (`allow_wasi`) live; a temporary directory,
    /// removed with the runtime, when `None`.
    pub files_dir: Option<PathBuf>,
    /// The provider behind the `models` capability, chosen by the operator.
    pub models: Option<ModelProvider>,
    /// WebSocket connections all runs together may hold open (each run also has its own cap,
    /// `HostLimits::connections`): what the runtime may spend of the process's descriptors.
    pub max_connections: usize,
    /// Compiled code kept on disk between processes ([`CodeCache::open`]); compiled again in
    /// every process when `None`.
    pub code_cache: Option<Arc<CodeCache>>,
}

/// WebSocket connections all runs of a runtime may hold open by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl RuntimeConfig {
    pub fn new(storage: Storage) -> Self {
        RuntimeConfig {
            storage,
            concurrency: DEFAULT_CONCURRENCY,
            pool_limits: Limits::default_preset(),
            on_warning: None,
            root_certificates: Vec::new(),
            files_dir: None,
            models: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            code_cache: None,
        }
    }
}

/// The directory under which each node instance gets its own private directory.
struct FilesRoot {
    configured: Option<PathBuf>,
    temporary: OnceLock<Result<tempfile::TempDir, String>>,
}

impl FilesRoot {
    fn new(configured: Option<PathBuf>) -> Arc<Self> {
        Arc::new(FilesRoot {
            configured,
            temporary: OnceLock::new(),
        })
    }

    /// The private directory of one node instance, created on first use. Its name is a hash
    /// of the ids, so no id can name a path outside the root.
    fn node_dir(&self, context: &RunContext) -> Result<PathBuf, Error> {
        let root = match &self.configured {
            Some(root) => root.clone(),
            None => match self
                .temporary
                .get_or_init(|| tempfile::tempdir().map_err(|error| error.to_string()))
            {
                Ok(dir) => dir.path().to_path_buf(),
                Err(error) => {
                    return Err(Error::Storage(StorageError::Backend(format!(
                        "cannot create a directory for node files: {error}"
                    ))));
                }
            },
        };
        let key = format!(
            "{}\0{}\0{}",
            context.app_id, context.board_id, context.node_instance_id
        );
        let name: String = Sha256::digest(key.as_bytes())
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|error| {
            Error::Storage(StorageError::Backend(format!(
                "cannot create {}: {error}",
                dir.display()
            )))
        })?;
        Ok(dir)
    }
}

/// The embedder's handle: create one per process and share it (clones are cheap).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// One engine per wasm stack size (Wasmtime sets the stack limit per engine), pooled or not.
    engines: Arc<Mutex<HashMap<EngineKey, Engine>>>,
    components: Mutex<HashMap<(String, EngineKey), Component>>,
    prepared: Mutex<HashMap<PreparedKey, PreparedNode>>,
    described: Mutex<HashMap<(String, usize), Vec<NodeInfo>>>,
    storage: Storage,
    concurrency: u32,
    /// Runs (and descriptions) in flight, shared by every engine.
    running: Arc<AtomicU32>,
    pool_limits: Limits,
    /// Set when the pool could not be reserved: every engine then allocates on demand.
    pool_failed: AtomicBool,
    warn: WarningSink,
    tls: TlsRoots,
    files: Arc<FilesRoot>,
    models: Option<Arc<ModelProvider>>,
    connections: Connections,
    max_connections: usize,
    code_cache: Option<Arc<CodeCache>>,
    // Held for its Drop: the ticker stops with the runtime.
    _ticker: Ticker,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PreparedKey {
    sha256: String,
    engine: EngineKey,
    granted: u32,
    allow_wasi: bool,
    allow_wasi_network: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A node component read from bytes and checked to be a node; not compiled yet.
#[derive(Clone, Debug)]
pub struct NodeComponent {
    bytes: Arc<[u8]>,
    summary: ComponentSummary,
}

impl NodeComponent {
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        let summary = component::summarize(&bytes)?;
        Ok(NodeComponent { bytes, summary })
    }

    pub fn summary(&self) -> &ComponentSummary {
        &self.summary
    }

    /// The capabilities the component's imports require.
    pub fn required_capabilities(&self) -> Capabilities {
        preflight::required_capabilities(&self.summary.imports)
    }
}

/// What one run is given.
#[derive(Clone, Default)]
pub struct RunRequest {
    /// The node to run; may be left out when the component provides one node.
    pub node: Option<String>,
    pub context: RunContext,
    pub inputs: Vec<Field>,
    pub variables: BTreeMap<String, Value>,
    pub on_log: Option<LogSink>,
    pub on_stream: Option<StreamSink>,
    /// Called with each UI document the node renders (`a2ui`).
    pub on_ui: Option<UiSink>,
    /// Host functions the node may call (`functions`).
    pub functions: Option<Arc<Functions>>,
    /// Tokens the node may ask for (`oauth`, `token`).
    pub credentials: Option<Arc<Credentials>>,
}

/// What a run used and met, whatever its outcome.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The node that ran, once the request named one the component provides.
    pub node: Option<String>,
    /// Fuel the run burned (metered even when the run has no fuel limit); `None` when the run
    /// never started.
    pub fuel_consumed: Option<u64>,
    /// The most linear memory the run's instances held at once.
    pub memory_peak_bytes: u64,
    pub duration: Duration,
    /// What the host refused the node (the first [`crate::log::MAX_DENIALS`]), and how many
    /// refusals there were in all.
    pub denials: Vec<crate::log::Denial>,
    pub denied: u64,
}

/// What a successful run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub node: String,
    pub outputs: Vec<Field>,
    /// The run's variables after the run (changed by `variables-write`).
    pub variables: BTreeMap<String, Value>,
    pub log: Vec<LogRecord>,
    pub log_dropped_bytes: usize,
    pub fuel_consumed: Option<u64>,
    pub duration: Duration,
}

impl Runtime {
    /// A runtime whose storage lives in memory.
    pub fn new() -> Result<Self, Error> {
        Ok(Self::with_storage(Storage::in_memory()?))
    }

    pub fn with_storage(storage: Storage) -> Self {
        Self::from_config(RuntimeConfig::new(storage))
    }

    /// A runtime that runs at most `concurrency` nodes at once; a run beyond that fails with
    /// [`Error::Busy`] rather than waiting.
    pub fn with_options(storage: Storage, concurrency: u32) -> Self {
        Self::from_config(RuntimeConfig {
            concurrency,
            ..RuntimeConfig::new(storage)
        })
    }

    pub fn from_config(config: RuntimeConfig) -> Self {
        let RuntimeConfig {
            storage,
            concurrency,
            pool_limits,
            on_warning,
            root_certificates,
            files_dir,
            models,
            max_connections,
            code_cache,
        } = config;
        let concurrency = concurrency.clamp(1, MAX_CONCURRENCY);
        let warn = on_warning.unwrap_or_else(|| {
            Arc::new(|message: &str| tracing::warn!("{message}")) as WarningSink
        });
        let engines = Arc::new(Mutex::new(HashMap::new()));
        let ticker = Ticker::start(engines.clone());
        Runtime {
            inner: Arc::new(Inner {
                engines,
                components: Mutex::new(HashMap::new()),
                prepared: Mutex::new(HashMap::new()),
                described: Mutex::new(HashMap::new()),
                storage,
                concurrency,
                running: Arc::new(AtomicU32::new(0)),
                pool_limits: clamp_to_ceiling(&pool_limits),
                pool_failed: AtomicBool::new(false),
                warn,
                tls: TlsRoots::new(root_certificates),
                files: FilesRoot::new(files_dir),
                models: models.map(Arc::new),
                connections: Connections::default(),
                max_connections,
                code_cache,
                _ticker: ticker,
            }),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// Runs (and descriptions) in flight now.
    pub fn running(&self) -> u32 {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// The engine for runs under `limits`: the pooled one when they fit the pool and the pool
    /// could be reserved, else one that maps memories on demand.
    fn engine(&self, limits: &Limits) -> Result<(Engine, EngineKey), Error> {
        let stack = limits.wasm_stack_bytes;
        let pooled = fits_pool(limits, &self.inner.pool_limits)
            && !self.inner.pool_failed.load(Ordering::SeqCst);
        let key = EngineKey { stack, pooled };
        let mut engines = lock(&self.inner.engines);
        if let Some(engine) = engines.get(&key) {
            return Ok((engine.clone(), key));
        }
        if pooled {
            let pool = &self.inner.pool_limits;
            let mut config = base_config(stack);
            config
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(
                    self.inner.concurrency,
                    pool,
                )))
                .memory_reservation(memory_slot_bytes(pool))
                .memory_guard_size(MEMORY_GUARD_BYTES);
            match Engine::new(&config) {
                Ok(engine) => {
                    engines.insert(key, engine.clone());
                    return Ok((engine, key));
                }
                Err(error) => {
                    // Address space is limited (`ulimit -v`, a container): run without the
                    // pool rather than not at all, and say so once.
                    if !self.inner.pool_failed.swap(true, Ordering::SeqCst) {
                        (self.inner.warn)(&format!(
                            "cannot reserve the sandbox pool ({} of address space for {} runs): \
                             {}; sandboxes are allocated on demand instead \
                             (raise `ulimit -v`, or lower the concurrency or the pool limits)",
                            gib(pool_reservation_bytes(self.inner.concurrency, pool)),
                            self.inner.concurrency,
                            error_chain(&error),
                        ));
                    }
                }
            }
        }
        let key = EngineKey {
            stack,
            pooled: false,
        };
        if let Some(engine) = engines.get(&key) {
            return Ok((engine.clone(), key));
        }
        let mut config = base_config(stack);
        // Small reservations: a memory is mapped at its size plus room to grow, and moved when
        // it outgrows that, so runs fit where address space is limited.
        config
            .allocation_strategy(InstanceAllocationStrategy::OnDemand)
            .memory_reservation(0)
            .memory_reservation_for_growth(16 * 1024 * 1024)
            .memory_guard_size(64 * 1024);
        let engine =
            Engine::new(&config).map_err(|error| Error::Unavailable(error_chain(&error)))?;
        engines.insert(key, engine.clone());
        Ok((engine, key))
    }

    /// Compiles `node` for the engine of `limits` (cached), and checks the memories and tables
    /// Wasmtime's flattened component really creates against `limits`.
    fn compile(&self, node: &NodeComponent, limits: &Limits) -> Result<(Engine, Component), Error> {
        let (engine, engine_key) = self.engine(limits)?;
        let key = (node.summary.sha256.clone(), engine_key);
        let cached = lock(&self.inner.components).get(&key).cloned();
        let component = match cached {
            Some(component) => component,
            None => {
                let component = self.compile_or_load(&engine, node)?;
                lock(&self.inner.components).insert(key, component.clone());
                component
            }
        };
        // Exact counts, over nested components and repeated instantiation; `None` when the
        // component instantiates a module it imports, which no host provides.
        if let Some(required) = component.resources_required() {
            let counts = [
                (
                    LimitKind::Memories,
                    required.num_memories,
                    limits.max_memories,
                ),
                (LimitKind::Tables, required.num_tables, limits.max_tables),
            ];
            for (kind, needed, allowed) in counts {
                if needed > allowed {
                    return Err(Error::Limit {
                        kind,
                        detail: format!("the component creates {needed}, the limit is {allowed}"),
                    });
                }
            }
        }
        Ok((engine, component))
    }

    /// The component from the code cache when a verified entry is there; compiled (and stored
    /// in the cache) otherwise.
    fn compile_or_load(&self, engine: &Engine, node: &NodeComponent) -> Result<Component, Error> {
        let sha256 = &node.summary.sha256;
        let warn = |message: &str| (self.inner.warn)(message);
        let cache = self.inner.code_cache.as_deref();
        if let Some(component) = cache.and_then(|cache| cache.load(engine, sha256, &warn)) {
            return Ok(component);
        }
        let component =
            Component::new(engine, &node.bytes).map_err(|error| compile_error(&error))?;
        if let Some(cache) = cache {
            cache.store(engine, sha256, &component, &warn);
        }
        Ok(component)
    }

    /// Preflight, compile and link a node for `config`: refuses it unless every import is
    /// granted. The result is cached per (component, grant), so preparing again is free.
    pub async fn prepare(
        &self,
        node: &NodeComponent,
        config: &WasmSecurityConfig,
    ) -> Result<PreparedNode, Error> {
        config.limits.validate().map_err(Error::InvalidLimits)?;
        check_counts(&node.summary, &config.limits)?;
        // Before compiling: refusing an 18 MB Python node must not cost its compilation.
        preflight::check(&node.summary.imports, config)?;
        let (engine, component) = self.compile(node, &config.limits)?;
        let key = PreparedKey {
            sha256: node.summary.sha256.clone(),
            engine: self.engine(&config.limits)?.1,
            granted: config.capabilities.bits(),
            allow_wasi: config.allow_wasi,
            allow_wasi_network: config.allow_wasi_network,
        };
        if let Some(prepared) = lock(&self.inner.prepared).get(&key) {
            return Ok(prepared.with_config(config));
        }
        let nodes = self.describe(node, &config.limits).await?;
        // Link what the grant allows, not what the node asked for: the preflight decided, and
        // the linker is the second wall, holding nothing beyond the grant.
        let linker = linker::build(&engine, config.capabilities).map_err(Error::internal)?;
        let prepared = self.sandbox(&linker, &component, config, nodes)?;
        lock(&self.inner.prepared).insert(key, prepared.clone());
        Ok(prepared)
    }

    /// The nodes a component describes, without granting it anything: every capability
    /// import is linked to a function that refuses (`runtime::stubs`), and the ambient WASI
    /// is served denied as in a run without a grant, so `describe` can never use a capability.
    /// Cached per component.
    pub async fn describe(
        &self,
        node: &NodeComponent,
        limits: &Limits,
    ) -> Result<Vec<NodeInfo>, Error> {
        limits.validate().map_err(Error::InvalidLimits)?;
        let key = (node.summary.sha256.clone(), limits.wasm_stack_bytes);
        if let Some(nodes) = lock(&self.inner.described).get(&key) {
            return Ok(nodes.clone());
        }
        check_counts(&node.summary, limits)?;
        let (engine, component) = self.compile(node, limits)?;
        let nothing = WasmSecurityConfig {
            limits: limits.clone(),
            capabilities: Capabilities::empty(),
            ..Default::default()
        };
        // What a run without a grant links (the baseline, and the ambient WASI served
        // denied), and refusing stand-ins for the rest: the types are the real ones.
        let mut linker = linker::build(&engine, Capabilities::empty()).map_err(Error::internal)?;
        stubs::stub_unserved(&mut linker, &component, &engine).map_err(|error| {
            match error.downcast_ref::<stubs::TooManyResources>() {
                Some(too_many) => {
                    Error::Component(component::ComponentError::Malformed(too_many.to_string()))
                }
                None => Error::internal(error),
            }
        })?;
        let nodes = self
            .sandbox(&linker, &component, &nothing, Vec::new())?
            .describe()
            .await?;
        lock(&self.inner.described).insert(key, nodes.clone());
        Ok(nodes)
    }

    fn sandbox(
        &self,
        linker: &Linker<StoreData>,
        component: &Component,
        config: &WasmSecurityConfig,
        nodes: Vec<NodeInfo>,
    ) -> Result<PreparedNode, Error> {
        // The preflight refused every ungranted import, so what fails here is a component
        // whose imports or `node` export do not have the types the WIT gives them.
        let mismatch = |error: wasmtime::Error| {
            Error::Component(component::ComponentError::Malformed(format!(
                "it does not match warden's WIT: {}",
                error_chain(&error)
            )))
        };
        let pre = linker.instantiate_pre(component).map_err(mismatch)?;
        let pre = NodeHostPre::new(pre).map_err(mismatch)?;
        let run_export = run_export(component).ok_or_else(|| {
            mismatch(wasmtime::Error::msg(
                "it exports no `run` in warden:node/node@0.1.0",
            ))
        })?;
        Ok(PreparedNode {
            inner: Arc::new(PreparedInner {
                pre,
                run_export,
                storage: self.inner.storage.clone(),
                tls: self.inner.tls.clone(),
                files: self.inner.files.clone(),
                models: self.inner.models.clone(),
                running: self.inner.running.clone(),
                concurrency: self.inner.concurrency,
                connections: self.inner.connections.clone(),
                max_connections: self.inner.max_connections,
                nodes,
            }),
            limits: config.limits.clone(),
            capabilities: config.capabilities,
            allowed_hosts: config.allowed_hosts.clone(),
            allow_wasi: config.allow_wasi,
            allow_wasi_network: config.allow_wasi_network,
        })
    }
}

/// Refuses a component that would create more instances, memories or tables than allowed,
/// before instantiating it (Wasmtime's own count errors do not say which count).
fn check_counts(summary: &ComponentSummary, limits: &Limits) -> Result<(), Error> {
    let counts = [
        (
            LimitKind::Instances,
            summary.core_instances,
            limits.max_instances,
        ),
        (LimitKind::Memories, summary.memories, limits.max_memories),
        (LimitKind::Tables, summary.tables, limits.max_tables),
    ];
    for (kind, needed, allowed) in counts {
        if needed > allowed {
            return Err(Error::Limit {
                kind,
                detail: format!("the component creates {needed}, the limit is {allowed}"),
            });
        }
    }
    Ok(())
}

/// A node ready to run: compiled, linked for one grant, with its node descriptions.
#[derive(Clone)]
pub struct PreparedNode {
    inner: Arc<PreparedInner>,
    limits: Limits,
    capabilities: Capabilities,
    allowed_hosts: AllowedHosts,
    allow_wasi: bool,
    /// wasi:sockets does something (for the granted network capabilities) only with this.
    allow_wasi_network: bool,
}

struct PreparedInner {
    pre: NodeHostPre<StoreData>,
    /// The node's `run`, found once: a run looks up and type-checks only it, where the
    /// bindings' `instantiate_async` checks every export (`describe`'s nested records too).
    run_export: ComponentExportIndex,
    storage: Storage,
    tls: TlsRoots,
    files: Arc<FilesRoot>,
    models: Option<Arc<ModelProvider>>,
    running: Arc<AtomicU32>,
    concurrency: u32,
    connections: Connections,
    max_connections: usize,
    nodes: Vec<NodeInfo>,
}

/// `run`'s parameters and results, as the bindings type them.
type RunParams<'a> = (&'a str, &'a wit::RunContext, &'a [wit::Field]);
type RunResults = (Result<Vec<wit::Field>, String>,);

/// Where `component` exports `run` of warden:node/node@0.1.0.
fn run_export(component: &Component) -> Option<ComponentExportIndex> {
    let (_, interface) = component.get_export(None, "warden:node/node@0.1.0")?;
    let (_, run) = component.get_export(Some(&interface), "run")?;
    Some(run)
}

/// One run's claim on the runtime's concurrency; released when dropped.
struct RunSlot(Arc<AtomicU32>);

impl RunSlot {
    fn claim(running: &Arc<AtomicU32>, concurrency: u32) -> Result<Self, Error> {
        running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                (now < concurrency).then_some(now + 1)
            })
            .map_err(|_| {
                Error::Busy(format!(
                    "all {concurrency} runs of the runtime are in progress"
                ))
            })?;
        Ok(RunSlot(running.clone()))
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PreparedNode {
    /// The nodes the component provides.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.inner.nodes
    }

    /// The same compiled and linked node under another config's limits and allowlist (the
    /// grant is part of the cache key, so it is the same).
    fn with_config(&self, config: &WasmSecurityConfig) -> Self {
        PreparedNode {
            inner: self.inner.clone(),
            limits: config.limits.clone(),
            capabilities: config.capabilities,
            allowed_hosts: config.allowed_hosts.clone(),
            allow_wasi: config.allow_wasi,
            allow_wasi_network: config.allow_wasi_network,
        }
    }

    /// The network capabilities wasi:sockets serves: the granted ones, with the network switch.
    fn wasi_sockets(&self) -> Capabilities {
        match self.allow_wasi_network {
            true => self.capabilities & (Capabilities::TCP | Capabilities::UDP | Capabilities::DNS),
            false => Capabilities::empty(),
        }
    }

    /// A store for one call, with what `request` gives the node (its inputs were taken).
    fn store(
        &self,
        request: RunRequest,
        log: RunLog,
        delivery: Delivery,
        files: Option<&std::path::Path>,
    ) -> Result<Store<StoreData>, Error> {
        let limits = &self.limits;
        let network = NetworkPolicy::new(self.allowed_hosts.clone(), log.clone());
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.host.resources);
        let deadline = Instant::now() + limits.timeout;
        let http_hooks = wasi_http::Hooks::new(
            self.capabilities,
            self.inner.tls.clone(),
            network.clone(),
            log.clone(),
            deadline,
            &limits.host,
        );
        let wasi_sockets = self.wasi_sockets();
        let state = StoreData {
            wasi: files
                .map(|dir| wasi::context(&log, wasi_sockets, &network, dir))
                .transpose()?,
            wasi_sockets,
            network,
            tls: self.inner.tls.clone(),
            table,
            limiter: Limiter::new(limits),
            context: request.context,
            storage: self.inner.storage.clone(),
            variables: Variables::new(request.variables),
            log,
            delivery,
            streamed_bytes: 0,
            rendered_bytes: 0,
            connections: Connections::default(),
            runtime_connections: (self.inner.connections.clone(), self.inner.max_connections),
            capabilities: self.capabilities,
            functions: request.functions,
            credentials: request.credentials,
            models: self.inner.models.clone(),
            limits: limits.host.clone(),
            deadline,
            http: wasi_http::context(),
            http_hooks,
        };
        let mut store = Store::new(self.inner.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Fuel off still meters; it just never runs out.
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(Error::internal)?;
        // Every epoch tick, wasm that computes without calling the host yields to the async
        // executor: a busy node holds no executor thread for longer than a tick, so other runs
        // and the embedder's own tasks (an API, a stop signal) keep going, and dropping the
        // run's future stops it at its next tick. At the deadline the run traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            Ok(match Instant::now() >= context.data().deadline {
                true => UpdateDeadline::Interrupt,
                false => UpdateDeadline::Yield(1),
            })
        });
        Ok(store)
    }

    async fn describe(&self) -> Result<Vec<NodeInfo>, Error> {
        let log = RunLog::new(self.limits.host.log_bytes);
        let request = RunRequest {
            context: RunContext::for_node("describe"),
            ..RunRequest::default()
        };
        let _slot = RunSlot::claim(&self.inner.running, self.inner.concurrency)?;
        let mut store = self.store(request, log, Delivery::none(), None)?;
        let call = async {
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            instance.warden_node_node().call_describe(&mut store).await
        };
        let described = with_timeout(self.limits.timeout, call).await?;
        let nodes: Vec<NodeInfo> = described.into_iter().map(NodeInfo::from).collect();
        if nodes.is_empty() {
            return Err(Error::Trapped("the component describes no nodes".into()));
        }
        crate::node::info::check_descriptions(&nodes).map_err(Error::InvalidDescription)?;
        Ok(nodes)
    }

    /// Runs one node: instantiation and the call, under every limit.
    pub async fn run(&self, request: RunRequest) -> Result<RunOutcome, Error> {
        self.run_reported(request).await.0
    }

    /// Runs like [`PreparedNode::run`], and also reports what the run used and met, whatever
    /// its outcome: a daemon's run records and metrics need them for failed runs too.
    pub async fn run_reported(
        &self,
        request: RunRequest,
    ) -> (Result<RunOutcome, Error>, RunReport) {
        let started = Instant::now();
        let mut report = RunReport::default();
        let result = self.run_inner(request, &mut report).await;
        report.duration = started.elapsed();
        let result = result.map(|mut outcome| {
            outcome.duration = report.duration;
            outcome
        });
        (result, report)
    }

    async fn run_inner(
        &self,
        mut request: RunRequest,
        report: &mut RunReport,
    ) -> Result<RunOutcome, Error> {
        request.context.validate()?;
        let info = self.node(request.node.as_deref())?;
        report.node = Some(info.name.clone());
        check_size(
            LimitKind::InputSize,
            "inputs",
            &request.inputs,
            self.limits.host.input_bytes,
        )?;
        let inputs = check_inputs(info, std::mem::take(&mut request.inputs))?;
        let _slot = RunSlot::claim(&self.inner.running, self.inner.concurrency)?;
        let delivery = Delivery::new(Sinks {
            log: request.on_log.take(),
            stream: request.on_stream.take(),
            ui: request.on_ui.take(),
        });
        let log = RunLog::delivered(self.limits.host.log_bytes, delivery.clone());
        let context = wit::RunContext::from(&request.context);
        let deadline = Instant::now() + self.limits.timeout;
        let files = match self.allow_wasi {
            true => Some(self.inner.files.node_dir(&request.context)?),
            false => None,
        };
        let quota = self.limits.host.files_bytes;
        if let Some(dir) = &files {
            crate::runtime::files_quota::check(dir, quota).await?;
        }
        let mut store = self.store(request, log.clone(), delivery.clone(), files.as_deref())?;
        let inputs: Vec<wit::Field> = inputs.into_iter().map(Into::into).collect();
        let call = async {
            let instance = self
                .inner
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            let run = instance
                .get_typed_func::<RunParams<'_>, RunResults>(&mut store, self.inner.run_export)?;
            let (result,) = run
                .call_async(&mut store, (&info.name, &context, &inputs))
                .await?;
            wasmtime::Result::Ok(result)
        };
        let result = match files {
            // The directory is measured while the node runs; over its quota, the run ends.
            Some(dir) => tokio::select! {
                result = with_timeout(self.limits.timeout, call) => result,
                over = crate::runtime::files_quota::watch(dir, quota) => Err(over),
            },
            None => with_timeout(self.limits.timeout, call).await,
        };
        log.flush();
        report.fuel_consumed = match (self.limits.fuel, store.get_fuel()) {
            (Some(initial), Ok(left)) => Some(initial.saturating_sub(left)),
            (None, Ok(left)) => Some(u64::MAX.saturating_sub(left)),
            _ => None,
        };
        report.memory_peak_bytes = store.data().limiter.memory_peak();
        (report.denials, report.denied) = log.denials();
        // What the node produced reaches the embedder before the outcome does; a sink that
        // panicked or still blocks at the deadline fails the run.
        let delivered = delivery.finish(deadline).await;
        let outputs = result
            .map_err(|error| explain_trap(error, &log))?
            .map_err(|message| Error::NodeFailed(one_line(&message, MAX_NODE_ERROR_BYTES)))?;
        delivered.map_err(Error::Callback)?;
        let outputs: Vec<Field> = outputs.into_iter().map(Field::from).collect();
        self.check_outputs(info, &outputs)?;
        let state = store.into_data();
        Ok(RunOutcome {
            node: info.name.clone(),
            outputs,
            variables: state.variables.values,
            log: log.records(),
            log_dropped_bytes: log.dropped_bytes(),
            fuel_consumed: match self.limits.fuel {
                Some(_) => report.fuel_consumed,
                None => None,
            },
            duration: Duration::ZERO,
        })
    }

    /// The node called `name`, or the only node when `name` is `None`.
    pub fn node(&self, name: Option<&str>) -> Result<&NodeInfo, Error> {
        let nodes = &self.inner.nodes;
        let names = || {
            nodes
                .iter()
                .map(|node| node.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(name) => {
                nodes
                    .iter()
                    .find(|node| node.name == name)
                    .ok_or_else(|| Error::UnknownNode {
                        name: name.to_string(),
                        available: names(),
                    })
            }
            None if nodes.len() == 1 => Ok(&nodes[0]),
            None => Err(Error::AmbiguousNode(names())),
        }
    }

    fn check_outputs(&self, info: &NodeInfo, outputs: &[Field]) -> Result<(), Error> {
        check_size(
            LimitKind::OutputSize,
            "outputs",
            outputs,
            self.limits.host.output_bytes,
        )?;
        crate::node::pins::check_outputs(info, outputs).map_err(Error::InvalidOutput)
    }
}

/// Adds what the node said when it panicked (the SDK logs it) to a trap's message.
fn explain_trap(error: Error, log: &RunLog) -> Error {
    let Error::Trapped(trap) = error else {
        return error;
    };
    let records = log.records();
    let panic = records.iter().rev().find(|record| {
        matches!(record.source, Source::Log | Source::Stderr)
            && record.message.contains("panicked at ")
    });
    match panic {
        Some(record) => Error::Trapped(format!("{trap} ({})", record.message.trim())),
        None => Error::Trapped(trap),
    }
}

/// Refuses `fields` (the inputs or the outputs of a run) when they take more than `cap` bytes.
fn check_size(kind: LimitKind, what: &str, fields: &[Field], cap: usize) -> Result<(), Error> {
    let bytes: usize = fields
        .iter()
        .map(|field| field.name.len() + field.value.size())
        .sum();
    if bytes > cap {
        return Err(Error::Limit {
            kind,
            detail: format!("the {what} are {bytes} bytes, the limit is {cap}"),
        });
    }
    Ok(())
}

/// Runs `call` under the wall-clock timeout and turns Wasmtime's errors into typed ones.
/// The epoch deadline stops wasm code; the timer stops a node blocked in a host call.
async fn with_timeout<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(error)),
        Err(_) => Err(Error::Limit {
            kind: LimitKind::Timeout,
            detail: format!("the run took longer than {timeout:?}"),
        }),
    }
}

/// Maps a Wasmtime error to what happened, by type: a limit, an exit, a trap. The message
/// carries the root cause (the trap, or the last error of the chain) and, when Wasmtime
/// recorded one, the wasm function the node was in.
fn classify(error: wasmtime::Error) -> Error {
    if let Some(exceeded) = error.downcast_ref::<LimitExceeded>() {
        return Error::Limit {
            kind: exceeded.kind,
            detail: "the sandbox stopped the node".into(),
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let kind = match trap {
            Trap::OutOfFuel => Some(LimitKind::Fuel),
            Trap::Interrupt => Some(LimitKind::Timeout),
            Trap::StackOverflow => Some(LimitKind::Stack),
            _ => None,
        };
        if let Some(kind) = kind {
            return Error::Limit {
                kind,
                detail: trap.to_string(),
            };
        }
        return Error::Trapped(with_frame(trap.to_string(), &error));
    }
    if let Some(failed) = error.downcast_ref::<CallbackFailed>() {
        return Error::Callback(failed.clone());
    }
    if let Some(wasmtime::component::ResourceTableError::Full) =
        error.downcast_ref::<wasmtime::component::ResourceTableError>()
    {
        return Error::Limit {
            kind: LimitKind::Resources,
            detail: "the run's resource table is full".into(),
        };
    }
    if let Some(busy) = error.downcast_ref::<PoolConcurrencyLimitError>() {
        return Error::Busy(busy.to_string());
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::NodeFailed(format!(
            "the node called exit with status {}; nodes return errors instead",
            exit.0
        ));
    }
    if let Some((kind, detail)) = engine_limit(&error) {
        return Error::Limit { kind, detail };
    }
    Error::Trapped(with_frame(error_chain(&error), &error))
}

/// The limits Wasmtime 48 enforces itself (the store's counts, the pool's bounds) fail with
/// errors that carry no type, only these messages; `engine_limit_messages_are_recognised`
/// pins them, so a Wasmtime upgrade that rewords one fails a test rather than a user.
fn engine_limit(error: &wasmtime::Error) -> Option<(LimitKind, String)> {
    const PATTERNS: [(&str, &str, LimitKind); 10] = [
        (
            "resource limit exceeded: instance count",
            "",
            LimitKind::Instances,
        ),
        (
            "resource limit exceeded: memory count",
            "",
            LimitKind::Memories,
        ),
        (
            "resource limit exceeded: table count",
            "",
            LimitKind::Tables,
        ),
        (
            "The component transitively contains",
            "core module instances",
            LimitKind::Instances,
        ),
        (
            "The component transitively contains",
            "linear memories",
            LimitKind::Memories,
        ),
        (
            "The component transitively contains",
            "tables",
            LimitKind::Tables,
        ),
        ("defined memories count of", "", LimitKind::Memories),
        ("defined tables count of", "", LimitKind::Tables),
        ("memory has a minimum byte size of", "", LimitKind::Memory),
        (
            "has a minimum element size of",
            "",
            LimitKind::TableElements,
        ),
    ];
    for cause in error.chain() {
        let text = cause.to_string();
        for (start, also, kind) in PATTERNS {
            if text.contains(start) && text.contains(also) {
                return Some((kind, first_line(&text)));
            }
        }
    }
    None
}

/// A compilation failure: a count over the pool's ceiling is a limit, the rest is malformed.
fn compile_error(error: &wasmtime::Error) -> Error {
    match engine_limit(error) {
        Some((kind, detail)) => Error::Limit { kind, detail },
        None => Error::Component(component::malformed(error_chain(error))),
    }
}

/// Every message of an error's chain, outermost first, on one line: `a: b: c`. Wasmtime's
/// backtrace context (a header and a list of frames) is left out; see [`with_frame`].
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    // The backtrace is a context of the chain, found by its type; its text is skipped.
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|backtrace| backtrace.to_string());
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if backtrace.as_ref() == Some(&text) {
            continue;
        }
        let text = first_line(&text);
        let text = text.trim().trim_end_matches(':').to_string();
        if text.is_empty() || parts.iter().any(|part| part.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        return "unknown error".into();
    }
    parts.join(": ")
}

/// Adds the innermost named wasm function of the error's backtrace, when short enough to read.
fn with_frame(message: String, error: &wasmtime::Error) -> String {
    let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() else {
        return message;
    };
    let name = backtrace.frames().iter().find_map(|frame| {
        frame
            .symbols()
            .iter()
            .find_map(|symbol| symbol.name())
            .or(frame.func_name())
            .map(str::to_string)
    });
    match name {
        Some(name) if name.len() <= 120 => format!("{message} (in wasm function `{name}`)"),
        _ => message,
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// The engine settings every engine of a runtime shares.
fn base_config(stack: usize) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack)
        // Host functions run on the same fiber stack, below the wasm part.
        .async_stack_size(stack + 2 * 1024 * 1024);
    config
}

/// Advances the epoch of every engine of a runtime; stops when the runtime is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engines: Arc<Mutex<HashMap<EngineKey, Engine>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    for engine in lock(&engines).values() {
                        engine.increment_epoch();
                    }
                }
            })
            .ok();
        Ticker { stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_instances_get_separate_directories_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let files = FilesRoot::new(Some(root.path().to_path_buf()));
        let a = files.node_dir(&RunContext::for_node("a")).unwrap();
        let b = files.node_dir(&RunContext::for_node("b")).unwrap();
        let other_board = files
            .node_dir(&RunContext::for_node("a").with_board("other"))
            .unwrap();
        let escape = files.node_dir(&RunContext::for_node("../../etc")).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, other_board);
        assert_eq!(a, files.node_dir(&RunContext::for_node("a")).unwrap());
        for dir in [&a, &b, &other_board, &escape] {
            assert_eq!(dir.parent(), Some(root.path()), "{}", dir.display());
            assert!(dir.is_dir());
        }
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    /// A component that only looks like a node (enough to compile and count), after `body`.
    fn component(body: &str) -> NodeComponent {
        let bytes = wat::parse_str(format!(
            r#"(component
                {body}
                (instance $node)
                (export "warden:node/node@0.1.0" (instance $node)))"#
        ))
        .unwrap();
        NodeComponent::from_bytes(bytes).unwrap()
    }

    fn runtime(concurrency: u32, pool_limits: Limits) -> (Runtime, Arc<Mutex<Vec<String>>>) {
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let sink = warnings.clone();
        let runtime = Runtime::from_config(RuntimeConfig {
            concurrency,
            pool_limits,
            on_warning: Some(Arc::new(move |line: &str| {
                lock(&sink).push(line.to_string())
            })),
            ..RuntimeConfig::new(Storage::in_memory().unwrap())
        });
        (runtime, warnings)
    }

    #[test]
    fn a_module_with_two_memories_compiles_in_the_pool() {
        let (runtime, warnings) = runtime(2, Limits::default());
        let node = component(
            r#"(core module $m (memory 1) (memory 1) (table 1 funcref) (table 1 funcref))
               (core instance (instantiate $m))"#,
        );
        let (_, component) = runtime.compile(&node, &Limits::default()).unwrap();
        assert_eq!(component.resources_required().unwrap().num_memories, 2);
        assert!(lock(&warnings).is_empty());
        assert!(lock(&runtime.inner.engines).keys().all(|key| key.pooled));
    }

    #[test]
    fn counts_over_the_run_limits_are_limits_not_malformed() {
        let (runtime, _) = runtime(1, Limits::default());
        let node = component(
            r#"(core module $m (memory 1) (memory 1))
               (core instance (instantiate $m))
               (core instance (instantiate $m))"#,
        );
        let limits = Limits {
            max_memories: 3,
            ..Limits::default()
        };
        assert_eq!(
            check_counts(&node.summary, &limits).unwrap_err().limit(),
            Some(LimitKind::Memories)
        );
        // Wasmtime's exact count, after compiling, says the same.
        let error = runtime.compile(&node, &limits).unwrap_err();
        assert_eq!(error.limit(), Some(LimitKind::Memories), "{error}");
        assert_eq!(error.exit_code(), 4);
    }

    #[test]
    fn the_pool_ceiling_gives_a_limit_when_a_component_exceeds_it() {
        // The pool is sized for 2 memories per run; a run asking for 4 uses an on-demand
        // engine, and a pooled compile of a 3-memory component names the memories limit.
        let small = Limits {
            max_memories: 2,
            ..Limits::default()
        };
        let (runtime, _) = runtime(1, small.clone());
        let node = component(
            r#"(core module $m (memory 1))
               (core instance (instantiate $m))
               (core instance (instantiate $m))
               (core instance (instantiate $m))"#,
        );
        let error = runtime.compile(&node, &small).unwrap_err();
        assert_eq!(error.limit(), Some(LimitKind::Memories), "{error}");
        let more = Limits {
            max_memories: 4,
            ..Limits::default()
        };
        runtime.compile(&node, &more).unwrap();
        let keys: Vec<EngineKey> = lock(&runtime.inner.engines).keys().copied().collect();
        assert!(keys.iter().any(|key| !key.pooled), "{keys:?}");
    }

    #[test]
    fn engine_limit_messages_are_recognised() {
        // The store's counts: Wasmtime's own errors, with no type, mapped by their text.
        let engine = Engine::default();
        let limits = Limits {
            max_instances: 1,
            max_memories: 1,
            max_tables: 1,
            ..Limits::default()
        };
        let cases = [
            ("(module)", 2, LimitKind::Instances),
            ("(module (memory 1) (memory 1))", 1, LimitKind::Memories),
            (
                "(module (table 1 funcref) (table 1 funcref))",
                1,
                LimitKind::Tables,
            ),
        ];
        for (text, times, kind) in cases {
            let module = wasmtime::Module::new(&engine, wat::parse_str(text).unwrap()).unwrap();
            let mut store = Store::new(&engine, Limiter::new(&limits));
            store.limiter(|limiter| limiter);
            let mut result = Ok(());
            for _ in 0..times {
                result = result
                    .and_then(|()| wasmtime::Instance::new(&mut store, &module, &[]).map(|_| ()));
            }
            let error = result.unwrap_err();
            assert_eq!(classify(error).limit(), Some(kind), "{text}");
        }
        // The pool's bounds.
        let (runtime, _) = runtime(1, limits.clone());
        let cases = [
            (
                "(core module $m (memory 1) (memory 1)) (core instance (instantiate $m))",
                LimitKind::Memories,
            ),
            (
                "(core module $m (table 1 funcref) (table 1 funcref)) (core instance (instantiate $m))",
                LimitKind::Tables,
            ),
            (
                "(core module $m) (core instance (instantiate $m)) (core instance (instantiate $m))",
                LimitKind::Instances,
            ),
            (
                "(core module $m (memory 2000)) (core instance (instantiate $m))",
                LimitKind::Memory,
            ),
            (
                "(core module $m (table 200000 funcref)) (core instance (instantiate $m))",
                LimitKind::TableElements,
            ),
        ];
        for (text, kind) in cases {
            let node = component(text);
            let (engine, _) = runtime.engine(&limits).unwrap();
            let error = Component::new(&engine, &node.bytes).unwrap_err();
            assert_eq!(
                compile_error(&error).limit(),
                Some(kind),
                "{text}: {error:#}"
            );
        }
    }

    #[test]
    fn errors_carry_their_root_cause_and_frame() {
        let error = wasmtime::Error::msg("the root cause").context("the outer step");
        match classify(error) {
            Error::Trapped(message) => assert_eq!(message, "the outer step: the root cause"),
            other => panic!("{other}"),
        }
        let engine = Engine::default();
        let wasm =
            wat::parse_str(r#"(module (func $explode_here unreachable) (start $explode_here))"#)
                .unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, ());
        let error = wasmtime::Instance::new(&mut store, &module, &[]).unwrap_err();
        let message = classify(error).to_string();
        assert!(message.contains("unreachable"), "{message}");
        assert!(message.contains("explode_here"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn pools_are_sized_per_run() {
        let one_default = pool_reservation_bytes(1, &Limits::default());
        assert!(one_default < 1024 * 1024 * 1024, "{}", gib(one_default));
        let many = pool_reservation_bytes(64, &Limits::default());
        assert!(many >= 64 * 8 * 64 * 1024 * 1024, "{}", gib(many));
    }

    #[test]
    fn a_run_beyond_the_concurrency_is_busy() {
        let running = Arc::new(AtomicU32::new(0));
        let first = RunSlot::claim(&running, 2).unwrap();
        let second = RunSlot::claim(&running, 2).unwrap();
        assert!(matches!(RunSlot::claim(&running, 2), Err(Error::Busy(_))));
        drop(first);
        let _third = RunSlot::claim(&running, 2).unwrap();
        drop(second);
        assert_eq!(running.load(Ordering::SeqCst), 1);
    }
}
