//! The host side: installing from a registry, and what a host remembers between installs.
//!
//! A host keeps its own redb file (`host.redb` in its state directory) with, per registry
//! identity (`protocol::registry_id`, stable across key rotations and URLs), the root it
//! follows, the highest index version, the log checkpoint it has seen and the verified log up
//! to it; per node name, the highest version it has seen and what is installed, with the
//! grant, the registry identity and the publisher keys it was accepted under. An install
//! verifies, in this order and before anything is compiled: the index (signature, registry,
//! expiry, no rollback, no equivocation), the log (the entries after the host's checkpoint,
//! fetched in pages, chain to the signed checkpoint; the whole history replays), the choice
//! (not yanked, no downgrade, the same registry and publisher, the other installed nodes of
//! that registry listed by this same index), the package (its hash as indexed, its manifest,
//! component, capabilities and signatures) and its signing key (the publisher's, added before
//! and not revoked at publication, and in the lineage of keys the host accepted before).

use crate::client::{Client, ClientError};
use crate::protocol::{
    self, Index, IndexEntry, LogEntry, Replayed, Root, Signed, SignedRoot, sha256_hex,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use warden_host::Capabilities;
use warden_host::package::{self, Package, hex};

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

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("refused: {0}")]
    Refused(String),
    /// An update from another registry, another publisher, or signed by a key outside the
    /// lineage the host accepted: refused unless the operator accepts it with `command`.
    #[error(
        "refused: {reason}. This is a publisher change; nothing approved before carries over. If you trust the new publisher, accept it with `{command}` (plus the --token and --ca-cert you used)"
    )]
    PublisherChange {
        name: String,
        reason: String,
        command: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("the host's state failed: {0}")]
    State(String),
}

fn state<E: std::fmt::Display>(error: E) -> InstallError {
    InstallError::State(error.to_string())
}

fn refused(why: impl Into<String>) -> InstallError {
    InstallError::Refused(why.into())
}

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

fn default_preset() -> String {
    "default".into()
}

/// An installed node and its grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// The identity of the registry it came from (`protocol::registry_id`).
    pub registry: String,
    /// Where that registry was reached for this install.
    pub registry_url: String,
    pub publisher: String,
    /// The publisher's keys this host accepts for updates: its keys when first installed, and
    /// every key the registry's log shows signed in by one of them since.
    pub publisher_keys: Vec<String>,
    pub package_sha256: String,
    /// What the signed manifest requests.
    pub requested: Vec<String>,
    pub requested_hosts: Vec<String>,
    /// The limits preset the package requests; it runs under it once approved.
    pub limits: String,
    /// What the operator approved (it may cover more than this version requests).
    pub approved: Vec<String>,
    pub approved_hosts: Vec<String>,
    /// The loosest limits preset the operator approved.
    #[serde(default = "default_preset")]
    pub approved_limits: String,
    /// False while the version requests something not approved.
    pub enabled: bool,
    /// Why the registry's newest signed state forbids running it (a revoked signing key, or
    /// the version no longer listed); set by `sync`, cleared by an install that passes.
    #[serde(default)]
    pub blocked: Option<String>,
}

impl Installed {
    /// The capabilities requested and not approved.
    pub fn pending(&self) -> Vec<String> {
        self.requested
            .iter()
            .filter(|name| !self.approved.contains(name))
            .cloned()
            .collect()
    }

    pub fn pending_hosts(&self) -> Vec<String> {
        self.requested_hosts
            .iter()
            .filter(|host| !self.approved_hosts.contains(host))
            .cloned()
            .collect()
    }

    /// The requested preset, when it is looser than the approved one.
    pub fn pending_limits(&self) -> Option<String> {
        let looser = match (looseness(&self.limits), looseness(&self.approved_limits)) {
            (Ok(requested), Ok(approved)) => requested > approved,
            _ => true,
        };
        looser.then(|| self.limits.clone())
    }

