//! The audit log: append-only JSON lines of what the daemon decided (reloads, nodes loaded and
//! refused, grants, nodes stopped, capability denials, limit kills, failed authentications).
//!
//! Each record carries `prev`, the SHA-256 of the line before it (the first record's is 64
//! zeros), and `seq`, its number, as the registry's log chains its entries: a line removed,
//! changed or reordered breaks the chain at that point, and [`verify`] names the line.
//! A restart continues the chain from the last line of the file.
//!
//! In a cluster the records of every daemon go to one chain in the cluster's database
//! (`warden_cluster::PgAudit`), each with the `daemon` that recorded it. A writer task appends
//! them in batches, so recording never waits for the database: records wait in a bounded queue
//! while the database is away, and are counted as failures only when that queue is full.

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warden_cluster::{AuditRow, PgAudit};

/// The most of the log's end that [`AuditLog::tail`] reads.
pub const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// The `prev` of the first record.
pub const GENESIS: &str = warden_cluster::AUDIT_GENESIS;

/// Records a cluster's writer task may hold while the database is away (a few MiB).
const CLUSTER_QUEUE: usize = 10_000;
/// Records appended in one transaction at most.
const CLUSTER_BATCH: usize = 256;
/// How long one append to the cluster's database may take before it is tried again.
/// Longer than an append's own bounds (a connection, the lock, the statements), so that a
/// slow commit is waited for rather than tried again beside itself.
const APPEND_TIMEOUT: Duration = Duration::from_secs(45);
/// The records checked at start in a cluster: the chain's end, not all of it (every daemon
/// starts, and the chain is as long as the cluster's history).
pub const CLUSTER_CHECKED_AT_START: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit log {} is broken at line {line}: {reason}; move it aside to start a new chain", path.display())]
    Broken {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "the cluster's audit log (table warden_audit) is broken at record {seq}: {reason}; someone changed or removed records: keep a copy of the table as evidence"
    )]
    ClusterBroken { seq: i64, reason: String },
    #[error("cannot read the cluster's audit log: {0}")]
    ClusterRead(#[from] warden_cluster::ClusterError),
}

pub struct AuditLog {
    sink: Sink,
}

enum Sink {
    /// `audit.jsonl` in the data directory.
    File { path: PathBuf, state: Mutex<Chain> },
    /// The cluster's chain in PostgreSQL.
    Cluster(ClusterSink),
}

struct ClusterSink {
    store: PgAudit,
    queue: mpsc::Sender<Message>,
    /// Set while records are being dropped (the queue is full): reported once.
    dropping: std::sync::Arc<AtomicBool>,
}

enum Message {
    Record(Pending),
    /// Answered once every record sent before it is in the database.
    Flush(oneshot::Sender<()>),
}

/// A record waiting for the cluster's writer task: numbered and chained when it is appended.
struct Pending {
    time: u64,
    event: String,
    fields: Json,
}

struct Chain {
    file: std::fs::File,
    /// The file's length after the last whole record: a failed write is cut back to it, so
    /// no torn record is left for the next start to refuse.
    len: u64,
    seq: u64,
    prev: String,
    /// Set when a write failed: reported once, and the daemon keeps serving.
    failed: bool,
}

