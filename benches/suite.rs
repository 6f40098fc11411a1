//! The benchmark suite: warden side by side with raw Wasmtime 48 in the same run, as ratios
//! (these machines are shared and noisy; ratios hold where absolute times do not).
//!
//! `cargo xtask bench` runs it in full (`cargo bench --bench suite`) and writes
//! docs/BENCHMARKS.md and its charts (docs/bench/*.svg). Run any other way (`cargo test --bench
//! suite`, as CI does), every workload runs once with tiny sizes and nothing is written: that
//! proves the suite still builds and runs, and claims nothing about time.
//!
//! Workloads (the nodes are `tests/nodes/bench`, built with the SDK):
//! 1. ready to run: bytes to a prepared node, cold (compiling) and warm (from the code cache),
//!    and verifying a signed package;
//! 2. instantiate + call a no-op node from 1, 2, 16 and 64 concurrent tasks;
//! 3. host calls: log calls, storage reads and http-gets in one run;
//! 4. a CPU-bound node (FNV-1a over 1 MB) under each interruption mode;
//! 5. resident memory per idle prepared node and per live run;
//! 6. the daemon over HTTPS (suite/daemon.rs);
//! 7. Extism, from its own bench's results (suite/extism.rs, benches/extism/).
//!
//! For experiments: `WARDEN_BENCH_ONLY=concurrency` (or `ready`, `host-calls`, `interruption`,
//! `memory`, `daemon`) runs one workload and prints its table; `WARDEN_BENCH_KEEP_RESIDENT=BYTES`,
//! `WARDEN_BENCH_PAGEMAP=1`, `WARDEN_BENCH_DECOMMIT_BATCH=N`, `WARDEN_BENCH_NO_COW=1` and
//! `WARDEN_BENCH_NO_SIGNALS=1` (explicit checks instead of signals-based traps, which turns off
//! Cranelift's Spectre mitigation for heap accesses) change raw Wasmtime's engine and pooling
//! allocator (see docs/benchmarks-history.md). `WARDEN_BENCH_WORKERS=N` sets the tokio
//! runtime's worker threads for workload 2, and `WARDEN_BENCH_YIELD=1` makes its one task yield
//! between runs as the others do.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::build::{BuildOptions, Target, build};
use warden_host::{
    Capabilities, Field, NodeComponent, PreparedNode, RunContext, RunRequest, Runtime,
    RuntimeConfig, Value, WasmSecurityConfig,
};
use wasmtime::component::{Component, InstancePre, Linker, TypedFunc};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut,
};

#[path = "common/raw_types.rs"]
mod raw_types;
use raw_types::*;
#[path = "common/scale.rs"]
mod scale;
use scale::{Scale, median, percentile};
#[path = "suite/cluster.rs"]
mod cluster;
#[path = "suite/daemon.rs"]
mod daemon;
#[path = "suite/extism.rs"]
mod extism;
#[allow(dead_code)]
#[path = "../tests/e2e/daemon/provider.rs"]
mod provider;
#[path = "../tests/e2e/support/mod.rs"]
mod support;

type RunFunc = TypedFunc<(String, RawContext, Vec<RawField>), (Result<Vec<RawField>, String>,)>;

/// What raw Wasmtime's host functions touch: a deadline, a log byte count and a map.
struct RawState {
    deadline: Instant,
    logged: usize,
    storage: Arc<HashMap<(RawScope, String), Vec<u8>>>,
}

/// How a raw engine interrupts a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interruption {
    None,
    Epoch,
    Fuel,
    Both,
}

impl Interruption {
    const ALL: [Interruption; 4] = [
        Interruption::None,
        Interruption::Epoch,
        Interruption::Fuel,
        Interruption::Both,
    ];

    fn name(self) -> &'static str {
        match self {
            Interruption::None => "none",
            Interruption::Epoch => "epoch",
            Interruption::Fuel => "fuel",
            Interruption::Both => "epoch+fuel",
        }
    }
}

/// Raw Wasmtime: an `InstancePre`, a plain store, a typed call, host functions doing the
/// least the same work needs, and nothing else.
struct Raw {
    pre: InstancePre<RawState>,
    interruption: Interruption,
}

impl Raw {
    fn engine(pooling: bool, interruption: Interruption) -> Engine {
        Self::engine_with(pooling, interruption)
    }

