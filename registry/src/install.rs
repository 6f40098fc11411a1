//! The host side: installing from a registry, and what a host remembers between installs.
//!
//! A host keeps its own redb file (`host.redb` in its state directory) with, per registry, the
//! pinned registry key, the highest index version and the log checkpoint it has seen; per node
//! name, the highest version it has seen and what is installed, with the grant. An install
//! verifies, in this order and before anything is compiled: the index (signature, registry,
//! expiry, no rollback, no equivocation), the log (it chains to the signed checkpoint, extends
//! the one seen before, and records the publish), the choice (not yanked, no downgrade, same
//! publisher, the other installed nodes listed by this same index), the package (its hash as
//! indexed, its manifest, component, capabilities and signatures) and its signing key (the
//! publisher's, added before and not revoked at publication).

use crate::client::{Client, ClientError};
use crate::protocol::{self, Index, IndexEntry, LogEntry, Root, Signed, SignedRoot, sha256_hex};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_host::Capabilities;
use warden_host::package::{self, Package, hex};

const REGISTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("registries");
const SEEN: TableDefinition<&str, &str> = TableDefinition::new("highest_seen");
const INSTALLED: TableDefinition<&str, &[u8]> = TableDefinition::new("installed");

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("refused: {0}")]
    Refused(String),
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

/// What the host remembers of a registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// The registry's root of trust as this host last accepted it.
    pub root: Root,
    pub index_version: u64,
    pub index_sha256: String,
    pub log_size: u64,
    pub log_head: String,
}

fn default_preset() -> String {
    "default".into()
}

/// An installed node and its grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub registry: String,
    pub publisher: String,
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
pub struct HostState {
    db: Database,
    dir: PathBuf,
}

fn parse<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, InstallError> {
    serde_json::from_slice(bytes)
        .map_err(|error| InstallError::State(format!("corrupt record: {error}")))
}

