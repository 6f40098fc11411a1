//! Durable file writes, which both halves make (a host its package files and new state, the
//! registry its key files and certificate): written under a temporary name, synced, renamed
//! into place, and the directory synced, so a crash leaves the old file or the new one, never
//! a torn one.

use std::path::{Path, PathBuf};

/// A write or sync that failed, with the path it was for.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot sync {}: {source}", path.display())]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| DurableError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

/// `path` with `.partial` added to its name: where `write_durably` stages a file that keeps its
/// own name.
#[cfg(feature = "server")]
pub(crate) fn partial_beside(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    PathBuf::from(temporary)
}

/// Writes `bytes` to `temporary` (beside `path`), syncs it, renames it to `path`, and syncs
/// the directory.
pub(crate) fn write_durably(
    path: &Path,
    temporary: &Path,
    bytes: &[u8],
) -> Result<(), DurableError> {
    use std::io::Write;
    let fail = |source: std::io::Error| DurableError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(temporary).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(temporary, path).map_err(fail)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}