    /// The grant: what was approved intersected with what the package requests.
    pub fn grant(&self) -> Result<Capabilities, InstallError> {
        let names: Vec<&str> = self
            .requested
            .iter()
            .filter(|name| self.approved.contains(name))
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            return Ok(Capabilities::empty());
        }
        names
            .join(",")
            .parse::<Capabilities>()
            .map_err(|error| InstallError::State(error.to_string()))
    }

    pub fn granted_hosts(&self) -> Vec<String> {
        self.requested_hosts
            .iter()
            .filter(|host| self.approved_hosts.contains(host))
            .cloned()
            .collect()
    }

    fn refresh(&mut self) {
        self.enabled = self.pending().is_empty()
            && self.pending_hosts().is_empty()
            && self.pending_limits().is_none();
    }
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
    fn record_verified(
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
    fn record_install(
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

    /// The keys whose signatures the installed package file carries and that verify (the
    /// index's own list of signers is not relied on).
    fn installed_signers(&self, record: &Installed) -> Result<Vec<String>, InstallError> {
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
            return Err(refused(format!(
                "{name}@{} is blocked: {reason}",
                record.version
            )));
        }
        if !record.enabled {
            return Err(refused(format!(
                "{name}@{} is disabled until its new requests are approved: capabilities [{}], hosts [{}], limits {}; run `warden approve {name}`",
                record.version,
                record.pending().join(","),
                record.pending_hosts().join(","),
                record
                    .pending_limits()
                    .unwrap_or_else(|| "as approved".into())
            )));
        }
        let path = self.package_path(&record.package_sha256);
        let bytes = std::fs::read(&path).map_err(|error| {
            InstallError::State(format!("cannot read {}: {error}", path.display()))
        })?;
        if sha256_hex(&bytes) != record.package_sha256 {
            return Err(refused(format!(
                "{} was altered after it was installed",
                path.display()
            )));
        }
        let package = package::decode(&bytes).map_err(|error| refused(error.to_string()))?;
        package::verify(&package, None).map_err(|error| refused(error.to_string()))?;
        Ok((package, record))
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
        self.put(INSTALLED, name, &record)?;
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
        crate::store::sync_dir(parent).map_err(InstallError::State)?;
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

/// Refuses capability names this host does not know, so a typo cannot approve nothing.
/// Approvals name single capabilities, as manifests do; sets such as `all` are refused, so an
/// approval is always exactly what the operator read.
fn check_names(names: &[String]) -> Result<(), InstallError> {
    for name in names {
        if !warden_host::CAPABILITIES
            .iter()
            .any(|info| info.name == name)
        {
            return Err(InstallError::Usage(format!(
                "`{name}` is not a capability name; approve capabilities one by one by the names `warden capabilities` lists"
            )));
        }
    }
    Ok(())
}

/// How loose a limits preset is: approving one approves every tighter one.
fn looseness(preset: &str) -> Result<u8, InstallError> {
    match preset.parse::<warden_host::Preset>() {
        Ok(warden_host::Preset::Restrictive) => Ok(0),
        Ok(warden_host::Preset::Default) => Ok(1),
        Ok(warden_host::Preset::Permissive) => Ok(2),
        Err(error) => Err(InstallError::Usage(error.to_string())),
    }
}

/// What an install asks for.
#[derive(Default)]
pub struct InstallRequest<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    /// The registry's public key; needed the first time a host uses a registry, checked after.
    pub registry_key: Option<&'a str>,
    /// Capabilities the operator approves; on a first install, what the package requests.
    pub approve: Option<Vec<String>>,
    pub approve_hosts: Option<Vec<String>>,
    /// The loosest limits preset the operator approves; on a first install, what the package
    /// requests.
    pub approve_limits: Option<String>,
    /// The time to check expiry against (the clock, except in tests).
    pub now: u64,
    /// Accept an update from another registry or publisher, or signed by a key outside the
    /// lineage accepted before (`--accept-publisher-change`). Its approvals start afresh, as
    /// on a first install, and the change is recorded.
    pub accept_publisher_change: bool,
}

/// Follows the registry's root documents from what this host trusts (the root it accepted
/// before, or the key the operator gave on first use) to the newest, each step signed by a
/// threshold of the old keys and of the new.
pub fn follow_roots(
    known: Option<&Root>,
    registry_key: Option<&str>,
    roots: &[SignedRoot],
    registry: &str,
) -> Result<Root, InstallError> {
    let bad = |error: protocol::ProtocolError| refused(error.to_string());
    let mut current = match (known, registry_key) {
        (Some(known), Some(given)) if !known.keys.iter().any(|key| key == given.trim()) => {
            return Err(refused(format!(
                "the registry key given is not one pinned for {registry} ({}); a registry's key changes only through a root signed by the old and the new keys",
                known.keys.join(", ")
            )));
        }
        (Some(known), _) => known.clone(),
        (None, Some(given)) => {
            let given = given.trim();
            package::verifying_key_from_hex(given)
                .map_err(|error| InstallError::Usage(format!("--registry-key: {error}")))?;
            // The oldest root the key the operator vouched for signed and is listed in; every
            // later root must then follow from it by thresholds.
            roots
                .iter()
                .find_map(|signed| Root::verify_pinned(signed, given).ok())
                .ok_or_else(|| {
                    refused(format!(
                        "no root of {registry} lists the key {given}; check the key you were given"
                    ))
                })?
        }
        (None, None) => {
            return Err(InstallError::Usage(format!(
                "this host has not used {registry} before: pass its public key with --registry-key (the registry prints it and writes it to registry.pub in its data directory)"
            )));
        }
    };
    for signed in roots {
        let version = Root::parse(signed).map_err(bad)?.version;
        if version <= current.version {
            continue;
        }
        current = current.verify_next(signed).map_err(bad)?;
    }
    Ok(current)
}

/// An index accepted by `accept_index`.
#[derive(Debug)]
pub struct Accepted {
    /// The registry's identity (`protocol::registry_id`).
    pub id: String,
    pub index: Index,
    /// The root it was verified with.
    pub root: Root,
    /// What the host remembered of this registry before.
    pub known: Option<RegistryRecord>,
}

/// Verifies a signed index served at `url` against what this host has seen of the registry
/// with the identity its roots prove: the root chain, the signature, the expiry, no rollback,
/// no equivocation. Whatever URL served it, a registry's record is found by its identity.
pub fn accept_index(
    host: &InstallState,
    url: &str,
    signed: &Signed,
    roots: &[SignedRoot],
    registry_key: Option<&str>,
    now: u64,
) -> Result<Accepted, InstallError> {
    let id = protocol::registry_id(roots).map_err(|error| {
        refused(format!(
            "{url} serves a root chain that does not prove a registry identity: {error}"
        ))
    })?;
    let known = host.registry_by_id(&id)?;
    let registry_key = registry_key.map(str::trim);
    if let Some(known) = &known {
        // The chain proving the identity must hold the root this host follows, or the
        // server only claims to be that registry.
        let held = roots
            .get((known.root.version as usize).wrapping_sub(1))
            .and_then(|signed| Root::parse(signed).ok())
            .is_some_and(|root| root == known.root);
        if !held {
            return Err(refused(format!(
                "{url} claims to be registry {id}, but its root chain does not hold version {} that this host follows for it",
                known.root.version
            )));
        }
    }
    // The identity key itself is a fine thing for an operator to give for a known registry
    // (a mirror, for instance): the root followed is the one this host holds.
    let given = registry_key.filter(|key| known.is_none() || *key != id);
    let root = follow_roots(known.as_ref().map(|known| &known.root), given, roots, url)?;
    let index =
        Index::verify_with_root(signed, &root, now).map_err(|error| refused(error.to_string()))?;
    let digest = sha256_hex(signed.signed.as_bytes());
    if let Some(known) = &known {
        if index.version < known.index_version {
            return Err(refused(format!(
                "the registry served index version {}, older than version {} seen before (a rollback)",
                index.version, known.index_version
            )));
        }
        if index.version == known.index_version && digest != known.index_sha256 {
            return Err(refused(format!(
                "the registry served two different indexes as version {}",
                index.version
            )));
        }
        if index.log_size < known.log_size {
            return Err(refused(
                "the registry's log is shorter than this host has seen",
            ));
        }
    }
    Ok(Accepted {
        id,
        index,
        root,
        known,
    })
}

/// Checks the whole log of the registry `registry_id` (`protocol::registry_id` of its roots):
/// it chains to the index's signed checkpoint, extends what was seen, replays (key possession
/// and revocation proofs name the registry), and describes exactly the index's keys and
/// versions. Returns the replayed state.
pub fn check_log(
    entries: &[LogEntry],
    index: &Index,
    known: Option<&RegistryRecord>,
    registry_id: &str,
) -> Result<Replayed, InstallError> {
    let replayed = protocol::verify_log(entries, index.log_size, &index.log_head)
        .and_then(|()| protocol::replay(entries, registry_id))
        .and_then(|replayed| protocol::index_matches_log(index, &replayed).map(|()| replayed))
        .map_err(|error| refused(error.to_string()))?;
    if let Some(known) = known
        && known.log_size > 0
    {
        let extends = entries
            .get(known.log_size as usize - 1)
            .is_some_and(|entry| entry.hash() == known.log_head);
        if !extends {
            return Err(refused(
                "the registry's log was rewritten since this host last saw it",
            ));
        }
    }
    Ok(replayed)
}

/// Fetches the log entries after `from` (whose last hash is `head`) up to the index's signed
/// checkpoint, a page at a time, each page chaining from the one before. Entries the host
/// verified before are not fetched again.
pub async fn fetch_log(
    client: &Client,
    from: u64,
    head: &str,
    index: &Index,
) -> Result<Vec<LogEntry>, InstallError> {
    let mut fetched = Vec::new();
    let mut next = from;
    let mut previous = head.to_string();
    while next < index.log_size {
        let want = (index.log_size - next).min(protocol::MAX_LOG_PAGE_ENTRIES);
        let mut page: Vec<LogEntry> = client
            .get_json_limited(
                &format!("v1/log?from={next}&limit={want}"),
                2 * protocol::MAX_LOG_PAGE_BYTES,
            )
            .await?;
        if page.is_empty() {
            return Err(refused(format!(
                "the registry's log ends after {next} entries, its signed index says {}",
                index.log_size
            )));
        }
        // Entries past the checkpoint are not signed yet; they are fetched again later.
        page.truncate(want as usize);
        previous = protocol::verify_page(&page, next, &previous).map_err(|error| {
            refused(format!(
                "the registry's log does not extend what this host verified before: {error}"
            ))
        })?;
        check_page_fullness(&page, next, want, index.log_size)?;
        next += page.len() as u64;
        fetched.extend(page);
    }
    if previous != index.log_head {
        return Err(refused(if from > 0 {
            "the registry's log was rewritten since this host last saw it (it does not end at the signed checkpoint)"
        } else {
            "the registry's log does not end at its signed checkpoint"
        }));
    }
    Ok(fetched)
}

/// Refuses a page with fewer entries than asked that is not cut at the page's byte bound (a
/// registry fills every page to `limit` entries or `MAX_LOG_PAGE_BYTES`; half of that is
/// required, against differences in how the bytes are counted). Otherwise a server (a mirror
/// needs no key for it) could answer one entry at a time, each answer taking up to the
/// client's timeout, and stretch a sync over days while it holds the host's state.
fn check_page_fullness(
    page: &[LogEntry],
    from: u64,
    want: u64,
    log_size: u64,
) -> Result<(), InstallError> {
    if page.len() as u64 >= want {
        return Ok(());
    }
    let bytes: usize = page
        .iter()
        .map(|entry| serde_json::to_vec(entry).map_or(0, |json| json.len() + 1))
        .sum();
    if bytes < protocol::MAX_LOG_PAGE_BYTES / 2 {
        return Err(refused(format!(
            "the registry's log page from entry {from} holds {} of the {want} entries asked for ({bytes} bytes), and its signed index counts {log_size}: a page stops short only at {} bytes, so this server is stalling the fetch or lacks the log it signed",
            page.len(),
            protocol::MAX_LOG_PAGE_BYTES
        )));
    }
    Ok(())
}

/// Picks the version to install: the one asked for, or the highest not yanked.
pub fn choose<'a>(
    index: &'a Index,
    name: &str,
    version: Option<&str>,
) -> Result<&'a IndexEntry, InstallError> {
    let entry = match version {
        Some(version) => index.entry(name, version).ok_or_else(|| {
            InstallError::Usage(format!("the registry does not list {name}@{version}"))
        })?,
        None => index
            .packages
            .iter()
            .filter(|entry| entry.name == name && !entry.yanked)
            .filter_map(|entry| {
                semver::Version::parse(&entry.version)
                    .ok()
                    .map(|parsed| (parsed, entry))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, entry)| entry)
            .ok_or_else(|| {
                InstallError::Usage(format!(
                    "the registry lists no installable version of `{name}`"
                ))
            })?,
    };
    if entry.yanked {
        return Err(refused(format!("{name}@{} was yanked", entry.version)));
    }
    Ok(entry)
}