    /// An engine as [`Raw::engine`] makes it. Wasmtime 48 needs no switch for async: a store
    /// instantiated with `instantiate_async` runs on fibers.
    fn engine_with(pooling: bool, interruption: Interruption) -> Engine {
        let mut config = Config::new();
        if pooling {
            let mut pool = PoolingAllocationConfig::new();
            // Slots reset as warden's are (with `madvise`), so that the ratios compare like with
            // like; `WARDEN_BENCH_PAGEMAP=1` resets the touched pages in place instead, up to
            // 1 MiB, where the kernel lists them (see docs/benchmarks-history.md for why warden
            // does not).
            let pagemap = PoolingAllocationConfig::is_pagemap_scan_available()
                && std::env::var_os("WARDEN_BENCH_PAGEMAP").is_some();
            let keep = std::env::var("WARDEN_BENCH_KEEP_RESIDENT")
                .ok()
                .map(|bytes| bytes.parse().unwrap_or(0))
                .unwrap_or(if pagemap { 1 << 20 } else { 0 });
            pool.linear_memory_keep_resident(keep)
                .table_keep_resident(keep);
            if pagemap {
                pool.pagemap_scan(wasmtime::Enabled::Yes);
            }
            if std::env::var_os("WARDEN_BENCH_NO_SIGNALS").is_some() {
                config.signals_based_traps(false).memory_guard_size(0);
            }
            if let Ok(batch) = std::env::var("WARDEN_BENCH_DECOMMIT_BATCH") {
                pool.decommit_batch_size(batch.parse().unwrap_or(1));
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            if std::env::var_os("WARDEN_BENCH_NO_COW").is_some() {
                config.memory_init_cow(false);
            }
        }
        config.epoch_interruption(matches!(
            interruption,
            Interruption::Epoch | Interruption::Both
        ));
        config.consume_fuel(matches!(
            interruption,
            Interruption::Fuel | Interruption::Both
        ));
        Engine::new(&config).expect("a raw engine")
    }

    fn linker(engine: &Engine) -> Linker<RawState> {
        let mut linker = Linker::new(engine);
        linker
            .instance("warden:node/context@0.1.0")
            .and_then(|mut context| {
                context.func_wrap(
                    "remaining-ms",
                    |store: StoreContextMut<'_, RawState>, ()| {
                        Ok((store
                            .data()
                            .deadline
                            .saturating_duration_since(Instant::now())
                            .as_millis() as u64,))
                    },
                )
            })
            .expect("context");
        linker
            .instance("warden:node/log@0.1.0")
            .and_then(|mut log| {
                log.func_wrap(
                    "log",
                    |mut store: StoreContextMut<'_, RawState>,
                     (_level, message): (RawLevel, String)| {
                        store.data_mut().logged += message.len();
                        Ok(())
                    },
                )
            })
            .expect("log");
        linker
            .instance("warden:node/storage-read@0.1.0")
            .and_then(|mut storage| {
                storage.func_wrap(
                    "get",
                    |store: StoreContextMut<'_, RawState>, (scope, key): (RawScope, String)| {
                        let value = store.data().storage.get(&(scope, key)).cloned();
                        Ok((Ok::<_, RawHostError>(value),))
                    },
                )?;
                storage.func_wrap(
                    "exists",
                    |store: StoreContextMut<'_, RawState>, (scope, key): (RawScope, String)| {
                        Ok((Ok::<_, RawHostError>(
                            store.data().storage.contains_key(&(scope, key)),
                        ),))
                    },
                )?;
                storage.func_wrap(
                    "list-keys",
                    |_store: StoreContextMut<'_, RawState>,
                     (_scope, _prefix, _limit): (RawScope, String, u32)| {
                        Ok((Ok::<Vec<String>, RawHostError>(Vec::new()),))
                    },
                )
            })
            .expect("storage-read");
        linker
    }

    fn new(bytes: &[u8], pooling: bool, interruption: Interruption) -> Self {
        let engine = Self::engine(pooling, interruption);
        let component = Component::new(&engine, bytes).expect("compile");
        Raw::link(&engine, &component, interruption)
    }

    /// Raw Wasmtime as warden's engine runs: async (fibers), epoch and fuel, pooled; run it
    /// with [`Raw::run_async`]. What separates it from [`Raw::new`] is what Wasmtime's async
    /// and interruption cost; what separates warden from it is warden's own.
    fn new_async(bytes: &[u8]) -> Self {
        let engine = Self::engine_with(true, Interruption::Both);
        let component = Component::new(&engine, bytes).expect("compile");
        Raw::link(&engine, &component, Interruption::Both)
    }

    fn link(engine: &Engine, component: &Component, interruption: Interruption) -> Self {
        let mut linker = Self::linker(engine);
        linker
            .define_unknown_imports_as_traps(component)
            .expect("stubs");
        Raw {
            pre: linker.instantiate_pre(component).expect("link"),
            interruption,
        }
    }

    fn run(&self, node: &str, n: i64) -> i64 {
        let mut store = self.store();
        let instance = self.pre.instantiate(&mut store).expect("instantiate");
        self.call(&mut store, &instance, node, n)
    }

    /// [`Raw::run`] on an engine made by [`Raw::new_async`].
    async fn run_async(&self, node: &str, n: i64) -> i64 {
        let mut store = self.store();
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let run = Self::run_func(&mut store, &instance);
        let (result,) = run
            .call_async(&mut store, Self::arguments(node, n))
            .await
            .expect("call");
        Self::result(result)
    }

    fn store(&self) -> Store<RawState> {
        let state = RawState {
            deadline: Instant::now() + Duration::from_secs(30),
            logged: 0,
            storage: Arc::default(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        if matches!(self.interruption, Interruption::Fuel | Interruption::Both) {
            store.set_fuel(u64::MAX).expect("fuel");
        }
        if matches!(self.interruption, Interruption::Epoch | Interruption::Both) {
            store.set_epoch_deadline(u64::MAX / 2);
        }
        store
    }

    /// Calls `node` of an instantiated `instance` with input `n`; its `result`.
    fn call(
        &self,
        store: &mut Store<RawState>,
        instance: &wasmtime::component::Instance,
        node: &str,
        n: i64,
    ) -> i64 {
        let run = Self::run_func(&mut *store, instance);
        let (result,) = run.call(store, Self::arguments(node, n)).expect("call");
        Self::result(result)
    }

    /// The node's typed `run` export.
    fn run_func(
        mut store: &mut Store<RawState>,
        instance: &wasmtime::component::Instance,
    ) -> RunFunc {
        let interface = instance
            .get_export_index(&mut store, None, "warden:node/node@0.1.0")
            .expect("the node interface");
        let run = instance
            .get_export_index(&mut store, Some(&interface), "run")
            .expect("run");
        instance.get_typed_func(&mut store, run).expect("typed run")
    }

    fn arguments(node: &str, n: i64) -> (String, RawContext, Vec<RawField>) {
        let inputs = vec![RawField {
            name: "n".into(),
            value: RawValue::Integer(n),
        }];
        (node.into(), RawContext::for_node(node), inputs)
    }

    fn result(result: Result<Vec<RawField>, String>) -> i64 {
        match result
            .expect("the node succeeds")
            .first()
            .map(|field| &field.value)
        {
            Some(RawValue::Integer(value)) => *value,
            _ => 0,
        }
    }
}

fn warden_run(tokio: &tokio::runtime::Runtime, prepared: &PreparedNode, node: &str, n: i64) -> i64 {
    tokio.block_on(warden_run_async(prepared, node, n))
}

async fn warden_run_async(prepared: &PreparedNode, node: &str, n: i64) -> i64 {
    let request = RunRequest {
        node: Some(node.into()),
        context: RunContext::for_node(node),
        inputs: vec![Field {
            name: "n".into(),
            value: Value::Integer(n),
        }],
        ..RunRequest::default()
    };
    let outcome = prepared.run(request).await.expect("the node runs");
    match outcome.outputs.first().map(|field| &field.value) {
        Some(Value::Integer(value)) => *value,
        _ => 0,
    }
}

/// warden's figures that the Extism comparison (workload 7) sets against Extism's.
#[derive(Default)]
struct Figures {
    /// Bytes to a prepared node, compiling.
    cold: Duration,
    /// One log call.
    log_call: Duration,
}

/// Latencies of `samples` runs of `f`, after a warm-up, sorted.
fn sample(samples: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..samples.min(20) {
        f();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

/// A duration as people read it.
fn human(duration: Duration) -> String {
    let nanos = duration.as_nanos() as f64;
    if nanos >= 1e9 {
        format!("{:.2} s", nanos / 1e9)
    } else if nanos >= 1e6 {
        format!("{:.2} ms", nanos / 1e6)
    } else if nanos >= 1e3 {
        format!("{:.1} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}

fn ratio(ours: Duration, theirs: Duration) -> String {
    if theirs.is_zero() {
        return "–".into();
    }
    format!("{:.2}x", ours.as_secs_f64() / theirs.as_secs_f64())
}

/// A current-thread tokio runtime, a warden runtime and the bench node prepared on it with
/// [`grant`] (the runtime and the component are returned for preparing it again).
fn prepared_on_one_thread(
    bytes: &[u8],
) -> (
    tokio::runtime::Runtime,
    Runtime,
    NodeComponent,
    PreparedNode,
) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new().expect("runtime");
    let component = NodeComponent::from_bytes(bytes.to_vec()).expect("component");
    let prepared = tokio
        .block_on(runtime.prepare(&component, &grant()))
        .expect("prepare");
    (tokio, runtime, component, prepared)
}

fn build_bench_node() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = BuildOptions {
        target: Target::Unknown,
        quiet: true,
        ..BuildOptions::default()
    };
    let built = build(&root.join("tests/nodes/bench"), &options).expect("build the bench node");
    std::fs::read(&built[0]).expect("read the bench node")
}

fn grant() -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::STORAGE_READ | Capabilities::HTTP_GET,
        ..WasmSecurityConfig::default()
    }
}

/// A plain HTTP/1.1 server on loopback answering every request `200 ok`, on a thread and
/// runtime of its own; its address.
fn ok_server() -> std::net::SocketAddr {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let _ = sender.send(listener.local_addr().expect("its address"));
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    receiver.recv().expect("the server's address")
}

/// One GET of `http://{address}/` with raw hyper, on a connection of its own (as warden's
/// client makes one per request); the status.
async fn raw_get(address: std::net::SocketAddr) -> u16 {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get("/")
        .header("host", address.to_string())
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    black_box(response.into_body().collect().await.expect("the body"));
    status
}

/// The manifest of the bench node's package at `version` (`pack` fills in the rest).
fn package_manifest(version: &str) -> warden_package::Manifest {
    warden_package::Manifest {
        name: "bench".into(),
        version: version.into(),
        description: String::new(),
        publisher: "bench".into(),
        capabilities: Vec::new(),
        allowed_hosts: Vec::new(),
        limits: "default".into(),
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    }
}

/// One table of the report, in Markdown.
struct Table {
    title: String,
    note: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: &str, note: &str, header: &[&str]) -> Self {
        Table {
            title: title.into(),
            note: note.into(),
            header: header.iter().map(|cell| cell.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn markdown(&self) -> String {
        let mut text = format!("## {}\n\n{}\n\n", self.title, self.note);
        let _ = writeln!(text, "| {} |", self.header.join(" | "));
        let _ = writeln!(text, "|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }
}

/// 1. Ready to run: bytes to a prepared node.
fn ready(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>, figures: &mut Figures) {
    let samples = scale.samples(10);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let warden_cold = prepare_times(&tokio, bytes, &grant(), samples, None);
    let cache_dir = tempfile::tempdir().expect("a cache directory");
    let warden_warm = prepare_times(&tokio, bytes, &grant(), samples, Some(cache_dir.path()));
    // Raw Wasmtime: compile and link; and from serialized code.
    let engine = Raw::engine(true, Interruption::Both);
    let raw_cold = sample(samples, || {
        let component = Component::new(&engine, bytes).expect("compile");
        black_box(Raw::link(&engine, &component, Interruption::Both));
    });
    let serialized = Component::new(&engine, bytes)
        .and_then(|component| component.serialize())
        .expect("serialize");
    let raw_warm = sample(samples, || {
        // SAFETY: the bytes were serialized by this engine just above.
        let component =
            unsafe { Component::deserialize(&engine, &serialized) }.expect("deserialize");
        black_box(Raw::link(&engine, &component, Interruption::Both));
    });
    // Verifying a signed package of the same component (before anything is compiled).
    let key = warden_package::generate_key().expect("a key");
    let package = warden_package::pack(bytes, package_manifest("1.0.0"), &key).expect("pack");
    let verify = sample(samples.max(10), || {
        let package = warden_package::decode(&package).expect("decode");
        black_box(warden_package::verify(&package, None).expect("verify"));
    });
    let mut table = Table::new(
        "1. Ready to run",
        &format!(
            "From the component's bytes to a node ready to instantiate: compiled and linked \
             (cold), or loaded from the compiled-code cache (warm; raw Wasmtime deserializes what \
             it serialized). The node is `tests/nodes/bench` ({} KB). Medians of {samples}.",
            bytes.len() / 1024
        ),
        &["", "raw Wasmtime", "warden", "warden / raw"],
    );
    let (cold_m, warm_m) = (median(&warden_cold), median(&warden_warm));
    figures.cold = cold_m;
    table.row(vec![
        "cold (compile + link)".into(),
        human(median(&raw_cold)),
        human(cold_m),
        ratio(cold_m, median(&raw_cold)),
    ]);
    table.row(vec![
        "warm (from the cache)".into(),
        human(median(&raw_warm)),
        human(warm_m),
        ratio(warm_m, median(&raw_warm)),
    ]);
    table.row(vec![
        "cold / warm".into(),
        format!(
            "{:.0}x",
            median(&raw_cold).as_secs_f64() / median(&raw_warm).as_secs_f64().max(1e-9)
        ),
        format!(
            "{:.0}x",
            cold_m.as_secs_f64() / warm_m.as_secs_f64().max(1e-9)
        ),
        "target: warden at least 20x".into(),
    ]);
    if scale.full {
        python_ready(&tokio, &mut table);
    }
    table.row(vec![
        "verify a signed package".into(),
        "–".into(),
        human(median(&verify)),
        "–".into(),
    ]);
    tables.push(table);
}

/// Times of `samples` preparations of `bytes` under `config`, sorted, each by a fresh runtime
/// (its engine made before the clock starts): compiling, or with a code cache in `cache`
/// (filled first) loading the compiled code from it.
fn prepare_times(
    tokio: &tokio::runtime::Runtime,
    bytes: &[u8],
    config: &WasmSecurityConfig,
    samples: usize,
    cache: Option<&Path>,
) -> Vec<Duration> {
    let cache = cache
        .map(|dir| Arc::new(warden_host::CodeCache::open(&dir.join("code")).expect("code cache")));
    let runtime = || {
        let mut runtime = RuntimeConfig::new(warden_host::Storage::in_memory().expect("storage"));
        runtime.code_cache = cache.clone();
        Runtime::from_config(runtime)
    };
    let prepare = |runtime: &Runtime| {
        let component = NodeComponent::from_bytes(bytes.to_vec()).expect("component");
        let start = Instant::now();
        black_box(
            tokio
                .block_on(runtime.prepare(&component, config))
                .expect("prepare"),
        );
        start.elapsed()
    };
    if cache.is_some() {
        prepare(&runtime());
    }
    let mut times: Vec<Duration> = (0..samples).map(|_| prepare(&runtime())).collect();
    times.sort_unstable();
    times
}

/// The 18 MB Python example, cold and warm, when componentize-py is where the toolchain
/// tests install it (`cargo xtask test` does); a row saying so otherwise.
fn python_ready(tokio: &tokio::runtime::Runtime, table: &mut Table) {
    let tool = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!(
            "componentize-py-{}",
            warden::build::toolchain::COMPONENTIZE_PY
        ))
        .join("bin/componentize-py");
    let skip = |table: &mut Table, why: &str| {
        table.row(vec![
            "Python node (18 MB)".into(),
            "–".into(),
            format!("not measured: {why}"),
            "–".into(),
        ]);
    };
    if !tool.exists() {
        return skip(
            table,
            "componentize-py is not installed (the toolchain tests install it)",
        );
    }
    let Ok(scratch) = tempfile::tempdir() else {
        return skip(table, "no temporary directory");
    };
    let project = scratch.path().join("text-transform");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::fs::create_dir_all(&project).is_err()
        || std::fs::copy(
            root.join("nodes/python/text-transform/app.py"),
            project.join("app.py"),
        )
        .is_err()
    {
        return skip(table, "cannot copy the example");
    }
    let built =
        warden::build::toolchain::PYTHON.build_with(&tool, &project, Capabilities::empty(), true);
    let Ok(path) = built else {
        return skip(table, "the build failed");
    };
    let Ok(bytes) = std::fs::read(&path) else {
        return skip(table, "cannot read the build");
    };
    let nothing = WasmSecurityConfig {
        capabilities: Capabilities::empty(),
        ..WasmSecurityConfig::default()
    };
    let cold = prepare_times(tokio, &bytes, &nothing, 3, None);
    let warm = prepare_times(tokio, &bytes, &nothing, 3, Some(scratch.path()));
    let (cold, warm) = (median(&cold), median(&warm));
    table.row(vec![
        format!("Python node ({} MB): cold", bytes.len() / 1_000_000),
        "–".into(),
        human(cold),
        "–".into(),
    ]);
    table.row(vec![
        "Python node: warm".into(),
        "–".into(),
        human(warm),
        "–".into(),
    ]);
    table.row(vec![
        "Python node: cold / warm".into(),
        "–".into(),
        format!("{:.0}x", cold.as_secs_f64() / warm.as_secs_f64().max(1e-9)),
        "target: at least 100x".into(),
    ]);
}

/// Throughput and latency of instantiate + call of the no-op node from `tasks` at once.
struct Concurrency {
    tasks: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Concurrency {
    /// From every run's latency over `elapsed`.
    fn of(tasks: usize, mut times: Vec<Duration>, elapsed: Duration) -> Self {
        times.sort_unstable();
        Concurrency {
            tasks,
            per_second: times.len() as f64 / elapsed.as_secs_f64(),
            p50: median(&times),
            p99: percentile(&times, 0.99),
        }
    }
}

fn raw_concurrency(raw: &Arc<Raw>, tasks: usize, length: Duration) -> Concurrency {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let raw = raw.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while start.elapsed() < length {
                    let begun = Instant::now();
                    black_box(raw.run("noop", 0));
                    times.push(begun.elapsed());
                }
                times
            })
        })
        .collect();
    let times: Vec<Duration> = handles
        .into_iter()
        .flat_map(|handle| handle.join().expect("a raw task"))
        .collect();
    Concurrency::of(tasks, times, start.elapsed())
}

/// Table 2a's three peers on one task each: raw Wasmtime on a thread, raw Wasmtime's async
/// engine (see [`Raw::new_async`]) and warden on a task of `tokio`, taking turns in five rounds
/// of a fifth of `length`, so that a slow spell of the shared machine falls on all three.
fn one_task_rounds(
    tokio: &tokio::runtime::Runtime,
    raw: &Raw,
    raw_async: &Raw,
    prepared: &PreparedNode,
    length: Duration,
) -> [Concurrency; 3] {
    const ROUNDS: u32 = 5;
    let slice = length / ROUNDS;
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut elapsed = [Duration::ZERO; 3];
    for _ in 0..ROUNDS {
        let (raw_times, rest) = times.split_at_mut(1);
        let (raw_async_times, warden_times) = rest.split_at_mut(1);
        elapsed[0] += std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let start = Instant::now();
                    while start.elapsed() < slice {
                        let begun = Instant::now();
                        black_box(raw.run("noop", 0));
                        raw_times[0].push(begun.elapsed());
                    }
                    start.elapsed()
                })
                .join()
                .expect("a raw task")
        });
        elapsed[1] += tokio.block_on(async {
            let start = Instant::now();
            while start.elapsed() < slice {
                let begun = Instant::now();
                black_box(raw_async.run_async("noop", 0).await);
                raw_async_times[0].push(begun.elapsed());
            }
            start.elapsed()
        });
        elapsed[2] += tokio.block_on(async {
            let start = Instant::now();
            while start.elapsed() < slice {
                let begun = Instant::now();
                black_box(warden_run_async(prepared, "noop", 0).await);
                warden_times[0].push(begun.elapsed());
            }
            start.elapsed()
        });
    }
    let [raw_times, raw_async_times, warden_times] = times;
    [
        Concurrency::of(1, raw_times, elapsed[0]),
        Concurrency::of(1, raw_async_times, elapsed[1]),
        Concurrency::of(1, warden_times, elapsed[2]),
    ]
}

