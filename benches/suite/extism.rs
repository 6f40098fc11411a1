//! Workload 7: Extism, the runtime users would pick instead, beside warden. Extism 1.30 is built
//! on Wasmtime 43, so its bench is a workspace of its own (benches/extism/) that `cargo xtask
//! bench` runs first; its JSON results, named by `WARDEN_BENCH_EXTISM`, are read here and set
//! against what this suite measured of warden in the same `cargo xtask bench`.

use super::{Concurrency, Figures, Table, human};
use serde_json::Value as Json;
use std::time::Duration;

/// Extism's results, or why there are none.
pub fn results(full: bool) -> Result<Json, String> {
    if !full {
        return Err("the quick pass does not measure".into());
    }
    let path = std::env::var_os("WARDEN_BENCH_EXTISM").ok_or_else(|| {
        "its bench (benches/extism/) runs with `cargo xtask bench`, not `cargo bench` alone"
            .to_string()
    })?;
    let text = std::fs::read_to_string(&path).map_err(|error| {
        format!(
            "its results ({}) cannot be read: {error}",
            std::path::Path::new(&path).display()
        )
    })?;
    serde_json::from_str(&text).map_err(|error| format!("its results are not JSON: {error}"))
}

fn nanos(value: &Json) -> Duration {
    Duration::from_secs_f64(value.as_f64().unwrap_or(0.0).max(0.0) / 1e9)
}

/// Extism's create + call runs from concurrent threads.
pub fn concurrency(results: &Json) -> Vec<Concurrency> {
    results["concurrency"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .map(|point| Concurrency {
                    tasks: point["tasks"].as_u64().unwrap_or(0) as usize,
                    per_second: point["per_second"].as_f64().unwrap_or(0.0),
                    p50: nanos(&point["p50_ns"]),
                    p99: nanos(&point["p99_ns"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How many times faster warden is: `theirs / ours`.
fn faster(theirs: Duration, ours: Duration) -> String {
    format!(
        "{:.1}x",
        theirs.as_secs_f64() / ours.as_secs_f64().max(1e-12)
    )
}

pub fn table(
    results: &Json,
    figures: &Figures,
    warden: &[Concurrency],
    modes: &[(String, Duration)],
) -> Table {
    let mut table = Table::new(
        "7. Extism",
        &format!(
            "Extism {} (the `extism` host crate, Wasmtime 43, its defaults) running a plugin built \
             with `extism-pdk` with the same logic as the bench node (benches/extism/), measured \
             in the same `cargo xtask bench` as the rows above. Extism creates a plugin from \
             compiled code and calls it where warden instantiates a prepared node and runs it; \
             its host function `log` counts the message's bytes, as raw Wasmtime's does, where \
             warden keeps the record. Extism always interrupts by epoch; fuel is a plugin's \
             choice. Target: instantiate + call at least 8x faster than Extism creating a \
             plugin and calling it.",
            results["extism"].as_str().unwrap_or("1.30")
        ),
        &["", "Extism", "warden", "warden is faster by"],
    );
    let compile = nanos(&results["compile_ns"]);
    table.row(vec![
        "cold: compile (Extism: its kernel module too; warden: and link)".into(),
        human(compile),
        human(figures.cold),
        faster(compile, figures.cold),
    ]);
    for (theirs, ours) in concurrency(results).iter().zip(warden) {
        table.row(vec![
            format!(
                "create + call a no-op, {} task{}: runs/s (p50)",
                theirs.tasks,
                if theirs.tasks == 1 { "" } else { "s" }
            ),
            format!("{:.0} ({})", theirs.per_second, human(theirs.p50)),
            format!("{:.0} ({})", ours.per_second, human(ours.p50)),
            format!("{:.1}x", ours.per_second / theirs.per_second.max(1e-9)),
        ]);
    }
    let create_call = nanos(&results["create_call_ns"]);
    let existing = nanos(&results["existing_call_ns"]);
    table.row(vec![
        "create + call, one thread, median of 2,000".into(),
        human(create_call),
        "–".into(),
        "–".into(),
    ]);
    table.row(vec![
        "a call on a plugin created before (warden has no such call: each run is a new \
         instance)"
            .into(),
        human(existing),
        "–".into(),
        "–".into(),
    ]);
    let log_call = nanos(&results["log_call_ns"]);
    table.row(vec![
        "one log call".into(),
        human(log_call),
        human(figures.log_call),
        faster(log_call, figures.log_call),
    ]);
    let warden_hash = modes
        .iter()
        .find(|(mode, _)| mode.starts_with("warden"))
        .map(|(_, time)| *time)
        .unwrap_or_default();
    let kib = results["hash_bytes"].as_i64().unwrap_or(0) / 1024;
    for (mode, key) in [
        ("epoch", "hash_epoch_ns"),
        ("epoch + fuel", "hash_epoch_fuel_ns"),
    ] {
        let theirs = nanos(&results[key]);
        table.row(vec![
            format!("FNV-1a over {kib} KiB, Extism with {mode} (warden: epoch + fuel)"),
            human(theirs),
            human(warden_hash),
            faster(theirs, warden_hash),
        ]);
    }
    table
}
