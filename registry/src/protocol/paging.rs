//! The sizes both halves agree on: what a host reads of an index, a log and a page of it, and
//! the largest package a registry accepts. A registry fills every page of the log to its
//! bounds, so a host can tell a short page from a stalling server.

/// The largest signed index a host reads.
pub const MAX_INDEX_BYTES: usize = 32 * 1024 * 1024;
/// The largest log a host reads in one answer (the whole log, as old clients ask for it).
pub const MAX_LOG_BYTES: usize = 64 * 1024 * 1024;
/// The most entries one page of `GET /v1/log?from=N` holds.
pub const MAX_LOG_PAGE_ENTRIES: u64 = 1000;
/// A page of the log stops growing once it holds this many bytes of JSON (it always holds at
/// least one entry); hosts read a page up to twice this.
pub const MAX_LOG_PAGE_BYTES: usize = 1024 * 1024;

/// The largest package the registry accepts by default (`--max-package` raises it up to four
/// times this; hosts read no larger package).
pub const DEFAULT_MAX_PACKAGE_BYTES: usize = 64 * 1024 * 1024;
