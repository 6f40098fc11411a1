//! Finding and verifying the packages a manifest names: from local directories of signed
//! packages (each must carry a signature by one of the directory's trusted keys) and from
//! registries, through the same install and verification code as `warden install` (the
//! daemon's own install state lives in `data_dir/state`).
//!
//! Every node is checked against what the manifest grants: a package that requests a
//! capability or a host the manifest does not grant is refused, with one problem per
//! capability and host, and the problems of every node are collected before anything is
//! refused.

use crate::manifest::{DirectorySource, Manifest, NodeEntry, RegistrySource};
use std::collections::BTreeMap;
use std::path::Path;
use warden_host::{Capabilities, NodeComponent};
use warden_package::Package;
use warden_registry::client::Client;
use warden_registry::client::install::{self, InstallRequest, InstallState, PackageBlobs};

/// A package chosen and verified for a manifest node, not yet compiled.
#[derive(Clone)]
pub struct Verified {
    pub entry: NodeEntry,
    pub version: String,
    /// SHA-256 of the package file.
    pub package_sha256: String,
    pub component_sha256: String,
    pub publisher: String,
    /// The keys (hex) whose signatures on the package verify.
    pub signers: Vec<String>,
    /// `registry` or `directory`, and which.
    pub origin: Origin,
    pub component: NodeComponent,
    /// What the package requests, all of it granted.
    pub capabilities: Capabilities,
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    Directory {
        name: String,
    },
    Registry {
        name: String,
        id: String,
        url: String,
    },
}

/// What loading found: the packages, and every problem and warning.
#[derive(Default)]
pub struct Loaded {
    pub verified: Vec<Verified>,
    /// Why nodes were refused, one line each.
    pub problems: Vec<String>,
    /// What the operator should know that did not refuse anything (a registry unreachable
    /// while an installed version still serves, a bad file in a package directory).
    pub warnings: Vec<String>,
    /// Nodes not loaded because their registry blocks them (a revoked key, a version no
    /// longer listed), and why. They are left out rather than refusing the generation: a
    /// publisher cannot stop a host from reloading by revoking its own key. `/readyz` lists
    /// them.
    pub skipped: Vec<(String, String)>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    warden_package::hex(&sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes),
    ))
}

/// Loads every node of `manifest`. Sync the registries first (`Daemon::sync_registries`), so
/// that a node revoked since the last start is left out rather than loaded. In a cluster,
/// `blobs` is where the daemons share the packages they download.
pub async fn load(manifest: &Manifest, blobs: Option<&dyn PackageBlobs>) -> Loaded {
    let mut loaded = Loaded::default();
    let directories: BTreeMap<&str, DirectoryPackages> = manifest
        .directories
        .iter()
        .filter(|directory| {
            manifest
                .nodes
                .iter()
                .any(|node| node.source == directory.name)
        })
        .map(|directory| {
            let packages = scan(directory, &mut loaded.warnings, &mut loaded.problems);
            (directory.name.as_str(), packages)
        })
        .collect();
    let state_dir = manifest.data_dir.join("state");
    let needs_state = manifest.registries.iter().any(|registry| {
        manifest
            .nodes
            .iter()
            .any(|node| node.source == registry.name)
    });
    let state = match needs_state {
        true => match InstallState::open(&state_dir) {
            Ok(state) => Some(state),
            Err(error) => {
                loaded.problems.push(format!(
                    "the install state in {}: {error}",
                    state_dir.display()
                ));
                None
            }
        },
        false => None,
    };
    let mut clients = BTreeMap::new();
    if state.is_some() {
        for registry in &manifest.registries {
            if !manifest
                .nodes
                .iter()
                .any(|node| node.source == registry.name)
            {
                continue;
            }
            match client(registry) {
                // Synced already (`Daemon::sync_registries`), before anything is loaded.
                Ok(client) => {
                    clients.insert(registry.name.as_str(), client);
                }
                Err(problem) => loaded.problems.push(problem),
            }
        }
    }
    for (index, entry) in manifest.nodes.iter().enumerate() {
        let label = format!("nodes[{index}] `{}`", entry.name);
        let found = if let Some(directory) = directories.get(entry.source.as_str()) {
            from_directory(directory, entry)
        } else if let (Some(registry), Some(state)) = (
            manifest.registries.iter().find(|r| r.name == entry.source),
            &state,
        ) {
            match clients.get(registry.name.as_str()) {
                Some(client) => {
                    let source = RegistryAt {
                        registry,
                        client,
                        state,
                        blobs,
                    };
                    from_registry(&source, entry, &mut loaded.warnings).await
                }
                None => continue,
            }
        } else {
            continue;
        };
        match found {
            Err(Skip::Blocked(reason)) => loaded.skipped.push((entry.name.clone(), reason)),
            Err(Skip::Problem(problem)) => loaded.problems.push(format!("{label}: {problem}")),
            Ok(verified) => {
                let problems = grant_problems(&verified.0.manifest, entry);
                if problems.is_empty() {
                    match finish(verified, entry) {
                        Ok(verified) => loaded.verified.push(verified),
                        Err(problem) => loaded.problems.push(format!("{label}: {problem}")),
                    }
                } else {
                    loaded.problems.extend(
                        problems
                            .into_iter()
                            .map(|problem| format!("{label}: {problem}")),
                    );
                }
            }
        }
    }
    loaded
}

