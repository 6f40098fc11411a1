//! Extism beside warden: the workloads of benches/suite.rs that Extism can run, measured with
//! the `extism` host crate on a plugin built with extism-pdk (plugin/, the logic of warden's bench
//! node).
//!
//! `warden-bench-extism --out FILE` measures and writes the results as JSON, which the suite
//! folds into docs/BENCHMARKS.md (`cargo xtask bench` runs both). `--quick` runs every workload
//! once with tiny sizes and writes nothing: it proves the bench builds and runs (`cargo xtask
//! test`), and claims nothing about time.

use extism::{CompiledPlugin, CurrentPlugin, Error, PTR, Plugin, PluginBuilder, UserData, Val};
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../../common/scale.rs"]
mod scale;
use scale::{Scale, median, percentile};

/// Bytes the host's `log` has seen: the least work a log call can do, as in raw Wasmtime's.
static LOGGED: AtomicU64 = AtomicU64::new(0);

fn log(
    plugin: &mut CurrentPlugin,
    inputs: &[Val],
    _: &mut [Val],
    _: UserData<()>,
) -> Result<(), Error> {
    let input = inputs
        .first()
        .ok_or_else(|| Error::msg("log takes a message"))?;
    let message: &str = plugin.memory_get_val(input)?;
    LOGGED.fetch_add(message.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scale, out) = match args.as_slice() {
        [flag] if flag == "--quick" => (Scale { full: false }, None),
        [flag, path] if flag == "--out" => (Scale { full: true }, Some(PathBuf::from(path))),
        _ => {
            eprintln!("usage: warden-bench-extism --quick | --out FILE");
            std::process::exit(2);
        }
    };
    let wasm = match build_plugin() {
        Ok(wasm) => wasm,
        Err(error) => {
            eprintln!("extism bench: {error}");
            std::process::exit(1);
        }
    };
    let results = match measure(scale, &wasm) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("extism bench: {error}");
            std::process::exit(1);
        }
    };
    match out {
        None => eprintln!("extism bench: every workload ran once (quick pass)"),
        Some(path) => {
            let text = serde_json::to_string_pretty(&results).unwrap_or_default();
            if let Err(error) = std::fs::write(&path, text) {
                eprintln!("extism bench: cannot write {}: {error}", path.display());
                std::process::exit(1);
            }
            eprintln!("extism bench: wrote {}", path.display());
        }
    }
}

/// Builds plugin/ for wasm32-unknown-unknown (release) and returns the module's bytes.
fn build_plugin() -> Result<Vec<u8>, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("target"))
        .join("plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
        ])
        .arg(here.join("plugin/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|error| format!("cannot start cargo to build the plugin: {error}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugin failed ({status}); is the target installed? `rustup target add wasm32-unknown-unknown`"
        ));
    }
    let path = target.join("wasm32-unknown-unknown/release/warden_bench_extism_plugin.wasm");
    std::fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn builder(wasm: &[u8], fuel: Option<u64>) -> PluginBuilder<'static> {
    let mut builder = PluginBuilder::new(wasm.to_vec())
        .with_wasi(false)
        .with_cache_disabled()
        .with_function("log", [PTR], [], UserData::new(()), log);
    if let Some(fuel) = fuel {
        builder = builder.with_fuel_limit(fuel);
    }
    builder
}

fn call(plugin: &mut Plugin, function: &str, n: i64) -> Result<String, Error> {
    plugin.call::<String, String>(function, n.to_string())
}

