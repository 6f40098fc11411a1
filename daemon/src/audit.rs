//! The audit log: append-only JSON lines of what the daemon decided (reloads, nodes loaded and
//! refused, grants, nodes stopped, capability denials, limit kills, failed authentications).
//!
//! Each record carries `prev`, the SHA-256 of the line before it (the first record's is 64
//! zeros), and `seq`, its number, as the registry's log chains its entries: a line removed,
//! changed or reordered breaks the chain at that point, and [`verify`] names the line.
//! A restart continues the chain from the last line of the file.

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most of the log's end that [`AuditLog::tail`] reads.
pub const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
}

pub struct AuditLog {
    path: PathBuf,
    state: Mutex<Chain>,
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
            path: path.to_path_buf(),
            state: Mutex::new(Chain {
                file,
                len,
                seq,
                prev,
                failed: false,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last `limit` whole records (oldest first), read from at most the last
    /// [`MAX_TAIL_BYTES`] of the file, under the writer's lock so no half-written record is
    /// seen.
    pub fn tail(&self, limit: usize) -> std::io::Result<Vec<Json>> {
        use std::io::{Read, Seek, SeekFrom};
        let chain = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = std::fs::File::open(&self.path)?;
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

    /// Appends one record: `event` and `fields`, with its number, time and chain link.
    pub fn record(&self, event: &str, fields: Json) {
        let mut chain = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut record = Map::new();
        record.insert("seq".into(), json!(chain.seq + 1));
        record.insert("time".into(), json!(warden_registry::protocol::now()));
        record.insert("event".into(), json!(event));
        if let Json::Object(fields) = fields {
            for (key, value) in fields {
                if !matches!(key.as_str(), "seq" | "time" | "event" | "prev") {
                    record.insert(key, value);
                }
            }
        }
        record.insert("prev".into(), json!(chain.prev));
        let line = Json::Object(record).to_string();
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
                    tracing::error!(path = %self.path.display(), "cannot write the audit log: {error}");
                }
                chain.failed = true;
            }
        }
    }
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
