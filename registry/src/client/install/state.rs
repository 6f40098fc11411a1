//! What a host remembers between installs: `host.redb` in its state directory, with per
//! registry identity (`protocol::registry_id`, stable across key rotations and URLs) the root
//! it follows, the highest index version, the log checkpoint it has seen and the verified log
//! up to it; per node name, the highest version it has seen and what is installed, with the
//! grant, the registry identity and the publisher keys it was accepted under; and the package
//! files beside it, named by their SHA-256. Every change is one durable transaction, and a new
//! state is made whole before it is linked into place.

use super::error::{InstallError, Refusal, state};
use super::installed::{Installed, check_names, looseness};
use crate::durable;
use crate::protocol::{LogEntry, Root, sha256_hex};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_package::{self as package, Package, hex};

/// Registry identity → `RegistryRecord`.
const REGISTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("registries");
const SEEN: TableDefinition<&str, &str> = TableDefinition::new("highest_seen");
const INSTALLED: TableDefinition<&str, &[u8]> = TableDefinition::new("installed");
/// `format` → the state's format number, as little-endian u64.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (registry identity, sequence) → a log entry, verified up to the registry's checkpoint.
const LOG_ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("log_entries");
/// Number → `PublisherChange`, in the order they were accepted.
const PUBLISHER_CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("publisher_changes");

/// The format of `host.redb` this build writes: 2 keys registries by identity.
const STATE_FORMAT: u64 = 2;

/// What the host remembers of a registry, under its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// `protocol::registry_id`: the first key of its root version 1.
    pub id: String,
    /// Where it was last reached (any URL serving the same identity shares this record).
    pub url: String,
    /// The registry's root of trust as this host last accepted it.
    pub root: Root,
    pub index_version: u64,
    pub index_sha256: String,
    /// The verified log checkpoint; the entries up to it are kept in `log_entries`.
    pub log_size: u64,
    pub log_head: String,
}

/// An accepted publisher change, as the host's audit records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherChange {
    /// Unix seconds (the host's clock) when the operator accepted it.
    pub time: u64,
    pub name: String,
    pub old_version: String,
    pub new_version: String,
    pub old_registry: String,
    pub new_registry: String,
    pub new_registry_url: String,
    pub old_publisher: String,
    pub new_publisher: String,
    pub old_keys: Vec<String>,
    pub new_keys: Vec<String>,
    /// Why it was a change (another registry, another publisher, a key outside the lineage).
    pub reason: String,
}

/// A host's install state: `host.redb` and the package files beside it.
pub struct InstallState {
    db: Database,
    dir: PathBuf,
}

fn parse<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, InstallError> {
    serde_json::from_slice(bytes)
        .map_err(|error| InstallError::State(format!("corrupt record: {error}")))
}

impl InstallState {
    /// Opens the state in `dir`, creating it when new. A new `host.redb` is made complete
    /// under a temporary name and then linked into place, so a process killed at any moment
    /// leaves either no state or a whole one (and the next start removes the temporary).
    pub fn open(dir: &Path) -> Result<InstallState, InstallError> {
        std::fs::create_dir_all(dir.join("packages")).map_err(|error| {
            InstallError::State(format!("cannot create {}: {error}", dir.display()))
        })?;
        let path = dir.join("host.redb");
        // What starts killed before they finished left behind.
        remove_temporaries(dir)?;
        if !path.exists() {
            // Named for this process, so no two first starts ever write or link the same file.
            let temporary = dir.join(format!("{TEMPORARY_PREFIX}{}", std::process::id()));
            create_state(&path, &temporary)?;
        }
        let db = Database::create(&path).map_err(|error| {
            InstallError::State(format!("cannot open {}: {error}", path.display()))
        })?;
        check_format(&db, &path)?;
        Ok(InstallState {
            db,
            dir: dir.to_path_buf(),
        })
    }