/// Checks a downloaded package against its index entry and the index's keys.
pub fn check_package(
    bytes: &[u8],
    entry: &IndexEntry,
    index: &Index,
) -> Result<Package, InstallError> {
    check_package_signers(bytes, entry, index).map(|(package, _)| package)
}

/// `check_package`, also returning the keys (hex) whose signatures on the package verify and
/// that were valid keys of its publisher when it was published.
pub fn check_package_signers(
    bytes: &[u8],
    entry: &IndexEntry,
    index: &Index,
) -> Result<(Package, Vec<String>), InstallError> {
    if bytes.len() as u64 != entry.package_bytes || sha256_hex(bytes) != entry.package_sha256 {
        return Err(refused(format!(
            "the file served for {}@{} is not the one the signed index lists",
            entry.name, entry.version
        )));
    }
    let package = package::decode(bytes).map_err(|error| refused(error.to_string()))?;
    let signers = package::verify(&package, None).map_err(|error| refused(error.to_string()))?;
    let manifest = &package.manifest;
    if manifest.name != entry.name
        || manifest.version != entry.version
        || manifest.publisher != entry.publisher
    {
        return Err(refused(format!(
            "the package is {}@{} by `{}`, the index lists {}@{} by `{}`",
            manifest.name,
            manifest.version,
            manifest.publisher,
            entry.name,
            entry.version,
            entry.publisher
        )));
    }
    if manifest.capabilities != entry.capabilities
        || manifest.component_sha256 != entry.component_sha256
    {
        return Err(refused(
            "the package's manifest differs from its index entry",
        ));
    }
    let valid: Vec<String> = signers
        .iter()
        .map(|signer| hex(signer.as_bytes()))
        .filter(|signer| valid_signer(std::slice::from_ref(signer), entry, index))
        .collect();
    if valid.is_empty() {
        return Err(refused(format!(
            "{}@{} is not signed by a key of `{}` that was valid when it was published (revoked or unknown key)",
            entry.name, entry.version, entry.publisher
        )));
    }
    Ok((package, valid))
}

