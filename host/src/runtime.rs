//! The runtime: engines with an epoch ticker they own, compile-once caches, and runs.

use crate::allowlist::AllowedHosts;
use crate::bindings::{NodeHostPre, wit};
use crate::capability::Capabilities;
use crate::component::{self, ComponentSummary};
use crate::config::WasmSecurityConfig;
use crate::context::RunContext;
use crate::delivery::{CallbackFailed, Delivery, Sinks, StreamSink, UiSink};
use crate::embedder::{Credentials, Functions};
use crate::error::Error;
use crate::http::TlsRoots;
use crate::limiter::{LimitExceeded, Limiter};
use crate::limits::{LimitKind, Limits};
use crate::linker;
use crate::log::{LogRecord, LogSink, RunLog, Source};
use crate::models::ModelProvider;
use crate::network::NetworkPolicy;
use crate::node_info::NodeInfo;
use crate::preflight;
use crate::state::HostState;
use crate::storage::{Storage, StorageError};
use crate::value::{Field, Value, check_inputs};
use crate::wasi;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    Store, Trap,
};

/// Nodes one runtime runs at once by default.
pub const DEFAULT_CONCURRENCY: u32 = 64;

/// Instances, memories, tables and fiber stacks come from pools sized for `concurrency` runs of
/// the most permissive preset, so a run reuses warm slots instead of mapping fresh memory.
/// The per-run limits are still enforced by the store's limiter; the pool bounds are the
/// ceiling above every preset.
fn pooling(concurrency: u32) -> PoolingAllocationConfig {
    let permissive = Limits::permissive();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(concurrency)
        .total_core_instances(concurrency * 16)
        .total_memories(concurrency * 2)
        .total_tables(concurrency * 4)
        .total_stacks(concurrency)
        .max_core_instances_per_component(permissive.max_instances)
        .max_memories_per_component(permissive.max_memories)
        .max_tables_per_component(permissive.max_tables)
        .table_elements(permissive.max_table_elements)
        .max_memory_size(permissive.memory_bytes as usize);
    pool
}

/// How often the epoch ticker advances every engine's epoch: the timeout's resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How a runtime is set up. `RuntimeSettings::new(storage)` gives the defaults.
#[derive(Clone)]
pub struct RuntimeSettings {
    pub storage: Storage,
    /// Nodes run at once; a run beyond that fails with [`Error::Busy`].
    pub concurrency: u32,
    /// Certificates (DER) the HTTP clients trust beside Mozilla's roots: an operator's CA.
    pub root_certificates: Vec<Vec<u8>>,
    /// Where node instances' private directories (`allow_wasi`) live; a temporary directory,
    /// removed with the runtime, when `None`.
    pub files_dir: Option<PathBuf>,
    /// The provider behind the `models` capability, chosen by the operator.
    pub models: Option<ModelProvider>,
}

