//! A bounded soak: many runs of benign and hostile nodes, mixed, concurrently through one
//! `Runtime`. Every benign result must be right, every hostile run must end the way its attack
//! ends (the limit it hits, a trap, an embedder error), the host's memory must reach a plateau,
//! and its open file descriptors must return to where they started.
//!
//! `cargo xtask test` runs a short version (600 runs); `cargo xtask soak --runs N` a longer one.
//! The runs are set by `WARDEN_SOAK_RUNS`.

use crate::adversarial::hostile;
use crate::support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::build::Target;
use warden_host::embedder::Functions;
use warden_host::{
    Capabilities, Error, LimitKind, Limits, NodeComponent, PreparedNode, Runtime, Storage, Value,
    WasmSecurityConfig,
};

const DEFAULT_RUNS: usize = 600;
const CONCURRENCY: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Benign,
    Spin,
    Grow,
    Trap,
    Recurse,
    Flood,
    Block,
    Panic,
}

/// One run in sixteen of each hostile kind, the rest benign; Block once in 32 (each one holds a
/// blocking thread for the handler's whole sleep).
fn kind_of(index: usize) -> Kind {
    match index % 32 {
        1 | 17 => Kind::Spin,
        3 | 19 => Kind::Grow,
        5 | 21 => Kind::Trap,
        7 | 23 => Kind::Recurse,
        9 | 25 => Kind::Flood,
        11 => Kind::Block,
        13 | 29 => Kind::Panic,
        _ => Kind::Benign,
    }
}

const CALL: &str =
    r#"(import "warden:node/functions@0.1.0" "call" (func $call (param i32 i32 i32 i32 i32)))"#;

fn hostile_node(kind: Kind) -> NodeComponent {
    let call =
        "(call $call (i32.const 1024) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 2048))";
    let name = r#"(data (i32.const 1024) "host")"#;
    let (imports, data, body) = match kind {
        Kind::Spin => ("", "", "(loop $l (br $l))"),
        Kind::Grow => (
            "",
            "",
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
        ),
        Kind::Trap => ("", "", "unreachable"),
        Kind::Recurse => (
            "",
            "(func $deep (param i32) (result i32) (call $deep (i32.add (local.get 0) (i32.const 1))))",
            "(drop (call $deep (i32.const 0)))",
        ),
        Kind::Flood => (
            hostile::LOG,
            "",
            r#"(block $done (loop $again
                 (br_if $done (i32.ge_u (local.get $i) (i32.const 100000)))
                 (call $log (i32.const 2) (i32.const 1024) (i32.const 0))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $again)))"#,
        ),
        Kind::Block | Kind::Panic => (CALL, name, call),
        Kind::Benign => unreachable!("benign runs use an SDK node"),
    };
    NodeComponent::from_bytes(hostile::component(imports, data, body)).unwrap()
}

fn limits(kind: Kind) -> Limits {
    Limits {
        fuel: Some(50_000_000),
        timeout: match kind {
            Kind::Block => Duration::from_millis(300),
            _ => Duration::from_secs(20),
        },
        memory_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    }
}

/// What a run of `kind` must end with, as a short word.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Benign | Kind::Flood => "ok",
        Kind::Spin => "fuel",
        Kind::Grow => "memory",
        Kind::Trap => "trap",
        Kind::Recurse => "stack",
        Kind::Block => "timeout",
        Kind::Panic => "callback",
    }
}

fn ended(result: &Result<warden_host::RunOutcome, Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(Error::Limit { kind, .. }) => match kind {
            LimitKind::Fuel => "fuel".into(),
            LimitKind::Memory => "memory".into(),
            LimitKind::Stack => "stack".into(),
            LimitKind::Timeout => "timeout".into(),
            other => format!("limit {other}"),
        },
        Err(Error::Trapped(_)) => "trap".into(),
        Err(Error::Callback(_)) => "callback".into(),
        Err(other) => format!("other: {other}"),
    }
}

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// The soak measures this process's memory and descriptors: it runs in a child process of its
/// own, so that the other tests of the binary do not count.
#[test]
fn a_bounded_soak_of_mixed_benign_and_hostile_runs() {
    let output = in_child("soak::soak_child");
    assert!(output.contains("soak: open descriptors"), "{output}");
}