/// Whether one of `signers` is a key of the entry's publisher that the index says was added
/// before, and not revoked at, the entry's publication.
fn valid_signer(signers: &[String], entry: &IndexEntry, index: &Index) -> bool {
    signers.iter().any(|signer| {
        index.key(signer).is_some_and(|key| {
            key.publisher == entry.publisher
                && key.added_at <= entry.published_at
                && key
                    .revoked_at
                    .is_none_or(|revoked| entry.published_at < revoked)
        })
    })
}

/// What `sync` did.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The registry's identity, and the URL it was reached at.
    pub registry: String,
    pub url: String,
    /// The nodes this sync blocked.
    pub blocked: Vec<Installed>,
    /// The nodes of this registry blocked now, by this sync or before.
    pub blocked_in_all: usize,
    /// How many log entries were fetched (those verified before are not fetched again).
    pub log_entries_fetched: u64,
}

/// Fetches and verifies the registry's newest signed state (roots, index, log, with every
/// check `install` makes) and blocks each node installed from it whose signing key has since
/// been revoked for its publication time, or whose version the index no longer lists as
/// installed. This is the kill switch: run it on a schedule shorter than the index lifetime.
/// Returns the nodes it blocked.
pub async fn sync(
    client: &Client,
    host: &InstallState,
    now: u64,
) -> Result<Vec<Installed>, InstallError> {
    sync_report(client, host, now)
        .await
        .map(|report| report.blocked)
}

/// `sync`, reporting what it did. It covers every node installed from this registry's
/// identity, whatever URL it was installed from.
pub async fn sync_report(
    client: &Client,
    host: &InstallState,
    now: u64,
) -> Result<SyncReport, InstallError> {
    let verified = fetch_verified(client, host, None, now).await?;
    let index = &verified.index;
    let mut blocked = Vec::new();
    let mut blocked_in_all = 0;
    for mut record in host.all_installed()? {
        if record.registry != verified.id {
            continue;
        }
        if record.blocked.is_some() {
            blocked_in_all += 1;
            continue;
        }
        let reason = match index.entry(&record.name, &record.version) {
            Some(entry) if entry.package_sha256 != record.package_sha256 => {
                Some("the registry's index lists other bytes for this version".to_string())
            }
            Some(entry)
                if !valid_signer(
                    // An unreadable file has no valid signer: it is blocked, and sync goes on.
                    &host.installed_signers(&record).unwrap_or_default(),
                    entry,
                    index,
                ) =>
            {
                Some(format!(
                    "its installed file carries no signature by a key of `{}` valid at its publication (revoked, or the file is unreadable); install a version signed by a current key",
                    entry.publisher
                ))
            }
            Some(_) => None,
            None => Some("the registry's index no longer lists this version".to_string()),
        };
        if let Some(reason) = reason {
            record.blocked = Some(reason);
            host.put(INSTALLED, &record.name, &record)?;
            blocked_in_all += 1;
            blocked.push(record);
        }
    }
    Ok(SyncReport {
        registry: verified.id,
        url: client.base().to_string(),
        blocked,
        blocked_in_all,
        log_entries_fetched: verified.fetched,
    })
}

/// A registry's newest state, verified.
struct Verified {
    id: String,
    index: Index,
    /// The whole log, as kept and as fetched now.
    entries: Vec<LogEntry>,
    replayed: Replayed,
    fetched: u64,
}

/// Fetches roots, index and the log entries this host has not verified yet, verifies them
/// against what the host has seen, and records the accepted index and log (so a later
/// rollback is refused even if what follows fails).
async fn fetch_verified(
    client: &Client,
    host: &InstallState,
    registry_key: Option<&str>,
    now: u64,
) -> Result<Verified, InstallError> {
    let url = client.base().to_string();
    let roots: Vec<SignedRoot> = client.get_json("v1/roots").await?;
    let signed: Signed = client
        .get_json_limited("v1/index", protocol::MAX_INDEX_BYTES)
        .await?;
    let Accepted {
        id,
        index,
        root,
        known,
    } = accept_index(host, &url, &signed, &roots, registry_key, now)?;
    let mut entries = host.log_entries(&id)?;
    let (from, head) = match &known {
        Some(known) => (known.log_size, known.log_head.clone()),
        None => (0, protocol::LOG_ROOT.to_string()),
    };
    if entries.len() as u64 != from {
        return Err(InstallError::State(format!(
            "the kept log of registry {id} holds {} entries, its record says {from}",
            entries.len()
        )));
    }
    let new_entries = fetch_log(client, from, &head, &index).await?;
    let fetched = new_entries.len() as u64;
    entries.extend_from_slice(&new_entries);
    let replayed = check_log(&entries, &index, known.as_ref(), &id)?;
    host.record_verified(
        &RegistryRecord {
            id: id.clone(),
            url,
            root,
            index_version: index.version,
            index_sha256: sha256_hex(signed.signed.as_bytes()),
            log_size: index.log_size,
            log_head: index.log_head.clone(),
        },
        &new_entries,
    )?;
    Ok(Verified {
        id,
        index,
        entries,
        replayed,
        fetched,
    })
}

