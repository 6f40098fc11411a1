//! The registry's storage: one redb database with two-phase commit and immediate durability.
//!
//! Every change (a publish with its blob, its version record, its log entry and the newly
//! signed index) is one write transaction, so a crash at any point leaves the state before it
//! or the state after it, never a version without its blob or a log without its index.
//! Nothing read back is trusted: packages are re-verified before they are served, and `check`
//! re-verifies everything.

use crate::auth::{self, Permissions, TokenKind, TokenRecord};
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
use std::path::{Path, PathBuf};
use warden_host::package::{self, hex};

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

/// How long a signed index is valid by default: hosts refuse it after this.
pub const DEFAULT_INDEX_TTL: u64 = 24 * 60 * 60;
/// The longest an index may be valid.
pub const MAX_INDEX_TTL: u64 = 366 * 24 * 60 * 60;
/// How long a token is valid by default.
pub const DEFAULT_TOKEN_TTL: u64 = 90 * 24 * 60 * 60;
/// The longest a token may live.
pub const MAX_TOKEN_TTL: u64 = 366 * 24 * 60 * 60;

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
    pub fn open(dir: &Path, index_ttl: u64) -> Result<(Store, Option<String>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            StoreError::Storage(format!("cannot create {}: {error}", dir.display()))
        })?;
        let database = dir.join("registry.redb");
        let existed = database.exists();
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
        let key = load_or_create_key(dir, &db, existed)?;
        // registry.pub follows the key (a crash may have left it behind after a rotation).
        let public = format!("{}\n", package::public_key_hex(&key));
        if std::fs::read_to_string(dir.join("registry.pub"))
            .ok()
            .as_deref()
            != Some(public.as_str())
        {
            std::fs::write(dir.join("registry.pub"), &public).map_err(|error| {
                StoreError::Storage(format!("cannot write registry.pub: {error}"))
            })?;
        }
        let store = Store {
            db,
            key,
            index_ttl: index_ttl.clamp(1, MAX_INDEX_TTL),
            integrity,
        };
        let bootstrap = store.initialize()?;
        Ok((store, bootstrap))
    }

    /// Opens an existing registry; refuses a directory that holds none (so a mistyped path
    /// does not silently become a new registry).
    pub fn open_existing(dir: &Path, index_ttl: u64) -> Result<Store, StoreError> {
        if !dir.join("registry.redb").is_file() || !dir.join("registry.key").is_file() {
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
            let issued = insert_token(&txn, user, kind, ttl.clamp(1, MAX_TOKEN_TTL))?;
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
                let (token, _) = insert_token(&txn, "owner", TokenKind::Pat, DEFAULT_TOKEN_TTL)?;
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
    /// user, and be neither revoked nor expired.
    pub fn authenticate(&self, kind: TokenKind, token: &str) -> Result<Caller, StoreError> {
        let refuse = |why: &str| StoreError::Unauthorized(why.to_string());
        let txn = self.db.begin_read().map_err(storage)?;
        let tokens = txn.open_table(TOKENS).map_err(storage)?;
        let record: TokenRecord = match tokens
            .get(auth::token_hash(token).as_str())
            .map_err(storage)?
        {
            Some(bytes) => parse("token", bytes.value())?,
            None => return Err(refuse("the token is not known to this registry")),
        };
        if record.kind != kind {
            return Err(refuse(match kind {
                TokenKind::ApiKey => {
                    "a personal access token goes in `Authorization: PAT <token>`, not X-API-Key"
                }
                TokenKind::Pat => "an API key goes in the X-API-Key header, not Authorization",
            }));
        }
        if record.revoked {
            return Err(refuse("the token was revoked; ask for a new one"));
        }
        if now() >= record.expires_at {
            return Err(refuse("the token expired; ask for a new one"));
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
            token_id: record.id,
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

    /// Issues a token for `user` (the caller's own, or anyone's with manage-users).
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
        let txn = self.write()?;
        let issued = {
            let target: User = match txn
                .open_table(USERS)
                .map_err(storage)?
                .get(user)
                .map_err(storage)?
            {
                Some(bytes) => parse("user", bytes.value())?,
                None => return Err(StoreError::NotFound(format!("no user `{user}`"))),
            };
            if user != caller.user.name {
                Self::may_manage(caller, &target)?;
            }
            let issued = insert_token(&txn, user, kind, ttl)?;
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

    pub fn revoke_token(&self, caller: &Caller, id: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let hash = txn
                .open_table(TOKEN_IDS)
                .map_err(storage)?
                .get(id)
                .map_err(storage)?
                .map(|hash| hash.value().to_string())
                .ok_or_else(|| StoreError::NotFound(format!("no token `{id}`")))?;
            let mut tokens = txn.open_table(TOKENS).map_err(storage)?;
            let mut record: TokenRecord = match tokens.get(hash.as_str()).map_err(storage)? {
                Some(bytes) => parse("token", bytes.value())?,
                None => return Err(StoreError::NotFound(format!("no token `{id}`"))),
            };
            if record.user != caller.user.name {
                let target: User = match txn
                    .open_table(USERS)
                    .map_err(storage)?
                    .get(record.user.as_str())
                    .map_err(storage)?
                {
                    Some(bytes) => parse("user", bytes.value())?,
                    None => return Err(StoreError::NotFound(format!("no user `{}`", record.user))),
                };
                Self::may_manage(caller, &target)?;
            }
            record.revoked = true;
            tokens
                .insert(hash.as_str(), json(&record).as_slice())
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
    /// holds: an admin cannot mint or revoke an owner's tokens.
    fn may_manage(caller: &Caller, target: &User) -> Result<(), StoreError> {
        caller.require(Permissions::MANAGE_USERS)?;
        let theirs = auth::permissions_of(&target.roles).map_err(StoreError::Storage)?;
        if caller.permissions.contains(theirs) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "`{}` holds permissions `{}` lacks; only a user holding all of them manages its tokens",
                target.name, caller.user.name
            )))
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

    /// Registers a publisher's key. The first key needs only the caller's right to act for
    /// the publisher; every later key is a rotation and must be signed in by a current key.
    pub fn add_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
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
        let time = now();
        let txn = self.write()?;
        let time = Self::log_time(&txn, time)?;
        let entry = {
            let existing = self.keys_of(&txn, publisher)?;
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
            let current: Vec<&KeyEntry> = existing
                .iter()
                .filter(|key| key.revoked_at.is_none())
                .collect();
            let signer = if current.is_empty() && existing.is_empty() {
                None
            } else if current.is_empty() {
                // Every key is revoked (perhaps by a thief with a stolen token): only an admin
                // can give the publisher a key again. The log records the key as not signed in.
                if !caller.is_admin() {
                    return Err(StoreError::Forbidden(format!(
                        "every key of `{publisher}` is revoked; an admin must register its new key"
                    )));
                }
                None
            } else {
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
                Some((by.to_string(), signature.to_string()))
            };
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
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Revokes a key from `at` on (now by default; earlier when a compromise is found late).
    pub fn revoke_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        at: Option<u64>,
    ) -> Result<KeyEntry, StoreError> {
        caller.require(Permissions::MANAGE_KEYS)?;
        Self::may_act_for(caller, publisher)?;
        let txn = self.write()?;
        let entry = {
            let mut keys = txn.open_table(KEYS).map_err(storage)?;
            let mut entry: KeyEntry = match keys.get(public_key).map_err(storage)? {
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
            let time = Self::log_time(&txn, now())?;
            let revoked_at = at.unwrap_or(time).min(time).max(entry.added_at);
            entry.revoked_at = Some(revoked_at);
            keys.insert(public_key, json(&entry).as_slice())
                .map_err(storage)?;
            drop(keys);
            self.append(
                &txn,
                time,
                Event::KeyRevoked {
                    publisher: publisher.to_string(),
                    public_key: public_key.to_string(),
                    revoked_at,
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Publishes a package: it must verify, be signed by a current key of the caller's
    /// publisher, take a name that publisher owns (or a new one no other name looks like),
    /// and be a version not published before.
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
        let time = now();
        let txn = self.write()?;
        let time = Self::log_time(&txn, time)?;
        let entry = {
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
                    skeletons
                        .insert(skeleton.as_str(), manifest.name.as_str())
                        .map_err(storage)?;
                    names
                        .insert(manifest.name.as_str(), manifest.publisher.as_str())
                        .map_err(storage)?;
                }
            }
            drop(names);
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
            self.append(
                &txn,
                now(),
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
        protocol::replay(&entries)
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
        let replayed =
            protocol::replay(&log).map_err(|error| StoreError::Storage(error.to_string()))?;
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
) -> Result<(String, TokenRecord), StoreError> {
    let (token, hash) = auth::new_token(kind).map_err(StoreError::Storage)?;
    let time = now();
    let record = TokenRecord {
        id: hash[..16].to_string(),
        user: user.to_string(),
        kind,
        created_at: time,
        expires_at: time.saturating_add(ttl),
        revoked: false,
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

/// Moves a committed rotation's key into place.
fn finish_rotation(dir: &Path, key: &SigningKey) -> Result<(), StoreError> {
    std::fs::rename(dir.join("registry.key.next"), dir.join("registry.key")).map_err(|error| {
        StoreError::Storage(format!(
            "cannot move the new registry key into place: {error}"
        ))
    })?;
    sync_dir(dir).map_err(StoreError::Storage)?;
    std::fs::write(
        dir.join("registry.pub"),
        format!("{}\n", package::public_key_hex(key)),
    )
    .map_err(|error| StoreError::Storage(format!("cannot write registry.pub: {error}")))
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

/// The registry's signing key: `registry.key` (hex, mode 0600) and `registry.pub` in `dir`.
/// Called with the database open (and so locked) by this process.
fn load_or_create_key(dir: &Path, db: &Database, existed: bool) -> Result<SigningKey, StoreError> {
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
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && existed => {
            Err(StoreError::Storage(format!(
                "{} is missing but the registry's database exists: restore the key from a backup (a new key would be in no root, and hosts would refuse it)",
                path.display()
            )))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key =
                package::generate_key().map_err(|error| StoreError::Storage(error.to_string()))?;
            package::write_secret_file(&path, &package::secret_key_hex(&key))
                .map_err(StoreError::Storage)?;
            std::fs::write(
                dir.join("registry.pub"),
                format!("{}\n", package::public_key_hex(&key)),
            )
            .map_err(|error| StoreError::Storage(format!("cannot write registry.pub: {error}")))?;
            Ok(key)
        }
        Err(error) => Err(StoreError::Storage(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
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

    fn new_key() -> String {
        package::public_key_hex(&package::generate_key().unwrap_or_else(|error| panic!("{error}")))
    }

    #[test]
    fn a_clock_stepped_back_does_not_move_log_time_backwards() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        let first = new_key();
        store
            .add_key(&owner, "acme", &first, None)
            .unwrap_or_else(|error| panic!("{error}"));
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
        // the log still replays and signs.
        let revoked = store
            .revoke_key(&owner, "acme", &first, None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(revoked.revoked_at, Some(ahead));
        let log = store.log().unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].time, ahead);
        assert!(protocol::replay(&log).is_ok());
        assert!(store.check().is_ok());
    }

    #[test]
    fn log_pages_are_bounded_by_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let (store, token) =
            Store::open(dir.path(), 3600).unwrap_or_else(|error| panic!("{error}"));
        let owner = owner(&store, &token.unwrap_or_default());
        for publisher in ["a", "b", "c", "d", "e"] {
            store
                .add_key(&owner, publisher, &new_key(), None)
                .unwrap_or_else(|error| panic!("{error}"));
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
