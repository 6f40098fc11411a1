//! `warden registry check`: re-verifies everything stored, as a host would and more: the root
//! chain, each version's file, the log's chain and replay, and that the signed index and the
//! keys table say exactly what the log says.

use super::publish::verify_blob;
use super::{BLOBS, CheckReport, KEYS, Store, StoreError, VERSIONS, parse, storage, values};
use crate::protocol::{self, Event, Index, IndexEntry, KeyEntry, Root};
use redb::{ReadableDatabase, ReadableTable};

impl Store {
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