/// The keys of `publisher` this host accepts, given the ones it `accepted` before: those, and
/// every key the log shows signed in (a rotation whose signature replay checked) by one of
/// them. A key added without such a signature (an admin's after every key was revoked) is not
/// in the lineage, nor is one that a later back-dated revocation of its signer voided
/// (`protocol::voided_by_revocation`; `replayed`, the final state, lists them): that revocation
/// voids what the key signed from then on, its rotation statements included.
fn lineage(
    accepted: &[String],
    entries: &[LogEntry],
    replayed: &Replayed,
    publisher: &str,
) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = accepted.iter().cloned().collect();
    for entry in entries {
        if let protocol::Event::KeyAdded {
            publisher: of,
            public_key,
            signed_by: Some(by),
            ..
        } = &entry.event
            && of == publisher
            && keys.contains(by)
            && !replayed.voided.contains(public_key)
        {
            keys.insert(public_key.clone());
        }
    }
    keys
}

/// Why installing `entry` from registry `id` over `previous` is a publisher change, judged
/// before the download: another registry, or another publisher name.
fn changed_origin(previous: &Installed, id: &str, entry: &IndexEntry) -> Option<String> {
    if previous.registry != id {
        return Some(format!(
            "`{}` was installed from registry {} (last reached at {}); this is registry {id}",
            previous.name, previous.registry, previous.registry_url
        ));
    }
    (previous.publisher != entry.publisher).then(|| {
        format!(
            "`{}` was installed from the publisher `{}`, the registry now lists `{}`",
            previous.name, previous.publisher, entry.publisher
        )
    })
}

/// Installs a node from the registry behind `client`. See the module documentation for what
/// is checked; any failure leaves the installed state as it was.
pub async fn install(
    client: &Client,
    host: &InstallState,
    request: InstallRequest<'_>,
) -> Result<Installed, InstallError> {
    if let Some(names) = &request.approve {
        check_names(names)?;
    }
    if let Some(preset) = &request.approve_limits {
        looseness(preset)?;
    }
    let url = client.base().to_string();
    let verified = fetch_verified(client, host, request.registry_key, request.now).await?;
    let (id, index) = (&verified.id, &verified.index);
    let entry = choose(index, request.name, request.version)?;
    let logged = verified
        .replayed
        .versions
        .get(&(entry.name.clone(), entry.version.clone()))
        .is_some_and(|logged| logged.package_sha256 == entry.package_sha256);
    if !logged {
        return Err(refused(format!(
            "{}@{} is not in the registry's log",
            entry.name, entry.version
        )));
    }
    let previous = host.installed(&entry.name)?;
    let mut change = previous
        .as_ref()
        .and_then(|previous| changed_origin(previous, id, entry));
    check_no_downgrade(
        host,
        entry,
        change.is_some() && request.accept_publisher_change,
    )?;
    if let Some(previous) = &previous
        && change.is_none()
        && previous.version == entry.version
        && previous.package_sha256 != entry.package_sha256
    {
        return Err(refused(format!(
            "{}@{} is installed with other bytes than the registry now lists: a version never changes",
            entry.name, entry.version
        )));
    }
    check_one_snapshot(host, entry, index)?;
    let path = format!("v1/packages/{}/{}", entry.name, entry.version);
    let limit = (entry.package_bytes as usize).min(crate::server::DEFAULT_MAX_PACKAGE_BYTES * 4);
    let bytes = client.send(hyper::Method::GET, &path, None, limit).await?;
    let (package, signers) = check_package_signers(&bytes, entry, index)?;
    // The publisher's keys this host accepts after this install.
    let mut publisher_keys: Vec<String> = match &previous {
        Some(previous) if change.is_none() => lineage(
            &previous.publisher_keys,
            &verified.entries,
            &verified.replayed,
            &entry.publisher,
        )
        .into_iter()
        .collect(),
        // First use of this name, or a change: the publisher's keys as the log shows them.
        _ => publisher_keys_of(&verified.replayed, &entry.publisher),
    };
    if change.is_none() && !signers.iter().any(|key| publisher_keys.contains(key)) {
        change = Some(format!(
            "{}@{} is signed by {}, not by a key this host accepted for `{}` nor one they signed in (a key registered without such a signature, as an admin does after every key was revoked)",
            entry.name,
            entry.version,
            signers.join(", "),
            entry.publisher
        ));
        publisher_keys = publisher_keys_of(&verified.replayed, &entry.publisher);
    }
    let accepted_change = match (&previous, change) {
        (Some(previous), Some(reason)) => {
            if !request.accept_publisher_change {
                return Err(InstallError::PublisherChange {
                    name: entry.name.clone(),
                    reason,
                    command: format!(
                        "warden install {}@{} --registry {} --accept-publisher-change",
                        entry.name,
                        entry.version,
                        url.trim_end_matches('/')
                    ),
                });
            }
            Some(PublisherChange {
                time: protocol::now(),
                name: entry.name.clone(),
                old_version: previous.version.clone(),
                new_version: entry.version.clone(),
                old_registry: previous.registry.clone(),
                new_registry: id.clone(),
                new_registry_url: url.clone(),
                old_publisher: previous.publisher.clone(),
                new_publisher: entry.publisher.clone(),
                old_keys: previous.publisher_keys.clone(),
                new_keys: publisher_keys.clone(),
                reason,
            })
        }
        _ => None,
    };
    let manifest = &package.manifest;
    let mut record = Installed {
        name: entry.name.clone(),
        version: entry.version.clone(),
        registry: id.clone(),
        registry_url: url,
        publisher: entry.publisher.clone(),
        publisher_keys,
        package_sha256: entry.package_sha256.clone(),
        requested: manifest.capabilities.clone(),
        requested_hosts: manifest.allowed_hosts.clone(),
        limits: manifest.limits.clone(),
        approved: Vec::new(),
        approved_hosts: Vec::new(),
        approved_limits: String::new(),
        enabled: false,
        blocked: None,
    };
    // An update keeps what was approved; a first install or an accepted change starts afresh.
    let kept = previous.filter(|_| accepted_change.is_none());
    approve_for(&mut record, kept.as_ref(), request);
    record.refresh();

    let destination = host.package_path(&record.package_sha256);
    write_durably(&destination, &bytes)?;
    host.record_install(&record, accepted_change.as_ref())?;
    Ok(record)
}

