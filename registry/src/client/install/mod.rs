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
//!
//! `state` keeps what the host remembers, `installed` a node's grant, `verify` the checks,
//! `sync` fetching and verifying a registry's newest state (and the kill switch), and this
//! module the install itself; `error` says why any of it refuses.

mod error;
mod installed;
mod state;
mod sync;
#[cfg(test)]
mod test_support;
mod verify;

pub use error::{Coordinates, InstallError, Refusal};
pub use installed::Installed;
pub use state::{InstallState, PublisherChange, RegistryRecord};
pub use sync::{SyncReport, fetch_log, sync, sync_report};
pub use verify::{
    Accepted, accept_index, check_log, check_package, check_package_signers, choose,
    choose_matching, follow_roots,
};

use crate::client::Client;
use crate::protocol::{self, DEFAULT_MAX_PACKAGE_BYTES, Index, IndexEntry};
use installed::{check_names, looseness};
use sync::fetch_verified;
use verify::{lineage, publisher_keys_of};

/// What an install asks for.
#[derive(Default)]
pub struct InstallRequest<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    /// With no `version`: the highest version this accepts rather than the highest of all.
    pub version_req: Option<&'a semver::VersionReq>,
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
    /// Where hosts share the packages they downloaded (a cluster's object storage): looked in
    /// before the registry, and given each package downloaded from it.
    pub blobs: Option<&'a dyn PackageBlobs>,
}

/// A future a [`PackageBlobs`] returns.
pub type BlobFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Packages kept by their SHA-256, shared by hosts. Nothing found there is trusted: a package
/// found passes the same checks against the signed index as one downloaded, and is downloaded
/// from the registry when it does not.
pub trait PackageBlobs: Sync {
    /// The package whose file hashes to `package_sha256` and is `size` bytes (as the signed
    /// index lists it), if it is kept; `None` when it is not, or when the store fails (the
    /// registry serves then).
    fn find<'a>(&'a self, package_sha256: &'a str, size: u64) -> BlobFuture<'a, Option<Vec<u8>>>;
    /// Keeps a package downloaded from a registry and verified against its index (in the
    /// background, if it likes). A failure is the store's to report: the install goes on.
    fn keep<'a>(&'a self, package_sha256: &'a str, bytes: &'a [u8]) -> BlobFuture<'a, ()>;
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
    let entry = match (request.version, request.version_req) {
        (None, Some(requirement)) => choose_matching(index, request.name, requirement)?,
        (version, _) => choose(index, request.name, version)?,
    };
    let logged = verified
        .replayed
        .versions
        .get(&(entry.name.clone(), entry.version.clone()))
        .is_some_and(|logged| logged.package_sha256 == entry.package_sha256);
    if !logged {
        return Err(Refusal::NotInLog {
            name: entry.name.clone(),
            version: entry.version.clone(),
        }
        .into());
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
        return Err(Refusal::VersionChanged {
            name: entry.name.clone(),
            version: entry.version.clone(),
        }
        .into());
    }
    check_one_snapshot(host, entry, index)?;
    let limit = (entry.package_bytes as usize).min(DEFAULT_MAX_PACKAGE_BYTES * 4);
    let (bytes, (package, signers)) =
        fetch_package(client, request.blobs, entry, index, limit).await?;
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

    host.write_package(&record.package_sha256, &bytes)?;
    host.record_install(&record, accepted_change.as_ref())?;
    Ok(record)
}

/// The package `entry` names, checked against `index`: from `blobs` when they hold it and it
/// passes, otherwise downloaded from the registry (and then given to `blobs`).
async fn fetch_package(
    client: &Client,
    blobs: Option<&dyn PackageBlobs>,
    entry: &IndexEntry,
    index: &Index,
    limit: usize,
) -> Result<(Vec<u8>, (warden_package::Package, Vec<String>)), InstallError> {
    // A package over the limit is not looked for: its download would be refused too.
    if let Some(blobs) = blobs
        && entry.package_bytes <= limit as u64
        && let Some(bytes) = blobs.find(&entry.package_sha256, entry.package_bytes).await
        && let Ok(checked) = check_package_signers(&bytes, entry, index)
    {
        return Ok((bytes, checked));
    }
    let path = format!("v1/packages/{}/{}", entry.name, entry.version);
    let bytes = client.send(hyper::Method::GET, &path, None, limit).await?;
    let checked = check_package_signers(&bytes, entry, index)?;
    if let Some(blobs) = blobs {
        blobs.keep(&entry.package_sha256, &bytes).await;
    }
    Ok((bytes.into(), checked))
}

/// Refuses a version below the highest this host installed of the name, unless the operator
/// is accepting a publisher change (another publisher's versions are another line).
fn check_no_downgrade(
    host: &InstallState,
    entry: &IndexEntry,
    accepting_change: bool,
) -> Result<(), InstallError> {
    let chosen = semver::Version::parse(&entry.version).map_err(|source| Refusal::BadVersion {
        version: entry.version.clone(),
        source,
    })?;
    if let Some(highest) = host.highest_seen(&entry.name)?
        && chosen < highest
        && !accepting_change
    {
        return Err(Refusal::Downgrade {
            name: entry.name.clone(),
            version: entry.version.clone(),
            highest,
        }
        .into());
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
            return Err(Refusal::NotOneSnapshot {
                name: other.name,
                version: other.version,
            }
            .into());
        }
    }
    Ok(())
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
