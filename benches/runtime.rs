//! warden against raw Wasmtime, in the same run, on the same component:
//! - `instantiate+call`: a no-op node, from a prepared (compiled and linked) component;
//! - `host-call`: 1,000 calls of a cheap host function (`context.remaining-ms`) in one run.
//!
//! Raw Wasmtime is the speed limit: an `InstancePre`, a plain `Store`, a typed call, no limits,
//! no fuel, no epochs, no WASI. Results and their ratio go in docs/BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use warden::build::{BuildOptions, Target, build};
use warden_host::{
    Capabilities, Field, NodeComponent, PreparedNode, RunContext, RunRequest, Runtime, Value,
    WasmSecurityConfig,
};
use wasmtime::component::{Component, InstancePre, Linker, TypedFunc};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut,
};

const HOST_CALLS: i64 = 1_000;

#[path = "common/raw_types.rs"]
mod raw_types;
use raw_types::{RawContext, RawField, RawValue};

type RunFunc = TypedFunc<(String, RawContext, Vec<RawField>), (Result<Vec<RawField>, String>,)>;

fn component_bytes() -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = BuildOptions {
        target: Target::Unknown,
        quiet: true,
        ..BuildOptions::default()
    };
    let built =
        build(&root.join("tests/nodes/limits"), &options).expect("build the limits test node");
    std::fs::read(&built[0]).expect("read the component")
}

struct Raw {
    pre: InstancePre<Instant>,
}

impl Raw {
    /// Raw Wasmtime with its default (on-demand) allocator, or with the pooling allocator.
    fn new(bytes: &[u8], pooling: bool) -> Self {
        let mut config = Config::new();
        if pooling {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(
                PoolingAllocationConfig::new(),
            ));
        }
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let mut linker = Linker::new(&engine);
        linker
            .instance("warden:node/context@0.1.0")
            .unwrap()
            // The same work as warden's host function: time left until the deadline.
            .func_wrap("remaining-ms", |store: StoreContextMut<'_, Instant>, ()| {
                Ok((store
                    .data()
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,))
            })
            .unwrap();
        linker.define_unknown_imports_as_traps(&component).unwrap();
        Raw {
            pre: linker.instantiate_pre(&component).unwrap(),
        }
    }

    fn run(&self, node: &str, inputs: Vec<RawField>) -> Vec<RawField> {
        let mut store = Store::new(self.pre.engine(), Instant::now() + Duration::from_secs(30));
        let instance = self.pre.instantiate(&mut store).unwrap();
        let interface = instance
            .get_export_index(&mut store, None, "warden:node/node@0.1.0")
            .unwrap();
        let run = instance
            .get_export_index(&mut store, Some(&interface), "run")
            .unwrap();
        let run: RunFunc = instance.get_typed_func(&mut store, run).unwrap();
        let context = RawContext::for_node(node);
        let (result,) = run
            .call(&mut store, (node.into(), context, inputs))
            .unwrap();
        result.unwrap()
    }
}

fn warden_run(
    tokio: &tokio::runtime::Runtime,
    prepared: &PreparedNode,
    node: &str,
    inputs: Vec<Field>,
) -> Vec<Field> {
    let request = RunRequest {
        node: Some(node.into()),
        context: RunContext::for_node(node),
        inputs,
        ..RunRequest::default()
    };
    tokio.block_on(prepared.run(request)).unwrap().outputs
}

fn benches(c: &mut Criterion) {
    let bytes = component_bytes();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new().unwrap();
    let component = NodeComponent::from_bytes(bytes.clone()).unwrap();
    let config = WasmSecurityConfig {
        capabilities: Capabilities::empty(),
        ..WasmSecurityConfig::default()
    };
    let prepared = tokio
        .block_on(runtime.prepare(&component, &config))
        .unwrap();
    let raw = Raw::new(&bytes, false);
    let pooled = Raw::new(&bytes, true);

    let mut group = c.benchmark_group("instantiate+call");
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(raw.run("noop", Vec::new())))
    });
    group.bench_function("wasmtime-pooling", |b| {
        b.iter(|| black_box(pooled.run("noop", Vec::new())))
    });
    group.bench_function("warden", |b| {
        b.iter(|| black_box(warden_run(&tokio, &prepared, "noop", Vec::new())))
    });
    group.finish();

    let mut group = c.benchmark_group("host-call x1000");
    let raw_inputs = vec![RawField {
        name: "calls".into(),
        value: RawValue::Integer(HOST_CALLS),
    }];
    let inputs = vec![Field::new("calls", Value::Integer(HOST_CALLS))];
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(raw.run("host-calls", raw_inputs.clone())))
    });
    group.bench_function("wasmtime-pooling", |b| {
        b.iter(|| black_box(pooled.run("host-calls", raw_inputs.clone())))
    });
    group.bench_function("warden", |b| {
        b.iter(|| black_box(warden_run(&tokio, &prepared, "host-calls", inputs.clone())))
    });
    group.finish();
}

criterion_group! {
    name = runtime;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(runtime);