/// Refuses a version below the highest this host installed of the name, unless the operator
/// is accepting a publisher change (another publisher's versions are another line).
fn check_no_downgrade(
    host: &InstallState,
    entry: &IndexEntry,
    accepting_change: bool,
) -> Result<(), InstallError> {
    let chosen =
        semver::Version::parse(&entry.version).map_err(|error| refused(error.to_string()))?;
    if let Some(highest) = host.highest_seen(&entry.name)?
        && chosen < highest
        && !accepting_change
    {
        return Err(refused(format!(
            "{}@{} is older than {highest}, which this host has installed before (a downgrade)",
            entry.name, entry.version
        )));
    }
    Ok(())
}

/// Refuses an install that would leave the installed nodes in a combination no single signed
/// index listed (so a host's nodes all come from one registry, under any of its URLs).
fn check_one_snapshot(
    host: &InstallState,
    entry: &IndexEntry,
    index: &Index,
) -> Result<(), InstallError> {
    for other in host.all_installed()? {
        if other.name == entry.name {
            continue;
        }
        let listed = index
            .entry(&other.name, &other.version)
            .is_some_and(|listed| listed.package_sha256 == other.package_sha256);
        if !listed {
            return Err(refused(format!(
                "this index does not list the installed {}@{} as it was installed: no signed index has listed that combination",
                other.name, other.version
            )));
        }
    }
    Ok(())
}

/// Every key the replayed log gives `publisher`, revoked ones included.
fn publisher_keys_of(replayed: &Replayed, publisher: &str) -> Vec<String> {
    replayed
        .keys
        .values()
        .filter(|key| key.publisher == publisher)
        .map(|key| key.public_key.clone())
        .collect()
}