/// Why a node is not loaded.
enum Skip {
    /// Its registry blocks the installed version: left out, with the reason.
    Blocked(String),
    /// Anything else: the generation is refused.
    Problem(String),
}

impl From<String> for Skip {
    fn from(problem: String) -> Self {
        Skip::Problem(problem)
    }
}

/// A package found, with its file's hash, its signers and where it came from.
type Found = (Package, String, Vec<String>, Origin);

fn finish(found: Found, entry: &NodeEntry) -> Result<Verified, String> {
    let (package, package_sha256, signers, origin) = found;
    let capabilities = package
        .manifest
        .capabilities
        .join(",")
        .parse::<Capabilities>()
        .or_else(|error| match package.manifest.capabilities.is_empty() {
            true => Ok(Capabilities::empty()),
            false => Err(error.to_string()),
        })?;
    let component = NodeComponent::from_bytes(package.component)
        .map_err(|error| format!("its component: {error}"))?;
    Ok(Verified {
        entry: entry.clone(),
        version: package.manifest.version.clone(),
        package_sha256,
        component_sha256: package.manifest.component_sha256.clone(),
        publisher: package.manifest.publisher.clone(),
        signers,
        origin,
        component,
        capabilities,
        allowed_hosts: package.manifest.allowed_hosts.clone(),
    })
}

/// What the package requests beyond the manifest's grant: one line per capability and host.
pub fn grant_problems(package: &warden_package::Manifest, entry: &NodeEntry) -> Vec<String> {
    let mut problems = Vec::new();
    for name in &package.capabilities {
        let granted = name
            .parse::<Capabilities>()
            .is_ok_and(|capability| entry.grant.contains(capability));
        if !granted {
            problems.push(format!(
                "{}@{} requests capability `{name}`, which the manifest does not grant (add it to `grant`)",
                package.name, package.version
            ));
        }
    }
    for host in &package.allowed_hosts {
        if !entry.allowed_hosts.contains(host) {
            problems.push(format!(
                "{}@{} requests host `{host}`, which the manifest does not allow (add it to `allowed_hosts`)",
                package.name, package.version
            ));
        }
    }
    problems
}

/// Reads a regular file of at most `limit` bytes. It is opened without following a symlink
/// and without blocking (a FIFO or a device in a package directory must not hold a reload),
/// checked to be a regular file on the opened handle, and read no further than `limit`.
fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.custom_flags(flags.bits() as i32);
    }
    let file = options
        .open(path)
        .map_err(|error| format!("cannot open it (a symlink is not followed): {error}"))?;
    let metadata = file.metadata().map_err(|error| error.to_string())?;
    if !metadata.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if metadata.len() > limit {
        return Err(format!("it is {} bytes, over {limit}", metadata.len()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("it grew past {limit} bytes while read"));
    }
    Ok(bytes)
}

