//! Connections against the process's limit on open files. Each connection holds a
//! descriptor; when they take the last ones, `accept` fails (the connection waits unaccepted,
//! unrefused) and so does every file the application itself opens, such as an upload's
//! spool file. The connection cap is therefore kept below the limit, with room to spare.

use crate::ServerLimits;

/// What [`fit_file_limit`] found and changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLimit {
    /// The process's limit on open files, after raising it; `None` if unlimited or unknown.
    pub open_files: Option<u64>,
    /// `max_connections` as given, when it had to be lowered to fit under the limit.
    pub lowered_from: Option<usize>,
}

/// Raises the soft limit on open files to the hard one (many systems start processes at
/// 1024 while allowing far more), then lowers `limits.max_connections` so that connections
/// leave `reserve` descriptors for the application's own files. Never below one connection.
pub fn fit_file_limit(limits: &mut ServerLimits, reserve: u64) -> FileLimit {
    let open_files = raise_open_files();
    let lowered_from = open_files.and_then(|open_files| {
        let room = usize::try_from(open_files.saturating_sub(reserve))
            .unwrap_or(usize::MAX)
            .max(1);
        (limits.max_connections > room).then(|| {
            let given = limits.max_connections;
            limits.max_connections = room;
            given
        })
    });
    FileLimit {
        open_files,
        lowered_from,
    }
}

#[cfg(unix)]
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused on some systems (macOS caps an unlimited hard limit lower): keep the soft
        // limit then.
        if setrlimit(Resource::Nofile, raised).is_err() {
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(not(unix))]
fn raise_open_files() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_the_reserve_free() {
        // This process's own limit: whatever it is, the cap ends up under it.
        let mut limits = ServerLimits {
            max_connections: usize::MAX,
            ..ServerLimits::default()
        };
        let fitted = fit_file_limit(&mut limits, 40);
        match fitted.open_files {
            Some(open_files) => {
                assert_eq!(fitted.lowered_from, Some(usize::MAX));
                assert_eq!(
                    limits.max_connections as u64,
                    open_files.saturating_sub(40).max(1)
                );
            }
            None => assert_eq!(limits.max_connections, usize::MAX),
        }
        // A cap that fits is left alone.
        let mut small = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        assert_eq!(fit_file_limit(&mut small, 0).lowered_from, None);
        assert_eq!(small.max_connections, 1);
    }
}
