//! Opening a registry, and creating one on first start: the whole registry is built under a
//! temporary name and moved into place, the database last, so a kill at any moment leaves
//! either no registry or a whole one.

use super::root::load_key;
use super::users::{audit, insert_token};
use super::{
    AUDIT, BLOBS, DATABASE, DEFAULT_TOKEN_TTL, Integrity, KEYS, LOG, MAX_INDEX_TTL, META, NAMES,
    Rates, SKELETONS, STAGING, Store, StoreError, TOKEN_IDS, TOKENS, USERS, User, VERSIONS, json,
    storage, write_durably,
};
use crate::durable;
use crate::protocol::{Root, TokenKind, now};
use crate::server::limits::DEFAULT_QUOTAS;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::Path;
use warden_package as package;

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
                .map_err(storage)?;
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
        durable::sync_dir(&staging).map_err(storage)?;
        if new_key {
            std::fs::rename(staging.join("registry.key"), &key_path)
                .map_err(|error| fail("move the new key to", &key_path, error))?;
            durable::sync_dir(dir).map_err(storage)?;
        }
        std::fs::rename(&staged, dir.join(DATABASE))
            .map_err(|error| fail("move the new database to", &dir.join(DATABASE), error))?;
        durable::sync_dir(dir).map_err(storage)?;
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
}
