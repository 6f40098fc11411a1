//! The audit log in PostgreSQL: one hash chain for the records of every daemon of the cluster.
//!
//! Each record is one row of `warden_audit`: its number (`seq`), its text (`line`, exactly as
//! hashed) and that text's SHA-256 (`hash`). A record's `prev` is the hash of the record before
//! it, as in a daemon's own `audit.jsonl`. Daemons append in turns, under an advisory lock held
//! for the transaction, so the chain never forks: each append reads the last record and adds
//! the next numbers.
//!
//! The daemon writes the records (what a record holds is its business); this module numbers,
//! hashes, stores and reads them.

use crate::database::{BEGIN_SHORT, Database};
use crate::error::ClusterError;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

/// The advisory lock appending daemons take turns on.
const APPEND_LOCK: i64 = 0x7761_7264_656e_0003;

/// Connections of the audit log's own pool.
const CONNECTIONS: u32 = 2;
/// How long a call waits for one of them.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `prev` of the first record.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub line: String,
    pub hash: String,
}

/// The audit log in the cluster's database.
#[derive(Clone)]
pub struct PgAudit {
    pool: PgPool,
}

/// SHA-256 of `line`, in lower-case hex: a record's `hash`, and the next record's `prev`.
pub fn line_hash(line: &str) -> String {
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl PgAudit {
    /// The audit log on `database`, through connections of its own: records are written even
    /// while storage calls hold every connection of the main pool.
    pub fn new(database: &Database) -> Self {
        PgAudit {
            pool: database
                .side_pool(CONNECTIONS, ACQUIRE_TIMEOUT)
                .pool()
                .clone(),
        }
    }

    /// Appends `entries` at the end of the chain in one transaction, and returns the last number
    /// given. `write(entry, seq, prev)` writes the record numbered `seq` whose `prev` is `prev`.
    ///
    /// Either every entry is appended or none is. A commit whose answer was lost (the connection
    /// broke just then) may have been applied: a caller that tries again may append the same
    /// entries twice, under new numbers, never a broken chain.
    pub async fn append<T>(
        &self,
        entries: &[T],
        write: impl Fn(&T, u64, &str) -> String,
    ) -> Result<u64, ClusterError> {
        let mut tx = self.pool.begin_with(BEGIN_SHORT).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let last = sqlx::query("SELECT seq, hash FROM warden_audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let out_of_range = || ClusterError::Schema("the audit log's numbers ran out".into());
        let (mut seq, mut prev) = match last {
            Some(row) => (
                u64::try_from(row.try_get::<i64, _>("seq")?).map_err(|_| out_of_range())?,
                row.try_get::<String, _>("hash")?,
            ),
            None => (0, AUDIT_GENESIS.to_string()),
        };
        let mut numbers = Vec::with_capacity(entries.len());
        let mut lines = Vec::with_capacity(entries.len());
        let mut hashes = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let line = write(entry, seq, &prev);
            prev = line_hash(&line);
            numbers.push(i64::try_from(seq).map_err(|_| out_of_range())?);
            lines.push(line);
            hashes.push(prev.clone());
        }
        // One statement for the whole batch.
        sqlx::query(
            "INSERT INTO warden_audit (seq, line, hash)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
        )
        .bind(&numbers)
        .bind(&lines)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The last `limit` records, oldest first.
    pub async fn last(&self, limit: u32) -> Result<Vec<AuditRow>, ClusterError> {
        // In a short transaction: its statement and lock timeouts bound the read.
        let mut tx = self.pool.begin_with(BEGIN_SHORT).await?;
        let rows =
            sqlx::query("SELECT seq, line, hash FROM warden_audit ORDER BY seq DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        rows.iter().rev().map(row).collect()
    }

    /// Up to `limit` records numbered after `seq`, oldest first: the whole chain, page by page.
    pub async fn after(&self, seq: i64, limit: u32) -> Result<Vec<AuditRow>, ClusterError> {
        let mut tx = self.pool.begin_with(BEGIN_SHORT).await?;
        let rows = sqlx::query(
            "SELECT seq, line, hash FROM warden_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(row).collect()
    }
}

fn row(row: &sqlx::postgres::PgRow) -> Result<AuditRow, ClusterError> {
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        line: row.try_get("line")?,
        hash: row.try_get("hash")?,
    })
}