fn warden_concurrency(
    tokio: &tokio::runtime::Runtime,
    prepared: &PreparedNode,
    tasks: usize,
    length: Duration,
) -> Concurrency {
    let start = Instant::now();
    let times: Vec<Duration> = tokio.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let prepared = prepared.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    while start.elapsed() < length {
                        let begun = Instant::now();
                        black_box(warden_run_async(&prepared, "noop", 0).await);
                        times.push(begun.elapsed());
                        // Let the other tasks in, as a server's would. One task has none to
                        // let in (see table 2a for what a yield costs it).
                        if tasks > 1 || std::env::var_os("WARDEN_BENCH_YIELD").is_some() {
                            tokio::task::yield_now().await;
                        }
                    }
                    times
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.await.expect("a warden task"));
        }
        all
    });
    Concurrency::of(tasks, times, start.elapsed())
}

/// 2. Instantiate + call from concurrent tasks.
fn concurrency(
    scale: Scale,
    bytes: &[u8],
    tables: &mut Vec<Table>,
) -> (Vec<Concurrency>, Vec<Concurrency>) {
    let length = scale.duration(Duration::from_secs(2));
    let raw = Arc::new(Raw::new(bytes, true, Interruption::None));
    let workers = std::env::var("WARDEN_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new().expect("runtime");
    let component = NodeComponent::from_bytes(bytes.to_vec()).expect("component");
    let prepared = tokio
        .block_on(runtime.prepare(&component, &grant()))
        .expect("prepare");
    let mut raws = Vec::new();
    let mut wardens = Vec::new();
    for tasks in [1, 2, 16, 64] {
        raws.push(raw_concurrency(&raw, tasks, length));
        wardens.push(warden_concurrency(&tokio, &prepared, tasks, length));
    }
    let mut table = Table::new(
        "2. Instantiate + call a no-op node, concurrently",
        &format!(
            "Runs per second and latency of instantiate + call from N tasks at once, for {} \
             each, on {workers} cores: raw Wasmtime (pooling allocator, slots reset as warden's \
             are, no interruption) on N threads, warden on N tasks of a {workers}-thread tokio \
             runtime. Targets: warden at most 1.10x raw's latency with one task; 2 tasks at \
             least 1.7x the runs per second of 1.",
            human(length)
        ),
        &[
            "tasks",
            "raw runs/s",
            "raw p50",
            "raw p99",
            "warden runs/s",
            "warden p50",
            "warden p99",
            "warden / raw runs/s",
            "warden / raw p50",
            "warden scaling vs 1 task",
        ],
    );
    let single = wardens.first().map_or(1.0, |first| first.per_second);
    for (raw, warden) in raws.iter().zip(&wardens) {
        table.row(vec![
            raw.tasks.to_string(),
            format!("{:.0}", raw.per_second),
            human(raw.p50),
            human(raw.p99),
            format!("{:.0}", warden.per_second),
            human(warden.p50),
            human(warden.p99),
            format!("{:.2}", warden.per_second / raw.per_second.max(1e-9)),
            ratio(warden.p50, raw.p50),
            format!("{:.2}x", warden.per_second / single.max(1e-9)),
        ]);
    }
    tables.push(table);
    let mut table = Table::new(
        "2a. Where one task's time goes",
        "Instantiate + call of the no-op node from one task, with a peer between raw Wasmtime \
         and warden: raw Wasmtime with the engine warden runs (async, so instantiation and \
         call each run on a fiber; epoch interruption and fuel metering on). Raw Wasmtime runs \
         on a thread, the other two in `block_on` of the tokio runtime above; the three take \
         turns in five rounds, so that a slow spell of the shared machine falls on all of \
         them. The step from raw to raw async is what Wasmtime's async support and \
         interruption cost; the step from raw async to warden is warden's own (the run's \
         store, its log and record, the timeout, checking inputs and outputs). In table 2 one \
         task does not yield between runs either: a yield wakes the idle worker, which takes \
         the task to the other core, and each slot reset (`madvise`) must then interrupt both \
         cores to flush their TLBs, about 13 µs a run here.",
        &["peer", "runs/s", "p50", "p99", "p50 over raw"],
    );
    let raw_async = Raw::new_async(bytes);
    let [raw_one, raw_async_one, warden_one] =
        one_task_rounds(&tokio, &raw, &raw_async, &prepared, length);
    let rows = [
        ("raw Wasmtime", raw_one),
        ("raw Wasmtime, async + epoch + fuel", raw_async_one),
        ("warden", warden_one),
    ];
    let raw_p50 = rows[0].1.p50;
    for (peer, measured) in rows {
        table.row(vec![
            peer.to_string(),
            format!("{:.0}", measured.per_second),
            human(measured.p50),
            human(measured.p99),
            ratio(measured.p50, raw_p50),
        ]);
    }
    tables.push(table);
    (raws, wardens)
}

/// 3. Host calls: `n` log calls, `n` storage reads in one run, less the no-op run.
fn host_calls(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>, figures: &mut Figures) {
    let calls = scale.size(100_000, 10);
    let samples = scale.samples(20);
    let (tokio, runtime, component, prepared) = prepared_on_one_thread(bytes);
    let raw = Raw::new(bytes, true, Interruption::Both);
    let mut table = Table::new(
        "3. Host calls",
        &format!(
            "{calls} calls in one run, per call (the run's time less a no-op run's, divided by \
             {calls}). Raw Wasmtime's host functions do the least the same work needs: `log` \
             counts the bytes, `storage-read.get` looks the key up in a `HashMap`; warden's \
             log keeps the record (up to the log cap) and storage reads go to its redb store. \
             Medians of {samples}. Target: at most 1.10x raw Wasmtime for a call. The \
             http-get row compares the node's GETs (a new connection each, the allowlist \
             checked on every address) with raw hyper making the same requests from Rust."
        ),
        &["call", "raw Wasmtime", "warden", "warden / raw"],
    );
    let raw_noop = median(&sample(samples, || {
        black_box(raw.run("noop", 0));
    }));
    let warden_noop = median(&sample(samples, || {
        black_box(warden_run(&tokio, &prepared, "noop", 0));
    }));
    for node in ["log-calls", "storage-reads"] {
        let raw_time = median(&sample(samples, || {
            black_box(raw.run(node, calls));
        }));
        let warden_time = median(&sample(samples, || {
            black_box(warden_run(&tokio, &prepared, node, calls));
        }));
        let per = |total: Duration, base: Duration| {
            total.saturating_sub(base) / u32::try_from(calls).unwrap_or(u32::MAX)
        };
        let (raw_per, warden_per) = (per(raw_time, raw_noop), per(warden_time, warden_noop));
        if node == "log-calls" {
            figures.log_call = warden_per;
        }
        table.row(vec![
            node.replace('-', " "),
            human(raw_per),
            human(warden_per),
            ratio(warden_per, raw_per),
        ]);
    }
    // http-get: the node's GETs against raw hyper's, each on a new loopback connection.
    let gets = scale.size(1_000, 2);
    let address = ok_server();
    let config = WasmSecurityConfig {
        allowed_hosts: warden_host::allowlist::AllowedHosts::parse(&[address.to_string().as_str()])
            .expect("the allowlist"),
        ..grant()
    };
    let prepared = tokio
        .block_on(runtime.prepare(&component, &config))
        .expect("prepare");
    let url = format!("http://{address}/");
    let http_samples = scale.samples(5);
    let raw_time = median(&sample(http_samples, || {
        tokio.block_on(async {
            for _ in 0..gets {
                black_box(raw_get(address).await);
            }
        })
    }));
    let warden_time = median(&sample(http_samples, || {
        let request = RunRequest {
            node: Some("http-gets".into()),
            context: RunContext::for_node("http-gets"),
            inputs: vec![
                Field {
                    name: "n".into(),
                    value: Value::Integer(gets),
                },
                Field {
                    name: "url".into(),
                    value: Value::Text(url.clone()),
                },
            ],
            ..RunRequest::default()
        };
        black_box(tokio.block_on(prepared.run(request)).expect("the gets run"));
    }));
    let divisor = u32::try_from(gets).unwrap_or(u32::MAX);
    let (raw_per, warden_per) = (
        raw_time / divisor,
        warden_time.saturating_sub(warden_noop) / divisor,
    );
    table.row(vec![
        format!("http-get, {gets} to loopback (against raw hyper)"),
        human(raw_per),
        human(warden_per),
        ratio(warden_per, raw_per),
    ]);
    tables.push(table);
}

/// 4. The CPU-bound node under each interruption mode.
fn interruption(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>) -> Vec<(String, Duration)> {
    let size = scale.size(1 << 20, 64);
    let samples = scale.samples(20);
    let mut results = Vec::new();
    for mode in Interruption::ALL {
        let raw = Raw::new(bytes, true, mode);
        let time = median(&sample(samples, || {
            black_box(raw.run("hash", size));
        }));
        results.push((format!("raw, {}", mode.name()), time));
    }
    let (tokio, _runtime, _component, prepared) = prepared_on_one_thread(bytes);
    let warden = median(&sample(samples, || {
        black_box(warden_run(&tokio, &prepared, "hash", size));
    }));
    results.push(("warden (epoch+fuel, always)".into(), warden));
    let none = results[0].1;
    let mut table = Table::new(
        "4. A CPU-bound node under each interruption mode",
        &format!(
            "FNV-1a over {} KiB generated in the node, one run, medians of {samples}; raw \
             Wasmtime with epoch interruption, fuel metering, both or neither, and warden (which \
             always has both: the timeout and the fuel limit). Target: epoch at most 15% over \
             none.",
            size / 1024
        ),
        &["mode", "time", "over none"],
    );
    for (mode, time) in &results {
        table.row(vec![
            mode.clone(),
            human(*time),
            format!(
                "{:+.0}%",
                (time.as_secs_f64() / none.as_secs_f64().max(1e-12) - 1.0) * 100.0
            ),
        ]);
    }
    tables.push(table);
    results
}

/// The process's resident memory, from /proc/self/statm (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `bytes` with a custom section naming `index`: the same node with another digest, so each
/// copy is compiled and prepared on its own, as distinct nodes are.
fn variant(bytes: &[u8], index: usize) -> Vec<u8> {
    let name = b"bench-variant";
    let payload = format!("{index}");
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.push(0);
    // Sizes under 128 fit one LEB128 byte.
    out.push(size as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload.as_bytes());
    out
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

/// Workload 5, memory: resident bytes per idle prepared node (each a distinct node, compiled) and
/// per live instance.
fn memory(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>) {
    let counts: &[usize] = if scale.full { &[1, 100, 1000] } else { &[1, 2] };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut table = Table::new(
        "5. Memory",
        "The process's resident memory (RSS) added by N idle prepared nodes, each a distinct \
         node (the bench node with a custom section naming it, so each is compiled: its code, \
         its linker and `InstancePre`, its described pins), after a first node that brings the \
         runtime's one-time costs; and by N live instances held at once, each called once \
         (raw Wasmtime, on-demand allocator: a store and an instance of the bench node each). \
         warden's live runs are N runs of the same prepared node held open at once, each \
         waiting in an `http-get` on a loopback server that accepts and never answers: a \
         store, an instance in the pool, its fiber stack, its run log and its connection. Per \
         node and per instance: the growth divided by N.",
        &[
            "N",
            "warden: per prepared node",
            "warden: per live run",
            "raw Wasmtime: per live instance",
        ],
    );
    for &count in counts {
        let runtime = Runtime::new().expect("runtime");
        // The runtime's one-time costs (its engine, its pool) come with a first node, which
        // the baseline includes.
        let first = NodeComponent::from_bytes(variant(bytes, usize::MAX)).expect("a component");
        let first = tokio
            .block_on(runtime.prepare(&first, &grant()))
            .expect("prepare the first node");
        let before = resident_bytes();
        let mut prepared = Vec::with_capacity(count);
        for index in 0..count {
            let component =
                NodeComponent::from_bytes(variant(bytes, index)).expect("a variant component");
            prepared.push(
                tokio
                    .block_on(runtime.prepare(&component, &grant()))
                    .expect("prepare a variant"),
            );
        }
        let per_node = resident_bytes().saturating_sub(before) as f64 / count as f64;
        drop((prepared, first));
        drop(runtime);
        let raw = Raw::new(bytes, false, Interruption::None);
        let before = resident_bytes();
        let mut live = Vec::with_capacity(count);
        for _ in 0..count {
            let state = RawState {
                deadline: Instant::now() + Duration::from_secs(30),
                logged: 0,
                storage: Arc::default(),
            };
            let mut store = Store::new(raw.pre.engine(), state);
            let instance = raw.pre.instantiate(&mut store).expect("instantiate");
            // Called once, so its memory is touched as a run's is.
            black_box(raw.call(&mut store, &instance, "noop", 0));
            live.push((store, instance));
        }
        let per_instance = resident_bytes().saturating_sub(before) as f64 / count as f64;
        drop(live);
        let per_run = warden_live_runs(bytes, count);
        table.row(vec![
            count.to_string(),
            mib(per_node),
            mib(per_run),
            mib(per_instance),
        ]);
    }
    tables.push(table);
}

/// A loopback server that accepts connections and never answers, holding them until
/// `release`: runs waiting on it stay live.
struct Silent {
    address: std::net::SocketAddr,
    held: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Silent {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let holder = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                holder.lock().expect("the held connections").push(stream);
            }
        });
        Silent { address, held }
    }

    fn held(&self) -> usize {
        self.held.lock().expect("the held connections").len()
    }

    /// Closes every held connection: the runs waiting on them end.
    fn release(&self) {
        self.held.lock().expect("the held connections").clear();
    }
}

