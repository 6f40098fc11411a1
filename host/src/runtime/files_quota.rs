//! The byte quota of a node instance's private directory (`allow_wasi`). wasmtime-wasi writes
//! straight to the operator's file system, so the quota is held from outside: a run does not
//! start while the directory is over it, and a watchdog measures the directory while the run
//! goes on and ends the run once it is over. What a node can write between two measurements
//! ([`WATCH_INTERVAL`]) is the overshoot.

use crate::error::Error;
use crate::policy::limits::LimitKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a running node's directory is measured.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// What every file and directory costs at least: a file system block, so that empty files
/// count too.
pub const ENTRY_BYTES: u64 = 4096;
/// Entries looked at in one measurement at most; a directory with more is over any quota.
const MAX_ENTRIES: usize = 1_000_000;

/// The bytes a directory tree takes: each file's length rounded up to [`ENTRY_BYTES`], and
/// [`ENTRY_BYTES`] per directory. Stops counting once past `stop_above`. Symbolic links are
/// not followed (wasi:filesystem cannot make them point outside anyway).
pub fn usage(dir: &Path, stop_above: u64) -> u64 {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        total = total.saturating_add(ENTRY_BYTES);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return u64::MAX;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total =
                    total.saturating_add(metadata.len().div_ceil(ENTRY_BYTES).max(1) * ENTRY_BYTES);
            }
            if total > stop_above {
                return total;
            }
        }
    }
    total
}

fn over(dir: &Path, used: u64, quota: u64) -> Error {
    Error::Limit {
        kind: LimitKind::Files,
        detail: format!(
            "the node's files take at least {used} bytes, over the quota of {quota} (in {})",
            dir.display()
        ),
    }
}

/// Refuses to start a run whose directory is over `quota` already.
pub async fn check(dir: &Path, quota: u64) -> Result<(), Error> {
    let owned = dir.to_path_buf();
    let used = tokio::task::spawn_blocking(move || usage(&owned, quota))
        .await
        .unwrap_or(u64::MAX);
    if used > quota {
        return Err(over(dir, used, quota));
    }
    Ok(())
}

/// Measures `dir` every [`WATCH_INTERVAL`] and returns the error to end the run with once it
/// is over `quota`; never returns otherwise.
pub async fn watch(dir: PathBuf, quota: u64) -> Error {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let measured = dir.clone();
        let used = tokio::task::spawn_blocking(move || usage(&measured, quota))
            .await
            .unwrap_or(u64::MAX);
        if used > quota {
            return over(&dir, used, quota);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_blocks_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(usage(dir.path(), u64::MAX), ENTRY_BYTES);
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::write(dir.path().join("small"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/big"), vec![0; 10_000]).unwrap();
        assert_eq!(usage(dir.path(), u64::MAX), 4096 * (1 + 1 + 1 + 1 + 3));
        // It stops counting once past what it was asked about.
        assert!(usage(dir.path(), 5000) > 5000);
    }
}