fn sha256_hex(bytes: &[u8]) -> String {
    warden_package::hex(&Sha256::digest(bytes))
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking the whole chain first: a daemon does not
    /// append to a log that was tampered with.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        let (seq, prev) = match std::fs::File::open(path) {
            Ok(_) => {
                repair_torn_tail(path)?;
                verify(path)?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (0, GENESIS.to_string()),
            Err(error) => return Err(open_error(error)),
        };
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(open_error)?;
        let len = file.metadata().map_err(open_error)?.len();
        Ok(AuditLog {
            sink: Sink::File {
                path: path.to_path_buf(),
                state: Mutex::new(Chain {
                    file,
                    len,
                    seq,
                    prev,
                    failed: false,
                }),
            },
        })
    }

    /// The cluster's audit log, after checking the end of its chain (the last
    /// [`CLUSTER_CHECKED_AT_START`] records; all of them in a shorter chain): a break is logged
    /// and shown by `warden_audit_chain_broken`. `daemon` names this daemon in its records.
    /// Starts the writer task: call from within the runtime.
    pub async fn cluster(store: PgAudit, daemon: String) -> Result<AuditLog, AuditError> {
        let rows = store.last(CLUSTER_CHECKED_AT_START).await?;
        let start = match rows.len() < CLUSTER_CHECKED_AT_START as usize {
            true => ChainStart::Genesis,
            false => ChainStart::Window,
        };
        // Reported, not refused: one row would otherwise keep every daemon of the cluster
        // from starting. New records chain on from the last one, as found.
        let broken = verify_rows(&rows, start).is_err_and(|error| {
            tracing::error!("{error}");
            true
        });
        metrics::gauge!(crate::telemetry::AUDIT_CHAIN_BROKEN).set(f64::from(u8::from(broken)));
        let (queue, receiver) = mpsc::channel(CLUSTER_QUEUE);
        let dropping = std::sync::Arc::new(AtomicBool::new(false));
        tokio::spawn(write_to_cluster(
            store.clone(),
            daemon,
            receiver,
            dropping.clone(),
        ));
        Ok(AuditLog {
            sink: Sink::Cluster(ClusterSink {
                store,
                queue,
                dropping,
            }),
        })
    }

    /// Where the records go, for the operator: the file's path, or the cluster's table.
    pub fn location(&self) -> String {
        match &self.sink {
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Cluster(_) => "the cluster's database (table warden_audit)".to_string(),
        }
    }

    /// The last `limit` whole records, oldest first.
    pub async fn tail(&self, limit: usize) -> Result<Vec<Json>, AuditError> {
        match &self.sink {
            Sink::File { path, state } => {
                file_tail(path, state, limit).map_err(|source| AuditError::Open {
                    path: path.clone(),
                    source,
                })
            }
            Sink::Cluster(sink) => {
                let limit = u32::try_from(limit).unwrap_or(u32::MAX);
                let rows = sink.store.last(limit).await?;
                Ok(rows
                    .iter()
                    .filter_map(|row| serde_json::from_str(&row.line).ok())
                    .collect())
            }
        }
    }

    /// Waits (at most `within`) until every record made so far is written, as the process is
    /// about to end. A file's records are written when they are made; a cluster's wait in the
    /// writer task's queue, and those still waiting after `within` are counted as failures,
    /// with a warning. False when some were not written.
    pub async fn flush(&self, within: Duration) -> bool {
        let Sink::Cluster(sink) = &self.sink else {
            return true;
        };
        let (done, written) = oneshot::channel();
        let flushed =
            async { sink.queue.send(Message::Flush(done)).await.is_ok() && written.await.is_ok() };
        if tokio::time::timeout(within, flushed).await.unwrap_or(false) {
            return true;
        }
        // About those still queued (the flush request among them, when it got in; a batch the
        // writer holds is not counted).
        let waiting = CLUSTER_QUEUE.saturating_sub(sink.queue.capacity()) as u64;
        metrics::counter!(crate::telemetry::AUDIT_FAILURES).increment(waiting);
        tracing::warn!(
            "{waiting} audit records had not reached the cluster's database within {within:?}; they are lost"
        );
        false
    }

    /// Appends one record: `event` and `fields`, with its number, time and chain link.
    pub fn record(&self, event: &str, fields: Json) {
        match &self.sink {
            Sink::File { path, state } => record_in_file(path, state, event, fields),
            Sink::Cluster(sink) => {
                let pending = Pending {
                    time: warden_registry::protocol::now(),
                    event: event.to_string(),
                    fields,
                };
                if sink.queue.try_send(Message::Record(pending)).is_err() {
                    metrics::counter!(crate::telemetry::AUDIT_FAILURES).increment(1);
                    if !sink.dropping.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "audit records are being dropped: {CLUSTER_QUEUE} wait for the cluster's database"
                        );
                    }
                }
            }
        }
    }
}