    fn write(&self) -> Result<redb::WriteTransaction, InstallError> {
        let mut txn = self.db.begin_write().map_err(state)?;
        txn.set_two_phase_commit(true);
        txn.set_durability(Durability::Immediate).map_err(state)?;
        Ok(txn)
    }

    /// The JSON record under `key` in `table`.
    fn record<T: for<'a> Deserialize<'a>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, InstallError> {
        let txn = self.db.begin_read().map_err(state)?;
        let table = txn.open_table(table).map_err(state)?;
        table
            .get(key)
            .map_err(state)?
            .map(|bytes| parse(bytes.value()))
            .transpose()
    }

    /// Stores `value` as JSON under `key` in `table`, in a transaction of its own.
    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), InstallError> {
        let txn = self.write()?;
        txn.open_table(table)
            .map_err(state)?
            .insert(
                key,
                serde_json::to_vec(value).unwrap_or_default().as_slice(),
            )
            .map_err(state)?;
        txn.commit().map_err(state)
    }

    /// The record of the registry with identity `id`, or else of the one last reached at the
    /// URL `id` (as the client spells it, ending in `/`).
    pub fn registry(&self, id: &str) -> Result<Option<RegistryRecord>, InstallError> {
        if let Some(record) = self.record(REGISTRIES, id)? {
            return Ok(Some(record));
        }
        Ok(self
            .registries()?
            .into_iter()
            .find(|record| record.url == id))
    }

    /// Every record of `table`, in key order.
    fn every<K: redb::Key + 'static, T: for<'a> Deserialize<'a>>(
        &self,
        table: TableDefinition<'_, K, &'static [u8]>,
    ) -> Result<Vec<T>, InstallError> {
        let txn = self.db.begin_read().map_err(state)?;
        let table = txn.open_table(table).map_err(state)?;
        let mut all = Vec::new();
        for item in redb::ReadableTable::iter(&table).map_err(state)? {
            let (_, value) = item.map_err(state)?;
            all.push(parse(value.value())?);
        }
        Ok(all)
    }

    /// The record of the registry with identity `id`.
    pub fn registry_by_id(&self, id: &str) -> Result<Option<RegistryRecord>, InstallError> {
        self.record(REGISTRIES, id)
    }

    /// Every registry this host has used.
    pub fn registries(&self) -> Result<Vec<RegistryRecord>, InstallError> {
        self.every(REGISTRIES)
    }

    /// The log of registry `id` as far as this host has verified it.
    pub fn log_entries(&self, id: &str) -> Result<Vec<LogEntry>, InstallError> {
        let txn = self.db.begin_read().map_err(state)?;
        let table = txn.open_table(LOG_ENTRIES).map_err(state)?;
        let mut entries = Vec::new();
        for item in table.range((id, 0)..=(id, u64::MAX)).map_err(state)? {
            let (_, value) = item.map_err(state)?;
            entries.push(parse(value.value())?);
        }
        Ok(entries)
    }

    /// The publisher changes the operator accepted, oldest first.
    pub fn publisher_changes(&self) -> Result<Vec<PublisherChange>, InstallError> {
        self.every(PUBLISHER_CHANGES)
    }

    /// Records a registry's newly verified state and the log entries that extend what was
    /// kept, in one transaction: the kept log always ends at the recorded checkpoint.
    pub(super) fn record_verified(
        &self,
        record: &RegistryRecord,
        new_entries: &[LogEntry],
    ) -> Result<(), InstallError> {
        let txn = self.write()?;
        {
            let mut log = txn.open_table(LOG_ENTRIES).map_err(state)?;
            for entry in new_entries {
                log.insert(
                    (record.id.as_str(), entry.sequence),
                    serde_json::to_vec(entry).unwrap_or_default().as_slice(),
                )
                .map_err(state)?;
            }
            txn.open_table(REGISTRIES)
                .map_err(state)?
                .insert(
                    record.id.as_str(),
                    serde_json::to_vec(record).unwrap_or_default().as_slice(),
                )
                .map_err(state)?;
        }
        txn.commit().map_err(state)
    }

    pub fn highest_seen(&self, name: &str) -> Result<Option<semver::Version>, InstallError> {
        let txn = self.db.begin_read().map_err(state)?;
        let table = txn.open_table(SEEN).map_err(state)?;
        Ok(table
            .get(name)
            .map_err(state)?
            .and_then(|version| semver::Version::parse(version.value()).ok()))
    }

    pub fn installed(&self, name: &str) -> Result<Option<Installed>, InstallError> {
        self.record(INSTALLED, name)
    }

    pub fn all_installed(&self) -> Result<Vec<Installed>, InstallError> {
        self.every(INSTALLED)
    }

    /// Records an install (and the publisher change it accepted, if any) in one transaction:
    /// the new highest version, the installed record, the audit entry.
    pub(super) fn record_install(
        &self,
        record: &Installed,
        change: Option<&PublisherChange>,
    ) -> Result<(), InstallError> {
        let txn = self.write()?;
        {
            let mut seen = txn.open_table(SEEN).map_err(state)?;
            seen.insert(record.name.as_str(), record.version.as_str())
                .map_err(state)?;
            txn.open_table(INSTALLED)
                .map_err(state)?
                .insert(
                    record.name.as_str(),
                    serde_json::to_vec(record).unwrap_or_default().as_slice(),
                )
                .map_err(state)?;
            if let Some(change) = change {
                let mut changes = txn.open_table(PUBLISHER_CHANGES).map_err(state)?;
                let next = changes
                    .last()
                    .map_err(state)?
                    .map_or(0, |(number, _)| number.value() + 1);
                changes
                    .insert(
                        next,
                        serde_json::to_vec(change).unwrap_or_default().as_slice(),
                    )
                    .map_err(state)?;
            }
        }
        txn.commit().map_err(state)
    }

    /// Package files are named by their SHA-256: no two packages share a path, and a file is
    /// never overwritten with other bytes.
    fn package_path(&self, package_sha256: &str) -> PathBuf {
        self.dir
            .join("packages")
            .join(format!("{package_sha256}.wpkg"))
    }

    /// Writes a package file under its SHA-256: to a temporary file beside it, synced, and
    /// renamed into place.
    pub(super) fn write_package(
        &self,
        package_sha256: &str,
        bytes: &[u8],
    ) -> Result<(), InstallError> {
        let path = self.package_path(package_sha256);
        durable::write_durably(&path, &path.with_extension("partial"), bytes).map_err(state)
    }

    /// Stores an installed record as it is now (a block, an approval).
    pub(super) fn update_installed(&self, record: &Installed) -> Result<(), InstallError> {
        self.put(INSTALLED, &record.name, record)
    }

    /// The keys whose signatures the installed package file carries and that verify (the
    /// index's own list of signers is not relied on).
    pub fn installed_signers(&self, record: &Installed) -> Result<Vec<String>, InstallError> {
        let path = self.package_path(&record.package_sha256);
        let bytes = std::fs::read(&path).map_err(|error| {
            InstallError::State(format!("cannot read {}: {error}", path.display()))
        })?;
        if sha256_hex(&bytes) != record.package_sha256 {
            return Ok(Vec::new());
        }
        let Ok(package) = package::decode(&bytes) else {
            return Ok(Vec::new());
        };
        Ok(package::verify(&package, None)
            .map(|signers| signers.iter().map(|key| hex(key.as_bytes())).collect())
            .unwrap_or_default())
    }

    /// The installed package of `name`, re-verified (the file is not trusted), with its record.
    /// Refuses a node that is disabled until its operator approves what it asks for.
    pub fn load(&self, name: &str) -> Result<(Package, Installed), InstallError> {
        let record = self.installed(name)?.ok_or_else(|| {
            InstallError::Usage(format!(
                "`{name}` is not installed; install it with `warden install {name} --registry URL`"
            ))
        })?;
        if let Some(reason) = &record.blocked {
            return Err(Refusal::Blocked {
                name: name.to_string(),
                version: record.version.clone(),
                reason: reason.clone(),
            }
            .into());
        }
        if !record.enabled {
            return Err(Refusal::Disabled {
                name: name.to_string(),
                version: record.version.clone(),
                capabilities: record.pending(),
                hosts: record.pending_hosts(),
                limits: record.pending_limits(),
            }
            .into());
        }
        let package = self.package_of(&record)?;
        Ok((package, record))
    }

    /// The package file of `record`, re-verified (the file is not trusted), whether or not the
    /// node is enabled or blocked.
    pub fn package_of(&self, record: &Installed) -> Result<Package, InstallError> {
        let path = self.package_path(&record.package_sha256);
        let bytes = std::fs::read(&path).map_err(|error| {
            InstallError::State(format!("cannot read {}: {error}", path.display()))
        })?;
        if sha256_hex(&bytes) != record.package_sha256 {
            return Err(Refusal::Altered { path }.into());
        }
        let package = package::decode(&bytes).map_err(Refusal::Package)?;
        package::verify(&package, None).map_err(Refusal::Package)?;
        Ok(package)
    }

    /// Approves what `name`'s installed version requests: each of `capabilities`, `hosts` and
    /// `limits` that is `None` approves what is pending of it. Enables the node when nothing
    /// requested is left unapproved.
    pub fn approve(
        &self,
        name: &str,
        capabilities: Option<Vec<String>>,
        hosts: Option<Vec<String>>,
        limits: Option<String>,
    ) -> Result<Installed, InstallError> {
        let mut record = self
            .installed(name)?
            .ok_or_else(|| InstallError::Usage(format!("`{name}` is not installed")))?;
        if let Some(names) = &capabilities {
            check_names(names)?;
        }
        let capabilities = capabilities.unwrap_or_else(|| record.pending());
        let hosts = hosts.unwrap_or_else(|| record.pending_hosts());
        match limits {
            Some(preset) => {
                looseness(&preset)?;
                record.approved_limits = preset;
            }
            None => {
                if let Some(pending) = record.pending_limits() {
                    record.approved_limits = pending;
                }
            }
        }
        for capability in capabilities {
            if !record.approved.contains(&capability) {
                record.approved.push(capability);
            }
        }
        for host in hosts {
            if !record.approved_hosts.contains(&host) {
                record.approved_hosts.push(host);
            }
        }
        record.refresh();
        self.update_installed(&record)?;
        Ok(record)
    }
}

