//! The registry's storage: one redb database with two-phase commit and immediate durability.
//!
//! Every change (a publish with its blob, its version record, its log entry and the newly
//! signed index) is one write transaction, so a crash at any point leaves the state before it
//! or the state after it, never a version without its blob or a log without its index.
//! Nothing read back is trusted: packages are re-verified before they are served, and `check`
//! re-verifies everything.

use crate::auth::{self, Permissions, TokenKind, TokenRecord};
use crate::limits::{DEFAULT_QUOTAS, Limiter, Quotas};
use crate::names;
use crate::protocol::{
    self, Event, Index, IndexEntry, KeyEntry, LOG_ROOT, LogEntry, Root, Signed, SignedRoot, now,
    sha256_hex,
};
use ed25519_dalek::SigningKey;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_host::package::{self, hex};

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
            crate::limits::retry_after_seconds(wait)
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
    /// Opens the registry in `dir` (creating it, its database and its signing key when new).
    /// The second value is the owner's first token, when the registry was just created: it is
    /// shown once and stored only as a hash.
    ///
    /// A first start builds the whole registry under a temporary name and moves it into place
    /// (see [`Store::create`]), so a kill at any moment leaves either no registry or a whole one.
    pub fn open(dir: &Path, index_ttl: u64) -> Result<(Store, Option<String>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            StoreError::Storage(format!("cannot create {}: {error}", dir.display()))
        })?;
        let bootstrap = if dir.join(DATABASE).exists() {
            // A first start killed after its commit leaves its staging directory behind.
            let _ = std::fs::remove_dir_all(dir.join(STAGING));
            None
        } else {
            Store::create(dir, index_ttl)?
        };
        let store = Store::open_in_place(dir, index_ttl)?;
        // A database that exists has its owner already; `initialize` only fills what a crash
        // of an older build may have left out.
        let late = store.initialize()?;
        Ok((store, bootstrap.or(late)))
    }

    /// A first start: under a lock, builds the key and the initialized database in a staging
    /// directory, then renames the key (unless one is there already) and the database into
    /// `dir`, the database last. The database's arrival is the commit: before it, a restart
    /// starts afresh (reusing a key that was moved in); after it, the registry is whole.
    fn create(dir: &Path, index_ttl: u64) -> Result<Option<String>, StoreError> {
        let fail = |what: &str, path: &Path, error: std::io::Error| {
            StoreError::Storage(format!("cannot {what} {}: {error}", path.display()))
        };
        // Two first starts in one directory at once: the second waits, then finds the database.
        let lock_path = dir.join(".registry-init.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| fail("create", &lock_path, error))?;
        lock.lock()
            .map_err(|error| fail("lock", &lock_path, error))?;
        if dir.join(DATABASE).exists() {
            return Ok(None);
        }
        let staging = dir.join(STAGING);
        match std::fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(fail("remove the leftover", &staging, error)),
        }
        std::fs::create_dir(&staging).map_err(|error| fail("create", &staging, error))?;
        let key_path = dir.join("registry.key");
        let (key, new_key) = match std::fs::read_to_string(&key_path) {
            // A key moved in by a first start that died before its database: keep it.
            Ok(text) => (
                package::signing_key_from_hex(&text).ok_or_else(|| {
                    StoreError::Storage(format!(
                        "{} is not a registry key (64 hex digits)",
                        key_path.display()
                    ))
                })?,
                false,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = package::generate_key()
                    .map_err(|error| StoreError::Storage(error.to_string()))?;
                package::write_secret_file(
                    &staging.join("registry.key"),
                    &package::secret_key_hex(&key),
                )
                .map_err(StoreError::Storage)?;
                (key, true)
            }
            Err(error) => return Err(fail("read", &key_path, error)),
        };
        let staged = staging.join(DATABASE);
        let db = Database::create(&staged).map_err(|error| {
            StoreError::Storage(format!("cannot create {}: {error}", staged.display()))
        })?;
        let store = Store {
            db,
            key,
            index_ttl: index_ttl.clamp(1, MAX_INDEX_TTL),
            integrity: Integrity::Passed,
            rates: Rates::new(DEFAULT_QUOTAS),
        };
        let bootstrap = store.initialize()?;
        drop(store);
        sync_dir(&staging).map_err(StoreError::Storage)?;
        if new_key {
            std::fs::rename(staging.join("registry.key"), &key_path)
                .map_err(|error| fail("move the new key to", &key_path, error))?;
            sync_dir(dir).map_err(StoreError::Storage)?;
        }
        std::fs::rename(&staged, dir.join(DATABASE))
            .map_err(|error| fail("move the new database to", &dir.join(DATABASE), error))?;
        sync_dir(dir).map_err(StoreError::Storage)?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(bootstrap)
    }

    /// Opens the database and key that are in `dir`.
    fn open_in_place(dir: &Path, index_ttl: u64) -> Result<Store, StoreError> {
        let database = dir.join(DATABASE);
        // The database first: its lock keeps a second process from touching the key files
        // while this one works (a rotation in progress included).
        let mut db = Database::create(&database).map_err(|error| {
            StoreError::Storage(format!("cannot open {}: {error}", database.display()))
        })?;
        // redb's own check of its pages and checksums, before anything is read.
        let integrity = match db.check_integrity() {
            Ok(true) => Integrity::Passed,
            Ok(false) => {
                tracing::warn!(
                    "the registry database failed redb's integrity check and was repaired"
                );
                Integrity::Repaired
            }
            Err(error) => {
                return Err(StoreError::Storage(format!(
                    "the registry database is corrupt beyond repair: {error}"
                )));
            }
        };
        let key = load_key(dir, &db)?;
        // registry.pub follows the key (a crash may have left it behind after a rotation).
        let public = format!("{}\n", package::public_key_hex(&key));
        if std::fs::read_to_string(dir.join("registry.pub"))
            .ok()
            .as_deref()
            != Some(public.as_str())
        {
            write_durably(&dir.join("registry.pub"), public.as_bytes())?;
        }
        Ok(Store {
            db,
            key,
            index_ttl: index_ttl.clamp(1, MAX_INDEX_TTL),
            integrity,
            rates: Rates::new(DEFAULT_QUOTAS),
        })
    }

    /// Opens an existing registry; refuses a directory that holds none (so a mistyped path
    /// does not silently become a new registry).
    pub fn open_existing(dir: &Path, index_ttl: u64) -> Result<Store, StoreError> {
        if !dir.join(DATABASE).is_file() || !dir.join("registry.key").is_file() {
            return Err(StoreError::NotFound(format!(
                "{} holds no registry (no registry.redb and registry.key)",
                dir.display()
            )));
        }
        let (store, _) = Store::open(dir, index_ttl)?;
        // Offline work re-signs the index with the lifetime the server last used.
        let stored = {
            let txn = store.db.begin_read().map_err(storage)?;
            let meta = txn.open_table(META).map_err(storage)?;
            meta.get("index_ttl")
                .map_err(storage)?
                .and_then(|bytes| bytes.value().try_into().ok().map(u64::from_le_bytes))
        };
        Ok(Store {
            index_ttl: stored.unwrap_or(store.index_ttl).clamp(1, MAX_INDEX_TTL),
            ..store
        })
    }

    /// Remembers the index lifetime the server runs with, for offline work.
    pub fn record_index_ttl(&self) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.open_table(META)
            .map_err(storage)?
            .insert("index_ttl", self.index_ttl.to_le_bytes().as_slice())
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// Issues a token with local access to a stopped registry: how an operator recovers when
    /// the owner's tokens are lost or expired. Recorded in the audit trail.
    pub fn issue_token_offline(
        &self,
        user: &str,
        kind: TokenKind,
        ttl: u64,
    ) -> Result<(String, TokenRecord), StoreError> {
        let txn = self.write()?;
        let issued = {
            if txn
                .open_table(USERS)
                .map_err(storage)?
                .get(user)
                .map_err(storage)?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no user `{user}`")));
            }
            let issued = insert_token(&txn, user, kind, ttl.clamp(1, MAX_TOKEN_TTL), None)?;
            audit(
                &txn,
                "local operator",
                &format!("issued token {} for `{user}` offline", issued.1.id),
            )?;
            issued
        };
        txn.commit().map_err(storage)?;
        Ok(issued)
    }

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
        protocol::registry_id(&self.roots()?)
            .map_err(|error| StoreError::Storage(error.to_string()))
    }

    /// Whether `address` may still try to authenticate: `Err(wait)` once its failures have
    /// used up their budget.
    pub fn authentication_allowed(&self, address: IpAddr) -> Result<(), Duration> {
        self.rates
            .failed_authentications
            .peek(&crate::limits::address_key(address))
    }

    /// Counts a failed authentication from `address` against its budget, into debt if the
    /// budget is spent: requests in flight together all passed `authentication_allowed`, and
    /// each failure among them must still be paid for with waiting.
    pub fn authentication_failed(&self, address: IpAddr) {
        self.rates
            .failed_authentications
            .charge(&crate::limits::address_key(address));
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

    fn initialize(&self) -> Result<Option<String>, StoreError> {
        let txn = self.write()?;
        let mut bootstrap = None;
        {
            txn.open_table(TOKENS).map_err(storage)?;
            txn.open_table(TOKEN_IDS).map_err(storage)?;
            txn.open_table(KEYS).map_err(storage)?;
            txn.open_table(NAMES).map_err(storage)?;
            txn.open_table(SKELETONS).map_err(storage)?;
            txn.open_table(VERSIONS).map_err(storage)?;
            txn.open_table(BLOBS).map_err(storage)?;
            txn.open_table(LOG).map_err(storage)?;
            txn.open_table(AUDIT).map_err(storage)?;
            let empty = txn
                .open_table(USERS)
                .map_err(storage)?
                .is_empty()
                .map_err(storage)?;
            if empty {
                let owner = User {
                    name: "owner".into(),
                    roles: vec!["owner".into()],
                    publisher: None,
                    created_at: now(),
                };
                txn.open_table(USERS)
                    .map_err(storage)?
                    .insert("owner", json(&owner).as_slice())
                    .map_err(storage)?;
                let (token, _) =
                    insert_token(&txn, "owner", TokenKind::Pat, DEFAULT_TOKEN_TTL, None)?;
                audit(
                    &txn,
                    "registry",
                    "created the owner user and its first token",
                )?;
                bootstrap = Some(token);
            }
            let has_roots = txn
                .open_table(META)
                .map_err(storage)?
                .get("roots")
                .map_err(storage)?
                .is_some();
            if !has_roots {
                let first = Root {
                    version: 1,
                    keys: vec![self.public_key()],
                    threshold: 1,
                    issued_at: now(),
                };
                let roots = vec![first.sign(&[&self.key])];
                txn.open_table(META)
                    .map_err(storage)?
                    .insert("roots", json(&roots).as_slice())
                    .map_err(storage)?;
            }
            let has_index = txn
                .open_table(META)
                .map_err(storage)?
                .get("index")
                .map_err(storage)?
                .is_some();
            if !has_index {
                self.reissue_index(&txn)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(bootstrap)
    }

    /// Checks a presented token: it must exist, be of the kind its header says, belong to a
    /// user, and be neither revoked nor expired, and so must every token up the chain that
    /// issued it (revoking a token revokes what it issued).
    pub fn authenticate(&self, kind: TokenKind, token: &str) -> Result<Caller, StoreError> {
        let refuse = |why: &str| StoreError::Unauthorized(why.to_string());
        let txn = self.db.begin_read().map_err(storage)?;
        let tokens = txn.open_table(TOKENS).map_err(storage)?;
        let record: TokenRecord = match tokens
            .get(auth::token_hash(token).as_str())
            .map_err(storage)?
        {
            Some(bytes) => parse("token", bytes.value())?,
            None => {
                return Err(refuse(
                    "the token is not known to this registry (revoked, expired or never issued); ask for a new one",
                ));
            }
        };
        if record.kind != kind {
            return Err(refuse(match kind {
                TokenKind::ApiKey => {
                    "a personal access token goes in `Authorization: PAT <token>`, not X-API-Key"
                }
                TokenKind::Pat => "an API key goes in the X-API-Key header, not Authorization",
            }));
        }
        let ids = txn.open_table(TOKEN_IDS).map_err(storage)?;
        if let Some(why) = dead_reason(&record, now(), |id| lookup_token(&tokens, &ids, id))? {
            return Err(refuse(&format!("{why}; ask for a new one")));
        }
        let users = txn.open_table(USERS).map_err(storage)?;
        let user: User = match users.get(record.user.as_str()).map_err(storage)? {
            Some(bytes) => parse("user", bytes.value())?,
            None => return Err(refuse("the token's user no longer exists")),
        };
        let permissions = auth::permissions_of(&user.roles).map_err(StoreError::Storage)?;
        Ok(Caller {
            user,
            permissions,
            token_id: record.id.clone(),
            token: record,
        })
    }

    pub fn create_user(
        &self,
        caller: &Caller,
        name: &str,
        roles: &[String],
        publisher: Option<String>,
    ) -> Result<User, StoreError> {
        caller.require(Permissions::MANAGE_USERS)?;
        let granted = auth::permissions_of(roles).map_err(StoreError::BadRequest)?;
        // Nobody hands out more than they hold.
        if !caller.permissions.contains(granted) {
            return Err(StoreError::Forbidden(
                "a user cannot be given permissions its creator does not hold".into(),
            ));
        }
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(StoreError::BadRequest(
                "a user name is 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        if let Some(publisher) = &publisher {
            package::validate_name(publisher)
                .map_err(|error| StoreError::BadRequest(format!("publisher: {error}")))?;
        }
        let user = User {
            name: name.to_string(),
            roles: roles.to_vec(),
            publisher,
            created_at: now(),
        };
        let txn = self.write()?;
        {
            let mut users = txn.open_table(USERS).map_err(storage)?;
            if users.get(name).map_err(storage)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "the user `{name}` exists already"
                )));
            }
            users
                .insert(name, json(&user).as_slice())
                .map_err(storage)?;
            audit(
                &txn,
                &caller.user.name,
                &format!("created user `{name}` with roles {roles:?}"),
            )?;
        }
        txn.commit().map_err(storage)?;
        Ok(user)
    }

    /// Issues a token for `user` (the caller's own, or anyone's with manage-users), as a child
    /// of the caller's token: it lives no longer than that token and dies when it is revoked.
    pub fn issue_token(
        &self,
        caller: &Caller,
        user: &str,
        kind: TokenKind,
        ttl: u64,
    ) -> Result<(String, TokenRecord), StoreError> {
        if !(1..=MAX_TOKEN_TTL).contains(&ttl) {
            return Err(StoreError::BadRequest(format!(
                "a token lives from 1 second to {} days",
                MAX_TOKEN_TTL / 86_400
            )));
        }
        if caller.token.depth >= MAX_TOKEN_DEPTH {
            return Err(StoreError::BadRequest(format!(
                "this token is {MAX_TOKEN_DEPTH} issuances away from an offline-issued one, the most allowed; issue from a token closer to it"
            )));
        }
        self.rates
            .issuing
            .take(&caller.user.name)
            .map_err(|wait| too_many("tokens issued", wait))?;
        let txn = self.write()?;
        let issued = {
            if user != caller.user.name {
                Self::manageable(&txn, caller, user)?;
            }
            let live = prune_tokens(&txn, now())?;
            let held = live.iter().filter(|token| token.user == user).count();
            let cap = self.rates.quotas.tokens_per_user;
            if held >= cap {
                return Err(StoreError::Conflict(format!(
                    "`{user}` holds {held} live tokens, the most this registry allows ({cap}); revoke one first (warden registry token --revoke ID)"
                )));
            }
            let issued = insert_token(&txn, user, kind, ttl, Some(&caller.token))?;
            audit(
                &txn,
                &caller.user.name,
                &format!("issued token {} for `{user}`", issued.1.id),
            )?;
            issued
        };
        txn.commit().map_err(storage)?;
        Ok(issued)
    }

    /// Revokes a token (the caller's own user's, or one it may manage) and with it every token
    /// it issued. Its record is deleted; its children fail authentication from then on, since
    /// their chain no longer reaches a live token, and are pruned at the next issuance.
    pub fn revoke_token(&self, caller: &Caller, id: &str) -> Result<(), StoreError> {
        // An unknown id and another user's token get the same answer.
        let refuse = || {
            StoreError::Forbidden(format!(
                "there is no token `{id}` that `{}` may revoke",
                caller.user.name
            ))
        };
        let txn = self.write()?;
        {
            let hash = txn
                .open_table(TOKEN_IDS)
                .map_err(storage)?
                .get(id)
                .map_err(storage)?
                .map(|hash| hash.value().to_string())
                .ok_or_else(refuse)?;
            let record: TokenRecord = match txn
                .open_table(TOKENS)
                .map_err(storage)?
                .get(hash.as_str())
                .map_err(storage)?
            {
                Some(bytes) => parse("token", bytes.value())?,
                None => return Err(refuse()),
            };
            if record.user != caller.user.name {
                Self::manageable(&txn, caller, &record.user).map_err(|_| refuse())?;
            }
            txn.open_table(TOKENS)
                .map_err(storage)?
                .remove(hash.as_str())
                .map_err(storage)?;
            txn.open_table(TOKEN_IDS)
                .map_err(storage)?
                .remove(id)
                .map_err(storage)?;
            audit(&txn, &caller.user.name, &format!("revoked token {id}"))?;
        }
        txn.commit().map_err(storage)
    }

    fn keys_of(
        &self,
        txn: &WriteTransaction,
        publisher: &str,
    ) -> Result<Vec<KeyEntry>, StoreError> {
        let keys: Vec<KeyEntry> = values(&txn.open_table(KEYS).map_err(storage)?, "publisher key")?;
        Ok(keys
            .into_iter()
            .filter(|key| key.publisher == publisher)
            .collect())
    }

    /// Acting on another user's tokens needs manage-users and every permission that user
    /// holds: an admin cannot mint or revoke an owner's tokens. A user that does not exist gets
    /// the same refusal as one the caller may not manage, so answers do not tell which names
    /// exist.
    fn manageable(txn: &WriteTransaction, caller: &Caller, name: &str) -> Result<User, StoreError> {
        let refuse = || {
            StoreError::Forbidden(format!(
                "`{}` may not manage the tokens of `{name}`: that needs manage-users and every permission `{name}` holds (or there is no such user)",
                caller.user.name
            ))
        };
        caller
            .require(Permissions::MANAGE_USERS)
            .map_err(|_| refuse())?;
        let target: User = match txn
            .open_table(USERS)
            .map_err(storage)?
            .get(name)
            .map_err(storage)?
        {
            Some(bytes) => parse("user", bytes.value())?,
            None => return Err(refuse()),
        };
        let theirs = auth::permissions_of(&target.roles).map_err(StoreError::Storage)?;
        if caller.permissions.contains(theirs) {
            Ok(target)
        } else {
            Err(refuse())
        }
    }

    fn may_act_for(caller: &Caller, publisher: &str) -> Result<(), StoreError> {
        if caller.is_admin() || caller.user.publisher.as_deref() == Some(publisher) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "`{}` does not act for the publisher `{publisher}`",
                caller.user.name
            )))
        }
    }

    /// Registers a publisher's key. Every key proves possession: `possession` is its own
    /// signature over `protocol::possession_statement` (this registry, the publisher, the key),
    /// so nobody registers a key they do not hold. The first key needs only the caller's right
    /// to act for the publisher; every later key is a rotation and must be signed in by a
    /// current key.
    pub fn add_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        possession: &str,
        signed_by: Option<(&str, &str)>,
    ) -> Result<KeyEntry, StoreError> {
        caller.require(Permissions::MANAGE_KEYS)?;
        Self::may_act_for(caller, publisher)?;
        let parsed = package::verifying_key_from_hex(public_key)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        // One spelling per key: exactly its 64 lowercase hex digits.
        if hex(parsed.as_bytes()) != public_key {
            return Err(StoreError::BadRequest(
                "give the public key as exactly 64 lowercase hex digits".into(),
            ));
        }
        let txn = self.write()?;
        let entry = {
            let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
            if !protocol::verify_possession(&registry, publisher, public_key, possession) {
                return Err(StoreError::Forbidden(format!(
                    "the key's proof of possession does not verify: sign the possession statement for registry {registry}, publisher `{publisher}` and this key with the key itself (warden registry key does it from the secret key file)"
                )));
            }
            if txn
                .open_table(KEYS)
                .map_err(storage)?
                .get(public_key)
                .map_err(storage)?
                .is_some()
            {
                return Err(StoreError::Conflict(
                    "this key is registered already; a key is never registered twice".into(),
                ));
            }
            let signer = self.rotation_signer(&txn, caller, publisher, public_key, signed_by)?;
            self.charge_history(&txn, caller, publisher, History::KeyEvents, true)?;
            let time = Self::log_time(&txn, now())?;
            let entry = KeyEntry {
                publisher: publisher.to_string(),
                public_key: public_key.to_string(),
                added_at: time,
                revoked_at: None,
            };
            txn.open_table(KEYS)
                .map_err(storage)?
                .insert(public_key, json(&entry).as_slice())
                .map_err(storage)?;
            self.append(
                &txn,
                time,
                Event::KeyAdded {
                    publisher: publisher.to_string(),
                    public_key: public_key.to_string(),
                    signed_by: signer.as_ref().map(|(by, _)| by.clone()),
                    signature: signer.map(|(_, signature)| signature),
                    possession: possession.to_string(),
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Who signs in `public_key` for `publisher`: nobody for a first key or an admin's
    /// recovery of a publisher whose keys are all revoked, else a current key.
    fn rotation_signer(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        signed_by: Option<(&str, &str)>,
    ) -> Result<Option<(String, String)>, StoreError> {
        let existing = self.keys_of(txn, publisher)?;
        let current: Vec<&KeyEntry> = existing
            .iter()
            .filter(|key| key.revoked_at.is_none())
            .collect();
        if existing.is_empty() {
            return Ok(None);
        }
        if current.is_empty() {
            // Every key is revoked (perhaps by a thief with a stolen token): only an admin
            // can give the publisher a key again. The log records the key as not signed in.
            if !caller.is_admin() {
                return Err(StoreError::Forbidden(format!(
                    "every key of `{publisher}` is revoked; an admin must register its new key"
                )));
            }
            return Ok(None);
        }
        let (by, signature) = signed_by.ok_or_else(|| {
            StoreError::Forbidden(format!(
                "`{publisher}` has keys already: a new key must be signed in by a current one (warden registry key --signed-by)"
            ))
        })?;
        if !current.iter().any(|key| key.public_key == by) {
            return Err(StoreError::Forbidden(
                "the signing-in key is not a current key of this publisher".into(),
            ));
        }
        let verifying = package::verifying_key_from_hex(by)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        if !protocol::verify_key_statement(publisher, public_key, &verifying, signature) {
            return Err(StoreError::Forbidden(
                "the key statement's signature does not verify".into(),
            ));
        }
        Ok(Some((by.to_string(), signature.to_string())))
    }

    /// Revokes a key from `at` on (now by default). A revocation back-dated before now voids
    /// signatures already made, so it needs more than a token: a signature by another current
    /// key of the publisher over `protocol::revocation_statement` (`signed_by`), or an admin,
    /// whose back-dating the log marks as such.
    pub fn revoke_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        at: Option<u64>,
        signed_by: Option<(&str, &str)>,
    ) -> Result<KeyEntry, StoreError> {
        caller.require(Permissions::MANAGE_KEYS)?;
        Self::may_act_for(caller, publisher)?;
        let txn = self.write()?;
        let entry = {
            let mut entry: KeyEntry = match txn
                .open_table(KEYS)
                .map_err(storage)?
                .get(public_key)
                .map_err(storage)?
            {
                Some(bytes) => parse("publisher key", bytes.value())?,
                None => return Err(StoreError::NotFound("no such key".into())),
            };
            if entry.publisher != publisher {
                return Err(StoreError::NotFound(format!(
                    "`{publisher}` has no such key"
                )));
            }
            if entry.revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked already".into()));
            }
            // The log's time, which never runs backwards: a revocation "now" is never read as
            // back-dated.
            let time = Self::log_time(&txn, now())?;
            // "From now" is the second after the log's last entry: a version published in this
            // same second (before this revocation: a revoked key publishes nothing) stays valid
            // on hosts, which accept a signature made strictly before `revoked_at`. Anything
            // earlier is back-dating.
            let from_now = time.saturating_add(1);
            let revoked_at = at.unwrap_or(from_now).min(from_now);
            let (signer, by_admin) = if revoked_at >= from_now {
                (None, false)
            } else {
                self.back_dating(&txn, caller, &entry, revoked_at, signed_by)?
            };
            self.charge_history(&txn, caller, publisher, History::KeyEvents, false)?;
            // Keys this key signed in after `revoked_at` were signed by a compromised key: they
            // are revoked from their own start, as every replay of the log derives.
            let voided = {
                let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
                let log: Vec<LogEntry> =
                    values(&txn.open_table(LOG).map_err(storage)?, "log entry")?;
                let state = protocol::replay(&log, &registry).map_err(|error| {
                    StoreError::Storage(format!(
                        "the log does not replay ({error}); run `warden registry check`"
                    ))
                })?;
                let spared = signer.as_ref().map(|(by, _)| by.as_str());
                protocol::voided_by_revocation(&state, public_key, revoked_at, spared)
            };
            entry.revoked_at = Some(revoked_at);
            let mut keys = txn.open_table(KEYS).map_err(storage)?;
            keys.insert(public_key, json(&entry).as_slice())
                .map_err(storage)?;
            for (key, at) in &voided {
                let mut child: KeyEntry = match keys.get(key.as_str()).map_err(storage)? {
                    Some(bytes) => parse("publisher key", bytes.value())?,
                    None => continue,
                };
                child.revoked_at = Some(*at);
                keys.insert(key.as_str(), json(&child).as_slice())
                    .map_err(storage)?;
            }
            drop(keys);
            if !voided.is_empty() {
                tracing::warn!(
                    publisher,
                    revoked = public_key,
                    voided = ?voided.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(),
                    "a back-dated revocation voids keys the revoked key signed in after it"
                );
            }
            self.append(
                &txn,
                time,
                Event::KeyRevoked {
                    publisher: publisher.to_string(),
                    public_key: public_key.to_string(),
                    revoked_at,
                    signed_by: signer.as_ref().map(|(by, _)| by.clone()),
                    signature: signer.map(|(_, signature)| signature),
                    by_admin,
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// What authorizes back-dating `key`'s revocation to `revoked_at`: another current key's
    /// signature, or else an admin caller.
    fn back_dating(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        key: &KeyEntry,
        revoked_at: u64,
        signed_by: Option<(&str, &str)>,
    ) -> Result<(Option<(String, String)>, bool), StoreError> {
        let publisher = key.publisher.as_str();
        let Some((by, signature)) = signed_by else {
            if caller.is_admin() {
                return Ok((None, true));
            }
            return Err(StoreError::Forbidden(format!(
                "revoking a key back to {revoked_at}, before now, voids what it signed: it needs a signature by another current key of `{publisher}` (warden registry key --revoke --revoked-at T --signed-by OTHER.key) or an admin"
            )));
        };
        let other_current = by != key.public_key
            && self
                .keys_of(txn, publisher)?
                .iter()
                .any(|other| other.public_key == by && other.revoked_at.is_none());
        if !other_current {
            return Err(StoreError::Forbidden(format!(
                "a back-dated revocation is signed by another current key of `{publisher}`, not by the key revoked or a stranger"
            )));
        }
        let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
        let valid = package::verifying_key_from_hex(by).is_ok_and(|verifying| {
            protocol::verify_revocation(
                &registry,
                publisher,
                &key.public_key,
                revoked_at,
                &verifying,
                signature,
            )
        });
        if !valid {
            return Err(StoreError::Forbidden(format!(
                "the revocation's signature does not verify: sign the revocation statement for registry {registry}, publisher `{publisher}`, the key and revoked_at {revoked_at}"
            )));
        }
        Ok((Some((by.to_string(), signature.to_string())), false))
    }

    /// Counts one more event of `kind` in `publisher`'s history, refusing past the quota
    /// unless `refusable` is false. An admin's key events are not counted against it (an admin
    /// recovers a locked-out publisher whatever its history), nor are revocations: a publisher
    /// must always be able to revoke a stolen key, and revocations are bounded by additions
    /// anyway (a key is revoked once).
    fn charge_history(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        publisher: &str,
        kind: History,
        refusable: bool,
    ) -> Result<(), StoreError> {
        let count = history_count(txn, publisher, kind)?;
        let quotas = &self.rates.quotas;
        let (limit, flag) = match kind {
            History::Versions => (
                quotas.versions_per_publisher,
                "--max-versions-per-publisher",
            ),
            History::KeyEvents => (
                quotas.key_events_per_publisher,
                "--max-key-events-per-publisher",
            ),
        };
        let exempt = !refusable || (kind == History::KeyEvents && caller.is_admin());
        if count >= limit && !exempt {
            return Err(StoreError::Conflict(format!(
                "`{publisher}` has {count} {} in its history, the most this registry allows; ask the registry's operator to raise {flag}",
                kind.name()
            )));
        }
        txn.open_table(HISTORY)
            .map_err(storage)?
            .insert((publisher, kind.name()), count + 1)
            .map_err(storage)?;
        Ok(())
    }

    /// Publishes a package: it must verify, be signed by a current key of the caller's
    /// publisher, take a name that publisher owns (or a new one no other name looks like),
    /// and be a version not published before. The caller's publish rate is taken by
    /// `admit_publish`, before the upload is read.
    pub fn publish(&self, caller: &Caller, bytes: &[u8]) -> Result<IndexEntry, StoreError> {
        caller.require(Permissions::PUBLISH_NODES)?;
        let package =
            package::decode(bytes).map_err(|error| StoreError::BadRequest(error.to_string()))?;
        let signers = package::verify(&package, None)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        let manifest = &package.manifest;
        Self::may_act_for(caller, &manifest.publisher).map_err(|_| {
            StoreError::Forbidden(format!(
                "the package says it is published by `{}`, and `{}` does not act for that publisher",
                manifest.publisher, caller.user.name
            ))
        })?;
        let txn = self.write()?;
        let entry = {
            // The log's clock, as for key events: a version is never dated before the key that
            // signed it was added, even if the system clock stepped back.
            let time = Self::log_time(&txn, now())?;
            let keys = self.keys_of(&txn, &manifest.publisher)?;
            let accepted: Vec<String> = signers
                .iter()
                .map(|signer| hex(signer.as_bytes()))
                .filter(|signer| {
                    keys.iter()
                        .any(|key| &key.public_key == signer && key.revoked_at.is_none())
                })
                .collect();
            if accepted.is_empty() {
                return Err(StoreError::Forbidden(format!(
                    "no signature is by a current key of `{}`; register the key (warden registry key) or sign with one that is not revoked",
                    manifest.publisher
                )));
            }
            let mut names = txn.open_table(NAMES).map_err(storage)?;
            let owner = names
                .get(manifest.name.as_str())
                .map_err(storage)?
                .map(|owner| owner.value().to_string());
            match owner {
                Some(owner) if owner != manifest.publisher => {
                    return Err(StoreError::Forbidden(format!(
                        "the name `{}` belongs to the publisher `{owner}`",
                        manifest.name
                    )));
                }
                Some(_) => {}
                None => {
                    let skeleton = names::skeleton(&manifest.name);
                    let mut skeletons = txn.open_table(SKELETONS).map_err(storage)?;
                    if let Some(existing) = skeletons.get(skeleton.as_str()).map_err(storage)? {
                        return Err(StoreError::Conflict(format!(
                            "the name `{}` is too close to the existing `{}`; choose a clearly different name",
                            manifest.name,
                            existing.value()
                        )));
                    }
                    near_miss(&skeletons, &names, &manifest.name, &manifest.publisher)?;
                    skeletons
                        .insert(skeleton.as_str(), manifest.name.as_str())
                        .map_err(storage)?;
                    names
                        .insert(manifest.name.as_str(), manifest.publisher.as_str())
                        .map_err(storage)?;
                }
            }
            drop(names);
            self.charge_history(&txn, caller, &manifest.publisher, History::Versions, true)?;
            let mut versions = txn.open_table(VERSIONS).map_err(storage)?;
            let id = (manifest.name.as_str(), manifest.version.as_str());
            if versions.get(id).map_err(storage)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{}@{} is published already; versions are immutable, publish a new version",
                    manifest.name, manifest.version
                )));
            }
            let package_sha256 = sha256_hex(bytes);
            let entry = IndexEntry {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                publisher: manifest.publisher.clone(),
                package_sha256: package_sha256.clone(),
                package_bytes: bytes.len() as u64,
                component_sha256: manifest.component_sha256.clone(),
                capabilities: manifest.capabilities.clone(),
                signers: accepted,
                published_at: time,
                yanked: false,
            };
            versions
                .insert(id, json(&entry).as_slice())
                .map_err(storage)?;
            drop(versions);
            txn.open_table(BLOBS)
                .map_err(storage)?
                .insert(package_sha256.as_str(), bytes)
                .map_err(storage)?;
            self.append(
                &txn,
                time,
                Event::Publish {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    publisher: entry.publisher.clone(),
                    package_sha256,
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Marks a version yanked: it stays served and listed (so installed hosts keep working)
    /// but hosts refuse to install it anew.
    pub fn yank(
        &self,
        caller: &Caller,
        name: &str,
        version: &str,
    ) -> Result<IndexEntry, StoreError> {
        caller.require(Permissions::YANK_NODES)?;
        let txn = self.write()?;
        let entry = {
            let mut versions = txn.open_table(VERSIONS).map_err(storage)?;
            let mut entry: IndexEntry = match versions.get((name, version)).map_err(storage)? {
                Some(bytes) => parse("version", bytes.value())?,
                None => {
                    return Err(StoreError::NotFound(format!(
                        "{name}@{version} is not published"
                    )));
                }
            };
            Self::may_act_for(caller, &entry.publisher)?;
            if entry.yanked {
                return Err(StoreError::Conflict(format!(
                    "{name}@{version} is yanked already"
                )));
            }
            entry.yanked = true;
            versions
                .insert((name, version), json(&entry).as_slice())
                .map_err(storage)?;
            drop(versions);
            let time = Self::log_time(&txn, now())?;
            self.append(
                &txn,
                time,
                Event::Yank {
                    name: name.to_string(),
                    version: version.to_string(),
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// The time the next log entry gets: `now`, or the last entry's time if the clock stepped
    /// back, since hosts refuse a log whose times go backwards. Callers that also store the
    /// time (`published_at`, `added_at`) take it from here, inside the same transaction, so
    /// the table and the log agree.
    fn log_time(txn: &WriteTransaction, now: u64) -> Result<u64, StoreError> {
        let log = txn.open_table(LOG).map_err(storage)?;
        let last = match log.last().map_err(storage)? {
            Some((_, bytes)) => parse::<LogEntry>("log entry", bytes.value())?.time,
            None => 0,
        };
        Ok(now.max(last))
    }

    /// Appends to the log and signs a new index, inside the caller's transaction.
    fn append(&self, txn: &WriteTransaction, time: u64, event: Event) -> Result<(), StoreError> {
        {
            let mut log = txn.open_table(LOG).map_err(storage)?;
            let (sequence, previous, last_time) = match log.last().map_err(storage)? {
                Some((sequence, bytes)) => {
                    let last: LogEntry = parse("log entry", bytes.value())?;
                    (sequence.value() + 1, last.hash(), last.time)
                }
                None => (0, LOG_ROOT.to_string(), 0),
            };
            let entry = LogEntry {
                sequence,
                // Never below the last entry's time (a clock stepped back).
                time: time.max(last_time),
                previous,
                event,
            };
            log.insert(sequence, json(&entry).as_slice())
                .map_err(storage)?;
        }
        self.reissue_index(txn)
    }

    /// Signs a new index of everything, one version above the last.
    fn reissue_index(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let version = match meta.get("index").map_err(storage)? {
            Some(bytes) => {
                let signed: Signed = parse("index", bytes.value())?;
                let index: Index = parse("index", signed.signed.as_bytes())?;
                index.version + 1
            }
            None => 1,
        };
        let packages: Vec<IndexEntry> =
            values(&txn.open_table(VERSIONS).map_err(storage)?, "version")?;
        let keys: Vec<KeyEntry> = values(&txn.open_table(KEYS).map_err(storage)?, "publisher key")?;
        let entries: Vec<LogEntry> = values(&txn.open_table(LOG).map_err(storage)?, "log entry")?;
        let (log_size, log_head) = match entries.last() {
            Some(last) => (entries.len() as u64, last.hash()),
            None => (0, LOG_ROOT.to_string()),
        };
        let issued_at = now();
        let index = Index {
            registry: self.public_key(),
            version,
            issued_at,
            expires_at: issued_at.saturating_add(self.index_ttl),
            log_size,
            log_head,
            packages,
            keys,
        };
        // The tables are not trusted: what is signed must be what the log says happened.
        let registry = registry_id_in(&meta)?;
        protocol::replay(&entries, &registry)
            .and_then(|replayed| protocol::index_matches_log(&index, &replayed))
            .map_err(|error| {
                StoreError::Storage(format!(
                    "refusing to sign an index that disagrees with the log ({error}); run `warden registry check`"
                ))
            })?;
        meta.insert("index", json(&index.sign(&self.key)).as_slice())
            .map_err(storage)?;
        Ok(())
    }

    /// The chain of root documents, oldest first.
    pub fn roots(&self) -> Result<Vec<SignedRoot>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let bytes = meta
            .get("roots")
            .map_err(storage)?
            .ok_or_else(|| StoreError::Storage("the root documents are missing".into()))?;
        parse("roots", bytes.value())
    }

    /// Replaces the registry's signing key (run with the registry stopped): a new root, one
    /// version up and signed by the old key and the new one, makes the new key the one hosts
    /// accept; the index is re-signed with it. The new key is written to `registry.key.next`
    /// first and moved into place only after the database commits, and `open` finishes or
    /// discards a rotation that a crash interrupted.
    pub fn rotate_key(&mut self, dir: &Path) -> Result<Root, StoreError> {
        self.rotate_root(dir, &[], 1, &[])
    }

    /// Rotates to a root of the new signing key plus `offline_keys`, `threshold` of which must
    /// sign the root after it. `cosigners` are the secret keys of the other root keys, current
    /// and new, as many as the two thresholds need (listing an offline key in a root with a
    /// threshold above one proves its possession). The new root is checked as a host would
    /// check it before anything is committed.
    pub fn rotate_root(
        &mut self,
        dir: &Path,
        offline_keys: &[String],
        threshold: usize,
        cosigners: &[SigningKey],
    ) -> Result<Root, StoreError> {
        let next_path = dir.join("registry.key.next");
        let _ = std::fs::remove_file(&next_path);
        let new_key =
            package::generate_key().map_err(|error| StoreError::Storage(error.to_string()))?;
        package::write_secret_file(&next_path, &package::secret_key_hex(&new_key))
            .map_err(StoreError::Storage)?;
        sync_dir(dir).map_err(StoreError::Storage)?;
        let mut roots = self.roots()?;
        let current = roots
            .last()
            .map(Root::parse)
            .transpose()
            .map_err(|error| StoreError::Storage(error.to_string()))?
            .ok_or_else(|| StoreError::Storage("the root documents are missing".into()))?;
        let mut keys = vec![package::public_key_hex(&new_key)];
        for key in offline_keys {
            package::verifying_key_from_hex(key)
                .map_err(|error| StoreError::BadRequest(format!("root key {key}: {error}")))?;
            keys.push(key.trim().to_string());
        }
        let next = Root {
            version: current.version + 1,
            keys,
            threshold,
            issued_at: now(),
        };
        let mut signers = vec![&self.key, &new_key];
        signers.extend(cosigners.iter());
        let signed = next.sign(&signers);
        if let Err(error) = current.verify_next(&signed) {
            let _ = std::fs::remove_file(&next_path);
            return Err(StoreError::BadRequest(format!(
                "{error}; give the secret keys of the other root keys (current and new) with --cosign"
            )));
        }
        roots.push(signed);
        let old_key = std::mem::replace(&mut self.key, new_key);
        let committed = (|| {
            let txn = self.write()?;
            txn.open_table(META)
                .map_err(storage)?
                .insert("roots", json(&roots).as_slice())
                .map_err(storage)?;
            self.reissue_index(&txn)?;
            txn.commit().map_err(storage)
        })();
        if let Err(error) = committed {
            // The commit may or may not have reached the disk: keep registry.key.next, and let
            // the next open decide from the database whether the rotation happened.
            self.key = old_key;
            return Err(error);
        }
        finish_rotation(dir, &self.key)?;
        Ok(next)
    }

    /// The signed index; re-signed (one version up) once half its lifetime has passed, so what
    /// hosts get is always fresh.
    pub fn index(&self) -> Result<Signed, StoreError> {
        let current = self.stored_index()?;
        let index: Index = parse("index", current.signed.as_bytes())?;
        if now() + self.index_ttl / 2 < index.expires_at {
            return Ok(current);
        }
        let txn = self.write()?;
        self.reissue_index(&txn)?;
        txn.commit().map_err(storage)?;
        self.stored_index()
    }

    fn stored_index(&self) -> Result<Signed, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let bytes = meta
            .get("index")
            .map_err(storage)?
            .ok_or_else(|| StoreError::Storage("the index is missing".into()))?;
        let signed: Signed = parse("index", bytes.value())?;
        // What is stored is not trusted: a tampered index is an error, not something served.
        Index::verify(&signed, &self.key.verifying_key(), 0)
            .map_err(|error| StoreError::Storage(error.to_string()))?;
        Ok(signed)
    }

    /// The package file of `name@version`, re-verified against its record before it is served.
    pub fn package(&self, name: &str, version: &str) -> Result<Vec<u8>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let entry: IndexEntry = match txn
            .open_table(VERSIONS)
            .map_err(storage)?
            .get((name, version))
            .map_err(storage)?
        {
            Some(bytes) => parse("version", bytes.value())?,
            None => {
                return Err(StoreError::NotFound(format!(
                    "{name}@{version} is not published"
                )));
            }
        };
        let blobs = txn.open_table(BLOBS).map_err(storage)?;
        let bytes = blobs
            .get(entry.package_sha256.as_str())
            .map_err(storage)?
            .map(|bytes| bytes.value().to_vec())
            .ok_or_else(|| {
                StoreError::Storage(format!("the file of {name}@{version} is missing"))
            })?;
        verify_blob(&entry, &bytes)?;
        Ok(bytes)
    }

    /// The versions published under `name`, lowest first.
    pub fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let mut found = Vec::new();
        for item in txn
            .open_table(VERSIONS)
            .map_err(storage)?
            .range((name, "")..)
            .map_err(storage)?
        {
            let (key, value) = item.map_err(storage)?;
            if key.value().0 != name {
                break;
            }
            found.push(parse::<IndexEntry>("version", value.value())?);
        }
        found.sort_by_key(|entry| semver::Version::parse(&entry.version).ok());
        Ok(found)
    }

    pub fn log(&self) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        values(&txn.open_table(LOG).map_err(storage)?, "log entry")
    }

    /// Entries `from`, `from + 1`, … of the log: at most `limit` of them, and no more once
    /// their JSON reaches `max_bytes` (but always one, if there is one). Empty past the end.
    pub fn log_range(
        &self,
        from: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let log = txn.open_table(LOG).map_err(storage)?;
        let mut page = Vec::new();
        let mut bytes = 0;
        for item in log.range(from..).map_err(storage)? {
            if page.len() as u64 >= limit || (bytes >= max_bytes && !page.is_empty()) {
                break;
            }
            let (_, value) = item.map_err(storage)?;
            bytes += value.value().len() + 1;
            page.push(parse("log entry", value.value())?);
        }
        Ok(page)
    }

    pub fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        values(&txn.open_table(AUDIT).map_err(storage)?, "audit entry")
    }

    /// Re-verifies everything stored: each version's file, the log's chain, and that the
    /// signed index matches the log and lists exactly the stored versions.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let roots = self.roots()?;
        let mut current: Option<Root> = None;
        for signed in &roots {
            let root = match &current {
                None => Root::parse(signed).and_then(|root| {
                    let own = root.keys.first().cloned().unwrap_or_default();
                    Root::verify_pinned(signed, &own)
                }),
                Some(previous) => previous.verify_next(signed),
            }
            .map_err(|error| StoreError::Storage(error.to_string()))?;
            current = Some(root);
        }
        if !current.is_some_and(|root| root.keys.contains(&self.public_key())) {
            return Err(StoreError::Storage(
                "the registry's key is not in its newest root".into(),
            ));
        }
        let signed = self.stored_index()?;
        let index: Index = parse("index", signed.signed.as_bytes())?;
        let log = self.log()?;
        protocol::verify_log(&log, index.log_size, &index.log_head)
            .map_err(|error| StoreError::Storage(error.to_string()))?;
        let replayed = protocol::replay(&log, &self.registry_id()?)
            .map_err(|error| StoreError::Storage(error.to_string()))?;
        protocol::index_matches_log(&index, &replayed)
            .map_err(|error| StoreError::Storage(error.to_string()))?;
        let txn = self.db.begin_read().map_err(storage)?;
        let stored_keys: std::collections::BTreeMap<String, KeyEntry> =
            values::<_, KeyEntry>(&txn.open_table(KEYS).map_err(storage)?, "publisher key")?
                .into_iter()
                .map(|key| (key.public_key.clone(), key))
                .collect();
        if stored_keys != replayed.keys {
            return Err(StoreError::Storage(
                "the stored publisher keys are not the ones the log adds and revokes".into(),
            ));
        }
        let blobs = txn.open_table(BLOBS).map_err(storage)?;
        let mut versions = 0;
        for item in txn
            .open_table(VERSIONS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (_, value) = item.map_err(storage)?;
            let entry: IndexEntry = parse("version", value.value())?;
            let bytes = blobs
                .get(entry.package_sha256.as_str())
                .map_err(storage)?
                .ok_or_else(|| {
                    StoreError::Storage(format!(
                        "the file of {}@{} is missing",
                        entry.name, entry.version
                    ))
                })?;
            verify_blob(&entry, bytes.value())?;
            if index.entry(&entry.name, &entry.version) != Some(&entry) {
                return Err(StoreError::Storage(format!(
                    "the index does not list {}@{} as stored",
                    entry.name, entry.version
                )));
            }
            let published = log.iter().any(|logged| matches!(&logged.event, Event::Publish { name, version, package_sha256, .. } if *name == entry.name && *version == entry.version && *package_sha256 == entry.package_sha256));
            if !published {
                return Err(StoreError::Storage(format!(
                    "{}@{} is not in the log",
                    entry.name, entry.version
                )));
            }
            versions += 1;
        }
        if versions != index.packages.len() {
            return Err(StoreError::Storage(
                "the index lists versions that are not stored".into(),
            ));
        }
        Ok(CheckReport {
            integrity: self.integrity,
            root_version: roots.len() as u64,
            versions,
            log_entries: index.log_size,
            index_version: index.version,
        })
    }
}

/// Checks that `bytes` are the package `entry` describes and that it still verifies.
fn verify_blob(entry: &IndexEntry, bytes: &[u8]) -> Result<(), StoreError> {
    let corrupt = |why: String| {
        StoreError::Storage(format!(
            "the stored file of {}@{} {why}",
            entry.name, entry.version
        ))
    };
    if sha256_hex(bytes) != entry.package_sha256 || bytes.len() as u64 != entry.package_bytes {
        return Err(corrupt("does not match its record".into()));
    }
    let package = package::decode(bytes).map_err(|error| corrupt(error.to_string()))?;
    package::verify(&package, None).map_err(|error| corrupt(error.to_string()))?;
    if package.manifest.name != entry.name || package.manifest.version != entry.version {
        return Err(corrupt("is another package".into()));
    }
    Ok(())
}

fn insert_token(
    txn: &WriteTransaction,
    user: &str,
    kind: TokenKind,
    ttl: u64,
    parent: Option<&TokenRecord>,
) -> Result<(String, TokenRecord), StoreError> {
    let (token, hash) = auth::new_token(kind).map_err(StoreError::Storage)?;
    let time = now();
    let mut expires_at = time.saturating_add(ttl);
    if let Some(parent) = parent {
        // A child never outlives its issuer, so pruning an expired token never strands a
        // live one.
        expires_at = expires_at.min(parent.expires_at);
    }
    let record = TokenRecord {
        id: hash[..16].to_string(),
        user: user.to_string(),
        kind,
        created_at: time,
        expires_at,
        revoked: false,
        parent: parent.map(|parent| parent.id.clone()),
        depth: parent.map_or(0, |parent| parent.depth + 1),
    };
    txn.open_table(TOKENS)
        .map_err(storage)?
        .insert(hash.as_str(), json(&record).as_slice())
        .map_err(storage)?;
    txn.open_table(TOKEN_IDS)
        .map_err(storage)?
        .insert(record.id.as_str(), hash.as_str())
        .map_err(storage)?;
    Ok((token, record))
}

/// The token with public id `id`.
fn lookup_token(
    tokens: &impl ReadableTable<&'static str, &'static [u8]>,
    ids: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some(hash) = ids.get(id).map_err(storage)? else {
        return Ok(None);
    };
    match tokens.get(hash.value()).map_err(storage)? {
        Some(bytes) => parse("token", bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Why `record` no longer authenticates at `time`, if it does not: it, or a token up the
/// chain that issued it, is revoked, expired or gone (a revoked token's record is deleted).
/// The walk is bounded by `MAX_TOKEN_DEPTH`.
fn dead_reason(
    record: &TokenRecord,
    time: u64,
    mut lookup: impl FnMut(&str) -> Result<Option<TokenRecord>, StoreError>,
) -> Result<Option<&'static str>, StoreError> {
    if record.revoked {
        return Ok(Some("the token was revoked"));
    }
    if time >= record.expires_at {
        return Ok(Some("the token expired"));
    }
    let mut parent = record.parent.clone();
    for _ in 0..=MAX_TOKEN_DEPTH {
        let Some(id) = parent else {
            return Ok(None);
        };
        match lookup(&id)? {
            Some(issuer) if !issuer.revoked && time < issuer.expires_at => parent = issuer.parent,
            _ => return Ok(Some("the token that issued this token was revoked")),
        }
    }
    Ok(Some("the token's chain of issuers is too long"))
}

/// Deletes every token that no longer authenticates, so the table holds live tokens only (at
/// most the per-user cap each, plus those that died since the last issuance); returns the
/// live ones. One pass over the table: it is bounded by that cap.
fn prune_tokens(txn: &WriteTransaction, time: u64) -> Result<Vec<TokenRecord>, StoreError> {
    let mut all: BTreeMap<String, (String, TokenRecord)> = BTreeMap::new();
    for item in txn
        .open_table(TOKENS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (hash, bytes) = item.map_err(storage)?;
        let record: TokenRecord = parse("token", bytes.value())?;
        all.insert(record.id.clone(), (hash.value().to_string(), record));
    }
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for (id, (hash, record)) in &all {
        let lookup = |id: &str| Ok(all.get(id).map(|(_, record)| record.clone()));
        if dead_reason(record, time, lookup)?.is_some() {
            dead.push((id.as_str(), hash.as_str()));
        } else {
            live.push(record.clone());
        }
    }
    let mut tokens = txn.open_table(TOKENS).map_err(storage)?;
    let mut ids = txn.open_table(TOKEN_IDS).map_err(storage)?;
    for (id, hash) in dead {
        tokens.remove(hash).map_err(storage)?;
        ids.remove(id).map_err(storage)?;
    }
    Ok(live)
}

fn audit(txn: &WriteTransaction, actor: &str, action: &str) -> Result<(), StoreError> {
    let mut table = txn.open_table(AUDIT).map_err(storage)?;
    let next = table
        .last()
        .map_err(storage)?
        .map(|(key, _)| key.value() + 1)
        .unwrap_or(0);
    let entry = AuditEntry {
        time: now(),
        actor: actor.to_string(),
        action: action.to_string(),
    };
    table
        .insert(next, json(&entry).as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Refuses a new name one edit or one swap of neighbours away (on the skeletons) from a name
/// another publisher owns: `text-transfrom` next to `text-transform`. One scan of the names:
/// new names are rare next to everything else a registry does.
fn near_miss(
    skeletons: &impl ReadableTable<&'static str, &'static str>,
    names: &impl ReadableTable<&'static str, &'static str>,
    name: &str,
    publisher: &str,
) -> Result<(), StoreError> {
    let skeleton = names::skeleton(name);
    for item in skeletons.iter().map_err(storage)? {
        let (existing_skeleton, existing) = item.map_err(storage)?;
        if !names::near_miss(&skeleton, existing_skeleton.value()) {
            continue;
        }
        let existing = existing.value();
        let owner = names.get(existing).map_err(storage)?;
        if owner.is_some_and(|owner| owner.value() != publisher) {
            return Err(StoreError::Conflict(format!(
                "the name `{name}` is one typo away from `{existing}`, another publisher's; choose a clearly different name"
            )));
        }
    }
    Ok(())
}

/// What a publisher's history quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum History {
    Versions,
    KeyEvents,
}

impl History {
    fn name(self) -> &'static str {
        match self {
            History::Versions => "versions",
            History::KeyEvents => "key events",
        }
    }

    fn counts(self, event: &Event, of: &str) -> bool {
        match (self, event) {
            (History::Versions, Event::Publish { publisher, .. }) => publisher == of,
            (History::KeyEvents, Event::KeyAdded { publisher, .. })
            | (History::KeyEvents, Event::KeyRevoked { publisher, .. }) => publisher == of,
            _ => false,
        }
    }
}

/// How many events of `kind` `publisher`'s history holds: the kept count, or (for a database
/// from before the counts, or a new publisher) counted from the log.
fn history_count(
    txn: &WriteTransaction,
    publisher: &str,
    kind: History,
) -> Result<u64, StoreError> {
    if let Some(count) = txn
        .open_table(HISTORY)
        .map_err(storage)?
        .get((publisher, kind.name()))
        .map_err(storage)?
    {
        return Ok(count.value());
    }
    let mut count = 0;
    for item in txn
        .open_table(LOG)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, bytes) = item.map_err(storage)?;
        let entry: LogEntry = parse("log entry", bytes.value())?;
        count += u64::from(kind.counts(&entry.event, publisher));
    }
    Ok(count)
}

/// The registry's identity, from the root documents in `meta`.
fn registry_id_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<String, StoreError> {
    let bytes = meta
        .get("roots")
        .map_err(storage)?
        .ok_or_else(|| StoreError::Storage("the root documents are missing".into()))?;
    let roots: Vec<SignedRoot> = parse("roots", bytes.value())?;
    protocol::registry_id(&roots).map_err(|error| StoreError::Storage(error.to_string()))
}

/// Moves a committed rotation's key into place.
fn finish_rotation(dir: &Path, key: &SigningKey) -> Result<(), StoreError> {
    std::fs::rename(dir.join("registry.key.next"), dir.join("registry.key")).map_err(|error| {
        StoreError::Storage(format!(
            "cannot move the new registry key into place: {error}"
        ))
    })?;
    sync_dir(dir).map_err(StoreError::Storage)?;
    write_durably(
        &dir.join("registry.pub"),
        format!("{}\n", package::public_key_hex(key)).as_bytes(),
    )
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| format!("cannot sync {}: {error}", dir.display()))
}

/// The newest root's keys in `db` (none in a new database).
fn newest_root_keys(db: &Database) -> Result<Vec<String>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(storage(error)),
    };
    let Some(bytes) = meta.get("roots").map_err(storage)? else {
        return Ok(Vec::new());
    };
    let roots: Vec<SignedRoot> = parse("roots", bytes.value())?;
    Ok(roots
        .last()
        .and_then(|root| Root::parse(root).ok())
        .map(|root| root.keys)
        .unwrap_or_default())
}