/// RSS added per run by `count` runs of the bench node held open at once (each in an
/// `http-get` to a server that never answers), after a first run has warmed the pool.
fn warden_live_runs(bytes: &[u8], count: usize) -> f64 {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let silent = Silent::start();
    let runtime = Runtime::from_config(RuntimeConfig {
        concurrency: u32::try_from(count + 1).unwrap_or(u32::MAX),
        max_connections: count + 16,
        ..RuntimeConfig::new(warden_host::Storage::in_memory().expect("storage"))
    });
    let component = NodeComponent::from_bytes(bytes.to_vec()).expect("component");
    let config = WasmSecurityConfig {
        allowed_hosts: warden_host::allowlist::AllowedHosts::parse(&[silent
            .address
            .to_string()
            .as_str()])
        .expect("the allowlist"),
        ..grant()
    };
    let prepared = tokio
        .block_on(runtime.prepare(&component, &config))
        .expect("prepare");
    let url = format!("http://{}/", silent.address);
    let request = move || RunRequest {
        node: Some("http-gets".into()),
        context: RunContext::for_node("http-gets"),
        inputs: vec![
            Field {
                name: "n".into(),
                value: Value::Integer(1),
            },
            Field {
                name: "url".into(),
                value: Value::Text(url.clone()),
            },
        ],
        ..RunRequest::default()
    };
    tokio.block_on(async {
        // A first run, ended by closing its connection, brings the pool's one-time costs.
        let first = tokio::spawn({
            let (prepared, request) = (prepared.clone(), request());
            async move { prepared.run(request).await }
        });
        while silent.held() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        silent.release();
        let _ = first.await;
        let before = resident_bytes();
        let runs: Vec<_> = (0..count)
            .map(|_| {
                let (prepared, request) = (prepared.clone(), request());
                tokio::spawn(async move { prepared.run(request).await })
            })
            .collect();
        let waiting = Instant::now();
        while silent.held() < count {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "only {} of {count} runs reached the server",
                silent.held()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let per_run = resident_bytes().saturating_sub(before) as f64 / count as f64;
        silent.release();
        for run in runs {
            let _ = run.await;
        }
        per_run
    })
}

/// The concurrency curves, as an SVG chart.
fn concurrency_chart(
    path: &Path,
    raw: &[Concurrency],
    warden: &[Concurrency],
    extism: &[Concurrency],
) {
    use plotters::prelude::*;
    let top = raw
        .iter()
        .chain(warden)
        .chain(extism)
        .map(|point| point.per_second)
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    let _ = root.fill(&WHITE);
    let Ok(mut chart) = ChartBuilder::on(&root)
        .caption("instantiate + call, runs per second", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0f64..3.0f64, 0.0..top)
    else {
        return;
    };
    let labels = ["1", "2", "16", "64"];
    let _ = chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            labels
                .get(x.round() as usize)
                .map(|label| label.to_string())
                .unwrap_or_default()
        })
        .x_desc("concurrent tasks")
        .y_desc("runs/s")
        .draw();
    for (name, points, color) in [
        ("raw Wasmtime (pooling)", raw, BLUE),
        ("warden", warden, RED),
        ("Extism (create plugin + call)", extism, GREEN),
    ] {
        if points.is_empty() {
            continue;
        }
        let series: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(index, point)| (index as f64, point.per_second))
            .collect();
        if let Ok(drawn) = chart.draw_series(LineSeries::new(series, color.stroke_width(2))) {
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    let _ = chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw();
    let _ = root.present();
}

