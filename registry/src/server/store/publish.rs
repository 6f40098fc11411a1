//! Versions: publishing (verified, signed by a current key of the publisher, under a name it
//! owns or a new one no other name looks like, never twice), yanking, and serving a package,
//! re-verified before it leaves the store.

use super::history::History;
use super::{BLOBS, Caller, NAMES, SKELETONS, Store, StoreError, VERSIONS, json, parse, storage};
use crate::protocol::{Event, IndexEntry, now, sha256_hex};
use crate::server::auth::Permissions;
use crate::server::names;
use redb::{ReadableDatabase, ReadableTable};
use warden_package::{self as package, hex};

impl Store {
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
}

/// Checks that `bytes` are the package `entry` describes and that it still verifies.
pub(super) fn verify_blob(entry: &IndexEntry, bytes: &[u8]) -> Result<(), StoreError> {
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