/// The verified packages of one directory, by name.
#[derive(Default)]
struct DirectoryPackages {
    by_name: BTreeMap<String, Vec<(semver::Version, Found)>>,
    /// Names of packages there that no trusted key signed (a key the operator took out of
    /// `trusted_keys`, say), with why.
    untrusted: BTreeMap<String, String>,
}

/// Largest package file read from a directory.
const MAX_PACKAGE_FILE: u64 = 256 * 1024 * 1024;

fn scan(
    directory: &DirectorySource,
    warnings: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> DirectoryPackages {
    let mut packages = DirectoryPackages::default();
    let entries = match std::fs::read_dir(&directory.path) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(format!(
                "directory `{}` ({}): {error}",
                directory.name,
                directory.path.display()
            ));
            return packages;
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wpkg"))
        .collect();
    paths.sort();
    for path in paths {
        match read_package(&path, directory) {
            Ok((version, found)) => packages
                .by_name
                .entry(found.0.manifest.name.clone())
                .or_default()
                .push((version, found)),
            Err((Some(name), why)) => {
                warnings.push(format!(
                    "directory `{}`: {} is skipped: {why}",
                    directory.name,
                    path.display()
                ));
                packages.untrusted.insert(name, why);
            }
            Err((None, why)) => warnings.push(format!(
                "directory `{}`: {} is skipped: {why}",
                directory.name,
                path.display()
            )),
        }
    }
    packages
}

/// A package of a directory, verified; or why not (with its name when it decoded but no
/// trusted key signed it).
fn read_package(
    path: &Path,
    directory: &DirectorySource,
) -> Result<(semver::Version, Found), (Option<String>, String)> {
    let bytes = read_regular_file(path, MAX_PACKAGE_FILE).map_err(|why| (None, why))?;
    let package = warden_package::decode(&bytes).map_err(|error| (None, error.to_string()))?;
    let signers = warden_package::verify(&package, Some(&directory.trusted_keys)).map_err(
        |error| match error {
            warden_package::PackageError::Untrusted => {
                (Some(package.manifest.name.clone()), error.to_string())
            }
            error => (None, error.to_string()),
        },
    )?;
    let version = semver::Version::parse(&package.manifest.version)
        .map_err(|error| (None, error.to_string()))?;
    let signers = signers
        .iter()
        .map(|key| warden_package::hex(key.as_bytes()))
        .collect();
    let origin = Origin::Directory {
        name: directory.name.clone(),
    };
    Ok((version, (package, sha256_hex(&bytes), signers, origin)))
}

fn from_directory(packages: &DirectoryPackages, entry: &NodeEntry) -> Result<Found, Skip> {
    let candidates = packages
        .by_name
        .get(&entry.name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // With `trusted_keys` on the node, only packages one of those signed are its: in a
    // directory several publishers share, one cannot ship a package under another's name.
    let signed_for_it = |found: &Found| signed_by_pinned_key(entry, &found.2);
    candidates
        .iter()
        .filter(|(version, found)| entry.version.matches(version) && signed_for_it(found))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, found)| found.clone())
        .ok_or_else(|| {
            // Signed, but by no key trusted now: left out (and stopped where it runs), as a
            // node its registry blocks is.
            if let Some(why) = packages.untrusted.get(&entry.name)
                && candidates.is_empty()
            {
                return Skip::Blocked(format!(
                    "directory `{}` holds `{}`, but {why}",
                    entry.source, entry.name
                ));
            }
            let versions: Vec<String> = candidates.iter().map(|(v, _)| v.to_string()).collect();
            Skip::Problem(format!(
                "directory `{}` has no package of it that matches `{}` and is signed by a trusted key (versions there: {})",
                entry.source,
                entry.version,
                if versions.is_empty() { "none".to_string() } else { versions.join(", ") }
            ))
        })
}