/// The registry's signing key, `registry.key` (hex, mode 0600) in `dir`, after finishing or
/// discarding a rotation a crash interrupted. Called with the database open (and so locked) by
/// this process. A missing key is never replaced: a database exists, and a new key would be in
/// none of its roots.
fn load_key(dir: &Path, db: &Database) -> Result<SigningKey, StoreError> {
    let next = dir.join("registry.key.next");
    if let Ok(text) = std::fs::read_to_string(&next) {
        // A rotation was interrupted: finish it if the database committed it, else drop it.
        // If the database cannot say, nothing is touched.
        let newest = newest_root_keys(db)?;
        let committed = package::signing_key_from_hex(&text)
            .filter(|key| newest.contains(&package::public_key_hex(key)));
        match committed {
            Some(key) => finish_rotation(dir, &key)?,
            None => {
                let _ = std::fs::remove_file(&next);
            }
        }
    }
    let path: PathBuf = dir.join("registry.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => package::signing_key_from_hex(&text).ok_or_else(|| {
            StoreError::Storage(format!(
                "{} is not a registry key (64 hex digits)",
                path.display()
            ))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(StoreError::Storage(format!(
                "{} is missing but the registry's database exists: restore the key from a backup (a new key would be in no root, and hosts would refuse it)",
                path.display()
            )))
        }
        Err(error) => Err(StoreError::Storage(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place, so a
/// crash leaves the old file or the new one, never a torn one.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let fail = |error: std::io::Error| {
        StoreError::Storage(format!("cannot write {}: {error}", path.display()))
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(StoreError::Storage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, parent: Option<&str>, expires_at: u64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            user: "u".into(),
            kind: TokenKind::Pat,
            created_at: 0,
            expires_at,
            revoked: false,
            parent: parent.map(Into::into),
            depth: 0,
        }
    }

    fn reason(record: &TokenRecord, known: &[TokenRecord], time: u64) -> Option<&'static str> {
        dead_reason(record, time, |id| {
            Ok(known.iter().find(|token| token.id == id).cloned())
        })
        .unwrap_or(Some("lookup failed"))
    }

    #[test]
    fn a_token_dies_with_any_token_above_it() {
        let root = token("a", None, 100);
        let child = token("b", Some("a"), 100);
        let grandchild = token("c", Some("b"), 100);
        let all = vec![root.clone(), child.clone(), grandchild.clone()];
        assert_eq!(reason(&grandchild, &all, 10), None);
        // The middle one gone (revoked records are deleted), revoked, or expired.
        assert!(reason(&grandchild, &[root.clone(), grandchild.clone()], 10).is_some());
        let revoked = TokenRecord {
            revoked: true,
            ..child.clone()
        };
        assert!(
            reason(
                &grandchild,
                &[root.clone(), revoked, grandchild.clone()],
                10
            )
            .is_some()
        );
        let expired = token("b", Some("a"), 5);
        assert!(reason(&grandchild, &[root, expired, grandchild.clone()], 10).is_some());
        // Its own expiry.
        assert_eq!(reason(&grandchild, &all, 100), Some("the token expired"));
    }

    #[test]
    fn a_chain_longer_than_allowed_is_refused_even_if_stored() {
        // A forged cycle in the table cannot make authentication loop.
        let looped = vec![token("a", Some("b"), 100), token("b", Some("a"), 100)];
        assert_eq!(
            reason(&looped[0], &looped, 10),
            Some("the token's chain of issuers is too long")
        );
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn owner(store: &Store, token: &str) -> Caller {
        store
            .authenticate(TokenKind::Pat, token)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Registers a new key, with its proof of possession, for `publisher`; returns it in hex.
    fn add_new_key(store: &Store, owner: &Caller, publisher: &str) -> String {
        let key = package::generate_key().unwrap_or_else(|error| panic!("{error}"));
        let public = package::public_key_hex(&key);
        let registry = store
            .registry_id()
            .unwrap_or_else(|error| panic!("{error}"));
        let possession = protocol::sign_possession(&registry, publisher, &key);
        store
            .add_key(owner, publisher, &public, &possession, None)
            .unwrap_or_else(|error| panic!("{error}"));
        public
    }

    #[test]
    fn a_clock_stepped_back_does_not_move_log_time_backwards() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        let first = add_new_key(&store, &owner, "acme");
        // As if the clock had been an hour ahead when that entry was written.
        let ahead = now() + 3600;
        {
            let txn = store.write().unwrap_or_else(|error| panic!("{error}"));
            {
                let mut log = txn
                    .open_table(LOG)
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut entry: LogEntry = parse(
                    "log entry",
                    log.get(0)
                        .ok()
                        .flatten()
                        .map(|bytes| bytes.value().to_vec())
                        .unwrap_or_default()
                        .as_slice(),
                )
                .unwrap_or_else(|error| panic!("{error}"));
                entry.time = ahead;
                log.insert(0, json(&entry).as_slice())
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut keys = txn
                    .open_table(KEYS)
                    .unwrap_or_else(|error| panic!("{error}"));
                let mut key: KeyEntry = parse(
                    "key",
                    keys.get(first.as_str())
                        .ok()
                        .flatten()
                        .map(|bytes| bytes.value().to_vec())
                        .unwrap_or_default()
                        .as_slice(),
                )
                .unwrap_or_else(|error| panic!("{error}"));
                key.added_at = ahead;
                keys.insert(first.as_str(), json(&key).as_slice())
                    .unwrap_or_else(|error| panic!("{error}"));
            }
            txn.commit().unwrap_or_else(|error| panic!("{error}"));
        }
        // The next change happens "earlier" by the clock: it is logged at the last time, and
        // the log still replays and signs. "From now" is the second after the log's time.
        let revoked = store
            .revoke_key(&owner, "acme", &first, None, None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(revoked.revoked_at, Some(ahead + 1));
        let log = store.log().unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].time, ahead);
        let registry = store
            .registry_id()
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(protocol::replay(&log, &registry).is_ok());
        assert!(store.check().is_ok());
    }

    #[test]
    fn log_pages_are_bounded_by_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        for publisher in ["a", "b", "c", "d", "e"] {
            add_new_key(&store, &owner, publisher);
        }
        let all = store.log().unwrap_or_else(|error| panic!("{error}"));
        let page = store
            .log_range(1, 2, usize::MAX)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[1..3].to_vec());
        // A byte bound below one entry still returns one entry, so paging always progresses.
        let page = store
            .log_range(0, 1000, 1)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[..1].to_vec());
        let page = store
            .log_range(3, 1000, usize::MAX)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(page, all[3..].to_vec());
        assert!(
            store
                .log_range(5, 1000, usize::MAX)
                .unwrap_or_default()
                .is_empty()
        );
        assert!(
            store
                .log_range(u64::MAX, 1000, usize::MAX)
                .unwrap_or_default()
                .is_empty()
        );
    }
}
