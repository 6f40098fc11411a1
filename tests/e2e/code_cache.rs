//! The compiled-code cache: a cold start compiles and stores, a warm start (another runtime, as
//! another process would be) loads instead of compiling, and an entry that was tampered with,
//! or written under another host's key, is thrown away and compiled again; the run never fails
//! for it. Through the library and through `warden run`.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use warden::build::Target;
use warden_host::{CodeCache, CodeCacheStats, Runtime, RuntimeConfig, Storage, WasmSecurityConfig};

type Warnings = Arc<Mutex<Vec<String>>>;

/// A runtime over the cache in `dir`, opened afresh as a new process would, with its warnings
/// collected.
fn runtime(dir: &Path) -> (Runtime, Arc<CodeCache>, Warnings) {
    let cache = Arc::new(CodeCache::open(dir).unwrap());
    let warnings: Warnings = Arc::default();
    let sink = warnings.clone();
    let runtime = Runtime::from_config(RuntimeConfig {
        code_cache: Some(cache.clone()),
        on_warning: Some(Arc::new(move |line: &str| {
            sink.lock().unwrap().push(line.to_string())
        })),
        ..RuntimeConfig::new(Storage::in_memory().unwrap())
    });
    (runtime, cache, warnings)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect()
}

fn stats(hits: u64, misses: u64, rejected: u64, stored: u64) -> CodeCacheStats {
    CodeCacheStats {
        hits,
        misses,
        rejected,
        stored,
    }
}

#[test]
fn a_warm_start_loads_and_a_tampered_entry_is_compiled_again() {
    let parent = tempfile::tempdir().unwrap();
    let dir = &parent.path().join("code");
    let node = test_node("limits", Target::Unknown);
    let config = WasmSecurityConfig::default();

    // Cold: compiled and stored.
    let (cold, cache, _) = runtime(dir);
    run(&cold, &node, &config, request("noop", &[])).unwrap();
    assert_eq!(cache.stats(), stats(0, 1, 0, 1));
    let stored = entries(dir);
    assert_eq!(stored.len(), 1, "{stored:?}");

    // Warm: loaded, nothing compiled or written.
    let (warm, cache, warnings) = runtime(dir);
    run(&warm, &node, &config, request("noop", &[])).unwrap();
    assert_eq!(cache.stats(), stats(1, 0, 0, 0));
    assert!(warnings.lock().unwrap().is_empty());

    // Tampered: one byte of the compiled code changed. Refused, compiled again, stored again,
    // and the run succeeds.
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&stored[0], &bytes).unwrap();
    let (after, cache, warnings) = runtime(dir);
    run(&after, &node, &config, request("noop", &[])).unwrap();
    assert_eq!(cache.stats(), stats(0, 0, 1, 1));
    let warnings = warnings.lock().unwrap();
    assert!(
        warnings.iter().any(|line| line.contains("does not verify")),
        "{warnings:?}"
    );
    assert_ne!(
        std::fs::read(&stored[0]).unwrap(),
        bytes,
        "the entry was rewritten"
    );
}

#[test]
fn an_entry_from_another_host_is_not_loaded() {
    let parent = tempfile::tempdir().unwrap();
    let ours = &parent.path().join("ours");
    let theirs = &parent.path().join("theirs");
    let node = test_node("limits", Target::Unknown);
    let config = WasmSecurityConfig::default();
    let (other_host, _, _) = runtime(theirs);
    run(&other_host, &node, &config, request("noop", &[])).unwrap();
    // Their entry, under the name ours would look up (same component, same engine), but
    // authenticated with their key.
    let (ours_runtime, cache, _) = runtime(ours);
    let theirs_entry = entries(theirs).remove(0);
    let name = theirs_entry.file_name().unwrap();
    std::fs::copy(&theirs_entry, ours.join(name)).unwrap();
    run(&ours_runtime, &node, &config, request("noop", &[])).unwrap();
    assert_eq!(cache.stats(), stats(0, 0, 1, 1));
}

#[test]
fn warden_run_keeps_compiled_code_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("code");
    let cache_arg = cache.to_str().unwrap();
    let node = build_node("tests/nodes/limits", Target::Unknown, &[]);
    let node = node.to_str().unwrap();
    let noop = |extra: &[&str]| {
        let mut args = vec!["run", node, "--node", "noop", "--grant", "none"];
        args.extend_from_slice(extra);
        warden(&args)
    };
    let first = noop(&["--code-cache", cache_arg]);
    assert!(first.status.success(), "{first:?}");
    let stored = entries(&cache);
    assert_eq!(stored.len(), 1);
    let key_mode = std::fs::metadata(cache.join("cache.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let written = std::fs::metadata(&stored[0]).unwrap();

    // A second run loads the entry: it is not written again (a write is a new file, renamed
    // into place).
    let second = noop(&["--code-cache", cache_arg]);
    assert!(second.status.success(), "{second:?}");
    let now = std::fs::metadata(&stored[0]).unwrap();
    assert_eq!(now.ino(), written.ino());
    assert_eq!(now.modified().unwrap(), written.modified().unwrap());
    assert!(second.stderr.is_empty(), "{second:?}");

    // $WARDEN_CODE_CACHE names the cache as --code-cache does.
    let from_env = dir.path().join("from-env");
    let by_env = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", node, "--node", "noop", "--grant", "none"])
        .env("WARDEN_CODE_CACHE", &from_env)
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");
    assert_eq!(entries(&from_env).len(), 1);

    // A tampered entry: a warning, a run that succeeds, a fresh entry.
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&stored[0], &bytes).unwrap();
    let third = noop(&["--code-cache", cache_arg]);
    assert!(third.status.success(), "{third:?}");
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        stderr.contains("warden: warning: compiled code") && stderr.contains("does not verify"),
        "{stderr}"
    );
    assert_ne!(std::fs::read(&stored[0]).unwrap(), bytes);

    // --no-code-cache keeps nothing; the environment variable names the cache too.
    let elsewhere = dir.path().join("elsewhere");
    let none = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            node,
            "--node",
            "noop",
            "--grant",
            "none",
            "--no-code-cache",
        ])
        .env("WARDEN_CODE_CACHE", &elsewhere)
        .output()
        .unwrap();
    assert!(none.status.success(), "{none:?}");
    assert!(!elsewhere.exists());

    // A key other users can read is refused when the cache is named.
    std::fs::set_permissions(
        cache.join("cache.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let exposed = noop(&["--code-cache", cache_arg]);
    assert_eq!(exposed.status.code(), Some(2), "{exposed:?}");
    assert!(
        String::from_utf8_lossy(&exposed.stderr).contains("can be read by other users"),
        "{exposed:?}"
    );
}