/// Whether `signers` (hex keys) include one of the node's pinned `trusted_keys`; true when it
/// pins none.
fn signed_by_pinned_key(entry: &NodeEntry, signers: &[String]) -> bool {
    entry.trusted_keys.is_empty()
        || signers.iter().any(|signer| {
            entry
                .trusted_keys
                .iter()
                .any(|key| warden_package::hex(key.as_bytes()) == *signer)
        })
}

pub fn client(registry: &RegistrySource) -> Result<Client, String> {
    let mut roots = Vec::new();
    for file in &registry.ca_certs {
        let bytes = std::fs::read(file).map_err(|error| {
            format!(
                "registry `{}`: ca_certs {}: {error}",
                registry.name,
                file.display()
            )
        })?;
        roots.extend(
            warden_host::tls::certificates_from_pem_or_der(&bytes).map_err(|error| {
                format!(
                    "registry `{}`: ca_certs {}: {error}",
                    registry.name,
                    file.display()
                )
            })?,
        );
    }
    let credential = match &registry.token_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|error| {
                format!(
                    "registry `{}`: token_file {}: {error}",
                    registry.name,
                    file.display()
                )
            })?;
            if text.trim().is_empty() {
                return Err(format!(
                    "registry `{}`: token_file {} is empty",
                    registry.name,
                    file.display()
                ));
            }
            Some(warden_registry::client::Credential::from_token(text.trim()))
        }
        None => None,
    };
    Client::new(&registry.url, &roots, credential)
        .map_err(|error| format!("registry `{}`: {error}", registry.name))
}

/// Syncs a registry: nodes installed from it whose signing keys were revoked, or whose versions
/// the index no longer lists, are blocked (a yanked version stays listed). Returns the nodes
/// blocked by this sync.
pub async fn sync_registry(
    registry: &RegistrySource,
    client: &Client,
    state: &InstallState,
    warnings: &mut Vec<String>,
) -> Vec<install::Installed> {
    match install::sync_report(client, state, warden_registry::protocol::now()).await {
        Ok(report) => report.blocked,
        // A registry never reached before has nothing to sync yet: the install reaches it.
        Err(error) if state.registry(client.base()).ok().flatten().is_none() => {
            let _ = error;
            Vec::new()
        }
        Err(error) => {
            warnings.push(format!(
                "registry `{}` could not be synced: {error}; nodes installed from it keep running as last verified",
                registry.name
            ));
            Vec::new()
        }
    }
}

/// A registry nodes install from: its settings, its client, the daemon's install state and,
/// in a cluster, the shared store of packages.
struct RegistryAt<'a> {
    registry: &'a RegistrySource,
    client: &'a Client,
    state: &'a InstallState,
    blobs: Option<&'a dyn PackageBlobs>,
}

