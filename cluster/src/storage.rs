//! The storage scopes and the execution cache in PostgreSQL, shared by every daemon.
//!
//! Quotas hold across daemons because every write and delete first locks its partition's row in
//! `warden_usage` (created on first use), then reads what it replaces, then writes and updates
//! the count, all in one transaction: two writers of one partition, on any daemons, take turns.
//! Byte counts are the redb backend's (key plus value, and 8 bytes of expiry for a cache entry),
//! so a scope's quota means the same on one machine and in a cluster.

use crate::database::Database;
use sqlx::{PgPool, Postgres, Transaction};
use std::hash::BuildHasher;
use std::sync::Arc;
use warden_host::storage::{StorageBackend, StorageError};

/// Expired cache entries one write reclaims at most, as in the redb backend.
const RECLAIM_PER_WRITE: i64 = 4096;
/// The bytes a cache entry's expiry counts for, as in the redb backend (its 8-byte header).
const CACHE_HEADER_BYTES: u64 = 8;

/// Writers of one partition in this daemon take turns here before they take a connection: a
/// busy partition then holds one of the pool's connections, not all of them. Partitions share
/// stripes by hash; across daemons the partition's row lock orders writers.
const WRITE_STRIPES: usize = 256;
/// How long a writer waits for its turn in this daemon before it is told the storage is busy.
const TURN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Each write transaction's start, in one round trip: READ COMMITTED whatever the database's
/// default (the partition's row lock is what orders writers; a stricter level would only fail
/// them), a lock waited for over 5 s fails the call as busy, a statement over 60 s is cancelled,
/// and a transaction left idle for 30 s (its daemon gone silent) is ended by the server,
/// releasing its locks. `SET LOCAL` rather than connection options, which PgBouncer drops.
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
    SET LOCAL lock_timeout = '5s'; \
    SET LOCAL statement_timeout = '60s'; \
    SET LOCAL idle_in_transaction_session_timeout = '30s'";

/// Storage in the cluster's PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStorage {
    pool: PgPool,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
    hasher: std::hash::RandomState,
}

/// What a node is told when its write waited too long for others.
const BUSY: &str = "the storage is busy with other writers; try again";

/// What a node is told when the database fails it; the detail goes to the host's log (it may
/// name the database's hosts, tables or users, which are none of the node's business).
fn backend(error: sqlx::Error) -> StorageError {
    let busy = match &error {
        sqlx::Error::Database(database) => database
            .code()
            // 55P03: a lock not had within lock_timeout; 57014: a statement cancelled by
            // statement_timeout.
            .is_some_and(|code| code == "55P03" || code == "57014"),
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    };
    tracing::warn!(%error, "a storage call to the cluster's database failed");
    StorageError::Backend(
        if busy {
            BUSY
        } else {
            "the cluster's database did not complete the storage call; the host's log says why"
        }
        .into(),
    )
}

/// A count or a time in milliseconds as PostgreSQL's `bigint`: values past `i64::MAX` (byte
/// counts no quota reaches, times past year 292 million) are `i64::MAX`.
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn bytes(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

/// The first key after every key that starts with `prefix`, when it is easy to name: listing
/// then reads one range of the primary key. Validated prefixes end with `/`.
fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if last.is_ascii() && last < 0x7f {
        let mut end = prefix[..prefix.len() - 1].to_string();
        end.push(char::from(last + 1));
        Some(end)
    } else {
        None
    }
}

enum Table {
    Data,
    Cache { expires_at_ms: u64, now_ms: u64 },
}