#[test]
#[ignore = "run in a child process by a_bounded_soak_of_mixed_benign_and_hostile_runs"]
fn soak_child() {
    let runs: usize = std::env::var("WARDEN_SOAK_RUNS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    // The panicking handler panics on purpose: keep its reports out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("the soak's handler") {
            report(info);
        }
    }));
    let benign = load(&example("text-transform", Target::Unknown));
    let warden = Runtime::with_options(Storage::in_memory().unwrap(), CONCURRENCY as u32);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut functions = Functions::default();
    functions.register("host", Capabilities::empty(), |arguments| {
        if arguments.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(Vec::new())
    });
    let mut panicking = Functions::default();
    panicking.register("host", Capabilities::empty(), |_| {
        panic!("the soak's handler")
    });
    let functions = Arc::new(functions);
    let panicking = Arc::new(panicking);

    let kinds = [
        Kind::Benign,
        Kind::Spin,
        Kind::Grow,
        Kind::Trap,
        Kind::Recurse,
        Kind::Flood,
        Kind::Block,
        Kind::Panic,
    ];
    let prepared: BTreeMap<Kind, PreparedNode> = tokio.block_on(async {
        let mut prepared = BTreeMap::new();
        for kind in kinds {
            let node = match kind {
                Kind::Benign => benign.clone(),
                kind => hostile_node(kind),
            };
            let config = WasmSecurityConfig {
                capabilities: Capabilities::FUNCTIONS,
                limits: limits(kind),
                ..WasmSecurityConfig::default()
            };
            prepared.insert(kind, warden.prepare(&node, &config).await.unwrap());
        }
        prepared
    });
    let prepared = Arc::new(prepared);

    let run_one = |index: usize| {
        let kind = kind_of(index);
        let prepared = prepared.clone();
        let functions = match kind {
            Kind::Panic => panicking.clone(),
            _ => functions.clone(),
        };
        async move {
            let text = format!("soak run {index}");
            let mut request = match kind {
                Kind::Benign => request("text-transform", &[("text", Value::Text(text.clone()))]),
                _ => hostile::request(),
            };
            request.functions = Some(functions);
            let result = prepared[&kind].run(request).await;
            if kind == Kind::Benign
                && let Ok(outcome) = &result
            {
                assert_eq!(output(outcome, "result"), &Value::Text(text.to_uppercase()));
                assert_eq!(output(outcome, "words"), &Value::Integer(3));
            }
            if kind == Kind::Flood
                && let Ok(outcome) = &result
            {
                assert!(outcome.log.len() <= Limits::default().host.log_bytes / 32 + 1);
            }
            (kind, ended(&result))
        }
    };

    // A first wave warms every pool slot, engine and allocator arena up; the baselines are
    // taken after it.
    let started = Instant::now();
    let mut counts: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    let wave = |range: std::ops::Range<usize>| {
        tokio.block_on(async {
            let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
            let mut tasks = Vec::new();
            for index in range {
                let permit = semaphore.clone().acquire_owned().await.unwrap();
                let run = run_one(index);
                tasks.push(tokio::spawn(async move {
                    let ended = run.await;
                    drop(permit);
                    ended
                }));
            }
            let mut ended = Vec::new();
            for task in tasks {
                ended.push(task.await.unwrap());
            }
            ended
        })
    };
    let warm = runs.min(64);
    for result in wave(0..warm) {
        *counts.entry(result).or_default() += 1;
    }
    // Blocked handlers of the warm-up finish their sleep.
    std::thread::sleep(Duration::from_millis(600));
    let descriptors_before = open_descriptors();
    let mut resident = vec![resident_bytes()];
    let steps = 8;
    let step = (runs - warm).div_ceil(steps).max(1);
    let mut next = warm;
    while next < runs {
        let end = (next + step).min(runs);
        for result in wave(next..end) {
            *counts.entry(result).or_default() += 1;
        }
        resident.push(resident_bytes());
        next = end;
    }
    std::thread::sleep(Duration::from_millis(600));
    let descriptors_after = open_descriptors();
    let took = started.elapsed();

    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "soak: {runs} runs in {took:.1?} ({:.0} runs/s), {CONCURRENCY} at once",
        runs as f64 / took.as_secs_f64()
    );
    for ((kind, ended), count) in &counts {
        println!("soak:   {kind:?} ended {ended}: {count}");
    }
    println!(
        "soak: resident MiB after each step: {:?}",
        resident
            .iter()
            .map(|&bytes| mib(bytes).round())
            .collect::<Vec<_>>()
    );
    println!("soak: open descriptors {descriptors_before} before, {descriptors_after} after");

    for ((kind, ended), count) in &counts {
        assert_eq!(
            ended.as_str(),
            expected(*kind),
            "{count} {kind:?} runs ended {ended}"
        );
    }
    // A plateau: the second half of the run grows no further than a little over the first.
    let half = resident.len() / 2;
    let first = resident[..=half].iter().copied().max().unwrap_or(0);
    let second = resident[half..].iter().copied().max().unwrap_or(0);
    assert!(
        second <= first + first / 4 + 32 * 1024 * 1024,
        "resident memory kept growing: {:.0} MiB in the first half, {:.0} MiB in the second",
        mib(first),
        mib(second)
    );
    assert!(
        descriptors_after <= descriptors_before + 2,
        "open descriptors grew from {descriptors_before} to {descriptors_after}"
    );
}
