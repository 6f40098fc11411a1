//! The registry's storage: one redb database with two-phase commit and immediate durability.
//!
//! Every change (a publish with its blob, its version record, its log entry and the newly
//! signed index) is one write transaction, so a crash at any point leaves the state before it
//! or the state after it, never a version without its blob or a log without its index.
//! Nothing read back is trusted: packages are re-verified before they are served, and `check`
//! re-verifies everything.

//!
//! `open` creates and opens it, `users` holds users, tokens and the audit trail, `keys`
//! publishers' keys, `publish` versions, `log` the log and the signed index, `root` the root
//! of trust and the signing key, `history` the per-publisher quota, and `check` the
//! consistency checks; each is an `impl Store` block of its own.

mod check;
mod history;
mod keys;
mod log;
mod open;
mod publish;
mod root;
mod users;

use crate::durable;
use crate::server::auth::{Permissions, TokenRecord};
use crate::server::limits::{self, Limiter, Quotas};
use ed25519_dalek::SigningKey;
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use warden_package::hex;

/// The database's file name in a registry's data directory.
const DATABASE: &str = "registry.redb";
/// Where a first start builds the registry before moving it into place.
const STAGING: &str = ".registry-init";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const TOKEN_IDS: TableDefinition<&str, &str> = TableDefinition::new("token_ids");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("publisher_keys");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const SKELETONS: TableDefinition<&str, &str> = TableDefinition::new("name_skeletons");
const VERSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("versions");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// How many versions and key events each publisher's history holds, by (publisher, kind).
const HISTORY: TableDefinition<(&str, &str), u64> = TableDefinition::new("publisher_history");

/// How long a signed index is valid by default: hosts refuse it after this.
pub const DEFAULT_INDEX_TTL: u64 = 24 * 60 * 60;
/// The longest an index may be valid.
pub const MAX_INDEX_TTL: u64 = 366 * 24 * 60 * 60;
/// How long a token is valid by default.
pub const DEFAULT_TOKEN_TTL: u64 = 90 * 24 * 60 * 60;
/// The longest a token may live.
pub const MAX_TOKEN_TTL: u64 = 366 * 24 * 60 * 60;
/// How many tokens deep a chain of tokens issued by tokens may go: authentication walks the
/// chain, so its length is bounded.
pub const MAX_TOKEN_DEPTH: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A rate limit: try again after the duration.
    #[error("{0}")]
    TooManyRequests(String, Duration),
    #[error("the registry's storage failed: {0}")]
    Storage(String),
}

fn storage<E: std::fmt::Display>(error: E) -> StoreError {
    StoreError::Storage(error.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    /// The publisher this user publishes as, if any.
    pub publisher: Option<String>,
    pub created_at: u64,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    pub permissions: Permissions,
    pub token_id: String,
    /// The token it authenticated with: tokens it issues are its children.
    pub token: TokenRecord,
}

impl Caller {
    pub fn require(&self, permission: Permissions) -> Result<(), StoreError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "`{}` lacks the {} permission; ask an admin for a role that has it",
                self.user.name,
                permission.name()
            )))
        }
    }

    fn is_admin(&self) -> bool {
        self.permissions
            .intersects(Permissions::ADMIN | Permissions::OWNER)
    }
}

/// An entry of the audit trail (who did what with users and tokens).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time: u64,
    pub actor: String,
    pub action: String,
}

pub struct Store {
    db: Database,
    key: SigningKey,
    index_ttl: u64,
    integrity: Integrity,
    rates: Rates,
}

/// The quotas and the in-memory rate limiters that enforce their rates.
struct Rates {
    quotas: Quotas,
    issuing: Limiter<String>,
    publishing: Limiter<String>,
    failed_authentications: Limiter<IpAddr>,
}

impl Rates {
    fn new(quotas: Quotas) -> Rates {
        Rates {
            quotas,
            issuing: Limiter::new(quotas.token_issuing),
            publishing: Limiter::new(quotas.publishing),
            failed_authentications: Limiter::new(quotas.failed_authentications),
        }
    }
}

fn too_many(what: &str, wait: Duration) -> StoreError {
    StoreError::TooManyRequests(
        format!(
            "too many {what}; retry in {} s",
            limits::retry_after_seconds(wait)
        ),
        wait,
    )
}

/// What redb's integrity check found when the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    #[default]
    Passed,
    Repaired,
}

/// What `check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub integrity: Integrity,
    pub root_version: u64,
    pub versions: usize,
    pub log_entries: u64,
    pub index_version: u64,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Every record of a table of JSON values, in key order.
fn values<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    what: &str,
) -> Result<Vec<T>, StoreError>
where
    K: redb::Key + 'static,
    T: for<'a> Deserialize<'a>,
{
    let mut found = Vec::new();
    for item in table.iter().map_err(storage)? {
        let (_, value) = item.map_err(storage)?;
        found.push(parse(what, value.value())?);
    }
    Ok(found)
}

fn parse<T: for<'a> Deserialize<'a>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Storage(format!("a stored {what} is corrupt: {error}")))
}

impl Store {
    pub fn public_key(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// The same store held to `quotas` (the defaults are `limits::DEFAULT_QUOTAS`).
    pub fn with_quotas(self, quotas: Quotas) -> Store {
        Store {
            rates: Rates::new(quotas),
            ..self
        }
    }

    pub fn quotas(&self) -> Quotas {
        self.rates.quotas
    }

    /// The registry's identity (`protocol::registry_id`): what possession and revocation
    /// statements name.
    pub fn registry_id(&self) -> Result<String, StoreError> {
        crate::protocol::registry_id(&self.roots()?)
            .map_err(|error| StoreError::Storage(error.to_string()))
    }

    /// Whether `address` may still try to authenticate: `Err(wait)` once its failures have
    /// used up their budget.
    pub fn authentication_allowed(&self, address: IpAddr) -> Result<(), Duration> {
        self.rates
            .failed_authentications
            .peek(&limits::address_key(address))
    }

    /// Counts a failed authentication from `address` against its budget, into debt if the
    /// budget is spent: requests in flight together all passed `authentication_allowed`, and
    /// each failure among them must still be paid for with waiting.
    pub fn authentication_failed(&self, address: IpAddr) {
        self.rates
            .failed_authentications
            .charge(&limits::address_key(address));
    }

    /// Takes one publish from the caller's rate, before its upload is read: every upload
    /// admitted is paid for at once, so uploads started together cannot all pass a check
    /// that none of them has paid for yet (each holds up to a package in memory). A refused or
    /// failed publish is not given back. `publish` itself does not count: call this first.
    pub fn admit_publish(&self, caller: &Caller) -> Result<(), StoreError> {
        self.rates
            .publishing
            .take(&caller.user.name)
            .map_err(|wait| too_many("publishes", wait))
    }

    fn write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_two_phase_commit(true);
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        Ok(txn)
    }
}

/// Writes `bytes` to `path` durably (staged beside it as `NAME.partial`), as a storage failure.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    durable::write_durably(path, &durable::partial_beside(path), bytes).map_err(storage)
}