impl PgStorage {
    pub fn new(database: &Database) -> Self {
        PgStorage {
            pool: database.pool().clone(),
            stripes: (0..WRITE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn stripe(&self, partition: &[u8]) -> &tokio::sync::Mutex<()> {
        let index = self.hasher.hash_one(partition) as usize % self.stripes.len();
        &self.stripes[index]
    }

    /// A write transaction (see `BEGIN_WRITE`).
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StorageError> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(backend)
    }

    /// This daemon's turn to write `partition`, or busy after `TURN_TIMEOUT`.
    async fn turn(
        &self,
        partition: &[u8],
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, StorageError> {
        tokio::time::timeout(TURN_TIMEOUT, self.stripe(partition).lock())
            .await
            .map_err(|_| StorageError::Backend(BUSY.into()))
    }

    /// Locks the partition's usage row, creating it at zero, and returns its count.
    async fn lock_usage(
        tx: &mut Transaction<'_, Postgres>,
        partition: &[u8],
    ) -> Result<u64, StorageError> {
        // An upsert that changes nothing still locks the row, in one round trip.
        let current: i64 = sqlx::query_scalar(
            "INSERT INTO warden_usage (partition, bytes) VALUES ($1, 0)
             ON CONFLICT (partition) DO UPDATE SET bytes = warden_usage.bytes
             RETURNING bytes",
        )
        .bind(partition)
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(bytes(current))
    }

    /// Locks the partition's usage row if it has one, and returns its count. A partition
    /// without one holds nothing.
    async fn lock_existing_usage(
        tx: &mut Transaction<'_, Postgres>,
        partition: &[u8],
    ) -> Result<Option<u64>, StorageError> {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM warden_usage WHERE partition = $1 FOR UPDATE")
                .bind(partition)
                .fetch_optional(&mut **tx)
                .await
                .map_err(backend)?;
        Ok(current.map(bytes))
    }

    async fn set_usage(
        tx: &mut Transaction<'_, Postgres>,
        partition: &[u8],
        count: u64,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE warden_usage SET bytes = $2 WHERE partition = $1")
            .bind(partition)
            .bind(bigint(count))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn put(
        &self,
        table: Table,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        let partition = partition.as_bytes();
        let (name, header) = match table {
            Table::Data => ("warden_storage", 0),
            Table::Cache { .. } => ("warden_cache", CACHE_HEADER_BYTES),
        };
        let _turn = self.turn(partition).await?;
        let mut tx = self.begin().await?;
        let mut current = Self::lock_usage(&mut tx, partition).await?;
        let old: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT octet_length(value) FROM {name} WHERE partition = $1 AND key = $2"
        ))
        .bind(partition)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let old_bytes = old.map_or(0, |len| key.len() as u64 + header + len.max(0) as u64);
        let new_bytes = key.len() as u64 + header + value.len() as u64;
        if let Table::Cache { now_ms, .. } = table
            && current.saturating_sub(old_bytes) + new_bytes > quota
        {
            // The key being written is replaced below, and counted there.
            let reclaimed: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM warden_cache WHERE partition = $1 AND key IN (
                     SELECT key FROM warden_cache
                     WHERE partition = $1 AND expires_at_ms <= $2 AND key <> $3
                     ORDER BY expires_at_ms LIMIT $4)
                 RETURNING (octet_length(key) + octet_length(value))::bigint",
            )
            .bind(partition)
            .bind(bigint(now_ms))
            .bind(key)
            .bind(RECLAIM_PER_WRITE)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let freed: u64 = reclaimed
                .iter()
                .map(|len| bytes(*len) + CACHE_HEADER_BYTES)
                .sum();
            current = current.saturating_sub(freed);
            let needed = current.saturating_sub(old_bytes) + new_bytes;
            if needed > quota && !reclaimed.is_empty() {
                // What was reclaimed stays reclaimed, so that a partition with more expired
                // entries than one write reclaims makes progress write after write.
                Self::set_usage(&mut tx, partition, current).await?;
                tx.commit().await.map_err(backend)?;
                return Err(StorageError::QuotaExceeded { needed, quota });
            }
        }
        let needed = current.saturating_sub(old_bytes) + new_bytes;
        if needed > quota {
            // Dropping the transaction rolls it back.
            return Err(StorageError::QuotaExceeded { needed, quota });
        }
        match table {
            Table::Data => sqlx::query(
                "INSERT INTO warden_storage (partition, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (partition, key) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(partition)
            .bind(key)
            .bind(value),
            Table::Cache { expires_at_ms, .. } => sqlx::query(
                "INSERT INTO warden_cache (partition, key, value, expires_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (partition, key)
                 DO UPDATE SET value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms",
            )
            .bind(partition)
            .bind(key)
            .bind(value)
            .bind(bigint(expires_at_ms)),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        Self::set_usage(&mut tx, partition, needed).await?;
        tx.commit().await.map_err(backend)
    }

    async fn remove(&self, cache: bool, partition: &str, key: &str) -> Result<bool, StorageError> {
        let partition = partition.as_bytes();
        let (name, header) = if cache {
            ("warden_cache", CACHE_HEADER_BYTES)
        } else {
            ("warden_storage", 0)
        };
        let _turn = self.turn(partition).await?;
        let mut tx = self.begin().await?;
        // Deleting from a partition that holds nothing writes nothing: a node looping on
        // deletes of missing keys makes no rows and no WAL.
        let Some(current) = Self::lock_existing_usage(&mut tx, partition).await? else {
            return Ok(false);
        };
        let removed: Option<i32> = sqlx::query_scalar(&format!(
            "DELETE FROM {name} WHERE partition = $1 AND key = $2 RETURNING octet_length(value)"
        ))
        .bind(partition)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(len) = removed {
            let freed = key.len() as u64 + header + len.max(0) as u64;
            Self::set_usage(&mut tx, partition, current.saturating_sub(freed)).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed.is_some())
    }
}

#[async_trait::async_trait]
impl StorageBackend for PgStorage {
    async fn get(&self, partition: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar("SELECT value FROM warden_storage WHERE partition = $1 AND key = $2")
            .bind(partition.as_bytes())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn exists(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM warden_storage WHERE partition = $1 AND key = $2)",
        )
        .bind(partition.as_bytes())
        .bind(key)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        self.put(Table::Data, partition, key, value, quota).await
    }

    async fn delete(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(false, partition, key).await
    }

    async fn list(
        &self,
        partition: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match prefix_end(prefix) {
            Some(end) => sqlx::query_scalar(
                "SELECT key FROM warden_storage
                 WHERE partition = $1 AND key >= $2 AND key < $3
                 ORDER BY key LIMIT $4",
            )
            .bind(partition.as_bytes())
            .bind(prefix)
            .bind(end)
            .bind(limit),
            None => sqlx::query_scalar(
                "SELECT key FROM warden_storage
                 WHERE partition = $1 AND key >= $2 AND starts_with(key, $2)
                 ORDER BY key LIMIT $3",
            )
            .bind(partition.as_bytes())
            .bind(prefix)
            .bind(limit),
        };
        query.fetch_all(&self.pool).await.map_err(backend)
    }

    async fn usage(&self, partition: &str) -> Result<u64, StorageError> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM warden_usage WHERE partition = $1")
                .bind(partition.as_bytes())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(count.map_or(0, bytes))
    }

    async fn cache_get(
        &self,
        partition: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar(
            "SELECT value FROM warden_cache
             WHERE partition = $1 AND key = $2 AND expires_at_ms > $3",
        )
        .bind(partition.as_bytes())
        .bind(key)
        .bind(bigint(now_ms))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }

    async fn cache_set(
        &self,
        partition: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: u64,
        quota: u64,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let table = Table::Cache {
            expires_at_ms,
            now_ms,
        };
        self.put(table, partition, key, value, quota).await
    }

    async fn cache_remove(&self, partition: &str, key: &str) -> Result<bool, StorageError> {
        self.remove(true, partition, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_just_after_its_last_character() {
        assert_eq!(prefix_end("reports/").as_deref(), Some("reports0"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("é"), None);
    }
}