/// Sets what `record` approves: for an update (`kept`), what was approved before plus what
/// the request adds; otherwise what the request names, or what the package requests.
fn approve_for(record: &mut Installed, kept: Option<&Installed>, request: InstallRequest<'_>) {
    match kept {
        Some(previous) => {
            record.approved = previous.approved.clone();
            record.approved_hosts = previous.approved_hosts.clone();
            record.approved_limits = request
                .approve_limits
                .unwrap_or_else(|| previous.approved_limits.clone());
            for extra in request.approve.unwrap_or_default() {
                if !record.approved.contains(&extra) {
                    record.approved.push(extra);
                }
            }
            for extra in request.approve_hosts.unwrap_or_default() {
                if !record.approved_hosts.contains(&extra) {
                    record.approved_hosts.push(extra);
                }
            }
        }
        None => {
            record.approved = request.approve.unwrap_or_else(|| record.requested.clone());
            record.approved_hosts = request
                .approve_hosts
                .unwrap_or_else(|| record.requested_hosts.clone());
            record.approved_limits = request
                .approve_limits
                .unwrap_or_else(|| record.limits.clone());
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write;
    let fail = |error: std::io::Error| {
        InstallError::State(format!("cannot write {}: {error}", path.display()))
    };
    let temporary = path.with_extension("partial");
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    if let Some(parent) = path.parent() {
        crate::store::sync_dir(parent).map_err(InstallError::State)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, LOG_ROOT};
    use ed25519_dalek::SigningKey;

    /// An index that lists exactly what `log` publishes.
    fn index(key: &SigningKey, version: u64, log: &[LogEntry]) -> Index {
        let replayed = protocol::replay(log, "r").unwrap_or_default();
        Index {
            registry: hex(key.verifying_key().as_bytes()),
            version,
            issued_at: 0,
            expires_at: 1_000,
            log_size: log.len() as u64,
            log_head: log.last().map(LogEntry::hash).unwrap_or(LOG_ROOT.into()),
            packages: replayed
                .versions
                .iter()
                .map(|((name, version), published)| IndexEntry {
                    name: name.clone(),
                    version: version.clone(),
                    publisher: published.publisher.clone(),
                    package_sha256: published.package_sha256.clone(),
                    package_bytes: 1,
                    component_sha256: String::new(),
                    capabilities: vec![],
                    signers: vec![],
                    published_at: published.published_at,
                    yanked: published.yanked,
                })
                .collect(),
            keys: replayed.keys.values().cloned().collect(),
        }
    }

    fn log(versions: &[&str]) -> Vec<LogEntry> {
        let mut entries: Vec<LogEntry> = Vec::new();
        for (sequence, version) in versions.iter().enumerate() {
            entries.push(LogEntry {
                sequence: sequence as u64,
                time: 0,
                previous: entries
                    .last()
                    .map(LogEntry::hash)
                    .unwrap_or(LOG_ROOT.into()),
                event: Event::Publish {
                    name: "a".into(),
                    version: version.to_string(),
                    publisher: "p".into(),
                    package_sha256: "00".repeat(32),
                },
            });
        }
        entries
    }

    fn root_of(index: &Index) -> Root {
        Root {
            version: 1,
            keys: vec![index.registry.clone()],
            threshold: 1,
            issued_at: 0,
        }
    }

    fn remember(host: &InstallState, signed: &Signed, index: &Index) {
        host.record_verified(
            &RegistryRecord {
                id: index.registry.clone(),
                url: "r".into(),
                root: root_of(index),
                index_version: index.version,
                index_sha256: sha256_hex(signed.signed.as_bytes()),
                log_size: index.log_size,
                log_head: index.log_head.clone(),
            },
            &[],
        )
        .unwrap_or_default();
    }

    fn roots(key: &SigningKey) -> Vec<SignedRoot> {
        vec![
            Root {
                version: 1,
                keys: vec![hex(key.verifying_key().as_bytes())],
                threshold: 1,
                issued_at: 0,
            }
            .sign(&[key]),
        ]
    }

    #[test]
    fn two_different_indexes_with_one_version_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let first = index(&key, 5, &[]);
        let signed = first.sign(&key);
        let roots = roots(&key);
        assert!(accept_index(&host, "r", &signed, &roots, Some(&first.registry), 10).is_ok());
        remember(&host, &signed, &first);
        // The same version again is fine; a different document under that version is not.
        assert!(accept_index(&host, "r", &signed, &roots, None, 10).is_ok());
        let mut other = first.clone();
        other.issued_at = 1;
        let result = accept_index(&host, "r", &other.sign(&key), &roots, None, 10);
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("two different")));
    }

    #[test]
    fn a_rewritten_or_shortened_log_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let seen_log = log(&["1", "2"]);
        let seen = index(&key, 1, &seen_log);
        remember(&host, &seen.sign(&key), &seen);
        let known = host.registry("r").unwrap_or_default();
        assert!(known.is_some());

        // An extension of the log seen before passes.
        let grown = log(&["1", "2", "3"]);
        assert!(check_log(&grown, &index(&key, 2, &grown), known.as_ref(), "r").is_ok());
        // A different history of the same length or longer, even if signed, does not.
        let forked = log(&["1", "X", "3"]);
        let result = check_log(&forked, &index(&key, 2, &forked), known.as_ref(), "r");
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("rewritten")));
        // A log shorter than seen is refused with the index.
        let short = log(&["1"]);
        let result = accept_index(
            &host,
            "r",
            &index(&key, 2, &short).sign(&key),
            &roots(&key),
            None,
            10,
        );
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("shorter")));
        // A log that does not chain to the signed checkpoint is refused.
        let result = check_log(&grown[..2], &index(&key, 2, &grown), None, "r");
        assert!(matches!(result, Err(InstallError::Refused(_))));
        // An index that lists a version, or a key, the log never recorded is refused.
        let mut padded = index(&key, 2, &grown);
        let mut extra = padded.packages[0].clone();
        extra.version = "9".into();
        padded.packages.push(extra);
        let result = check_log(&grown, &padded, known.as_ref(), "r");
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("other versions")));
        // A version listed twice in place of another the log records.
        let mut doubled = index(&key, 2, &grown);
        let first = doubled.packages[0].clone();
        doubled.packages[1] = first;
        let result = check_log(&grown, &doubled, known.as_ref(), "r");
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("other versions")));
        let mut keyed = index(&key, 2, &grown);
        keyed.keys.push(crate::protocol::KeyEntry {
            publisher: "p".into(),
            public_key: "ab".repeat(32),
            added_at: 0,
            revoked_at: None,
        });
        let result = check_log(&grown, &keyed, known.as_ref(), "r");
        assert!(matches!(result, Err(InstallError::Refused(m)) if m.contains("publisher keys")));
    }

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

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(key: &SigningKey) -> String {
        hex(key.verifying_key().as_bytes())
    }

    /// `new` added to `acme` of registry `r`, signed in by `by` (a rotation) or not.
    fn added(new: &SigningKey, by: Option<&SigningKey>) -> Event {
        Event::KeyAdded {
            publisher: "acme".into(),
            public_key: public(new),
            signed_by: by.map(public),
            signature: by.map(|by| protocol::sign_key_statement("acme", &public(new), by)),
            possession: protocol::sign_possession("r", "acme", new),
        }
    }

    #[test]
    fn the_lineage_follows_signed_rotations_only() {
        let (a, b, c, other) = (key(1), key(2), key(3), key(4));
        let events = [
            added(&a, None),
            added(&b, Some(&a)),
            // An admin's unsigned key after every key was revoked, and a key it signs in.
            added(&c, None),
            added(&other, Some(&c)),
        ];
        let entries: Vec<LogEntry> = events
            .into_iter()
            .enumerate()
            .map(|(sequence, event)| LogEntry {
                sequence: sequence as u64,
                time: 0,
                previous: String::new(),
                event,
            })
            .collect();
        let replayed = Replayed::default();
        let keys = lineage(&[public(&a)], &entries, &replayed, "acme");
        assert_eq!(keys, [public(&a), public(&b)].into_iter().collect());
        assert!(lineage(&[public(&a)], &entries, &replayed, "evil").len() == 1);
    }

    #[test]
    fn a_root_grafted_onto_another_chain_takes_no_registrys_log() {
        let (k1, k2, thief, publisher) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
            SigningKey::from_bytes(&[4; 32]),
        );
        let public = |key: &SigningKey| hex(key.verifying_key().as_bytes());
        let root = |version: u64, key: &SigningKey| Root {
            version,
            keys: vec![public(key)],
            threshold: 1,
            issued_at: 0,
        };
        // Registry R: created with k1 (its identity), rotated to k2.
        let genuine = vec![root(1, &k1).sign(&[&k1]), root(2, &k2).sign(&[&k1, &k2])];
        // The thief's chain: its own version 1, then R's public version 2 with the thief's
        // signature added, which makes it "follow" the thief's root. The chain verifies.
        let mut grafted_two = genuine[1].clone();
        grafted_two
            .signatures
            .extend(root(2, &k2).sign(&[&thief]).signatures);
        let grafted = vec![root(1, &thief).sign(&[&thief]), grafted_two];
        assert_eq!(protocol::registry_id(&grafted), Ok(public(&thief)));
        // R's log and index, served through the grafted chain to a host given R's current key.
        let log = vec![LogEntry {
            sequence: 0,
            time: 0,
            previous: LOG_ROOT.into(),
            event: Event::KeyAdded {
                publisher: "acme".into(),
                public_key: public(&publisher),
                signed_by: None,
                signature: None,
                possession: protocol::sign_possession(&public(&k1), "acme", &publisher),
            },
        }];
        let keys = protocol::replay(&log, &public(&k1))
            .unwrap_or_default()
            .keys
            .into_values()
            .collect();
        let signed = Index {
            keys,
            ..index(&k2, 1, &log)
        }
        .sign(&k2);
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let accepted = accept_index(&host, "m", &signed, &grafted, Some(&public(&k2)), 10);
        // The index verifies under R's keys, yet the identity is the thief's: what stops the
        // graft is the log, whose possession proofs name R's identity.
        let accepted = accepted.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(accepted.id, public(&thief));
        let result = check_log(&log, &accepted.index, None, &accepted.id);
        assert!(
            matches!(&result, Err(InstallError::Refused(m)) if m.contains("possession")),
            "{result:?}"
        );
        // Through R's own chain the same index and log are R's.
        let honest = accept_index(&host, "m", &signed, &genuine, Some(&public(&k2)), 10)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(honest.id, public(&k1));
        assert!(check_log(&log, &honest.index, None, &honest.id).is_ok());
    }

    #[test]
    fn a_short_log_page_must_be_cut_at_the_byte_bound() {
        let yank = |sequence: u64, name: String| LogEntry {
            sequence,
            time: 0,
            previous: String::new(),
            event: Event::Yank {
                name,
                version: "1.0.0".into(),
            },
        };
        let small = vec![yank(5, "a".into())];
        assert!(
            check_page_fullness(&small, 5, 1, 6).is_ok(),
            "all that was asked"
        );
        let result = check_page_fullness(&small, 5, 2, 7);
        assert!(
            matches!(&result, Err(InstallError::Refused(m)) if m.contains("stops short")),
            "{result:?}"
        );
        // An honest page cut at the byte bound: its entries hold that much JSON.
        let big = "b".repeat(protocol::MAX_LOG_PAGE_BYTES / 2);
        assert!(check_page_fullness(&[yank(5, big)], 5, 1000, 2000).is_ok());
    }

    #[test]
    fn extreme_and_equal_log_times() {
        let publisher = SigningKey::from_bytes(&[1; 32]);
        let public = hex(publisher.verifying_key().as_bytes());
        let entries = |times: [u64; 3], revoked_at: u64| -> Vec<LogEntry> {
            let events = [
                Event::KeyAdded {
                    publisher: "acme".into(),
                    public_key: public.clone(),
                    signed_by: None,
                    signature: None,
                    possession: protocol::sign_possession("r", "acme", &publisher),
                },
                Event::Publish {
                    name: "a".into(),
                    version: "1.0.0".into(),
                    publisher: "acme".into(),
                    package_sha256: "00".repeat(32),
                },
                Event::KeyRevoked {
                    publisher: "acme".into(),
                    public_key: public.clone(),
                    revoked_at,
                    signed_by: None,
                    signature: None,
                    by_admin: false,
                },
            ];
            events
                .into_iter()
                .zip(times)
                .enumerate()
                .map(|(sequence, (event, time))| LogEntry {
                    sequence: sequence as u64,
                    time,
                    previous: String::new(),
                    event,
                })
                .collect()
        };
        // The index the tests' helper makes lists the keys and versions the log replays to.
        let valid = |log: &[LogEntry]| {
            let index = index(&SigningKey::from_bytes(&[9; 32]), 1, log);
            index.keys.len() == 1
                && valid_signer(std::slice::from_ref(&public), &index.packages[0], &index)
        };
        // The largest time everywhere replays (no overflow), and a revocation at the very time
        // of the publish voids it: signatures from `revoked_at` on are refused.
        let max = entries([u64::MAX; 3], u64::MAX);
        assert!(protocol::replay(&max, "r").is_ok());
        assert!(!valid(&max));
        let same_second = entries([100, 100, 100], 100);
        assert!(protocol::replay(&same_second, "r").is_ok());
        assert!(!valid(&same_second));
        // A second later, the publish stands.
        assert!(valid(&entries([100, 100, 101], 101)));
        // Revoking from before the entry's time needs a signature or an admin's mark.
        assert!(protocol::replay(&entries([100, 100, 101], 100), "r").is_err());
    }

    #[test]
    fn a_rotation_voided_by_its_signers_back_dated_revocation_leaves_the_lineage() {
        let (a, b, c) = (key(1), key(2), key(3));
        // A thief holding `a` signs in `b` at 20, and `b` signs in `c`; the publisher then
        // revokes `a` back to `revoked_at` (an admin's mark: nobody else holds a key).
        let lineage_with = |revoked_at: u64| {
            let events = [
                (10, added(&a, None)),
                (20, added(&b, Some(&a))),
                (30, added(&c, Some(&b))),
                (
                    40,
                    Event::KeyRevoked {
                        publisher: "acme".into(),
                        public_key: public(&a),
                        revoked_at,
                        signed_by: None,
                        signature: None,
                        by_admin: true,
                    },
                ),
            ];
            let entries: Vec<LogEntry> = events
                .into_iter()
                .enumerate()
                .map(|(sequence, (time, event))| LogEntry {
                    sequence: sequence as u64,
                    time,
                    previous: String::new(),
                    event,
                })
                .collect();
            let replayed = protocol::replay(&entries, "r").unwrap_or_default();
            assert_eq!(replayed.keys.len(), 3, "the log replays");
            lineage(&[public(&a)], &entries, &replayed, "acme")
        };
        // Revoked from 15: the rotation at 20 is void, and so is what the voided key signed.
        assert_eq!(lineage_with(15), [public(&a)].into_iter().collect());
        // Revoked at the rotation's own second, or after it: the rotation stands.
        let all: BTreeSet<String> = [public(&a), public(&b), public(&c)].into_iter().collect();
        assert_eq!(lineage_with(20), all);
        assert_eq!(lineage_with(40), all);
    }
}