/// The interruption modes' times, as an SVG bar chart.
fn interruption_chart(path: &Path, results: &[(String, Duration)]) {
    use plotters::prelude::*;
    let top = results
        .iter()
        .map(|(_, time)| time.as_secs_f64() * 1e3)
        .fold(0.001, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    let _ = root.fill(&WHITE);
    let Ok(mut chart) = ChartBuilder::on(&root)
        .caption(
            "FNV-1a over 1 MiB, by interruption mode",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0..results.len(), 0.0..top)
    else {
        return;
    };
    let _ = chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(results.len())
        .x_label_formatter(&|index| {
            results
                .get(*index)
                .map(|(name, _)| name.clone())
                .unwrap_or_default()
        })
        .y_desc("ms")
        .draw();
    let _ = chart.draw_series(results.iter().enumerate().map(|(index, (_, time))| {
        Rectangle::new(
            [(index, 0.0), (index + 1, time.as_secs_f64() * 1e3)],
            BLUE.mix(0.6).filled(),
        )
    }));
    let _ = root.present();
}

fn main() {
    // `cargo bench` passes `--bench`; any other run (cargo test) is the quick pass.
    let full = std::env::args().any(|arg| arg == "--bench");
    let scale = Scale { full };
    let started = Instant::now();
    let bytes = build_bench_node();
    let mut tables = Vec::new();
    if let Ok(only) = std::env::var("WARDEN_BENCH_ONLY") {
        // An experiment: one workload, printed, nothing written.
        match only.as_str() {
            "concurrency" => drop(concurrency(scale, &bytes, &mut tables)),
            "interruption" => drop(interruption(scale, &bytes, &mut tables)),
            "ready" => ready(scale, &bytes, &mut tables, &mut Figures::default()),
            "host-calls" => host_calls(scale, &bytes, &mut tables, &mut Figures::default()),
            "memory" => memory(scale, &bytes, &mut tables),
            "daemon" => daemon::daemon(scale, &bytes, &mut tables),
            "cluster" => cluster::cluster(scale, &bytes, &mut tables),
            other => eprintln!("suite: no workload `{other}`"),
        }
        for table in &tables {
            println!("{}", table.markdown());
        }
        return;
    }
    eprintln!("suite: 1. ready to run");
    let mut figures = Figures::default();
    ready(scale, &bytes, &mut tables, &mut figures);
    eprintln!("suite: 2. concurrency");
    let (raw, warden) = concurrency(scale, &bytes, &mut tables);
    eprintln!("suite: 3. host calls");
    host_calls(scale, &bytes, &mut tables, &mut figures);
    eprintln!("suite: 4. interruption modes");
    let modes = interruption(scale, &bytes, &mut tables);
    eprintln!("suite: 5. memory");
    memory(scale, &bytes, &mut tables);
    eprintln!("suite: 6. the daemon");
    daemon::daemon(scale, &bytes, &mut tables);
    let extism = extism::results(full);
    if let Ok(extism) = &extism {
        tables.push(extism::table(extism, &figures, &warden, &modes));
    }
    eprintln!("suite: 8. the cluster");
    cluster::cluster(scale, &bytes, &mut tables);
    if !full {
        eprintln!(
            "suite: every workload ran once in {:.1} s (quick pass; `cargo xtask bench` measures)",
            started.elapsed().as_secs_f64()
        );
        return;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let charts = docs.join("bench");
    if let Err(error) = std::fs::create_dir_all(&charts) {
        eprintln!("suite: cannot create {}: {error}", charts.display());
        std::process::exit(1);
    }
    let extism_curve = extism.as_ref().map(extism::concurrency).unwrap_or_default();
    concurrency_chart(
        &charts.join("concurrency.svg"),
        &raw,
        &warden,
        &extism_curve,
    );
    interruption_chart(&charts.join("interruption.svg"), &modes);
    let mut report = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (`benches/suite.rs`) on {} with {} cores, \
         {} after {:.0} s of measuring. Every workload runs warden and raw Wasmtime 48 side by \
         side in the same process; read the ratios, which hold on a shared, noisy machine where \
         the absolute times do not. Raw Wasmtime is the speed limit: an `InstancePre`, a plain \
         store, a typed call and host functions that do the least the work needs.\n\n\
         {}What was found investigating missed targets, the micro-benchmarks of \
         `benches/runtime.rs` (criterion) and the history of earlier measurements are in \
         [benchmarks-history.md](benchmarks-history.md).\n\n",
        machine(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today(),
        started.elapsed().as_secs_f64(),
        match &extism {
            Ok(_) => String::new(),
            Err(why) => format!("Extism is not measured in this run: {why}. "),
        }
    );
    for table in &tables {
        report += &table.markdown();
        report += "\n";
        if table.title.starts_with("2.") {
            report += "![runs per second by concurrent tasks](bench/concurrency.svg)\n\n";
        }
        if table.title.starts_with("4.") {
            report += "![time by interruption mode](bench/interruption.svg)\n\n";
        }
    }
    let path = docs.join("BENCHMARKS.md");
    if let Err(error) = std::fs::write(&path, report) {
        eprintln!("suite: cannot write {}: {error}", path.display());
        std::process::exit(1);
    }
    eprintln!("suite: wrote {}", path.display());
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}

/// Today's date (UTC), from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
