//! Why an install, a sync or a load fails: the registry could not be reached, a check refused
//! what it served ([`Refusal`], one variant per reason), the update is a publisher change, the
//! request was unusable, or the host's own state failed.

use crate::client::ClientError;
use crate::protocol::ProtocolError;
use std::path::PathBuf;
use warden_package::PackageError;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
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

/// A check that refused what a registry served, or what a host holds.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A signed document or the log does not verify.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A package file does not decode or verify.
    #[error(transparent)]
    Package(#[from] PackageError),

    // The root chain and the index.
    #[error(
        "the registry key given is not one pinned for {registry} ({}); a registry's key changes only through a root signed by the old and the new keys",
        .pinned.join(", ")
    )]
    KeyNotPinned {
        registry: String,
        pinned: Vec<String>,
    },
    #[error("no root of {registry} lists the key {key}; check the key you were given")]
    NoRootListsKey { registry: String, key: String },
    #[error("{url} serves a root chain that does not prove a registry identity: {source}")]
    NoIdentity {
        url: String,
        #[source]
        source: ProtocolError,
    },
    #[error(
        "{url} claims to be registry {id}, but its root chain does not hold version {version} that this host follows for it"
    )]
    RootNotHeld {
        url: String,
        id: String,
        version: u64,
    },
    #[error(
        "the registry served index version {served}, older than version {seen} seen before (a rollback)"
    )]
    Rollback { served: u64, seen: u64 },
    #[error("the registry served two different indexes as version {version}")]
    TwoIndexes { version: u64 },

    // The log.
    #[error("the registry's log is shorter than this host has seen")]
    LogShorter,
    #[error("the registry's log was rewritten since this host last saw it")]
    LogRewritten,
    #[error(
        "the registry's log was rewritten since this host last saw it (it does not end at the signed checkpoint)"
    )]
    LogRewrittenPastCheckpoint,
    #[error("the registry's log does not end at its signed checkpoint")]
    LogOffCheckpoint,
    #[error("the registry's log ends after {after} entries, its signed index says {signed}")]
    LogEndsEarly { after: u64, signed: u64 },
    #[error("the registry's log does not extend what this host verified before: {source}")]
    LogDoesNotExtend {
        #[source]
        source: ProtocolError,
    },
    #[error(
        "the registry's log page from entry {from} holds {held} of the {want} entries asked for ({bytes} bytes), and its signed index counts {log_size}: a page stops short only at {bound} bytes, so this server is stalling the fetch or lacks the log it signed"
    )]
    ShortPage {
        from: u64,
        held: usize,
        want: u64,
        bytes: usize,
        log_size: u64,
        bound: usize,
    },

    // The version chosen and its package.
    #[error("{name}@{version} was yanked")]
    Yanked { name: String, version: String },
    #[error("{name}@{version} is not in the registry's log")]
    NotInLog { name: String, version: String },
    /// An index entry's version that is not semantic versioning.
    #[error("{source}")]
    BadVersion {
        version: String,
        #[source]
        source: semver::Error,
    },
    #[error(
        "{name}@{version} is older than {highest}, which this host has installed before (a downgrade)"
    )]
    Downgrade {
        name: String,
        version: String,
        highest: semver::Version,
    },
    #[error(
        "{name}@{version} is installed with other bytes than the registry now lists: a version never changes"
    )]
    VersionChanged { name: String, version: String },
    #[error(
        "this index does not list the installed {name}@{version} as it was installed: no signed index has listed that combination"
    )]
    NotOneSnapshot { name: String, version: String },
    #[error("the file served for {name}@{version} is not the one the signed index lists")]
    FileNotIndexed { name: String, version: String },
    #[error("the package is {package}, the index lists {listed}")]
    OtherPackage {
        package: Box<Coordinates>,
        listed: Box<Coordinates>,
    },
    #[error("the package's manifest differs from its index entry")]
    ManifestDiffers,
    #[error(
        "{name}@{version} is not signed by a key of `{publisher}` that was valid when it was published (revoked or unknown key)"
    )]
    NoValidSigner {
        name: String,
        version: String,
        publisher: String,
    },

    // An installed node, when it is loaded to run.
    #[error("{name}@{version} is blocked: {reason}")]
    Blocked {
        name: String,
        version: String,
        reason: String,
    },
    #[error(
        "{name}@{version} is disabled until its new requests are approved: capabilities [{}], hosts [{}], limits {}; run `warden approve {name}`",
        .capabilities.join(","),
        .hosts.join(","),
        .limits.as_deref().unwrap_or("as approved")
    )]
    Disabled {
        name: String,
        version: String,
        capabilities: Vec<String>,
        hosts: Vec<String>,
        /// The preset requested beyond the approved one, if any.
        limits: Option<String>,
    },
    #[error("{} was altered after it was installed", .path.display())]
    Altered { path: PathBuf },
}

/// Which package a manifest or an index entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub name: String,
    pub version: String,
    pub publisher: String,
}

impl std::fmt::Display for Coordinates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} by `{}`", self.name, self.version, self.publisher)
    }
}

/// A failure of the host's own state, as the operator reads it.
pub(super) fn state<E: std::fmt::Display>(error: E) -> InstallError {
    InstallError::State(error.to_string())
}