/// The last `limit` whole records of the file (oldest first), read from at most its last
/// [`MAX_TAIL_BYTES`], under the writer's lock so no half-written record is seen.
fn file_tail(path: &Path, state: &Mutex<Chain>, limit: usize) -> std::io::Result<Vec<Json>> {
    use std::io::{Read, Seek, SeekFrom};
    let chain = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = std::fs::File::open(path)?;
    let start = chain.len.saturating_sub(MAX_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(chain.len - start).read_to_end(&mut bytes)?;
    drop(chain);
    let mut lines: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    // Starting mid-file, the first line may be the end of a longer one.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let records: Vec<Json> = lines
        .iter()
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    let skip = records.len().saturating_sub(limit);
    Ok(records.into_iter().skip(skip).collect())
}

/// A record's line: its number, time, event, the fields (none of which may replace the
/// chain's own), and the hash of the record before it.
fn record_line(seq: u64, time: u64, event: &str, fields: Json, prev: &str) -> String {
    let mut record = Map::new();
    record.insert("seq".into(), json!(seq));
    record.insert("time".into(), json!(time));
    record.insert("event".into(), json!(event));
    if let Json::Object(fields) = fields {
        for (key, value) in fields {
            if !matches!(key.as_str(), "seq" | "time" | "event" | "prev") {
                record.insert(key, value);
            }
        }
    }
    record.insert("prev".into(), json!(prev));
    Json::Object(record).to_string()
}

fn record_in_file(path: &Path, state: &Mutex<Chain>, event: &str, fields: Json) {
    let mut chain = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let line = record_line(
        chain.seq + 1,
        warden_registry::protocol::now(),
        event,
        fields,
        &chain.prev,
    );
    let mut bytes = line.clone().into_bytes();
    bytes.push(b'\n');
    match chain.file.write_all(&bytes) {
        Ok(()) => {
            chain.len += bytes.len() as u64;
            chain.seq += 1;
            chain.prev = sha256_hex(line.as_bytes());
        }
        Err(error) => {
            metrics::counter!(crate::telemetry::AUDIT_FAILURES).increment(1);
            // A partial record may be on disk: cut it off (in append mode the next write
            // goes to the new end).
            let len = chain.len;
            let _ = chain.file.set_len(len);
            if !chain.failed {
                tracing::error!(path = %path.display(), "cannot write the audit log: {error}");
            }
            chain.failed = true;
        }
    }
}

/// The cluster's writer task: appends the records in batches, in the order they were made,
/// trying again (with backoff) while the database is away. Ends when the log is dropped.
async fn write_to_cluster(
    store: PgAudit,
    daemon: String,
    mut receiver: mpsc::Receiver<Message>,
    dropping: std::sync::Arc<AtomicBool>,
) {
    let mut batch: Vec<Pending> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let take = |message, batch: &mut Vec<Pending>, flushes: &mut Vec<_>| match message {
        Message::Record(pending) => batch.push(pending),
        Message::Flush(done) => flushes.push(done),
    };
    while let Some(message) = receiver.recv().await {
        take(message, &mut batch, &mut flushes);
        // A flush waits for what came before it only; records after it may join the batch.
        while batch.len() < CLUSTER_BATCH {
            match receiver.try_recv() {
                Ok(message) => take(message, &mut batch, &mut flushes),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        let mut failing = false;
        while !batch.is_empty() {
            let appended = tokio::time::timeout(
                APPEND_TIMEOUT,
                store.append(&batch, |pending, seq, prev| {
                    let mut fields = pending.fields.clone();
                    if let Json::Object(fields) = &mut fields {
                        fields.insert("daemon".into(), json!(daemon));
                    }
                    record_line(seq, pending.time, &pending.event, fields, prev)
                }),
            )
            .await;
            match appended {
                Ok(Ok(_)) => {
                    batch.clear();
                    if failing {
                        tracing::info!("the cluster's audit log is written again");
                    }
                    dropping.store(false, Ordering::Relaxed);
                }
                Ok(Err(error)) if !failing => {
                    failing = true;
                    tracing::error!("cannot write the cluster's audit log (trying again): {error}");
                }
                Err(_) if !failing => {
                    failing = true;
                    tracing::error!(
                        "the cluster's audit log did not answer within {APPEND_TIMEOUT:?} (trying again)"
                    );
                }
                _ => {}
            }
            if !batch.is_empty() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// What the first of the rows [`verify_rows`] checks links to.
#[derive(Clone, Copy, Debug)]
pub enum ChainStart<'a> {
    /// The rows are the whole chain: the first is record 1, whose `prev` is the genesis.
    Genesis,
    /// The rows follow this record, checked before (the previous page).
    After(&'a AuditRow),
    /// The rows are the chain's end: the first's `prev` is taken on trust.
    Window,
}

/// Checks that `rows` (consecutive records of the cluster's chain, oldest first) link up:
/// numbers that follow each other, each `hash` the hash of its line, each `prev` the hash of
/// the record before, the first linking to `start`.
pub fn verify_rows(rows: &[AuditRow], start: ChainStart<'_>) -> Result<(), AuditError> {
    let broken = |seq: i64, reason: &str| AuditError::ClusterBroken {
        seq,
        reason: reason.to_string(),
    };
    let mut before: Option<&AuditRow> = match start {
        ChainStart::After(row) => Some(row),
        ChainStart::Genesis | ChainStart::Window => None,
    };
    if let (ChainStart::Genesis, Some(first)) = (start, rows.first())
        && first.seq != 1
    {
        return Err(broken(first.seq, "the records before it are missing"));
    }
    for row in rows {
        let record: Json = serde_json::from_str(&row.line)
            .map_err(|error| broken(row.seq, &format!("not a JSON record: {error}")))?;
        if row.hash != warden_cluster::line_hash(&row.line) {
            return Err(broken(row.seq, "its hash is not the hash of its record"));
        }
        if record["seq"] != json!(row.seq) {
            return Err(broken(row.seq, "its `seq` is not its number"));
        }
        let expected_prev = match before {
            Some(before) if before.seq + 1 != row.seq => {
                return Err(broken(row.seq, "the record before it is missing"));
            }
            Some(before) => Some(before.hash.as_str()),
            None if row.seq == 1 => Some(GENESIS),
            // The first record checked: what it links to is before the window.
            None => None,
        };
        if let Some(expected) = expected_prev
            && record["prev"] != json!(expected)
        {
            return Err(broken(
                row.seq,
                "its `prev` is not the hash of the record before it",
            ));
        }
        before = Some(row);
    }
    Ok(())
}

/// A last line without its newline is a record a crash or a full disk cut short: it is moved
/// to `PATH.torn-SECONDS` (kept for the operator) and cut from the log, so the chain goes on
/// from the last whole record. Anything else that is wrong is left for [`verify`] to refuse.
fn repair_torn_tail(path: &Path) -> Result<(), AuditError> {
    let open_error = |source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(open_error)?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let cut = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    let aside = path.with_extension(format!("jsonl.torn-{}", warden_registry::protocol::now()));
    std::fs::write(&aside, &bytes[cut..]).map_err(open_error)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(open_error)?;
    file.set_len(cut as u64).map_err(open_error)?;
    file.sync_all().map_err(open_error)?;
    tracing::warn!(
        path = %path.display(),
        aside = %aside.display(),
        "the audit log ended in a torn record; it was moved aside and the chain continues"
    );
    Ok(())
}

/// Checks the chain of the log at `path`; returns the last record's number and hash.
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let broken = |line: usize, reason: String| AuditError::Broken {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut seq = 0u64;
    let mut prev = GENESIS.to_string();
    for (index, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| broken(number, error.to_string()))?;
        let record: Json = serde_json::from_slice(&line)
            .map_err(|error| broken(number, format!("not a JSON record: {error}")))?;
        if record["prev"] != json!(prev) {
            return Err(broken(
                number,
                "its `prev` is not the hash of the line before it".into(),
            ));
        }
        if record["seq"] != json!(seq + 1) {
            return Err(broken(number, format!("its `seq` is not {}", seq + 1)));
        }
        seq += 1;
        prev = sha256_hex(&line);
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` records of a cluster's chain, numbered from 1.
    fn cluster_rows(count: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_string();
        (1..=count)
            .map(|seq| {
                let line = record_line(seq as u64, 7, "reload", json!({"daemon": "a"}), &prev);
                prev = warden_cluster::line_hash(&line);
                AuditRow {
                    seq,
                    line,
                    hash: prev.clone(),
                }
            })
            .collect()
    }

    #[test]
    fn a_cluster_chain_verifies_from_any_record_and_tampering_is_found() {
        let rows = cluster_rows(6);
        verify_rows(&rows, ChainStart::Genesis).unwrap();
        // A window starting mid-chain takes its first `prev` on trust; pages follow each other.
        verify_rows(&rows[2..], ChainStart::Window).unwrap();
        verify_rows(&rows[2..], ChainStart::After(&rows[1])).unwrap();
        verify_rows(&[], ChainStart::Genesis).unwrap();
        let check = |rows: &[AuditRow], start| match verify_rows(rows, start) {
            Err(AuditError::ClusterBroken { seq, reason }) => (seq, reason),
            other => panic!("not refused: {other:?}"),
        };
        // The whole chain without its first records; a page that does not follow the last.
        assert_eq!(
            check(&rows[2..], ChainStart::Genesis),
            (3, "the records before it are missing".into())
        );
        assert_eq!(check(&rows[3..], ChainStart::After(&rows[1])).0, 4);

        let broken_at = |rows: &[AuditRow]| match verify_rows(rows, ChainStart::Genesis) {
            Err(AuditError::ClusterBroken { seq, reason }) => (seq, reason),
            other => panic!("not refused: {other:?}"),
        };
        // A record's text changed: its hash no longer matches.
        let mut changed = rows.clone();
        changed[3].line = changed[3].line.replace("reload", "reloaf");
        assert_eq!(broken_at(&changed).0, 4);
        // Changed with its hash recomputed: the next record's `prev` no longer matches.
        changed[3].hash = warden_cluster::line_hash(&changed[3].line);
        let (seq, reason) = broken_at(&changed);
        assert_eq!(seq, 5);
        assert!(reason.contains("prev"), "{reason}");
        // A record removed.
        let mut removed = rows.clone();
        removed.remove(2);
        assert_eq!(
            broken_at(&removed),
            (4, "the record before it is missing".into())
        );
        // A chain whose first record does not start from the genesis.
        let mut forged = rows.clone();
        forged[0].line = record_line(1, 7, "reload", json!({}), &"f".repeat(64));
        forged[0].hash = warden_cluster::line_hash(&forged[0].line);
        assert_eq!(broken_at(&forged[..1]).0, 1);
        // A record whose `seq` is not its row's number.
        let mut renumbered = rows.clone();
        renumbered[5].seq = 7;
        assert_eq!(broken_at(&renumbered).0, 7);
    }

    #[test]
    fn records_chain_across_restarts_and_tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let log = AuditLog::open(&path).unwrap();
            log.record("reload", json!({"generation": 1, "seq": 99}));
            log.record("node_loaded", json!({"node": "a"}));
        }
        let log = AuditLog::open(&path).unwrap();
        log.record("reload", json!({"generation": 2}));
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["prev"], GENESIS);
        assert_eq!(
            records[0]["seq"], 1,
            "a field cannot override the chain's own"
        );
        assert_eq!(records[2]["seq"], 3);
        assert_eq!(verify(&path).unwrap().0, 3);

        // Change one byte of the second record: the third no longer chains.
        std::fs::write(&path, text.replacen("\"node\":\"a\"", "\"node\":\"b\"", 1)).unwrap();
        let error = verify(&path).unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        assert!(AuditLog::open(&path).is_err());

        // A torn last record (a crash mid-write) is moved aside, and the chain goes on.
        std::fs::write(&path, &text).unwrap();
        let mut torn = text.clone().into_bytes();
        torn.extend_from_slice(b"{\"seq\":4,\"ev");
        std::fs::write(&path, &torn).unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.record("reload", json!({}));
        assert_eq!(verify(&path).unwrap().0, 4);
        drop(log);

        // Drop the first record: the new first one does not start the chain.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[1], lines[2])).unwrap();
        assert!(verify(&path).unwrap_err().to_string().contains("line 1"));
    }
}
