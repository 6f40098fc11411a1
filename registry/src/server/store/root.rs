//! The registry's root of trust and its signing key: the chain of root documents, rotating
//! to a new key (and offline keys with a threshold), and loading the key at open, finishing or
//! discarding a rotation a crash interrupted.

use super::{META, Store, StoreError, json, parse, storage, write_durably};
use crate::durable;
use crate::protocol::{self, Root, SignedRoot, SigningKey, now};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::path::{Path, PathBuf};
use warden_package as package;

impl Store {
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
            .map_err(storage)?;
        durable::sync_dir(dir).map_err(storage)?;
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
}

/// The registry's identity, from the root documents in `meta`.
pub(super) fn registry_id_in(
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
pub(super) fn finish_rotation(dir: &Path, key: &SigningKey) -> Result<(), StoreError> {
    std::fs::rename(dir.join("registry.key.next"), dir.join("registry.key")).map_err(|error| {
        StoreError::Storage(format!(
            "cannot move the new registry key into place: {error}"
        ))
    })?;
    durable::sync_dir(dir).map_err(storage)?;
    write_durably(
        &dir.join("registry.pub"),
        format!("{}\n", package::public_key_hex(key)).as_bytes(),
    )
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
pub(super) fn load_key(dir: &Path, db: &Database) -> Result<SigningKey, StoreError> {
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