impl RuntimeSettings {
    pub fn new(storage: Storage) -> Self {
        RuntimeSettings {
            storage,
            concurrency: DEFAULT_CONCURRENCY,
            root_certificates: Vec::new(),
            files_dir: None,
            models: None,
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
    /// One engine per wasm stack size (Wasmtime sets the stack limit per engine).
    engines: Arc<Mutex<HashMap<usize, Engine>>>,
    components: Mutex<HashMap<(String, usize), Component>>,
    prepared: Mutex<HashMap<PreparedKey, PreparedNode>>,
    described: Mutex<HashMap<(String, usize), Vec<NodeInfo>>>,
    storage: Storage,
    concurrency: u32,
    tls: TlsRoots,
    files: Arc<FilesRoot>,
    models: Option<Arc<ModelProvider>>,
    // Held for its Drop: the ticker stops with the runtime.
    _ticker: Ticker,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PreparedKey {
    sha256: String,
    stack: usize,
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
        Self::from_settings(RuntimeSettings::new(storage))
    }

    /// A runtime that runs at most `concurrency` nodes at once; a run beyond that fails with
    /// [`Error::Busy`] rather than waiting.
    pub fn with_options(storage: Storage, concurrency: u32) -> Self {
        Self::from_settings(RuntimeSettings {
            concurrency,
            ..RuntimeSettings::new(storage)
        })
    }

    pub fn from_settings(settings: RuntimeSettings) -> Self {
        let RuntimeSettings {
            storage,
            concurrency,
            root_certificates,
            files_dir,
            models,
        } = settings;
        let concurrency = concurrency.max(1);
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
                tls: TlsRoots::new(root_certificates),
                files: FilesRoot::new(files_dir),
                models: models.map(Arc::new),
                _ticker: ticker,
            }),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    fn engine(&self, stack: usize) -> Result<Engine, Error> {
        let mut engines = lock(&self.inner.engines);
        if let Some(engine) = engines.get(&stack) {
            return Ok(engine.clone());
        }
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(
                self.inner.concurrency,
            )))
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(stack)
            // Host functions run on the same fiber stack, below the wasm part.
            .async_stack_size(stack + 2 * 1024 * 1024);
        let engine = Engine::new(&config).map_err(Error::internal)?;
        engines.insert(stack, engine.clone());
        Ok(engine)
    }

    fn compile(
        &self,
        node: &NodeComponent,
        engine: &Engine,
        stack: usize,
    ) -> Result<Component, Error> {
        let key = (node.summary.sha256.clone(), stack);
        if let Some(component) = lock(&self.inner.components).get(&key) {
            return Ok(component.clone());
        }
        let component = Component::new(engine, &node.bytes)
            .map_err(|error| component::ComponentError::Malformed(format!("{error:#}")))?;
        lock(&self.inner.components).insert(key, component.clone());
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
        let key = PreparedKey {
            sha256: node.summary.sha256.clone(),
            stack: config.limits.wasm_stack_bytes,
            granted: config.capabilities.bits(),
            allow_wasi: config.allow_wasi,
            allow_wasi_network: config.allow_wasi_network,
        };
        if let Some(prepared) = lock(&self.inner.prepared).get(&key) {
            return Ok(prepared.with_config(config));
        }
        check_counts(&node.summary, &config.limits)?;
        preflight::check(&node.summary.imports, config)?;
        let nodes = self.describe(node, &config.limits).await?;
        let engine = self.engine(config.limits.wasm_stack_bytes)?;
        let component = self.compile(node, &engine, config.limits.wasm_stack_bytes)?;
        // Link what the grant allows, not what the node asked for: the preflight decided, and
        // the linker is the second wall, holding nothing beyond the grant.
        let linker =
            linker::build(&engine, config, config.capabilities).map_err(Error::internal)?;
        let prepared = self.sandbox(&linker, &component, config, nodes)?;
        lock(&self.inner.prepared).insert(key, prepared.clone());
        Ok(prepared)
    }

    /// The nodes a component describes, without granting it anything: every capability
    /// import is linked to a function that traps, so `describe` can never use a capability.
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
        let engine = self.engine(limits.wasm_stack_bytes)?;
        let component = self.compile(node, &engine, limits.wasm_stack_bytes)?;
        let nothing = WasmSecurityConfig {
            limits: limits.clone(),
            capabilities: Capabilities::empty(),
            ..Default::default()
        };
        let mut linker =
            linker::build(&engine, &nothing, Capabilities::empty()).map_err(Error::internal)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(Error::internal)?;
        let nodes = self
            .sandbox(&linker, &component, &nothing, Vec::new())?
            .describe()
            .await?;
        lock(&self.inner.described).insert(key, nodes.clone());
        Ok(nodes)
    }

    fn sandbox(
        &self,
        linker: &Linker<HostState>,
        component: &Component,
        config: &WasmSecurityConfig,
        nodes: Vec<NodeInfo>,
    ) -> Result<PreparedNode, Error> {
        let pre = linker.instantiate_pre(component).map_err(Error::internal)?;
        let pre = NodeHostPre::new(pre).map_err(Error::internal)?;
        Ok(PreparedNode {
            inner: Arc::new(PreparedInner {
                pre,
                storage: self.inner.storage.clone(),
                tls: self.inner.tls.clone(),
                files: self.inner.files.clone(),
                models: self.inner.models.clone(),
                nodes,
            }),
            limits: config.limits.clone(),
            capabilities: config.capabilities,
            allowed_hosts: config.allowed_hosts.clone(),
            allow_wasi: config.allow_wasi,
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
}

struct PreparedInner {
    pre: NodeHostPre<HostState>,
    storage: Storage,
    tls: TlsRoots,
    files: Arc<FilesRoot>,
    models: Option<Arc<ModelProvider>>,
    nodes: Vec<NodeInfo>,
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
        }
    }

    /// A store for one call, with what `request` gives the node (its inputs were taken).
    fn store(
        &self,
        request: RunRequest,
        log: RunLog,
        delivery: Delivery,
    ) -> Result<Store<HostState>, Error> {
        let limits = &self.limits;
        let network = NetworkPolicy::new(self.allowed_hosts.clone(), log.clone());
        let files = match self.allow_wasi {
            true => Some(self.inner.files.node_dir(&request.context)?),
            false => None,
        };
        let state = HostState {
            wasi: wasi::context(&log, self.capabilities, &network, files.as_deref())?,
            network,
            tls: self.inner.tls.clone(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            context: request.context,
            storage: self.inner.storage.clone(),
            variables: request.variables,
            log,
            delivery,
            streamed_bytes: 0,
            rendered_bytes: 0,
            connections: Default::default(),
            capabilities: self.capabilities,
            functions: request.functions,
            credentials: request.credentials,
            models: self.inner.models.clone(),
            limits: limits.host.clone(),
            deadline: Instant::now() + limits.timeout,
        };
        let mut store = Store::new(self.inner.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Fuel off still meters; it just never runs out.
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(Error::internal)?;
        let ticks = limits.timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok(store)
    }

    async fn describe(&self) -> Result<Vec<NodeInfo>, Error> {
        let log = RunLog::new(self.limits.host.log_bytes);
        let request = RunRequest {
            context: RunContext::for_node("describe"),
            ..RunRequest::default()
        };
        let mut store = self.store(request, log, Delivery::none())?;
        let call = async {
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            instance.warden_node_node().call_describe(&mut store).await
        };
        let described = with_timeout(self.limits.timeout, call).await?;
        let nodes: Vec<NodeInfo> = described.into_iter().map(NodeInfo::from).collect();
        if nodes.is_empty() {
            return Err(Error::Trapped("the component describes no nodes".into()));
        }
        crate::node_info::check_descriptions(&nodes).map_err(Error::InvalidDescription)?;
        Ok(nodes)
    }

    /// Runs one node: instantiation and the call, under every limit.
    pub async fn run(&self, mut request: RunRequest) -> Result<RunOutcome, Error> {
        let started = Instant::now();
        request.context.validate()?;
        let info = self.node(request.node.as_deref())?;
        check_size(
            LimitKind::InputSize,
            "inputs",
            &request.inputs,
            self.limits.host.input_bytes,
        )?;
        let inputs = check_inputs(info, std::mem::take(&mut request.inputs))?;
        let delivery = Delivery::new(Sinks {
            log: request.on_log.take(),
            stream: request.on_stream.take(),
            ui: request.on_ui.take(),
        });
        let log = RunLog::delivered(self.limits.host.log_bytes, delivery.clone());
        let context = wit::RunContext::from(&request.context);
        let deadline = Instant::now() + self.limits.timeout;
        let mut store = self.store(request, log.clone(), delivery.clone())?;
        let inputs: Vec<wit::Field> = inputs.into_iter().map(Into::into).collect();
        let call = async {
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            instance
                .warden_node_node()
                .call_run(&mut store, &info.name, &context, &inputs)
                .await
        };
        let result = with_timeout(self.limits.timeout, call).await;
        log.flush();
        // What the node produced reaches the embedder before the outcome does; a sink that
        // panicked or still blocks at the deadline fails the run.
        let delivered = delivery.finish(deadline).await;
        let outputs = result
            .map_err(|error| explain_trap(error, &log))?
            .map_err(Error::NodeFailed)?;
        delivered.map_err(Error::Callback)?;
        let outputs: Vec<Field> = outputs.into_iter().map(Field::from).collect();
        self.check_outputs(info, &outputs)?;
        let fuel_consumed = match (self.limits.fuel, store.get_fuel()) {
            (Some(initial), Ok(left)) => Some(initial.saturating_sub(left)),
            _ => None,
        };
        let state = store.into_data();
        Ok(RunOutcome {
            node: info.name.clone(),
            outputs,
            variables: state.variables,
            log: log.records(),
            log_dropped_bytes: log.dropped_bytes(),
            fuel_consumed,
            duration: started.elapsed(),
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
        crate::value::check_outputs(info, outputs).map_err(Error::InvalidOutput)
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

/// Maps a Wasmtime error to what happened, by type: a limit, an exit, a trap.
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
        return Error::Trapped(trap.to_string());
    }
    if let Some(failed) = error.downcast_ref::<CallbackFailed>() {
        return Error::Callback(failed.clone());
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
    Error::Trapped(first_line(&format!("{error}")))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Advances the epoch of every engine of a runtime; stops when the runtime is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engines: Arc<Mutex<HashMap<usize, Engine>>>) -> Self {
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