/// Latencies of `samples` runs of `f`, after a warm-up, sorted.
fn sample(
    samples: usize,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<Vec<Duration>, Error> {
    for _ in 0..samples.min(20) {
        f()?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(times)
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

fn measure(scale: Scale, wasm: &[u8]) -> Result<Value, Error> {
    // 1. Ready to run: compiling the module (Extism's CompiledPlugin; its on-disk cache off).
    eprintln!("extism bench: compile");
    let compile = median(&sample(scale.samples(10), || {
        black_box(CompiledPlugin::new(builder(wasm, None))?);
        Ok(())
    })?);
    let compiled = Arc::new(CompiledPlugin::new(builder(wasm, None))?);

    // 2. Create a plugin from the compiled code and call its no-op, and a call on a plugin that
    // exists already; then create + call from concurrent threads.
    eprintln!("extism bench: create + call");
    let create_call = median(&sample(scale.samples(2_000), || {
        let mut plugin = Plugin::new_from_compiled(&compiled)?;
        black_box(call(&mut plugin, "noop", 0)?);
        Ok(())
    })?);
    let mut plugin = Plugin::new_from_compiled(&compiled)?;
    let existing_call = median(&sample(scale.samples(20_000), || {
        black_box(call(&mut plugin, "noop", 0)?);
        Ok(())
    })?);
    let mut concurrency = Vec::new();
    for tasks in [1usize, 2, 16, 64] {
        concurrency.push(concurrent(
            &compiled,
            tasks,
            scale.duration(Duration::from_secs(2)),
        )?);
    }

    // 3. Log calls, per call: a run of n calls less a run of none, each on a new plugin (on one
    // plugin, every run of 100,000 calls is slower than the one before: 72, 151, 282 and 469 ms
    // for the first four here, so a long-lived plugin would be measured at its worst).
    eprintln!("extism bench: host calls");
    let calls = scale.size(100_000, 10);
    let fresh = |n: i64| -> Result<(), Error> {
        let mut plugin = Plugin::new_from_compiled(&compiled)?;
        black_box(call(&mut plugin, "log_calls", n)?);
        Ok(())
    };
    let with_calls = median(&sample(scale.samples(20), || fresh(calls))?);
    let without = median(&sample(scale.samples(20), || fresh(0))?);
    let per_log_call = with_calls.saturating_sub(without).as_secs_f64() * 1e9 / calls as f64;

    // 4. The CPU-bound hash, on an existing plugin: Extism always interrupts by epoch; fuel is
    // the plugin's choice.
    eprintln!("extism bench: interruption");
    let bytes = scale.size(1024 * 1024, 1024);
    let hash_epoch = median(&sample(scale.samples(20), || {
        black_box(call(&mut plugin, "hash", bytes)?);
        Ok(())
    })?);
    let fuelled = CompiledPlugin::new(builder(wasm, Some(u64::MAX / 2)))?;
    let mut fuelled = Plugin::new_from_compiled(&fuelled)?;
    let hash_epoch_fuel = median(&sample(scale.samples(20), || {
        black_box(call(&mut fuelled, "hash", bytes)?);
        Ok(())
    })?);

    Ok(json!({
        "extism": "1.30.0",
        "compile_ns": nanos(compile),
        "create_call_ns": nanos(create_call),
        "existing_call_ns": nanos(existing_call),
        "concurrency": concurrency,
        "log_call_ns": per_log_call,
        "hash_bytes": bytes,
        "hash_epoch_ns": nanos(hash_epoch),
        "hash_epoch_fuel_ns": nanos(hash_epoch_fuel),
        "logged_bytes": LOGGED.load(Ordering::Relaxed),
    }))
}

/// Create + call from `tasks` threads for `length`: runs per second, p50 and p99.
fn concurrent(
    compiled: &Arc<CompiledPlugin>,
    tasks: usize,
    length: Duration,
) -> Result<Value, Error> {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let compiled = compiled.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, Error> {
                let mut times = Vec::new();
                while start.elapsed() < length {
                    let begun = Instant::now();
                    let mut plugin = Plugin::new_from_compiled(&compiled)?;
                    black_box(call(&mut plugin, "noop", 0)?);
                    times.push(begun.elapsed());
                }
                Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for handle in handles {
        let joined = handle
            .join()
            .map_err(|_| Error::msg("a bench thread panicked"))?;
        times.extend(joined?);
    }
    let elapsed = start.elapsed();
    times.sort_unstable();
    Ok(json!({
        "tasks": tasks,
        "per_second": times.len() as f64 / elapsed.as_secs_f64(),
        "p50_ns": nanos(median(&times)),
        "p99_ns": nanos(percentile(&times, 0.99)),
    }))
}
