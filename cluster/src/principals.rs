//! The daemons' principals (users, roles, assignments, credentials) in PostgreSQL: the tables of
//! the daemon's auth store, one row per entry, so that a user, a role or a key made through one
//! daemon holds on every daemon, and a revocation everywhere at once.
//!
//! The daemon's auth store keeps its rules (names, bounds, one subject per user, credentials per
//! user) in one place and reads and writes its entries through a small table interface; this
//! module is that interface's PostgreSQL side. A transaction that writes takes the principals'
//! advisory lock first, so writers on every daemon take turns, as the embedded store's single
//! writer does; one that only reads sees one snapshot (REPEATABLE READ).
//!
//! The auth store is synchronous (it is called from the authentication of every request and
//! from command-line tools), so each transaction blocks its thread on the runtime: on a worker
//! of a multi-threaded runtime through `block_in_place`, or on a thread outside any runtime.

use crate::database::Database;
use crate::error::ClusterError;
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Connections of the principals' own pool.
pub const CONNECTIONS: u32 = 4;
/// How long a transaction waits for one of them.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The advisory lock writers of the principals take turns on.
const WRITE_LOCK: i64 = 0x7761_7264_656e_0004;

const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
    SET LOCAL statement_timeout = '10s'; \
    SET LOCAL idle_in_transaction_session_timeout = '30s'";
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
    SET LOCAL lock_timeout = '10s'; \
    SET LOCAL statement_timeout = '10s'; \
    SET LOCAL idle_in_transaction_session_timeout = '30s'";

/// The principals' tables in the cluster's database.
#[derive(Clone, Debug)]
pub struct PgPrincipals {
    pool: PgPool,
}

/// One transaction on the principals' tables. `table` names one of the auth store's tables;
/// keys (text, which may hold NUL) sort by their bytes.
pub struct PrincipalsTx<'a> {
    handle: &'a Handle,
    tx: Transaction<'static, Postgres>,
}

impl PgPrincipals {
    /// The principals on `database`, through connections of their own: authenticating a
    /// request does not wait behind storage calls, and a flood of credentials to look up does
    /// not take the connections of runs.
    pub fn new(database: &Database) -> Self {
        PgPrincipals {
            pool: database
                .side_pool(CONNECTIONS, ACQUIRE_TIMEOUT)
                .pool()
                .clone(),
        }
    }

    /// Runs `work` in one transaction (one that writes when `write`), committed when `work`
    /// succeeds and rolled back when it fails. Blocks the calling thread.
    pub fn transaction<R, E: From<ClusterError>>(
        &self,
        write: bool,
        work: impl FnOnce(&mut PrincipalsTx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let handle = Handle::try_current().map_err(|_| {
            ClusterError::Blocking("the auth store's database needs the daemon's runtime".into())
        })?;
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(ClusterError::Blocking(
                "the auth store's database is used from a multi-threaded runtime only".into(),
            )
            .into());
        }
        tokio::task::block_in_place(|| {
            let begin = if write { BEGIN_WRITE } else { BEGIN_READ };
            let mut tx = handle
                .block_on(self.pool.begin_with(begin))
                .map_err(ClusterError::from)?;
            if write {
                handle
                    .block_on(
                        sqlx::query("SELECT pg_advisory_xact_lock($1)")
                            .bind(WRITE_LOCK)
                            .execute(&mut *tx),
                    )
                    .map_err(ClusterError::from)?;
            }
            let mut principals = PrincipalsTx {
                handle: &handle,
                tx,
            };
            let result = work(&mut principals)?;
            handle
                .block_on(principals.tx.commit())
                .map_err(ClusterError::from)?;
            Ok(result)
        })
    }
}

impl PrincipalsTx<'_> {
    pub fn get(&mut self, table: &str, key: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        Ok(self.handle.block_on(
            sqlx::query_scalar("SELECT value FROM warden_principals WHERE tbl = $1 AND key = $2")
                .bind(table)
                .bind(key.as_bytes())
                .fetch_optional(&mut *self.tx),
        )?)
    }

    /// The values of those of `keys` that are in `table`, in one query.
    pub fn get_many(&mut self, table: &str, keys: &[String]) -> Result<Vec<Vec<u8>>, ClusterError> {
        let keys: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        Ok(self.handle.block_on(
            sqlx::query_scalar(
                "SELECT found.value FROM unnest($2::bytea[]) WITH ORDINALITY AS wanted(key, n)
                   JOIN warden_principals AS found ON found.tbl = $1 AND found.key = wanted.key
                  ORDER BY wanted.n",
            )
            .bind(table)
            .bind(keys)
            .fetch_all(&mut *self.tx),
        )?)
    }

    pub fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<(), ClusterError> {
        self.handle.block_on(
            sqlx::query(
                "INSERT INTO warden_principals (tbl, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
            )
            .bind(table)
            .bind(key.as_bytes())
            .bind(value)
            .execute(&mut *self.tx),
        )?;
        Ok(())
    }

    /// Whether there was an entry to remove.
    pub fn remove(&mut self, table: &str, key: &str) -> Result<bool, ClusterError> {
        let removed = self.handle.block_on(
            sqlx::query("DELETE FROM warden_principals WHERE tbl = $1 AND key = $2")
                .bind(table)
                .bind(key.as_bytes())
                .execute(&mut *self.tx),
        )?;
        Ok(removed.rows_affected() > 0)
    }

    /// The entries whose keys are in `from..to` (all of the table's without bounds), in the
    /// order of their keys.
    pub fn range(
        &mut self,
        table: &str,
        bounds: Option<(&str, &str)>,
    ) -> Result<Vec<(String, Vec<u8>)>, ClusterError> {
        let (from, to) = bounds
            .map(|(from, to)| (from.as_bytes(), to.as_bytes()))
            .unzip();
        let rows = self.handle.block_on(
            sqlx::query(
                "SELECT key, value FROM warden_principals
                  WHERE tbl = $1 AND ($2::bytea IS NULL OR (key >= $2 AND key < $3))
                  ORDER BY key",
            )
            .bind(table)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *self.tx),
        )?;
        rows.iter()
            .map(|row| {
                let key: Vec<u8> = row.try_get("key")?;
                let key = String::from_utf8(key).map_err(|_| {
                    ClusterError::Schema("a principal's key in the database is not UTF-8".into())
                })?;
                Ok((key, row.try_get("value")?))
            })
            .collect()
    }
}