async fn from_registry(
    source: &RegistryAt<'_>,
    entry: &NodeEntry,
    warnings: &mut Vec<String>,
) -> Result<Found, Skip> {
    let RegistryAt {
        registry,
        client,
        state,
        blobs,
    } = *source;
    let approve: Vec<String> = entry
        .grant
        .names()
        .iter()
        .map(|name| name.to_string())
        .collect();
    let installed = install::install(
        client,
        state,
        InstallRequest {
            name: &entry.name,
            version: None,
            version_req: Some(&entry.version),
            registry_key: Some(&registry.root_key),
            approve: Some(approve),
            approve_hosts: Some(entry.allowed_hosts.clone()),
            // The manifest's limits apply whatever the package asks; the install state's
            // preset approval is not what the daemon runs under.
            approve_limits: Some("permissive".into()),
            now: warden_registry::protocol::now(),
            accept_publisher_change: false,
            blobs,
        },
    )
    .await;
    if let Err(error) = &installed {
        // Unreachable, or refusing this version: an installed version that still matches and
        // is not blocked keeps serving; anything else is a problem.
        let usable = state
            .installed(&entry.name)
            .ok()
            .flatten()
            .filter(|record| record.blocked.is_none())
            .filter(|record| {
                semver::Version::parse(&record.version).is_ok_and(|v| entry.version.matches(&v))
            });
        match usable {
            Some(record) if matches!(error, install::InstallError::Client(_)) => {
                warnings.push(format!(
                    "registry `{}` unreachable ({error}); `{}` serves its installed version {}",
                    registry.name, entry.name, record.version
                ))
            }
            _ => {
                let blocked = state
                    .installed(&entry.name)
                    .ok()
                    .flatten()
                    .and_then(|record| record.blocked.map(|reason| (record.version, reason)));
                return Err(match blocked {
                    Some((version, reason)) => Skip::Blocked(format!(
                        "{}@{version} is blocked by its registry: {reason}; and no other version that matches `{}` installs: {error}",
                        entry.name, entry.version
                    )),
                    None => Skip::Problem(format!("registry `{}`: {error}", registry.name)),
                });
            }
        }
    }
    // Not `load`: a node the install state holds disabled (it requests more than approved)
    // is compared with the manifest's grant below, which lists exactly what is missing.
    let record = state
        .installed(&entry.name)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("`{}` is not installed", entry.name))?;
    if let Some(reason) = &record.blocked {
        return Err(Skip::Blocked(format!(
            "{}@{} is blocked by its registry: {reason}",
            record.name, record.version
        )));
    }
    let package = state
        .package_of(&record)
        .map_err(|error| error.to_string())?;
    let version = semver::Version::parse(&record.version).map_err(|error| error.to_string())?;
    if !entry.version.matches(&version) {
        return Err(Skip::Problem(format!(
            "the installed version {} does not match `{}`",
            record.version, entry.version
        )));
    }
    let signers = state.installed_signers(&record).unwrap_or_default();
    if !signed_by_pinned_key(entry, &signers) {
        return Err(Skip::Problem(format!(
            "{}@{} carries no signature by a key in the node's `trusted_keys`",
            record.name, record.version
        )));
    }
    let origin = Origin::Registry {
        name: registry.name.clone(),
        id: record.registry.clone(),
        url: record.registry_url.clone(),
    };
    Ok((package, record.package_sha256.clone(), signers, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(grant: &str, hosts: &[&str]) -> NodeEntry {
        NodeEntry {
            name: "a".into(),
            version: semver::VersionReq::STAR,
            source: "local".into(),
            grant: grant.parse().unwrap_or(Capabilities::empty()),
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            preset: warden_host::Preset::Default,
            limits: warden_host::Limits::default_preset(),
            concurrency: 1,
            queue: 1,
            allow_wasi: false,
            trusted_keys: Vec::new(),
        }
    }

    #[test]
    fn every_capability_and_host_beyond_the_grant_is_its_own_problem() {
        let manifest = warden_package::Manifest {
            name: "a".into(),
            version: "1.0.0".into(),
            description: String::new(),
            publisher: "p".into(),
            capabilities: vec![
                "storage-read".into(),
                "http-get".into(),
                "storage-write".into(),
            ],
            allowed_hosts: vec!["api.example.com".into(), "x.example.com".into()],
            limits: "default".into(),
            wit: "0.1.0".into(),
            component_sha256: String::new(),
            component_bytes: 0,
        };
        let problems = grant_problems(&manifest, &entry("storage-read", &["api.example.com"]));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`http-get`"));
        assert!(problems[1].contains("`storage-write`"));
        assert!(problems[2].contains("`x.example.com`"));
        assert!(
            grant_problems(
                &manifest,
                &entry(
                    "storage-read,storage-write,http-get",
                    &["api.example.com", "x.example.com"]
                )
            )
            .is_empty()
        );
    }
}