/// The name a new state is made under, before it is linked into place as `host.redb`.
const TEMPORARY_PREFIX: &str = "host.redb.new.";

/// Removes every temporary state in `dir`. One a concurrent first start is still writing is
/// removed too: that start then fails to link it and says so, and nothing torn is ever linked.
fn remove_temporaries(dir: &Path) -> Result<(), InstallError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| InstallError::State(format!("cannot read {}: {error}", dir.display())))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMPORARY_PREFIX))
        {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), InstallError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(InstallError::State(
            format!("cannot remove {}: {error}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// The tables of a state, created in `db` (idempotent), with the format recorded.
fn create_tables(db: &Database) -> Result<(), InstallError> {
    let mut txn = db.begin_write().map_err(state)?;
    txn.set_durability(Durability::Immediate).map_err(state)?;
    txn.open_table(REGISTRIES).map_err(state)?;
    txn.open_table(SEEN).map_err(state)?;
    txn.open_table(INSTALLED).map_err(state)?;
    txn.open_table(LOG_ENTRIES).map_err(state)?;
    txn.open_table(PUBLISHER_CHANGES).map_err(state)?;
    txn.open_table(META)
        .map_err(state)?
        .insert("format", STATE_FORMAT.to_le_bytes().as_slice())
        .map_err(state)?;
    txn.commit().map_err(state)
}

/// Makes a new state at `temporary`, syncs it, and links it to `path`. A link, unlike a
/// rename, never replaces a state another process made meanwhile.
fn create_state(path: &Path, temporary: &Path) -> Result<(), InstallError> {
    let fail = |error: std::io::Error| {
        InstallError::State(format!("cannot create {}: {error}", path.display()))
    };
    {
        let db = Database::create(temporary).map_err(|error| {
            InstallError::State(format!("cannot create {}: {error}", temporary.display()))
        })?;
        create_tables(&db)?;
    }
    std::fs::File::open(temporary)
        .and_then(|file| file.sync_all())
        .map_err(fail)?;
    match std::fs::hard_link(temporary, path) {
        Ok(()) => {}
        // Another start made the state meanwhile: use that one.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        // A file system without hard links: a rename is as atomic, but may replace a state a
        // concurrent first start made.
        Err(error) if error.kind() == std::io::ErrorKind::Unsupported => {
            std::fs::rename(temporary, path).map_err(fail)?;
        }
        Err(error) => return Err(fail(error)),
    }
    if let Some(parent) = path.parent() {
        durable::sync_dir(parent).map_err(state)?;
    }
    remove_if_present(temporary)
}

/// Refuses a state written in another format (there is no migration); an empty state of the
/// old format is simply brought up to this one.
fn check_format(db: &Database, path: &Path) -> Result<(), InstallError> {
    let format = {
        let txn = db.begin_read().map_err(state)?;
        let stored = match txn.open_table(META) {
            Ok(meta) => meta
                .get("format")
                .map_err(state)?
                .map(|bytes| bytes.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(state(error)),
        };
        let empty = |table: TableDefinition<&str, &[u8]>| match txn.open_table(table) {
            Ok(table) => redb::ReadableTableMetadata::is_empty(&table).map_err(state),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(true),
            Err(error) => Err(state(error)),
        };
        match stored {
            Some(bytes) => Some(
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0),
            ),
            None if empty(REGISTRIES)? && empty(INSTALLED)? => None,
            None => Some(1),
        }
    };
    match format {
        None => create_tables(db),
        Some(STATE_FORMAT) => Ok(()),
        Some(other) => Err(InstallError::State(format!(
            "{} is in state format {other}, and this warden reads only format {STATE_FORMAT} (registries kept by identity, not URL) and has no migration: move the state directory aside and install your nodes again",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_the_old_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        {
            // What an earlier build wrote: records keyed by URL, no format.
            let db = Database::create(dir.path().join("host.redb"))
                .unwrap_or_else(|error| panic!("{error}"));
            let txn = db.begin_write().unwrap_or_else(|error| panic!("{error}"));
            txn.open_table(REGISTRIES)
                .unwrap_or_else(|error| panic!("{error}"))
                .insert("https://r.example/", b"{}".as_slice())
                .unwrap_or_else(|error| panic!("{error}"));
            txn.commit().unwrap_or_else(|error| panic!("{error}"));
        }
        let refused = InstallState::open(dir.path())
            .err()
            .map(|error| error.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("move the state directory aside")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_first_start_cleans_up_what_a_killed_one_left() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        // A start killed while it wrote the new state leaves a torn temporary behind.
        let torn = dir.path().join(format!("{TEMPORARY_PREFIX}4242"));
        std::fs::write(&torn, b"torn").unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        assert!(!torn.exists());
        assert!(host.all_installed().unwrap_or_default().is_empty());
        drop(host);
        // One left beside a whole state (a start killed while another succeeded) goes too.
        std::fs::write(&torn, b"torn").unwrap_or_else(|error| panic!("{error}"));
        assert!(InstallState::open(dir.path()).is_ok());
        assert!(!torn.exists());
    }
}
