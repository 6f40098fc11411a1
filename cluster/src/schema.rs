//! The cluster's schema, as numbered migrations applied in order, each once.
//!
//! Plain SQL run at start rather than `sqlx::migrate!`: no database is needed at build time, and
//! the daemons that start together take turns on one advisory lock, so exactly one applies a
//! migration. A database migrated by a newer warden is refused rather than written to.

use crate::error::ClusterError;
use sqlx::PgPool;

/// The advisory lock migrations hold (any constant that other applications are unlikely to use).
const MIGRATION_LOCK: i64 = 0x7761_7264_656e_0001;

/// The migrations, in order. Never edit one that has shipped: add the next.
///
/// Daemons of the cluster are upgraded one at a time, so for a while older daemons use a schema
/// that a newer one migrated. A migration therefore only adds: tables, indexes, and columns that
/// are nullable or have a default. A column or table that a release stops using is dropped only
/// by a later release's migration, once no daemon of the previous one can be running.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "storage scopes, the execution cache and per-partition usage",
        // Partitions join their parts with NUL, which `text` cannot hold: they are `bytea`. Keys are
        // `text` in the "C" collation, so keys sort by their bytes, as in the redb backend, and a
        // prefix is a contiguous range of the primary key.
        r#"
    CREATE TABLE warden_storage (
        partition bytea NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (partition, key)
    );
    CREATE TABLE warden_cache (
        partition bytea NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        expires_at_ms bigint NOT NULL,
        PRIMARY KEY (partition, key)
    );
    CREATE INDEX warden_cache_expiry ON warden_cache (partition, expires_at_ms);
    -- Bytes (keys plus values) per partition: writers lock a partition's row first, so quotas
    -- hold across daemons.
    CREATE TABLE warden_usage (
        partition bytea PRIMARY KEY,
        bytes bigint NOT NULL CHECK (bytes >= 0)
    );
    "#,
    ),
    (
        2,
        "runs: queued runs, their leases, answers and records, and idempotency keys",
        // One row per run, from queued to finished. Workers claim with FOR UPDATE SKIP LOCKED
        // through the partial indexes on each state; an idempotency key is unique per caller.
        r#"
    CREATE TABLE warden_runs (
        id text PRIMARY KEY,
        caller text NOT NULL,
        idempotency_key text,
        request_sha256 text NOT NULL,
        package text NOT NULL,
        request text NOT NULL,
        state text NOT NULL CHECK (state IN ('queued', 'running', 'finished')),
        attempts integer NOT NULL DEFAULT 0,
        lost_leases integer NOT NULL DEFAULT 0,
        lease_owner text,
        lease_until timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status integer,
        result text,
        record jsonb
    );
    CREATE UNIQUE INDEX warden_runs_idempotency ON warden_runs (caller, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX warden_runs_queued ON warden_runs (created_at) WHERE state = 'queued';
    CREATE INDEX warden_runs_leased ON warden_runs (lease_until) WHERE state = 'running';
    CREATE INDEX warden_runs_unfinished ON warden_runs (caller) WHERE state <> 'finished';
    CREATE INDEX warden_runs_finished ON warden_runs (finished_at) WHERE state = 'finished';
    "#,
    ),
    (
        3,
        "the audit log: one hash chain of the records of every daemon",
        // `line` is the record exactly as hashed; `hash` is its SHA-256 (hex), which the next
        // record's `prev` repeats. Appending daemons take turns on an advisory lock.
        r#"
    CREATE TABLE warden_audit (
        seq bigint PRIMARY KEY CHECK (seq > 0),
        line text NOT NULL,
        hash text NOT NULL CHECK (length(hash) = 64)
    );
    "#,
    ),
    (
        4,
        "runs answered at once: their idempotency keys and records beside the queued runs",
        // A run answered at once (`sync`) has no package and no request, so that no daemon's
        // claim (of this release or the one before, which does not know `mode`) takes it.
        r#"
    ALTER TABLE warden_runs ADD COLUMN mode text NOT NULL DEFAULT 'queued'
        CHECK (mode IN ('queued', 'sync'));
    "#,
    ),
    (
        5,
        "principals: users, roles, assignments and credentials, shared by every daemon",
        // The tables of the daemon's auth store, one row per entry (`tbl` names the table, as
        // in the embedded store). Keys join their parts with NUL, which `text` cannot hold: they
        // are `bytea`, which sorts by bytes as the embedded store does.
        r#"
    CREATE TABLE warden_principals (
        tbl text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    "#,
    ),
    (
        6,
        "the events of queued runs (logs, chunks, documents), for callers on any daemon",
        // One row per event, numbered per attempt (a run taken again streams anew). They go
        // with their run, whichever daemon's sweep (of this release or an older one) forgets it.
        r#"
    CREATE TABLE warden_run_events (
        run_id text NOT NULL REFERENCES warden_runs (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        seq integer NOT NULL,
        event text NOT NULL,
        PRIMARY KEY (run_id, attempt, seq)
    );
    "#,
    ),
];

/// The schema version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

pub async fn migrate(pool: &PgPool) -> Result<(), ClusterError> {
    let mut tx = pool.begin().await?;
    // Another daemon may be migrating: wait for it longer than for a storage lock, and let a
    // migration take what it takes (an index on a large table), whatever the role's defaults.
    sqlx::raw_sql("SET LOCAL lock_timeout = '120s'; SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS warden_schema (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let found: i32 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM warden_schema")
        .fetch_one(&mut *tx)
        .await?;
    if found > latest() {
        return Err(ClusterError::SchemaTooNew {
            found,
            known: latest(),
        });
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > found) {
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|error| ClusterError::Schema(format!("migration {version}: {error}")))?;
        sqlx::query("INSERT INTO warden_schema (version, description) VALUES ($1, $2)")
            .bind(version)
            .bind(description)
            .execute(&mut *tx)
            .await?;
        tracing::info!(
            version,
            description,
            "the cluster's database schema was migrated"
        );
    }
    tx.commit().await?;
    Ok(())
}

pub async fn version(pool: &PgPool) -> Result<i32, ClusterError> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM warden_schema")
            .fetch_one(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, (version, description, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, index as i32 + 1);
            assert!(!description.is_empty() && !sql.trim().is_empty());
        }
        assert_eq!(latest(), MIGRATIONS.len() as i32);
    }
}