impl HostState {
    pub fn open(dir: &Path) -> Result<HostState, InstallError> {
        std::fs::create_dir_all(dir.join("packages")).map_err(|error| {
            InstallError::State(format!("cannot create {}: {error}", dir.display()))
        })?;
        let db = Database::create(dir.join("host.redb")).map_err(|error| {
            InstallError::State(format!(
                "cannot open {}: {error}",
                dir.join("host.redb").display()
            ))
        })?;
        let txn = db.begin_write().map_err(state)?;
        txn.open_table(REGISTRIES).map_err(state)?;
        txn.open_table(SEEN).map_err(state)?;
        txn.open_table(INSTALLED).map_err(state)?;
        txn.commit().map_err(state)?;
        Ok(HostState {
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

    pub fn registry(&self, url: &str) -> Result<Option<RegistryRecord>, InstallError> {
        self.record(REGISTRIES, url)
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
        let txn = self.db.begin_read().map_err(state)?;
        let table = txn.open_table(INSTALLED).map_err(state)?;
        let mut all = Vec::new();
        for item in redb::ReadableTable::iter(&table).map_err(state)? {
            let (_, value) = item.map_err(state)?;
            all.push(parse(value.value())?);
        }
        Ok(all)
    }

    fn put_registry(&self, url: &str, record: &RegistryRecord) -> Result<(), InstallError> {
        self.put(REGISTRIES, url, record)
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

/// Verifies a signed index against what this host has seen of `registry`: the root chain, the
/// signature, the expiry, no rollback, no equivocation. Returns the index, the root it was
/// verified with, and the record as it was before.
pub fn accept_index(
    host: &HostState,
    registry: &str,
    signed: &Signed,
    roots: &[SignedRoot],
    registry_key: Option<&str>,
    now: u64,
) -> Result<(Index, Root, Option<RegistryRecord>), InstallError> {
    let known = host.registry(registry)?;
    let root = follow_roots(
        known.as_ref().map(|known| &known.root),
        registry_key,
        roots,
        registry,
    )?;
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
    Ok((index, root, known))
}

/// Checks the log of the registry `registry_id` (`protocol::registry_id` of its roots): it
/// chains to the index's signed checkpoint, replays (key possession and revocation proofs
/// name the registry) and extends what was seen.
pub fn check_log(
    entries: &[LogEntry],
    index: &Index,
    known: Option<&RegistryRecord>,
    registry_id: &str,
) -> Result<(), InstallError> {
    protocol::verify_log(entries, index.log_size, &index.log_head)
        .and_then(|()| protocol::replay(entries, registry_id))
        .and_then(|replayed| protocol::index_matches_log(index, &replayed))
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
    let valid_signer = signers.iter().any(|signer| {
        index.key(&hex(signer.as_bytes())).is_some_and(|key| {
            key.publisher == entry.publisher
                && key.added_at <= entry.published_at
                && key
                    .revoked_at
                    .is_none_or(|revoked| entry.published_at < revoked)
        })
    });
    if !valid_signer {
        return Err(refused(format!(
            "{}@{} is not signed by a key of `{}` that was valid when it was published (revoked or unknown key)",
            entry.name, entry.version, entry.publisher
        )));
    }
    Ok(package)
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

/// Fetches and verifies the registry's newest signed state (roots, index, log, with every
/// check `install` makes) and blocks each node installed from it whose signing key has since
/// been revoked for its publication time, or whose version the index no longer lists as
/// installed. This is the kill switch: run it on a schedule shorter than the index lifetime.
/// Returns the nodes it blocked.
pub async fn sync(
    client: &Client,
    host: &HostState,
    now: u64,
) -> Result<Vec<Installed>, InstallError> {
    let registry = client.base().to_string();
    let (index, _) = fetch_verified(client, host, None, now).await?;
    let mut blocked = Vec::new();
    for mut record in host.all_installed()? {
        if record.registry != registry || record.blocked.is_some() {
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
                    &index,
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
            blocked.push(record);
        }
    }
    Ok(blocked)
}

/// Fetches roots, index and log, verifies them against what the host has seen, and records
/// the accepted index (so a later rollback is refused even if what follows fails).
async fn fetch_verified(
    client: &Client,
    host: &HostState,
    registry_key: Option<&str>,
    now: u64,
) -> Result<(Index, Vec<LogEntry>), InstallError> {
    let registry = client.base().to_string();
    let roots: Vec<SignedRoot> = client.get_json("v1/roots").await?;
    let signed: Signed = client
        .get_json_limited("v1/index", protocol::MAX_INDEX_BYTES)
        .await?;
    let (index, root, known) = accept_index(host, &registry, &signed, &roots, registry_key, now)?;
    let log: Vec<LogEntry> = client
        .get_json_limited("v1/log", protocol::MAX_LOG_BYTES)
        .await?;
    let registry_id = protocol::registry_id(&roots).map_err(|error| refused(error.to_string()))?;
    check_log(&log, &index, known.as_ref(), &registry_id)?;
    host.put_registry(
        &registry,
        &RegistryRecord {
            root,
            index_version: index.version,
            index_sha256: sha256_hex(signed.signed.as_bytes()),
            log_size: index.log_size,
            log_head: index.log_head.clone(),
        },
    )?;
    Ok((index, log))
}

/// Installs a node from the registry behind `client`. See the module documentation for what
/// is checked; any failure leaves the installed state as it was.
pub async fn install(
    client: &Client,
    host: &HostState,
    request: InstallRequest<'_>,
) -> Result<Installed, InstallError> {
    if let Some(names) = &request.approve {
        check_names(names)?;
    }
    if let Some(preset) = &request.approve_limits {
        looseness(preset)?;
    }
    let registry = client.base().to_string();
    let (index, log) = fetch_verified(client, host, request.registry_key, request.now).await?;
    let entry = choose(&index, request.name, request.version)?;
    let logged = log.iter().any(|logged| {
        matches!(&logged.event, protocol::Event::Publish { name, version, package_sha256, .. }
            if *name == entry.name && *version == entry.version && *package_sha256 == entry.package_sha256)
    });
    if !logged {
        return Err(refused(format!(
            "{}@{} is not in the registry's log",
            entry.name, entry.version
        )));
    }
    let chosen =
        semver::Version::parse(&entry.version).map_err(|error| refused(error.to_string()))?;
    if let Some(highest) = host.highest_seen(&entry.name)?
        && chosen < highest
    {
        return Err(refused(format!(
            "{}@{} is older than {highest}, which this host has installed before (a downgrade)",
            entry.name, entry.version
        )));
    }
    let previous = host.installed(&entry.name)?;
    if let Some(previous) = &previous
        && previous.publisher != entry.publisher
    {
        return Err(refused(format!(
            "`{}` was installed from the publisher `{}`, the registry now lists `{}`",
            entry.name, previous.publisher, entry.publisher
        )));
    }
    if let Some(previous) = &previous
        && previous.version == entry.version
        && previous.package_sha256 != entry.package_sha256
    {
        return Err(refused(format!(
            "{}@{} is installed with other bytes than the registry now lists: a version never changes",
            entry.name, entry.version
        )));
    }
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
    let path = format!("v1/packages/{}/{}", entry.name, entry.version);
    let limit = (entry.package_bytes as usize).min(crate::server::DEFAULT_MAX_PACKAGE_BYTES * 4);
    let bytes = client.send(hyper::Method::GET, &path, None, limit).await?;
    let package = check_package(&bytes, entry, &index)?;
    let manifest = &package.manifest;

    let mut record = Installed {
        name: entry.name.clone(),
        version: entry.version.clone(),
        registry: registry.clone(),
        publisher: entry.publisher.clone(),
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
    match &previous {
        // An update keeps what was approved; anything new waits for `warden approve`.
        Some(previous) => {
            record.approved = previous.approved.clone();
            record.approved_hosts = previous.approved_hosts.clone();
            record.approved_limits = request
                .approve_limits
                .clone()
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
        // A first install approves what the operator says, or what the package asks for.
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
    record.refresh();

    let destination = host.package_path(&record.package_sha256);
    write_durably(&destination, &bytes)?;
    let txn = host.write()?;
    {
        let mut seen = txn.open_table(SEEN).map_err(state)?;
        seen.insert(record.name.as_str(), record.version.as_str())
            .map_err(state)?;
        txn.open_table(INSTALLED)
            .map_err(state)?
            .insert(
                record.name.as_str(),
                serde_json::to_vec(&record).unwrap_or_default().as_slice(),
            )
            .map_err(state)?;
    }
    txn.commit().map_err(state)?;
    Ok(record)
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

    fn remember(host: &HostState, signed: &Signed, index: &Index) {
        host.put_registry(
            "r",
            &RegistryRecord {
                root: root_of(index),
                index_version: index.version,
                index_sha256: sha256_hex(signed.signed.as_bytes()),
                log_size: index.log_size,
                log_head: index.log_head.clone(),
            },
        )
        .unwrap_or_default();
    }

    #[test]
    fn two_different_indexes_with_one_version_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = HostState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let first = index(&key, 5, &[]);
        let signed = first.sign(&key);
        let roots = vec![root_of(&first).sign(&[&key])];
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
        let host = HostState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let seen_log = log(&["1", "2"]);
        let seen = index(&key, 1, &seen_log);
        remember(&host, &seen.sign(&key), &seen);
        let known = host.registry("r").unwrap_or_default();

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
            &[],
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
}
