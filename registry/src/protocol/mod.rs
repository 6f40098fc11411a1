//! What the registry signs and what hosts verify: the index of everything it serves, the
//! hash-chained log, and the statements that add or rotate a publisher's key.
//!
//! Each signed document travels as the exact JSON text that was signed plus a signature over a
//! domain string and that text, so no re-serialization can change what a signature covers and
//! a signature made for one kind of document never verifies as another.

/// The key type that signs statements; re-exported for callers that sign them.
pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_host::package::{self, hex, unhex};

const INDEX_DOMAIN: &[u8] = b"warden registry index v1\n";
const LOG_DOMAIN: &[u8] = b"warden registry log entry v1\n";
const KEY_DOMAIN: &[u8] = b"warden publisher key v1\n";
const ROOT_DOMAIN: &[u8] = b"warden registry root v1\n";
const POSSESSION_DOMAIN: &[u8] = b"warden publisher key possession v1\n";
const REVOCATION_DOMAIN: &[u8] = b"warden publisher key revocation v1\n";

/// The largest signed index a host reads.
pub const MAX_INDEX_BYTES: usize = 32 * 1024 * 1024;
/// The largest log a host reads in one answer (the whole log, as old clients ask for it).
pub const MAX_LOG_BYTES: usize = 64 * 1024 * 1024;
/// The most entries one page of `GET /v1/log?from=N` holds.
pub const MAX_LOG_PAGE_ENTRIES: u64 = 1000;
/// A page of the log stops growing once it holds this many bytes of JSON (it always holds at
/// least one entry); hosts read a page up to twice this.
pub const MAX_LOG_PAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the {0} is malformed: {1}")]
    Malformed(&'static str, String),
    #[error("the {0} signature does not verify with the registry's key")]
    BadSignature(&'static str),
    #[error("the index expired at {expired} (now {now}); the registry may be frozen or replayed")]
    Expired { expired: u64, now: u64 },
    #[error("the log does not chain: {0}")]
    BrokenLog(String),
    #[error("the registry's root {0}")]
    BadRoot(String),
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A JSON document and the registry's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The exact JSON text that was signed.
    pub signed: String,
    /// Hex of the Ed25519 signature over the domain string and `signed`.
    pub signature: String,
}

fn sign(domain: &[u8], text: String, key: &SigningKey) -> Signed {
    let mut message = domain.to_vec();
    message.extend_from_slice(text.as_bytes());
    Signed {
        signature: hex(&key.sign(&message).to_bytes()),
        signed: text,
    }
}

fn verify(
    domain: &[u8],
    what: &'static str,
    signed: &Signed,
    key: &VerifyingKey,
) -> Result<(), ProtocolError> {
    let bytes = unhex::<64>(&signed.signature).ok_or(ProtocolError::BadSignature(what))?;
    let mut message = domain.to_vec();
    message.extend_from_slice(signed.signed.as_bytes());
    key.verify_strict(&message, &Signature::from_bytes(&bytes))
        .map_err(|_| ProtocolError::BadSignature(what))
}

/// One package version as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub publisher: String,
    /// SHA-256 of the whole package file.
    pub package_sha256: String,
    pub package_bytes: u64,
    /// SHA-256 of the component inside it.
    pub component_sha256: String,
    pub capabilities: Vec<String>,
    /// The public keys whose signatures the registry accepted.
    pub signers: Vec<String>,
    pub published_at: u64,
    pub yanked: bool,
}

/// A publisher's key as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub publisher: String,
    pub public_key: String,
    pub added_at: u64,
    /// Signatures this key made after this time are refused.
    pub revoked_at: Option<u64>,
}

/// Everything the registry serves at one moment, signed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The registry's public key (its identity).
    pub registry: String,
    /// Grows by one with every change; hosts refuse one lower than they have seen.
    pub version: u64,
    pub issued_at: u64,
    /// Hosts refuse the index after this time, so a frozen registry cannot hold them back.
    pub expires_at: u64,
    /// The signed checkpoint of the log: its length and the hash of its last entry.
    pub log_size: u64,
    pub log_head: String,
    pub packages: Vec<IndexEntry>,
    pub keys: Vec<KeyEntry>,
}

impl Index {
    pub fn sign(&self, key: &SigningKey) -> Signed {
        sign(
            INDEX_DOMAIN,
            serde_json::to_string(self).unwrap_or_default(),
            key,
        )
    }

    /// Checks the signature first, then parses, then checks that it is for this registry and
    /// has not expired at `now`.
    pub fn verify(signed: &Signed, key: &VerifyingKey, now: u64) -> Result<Index, ProtocolError> {
        verify(INDEX_DOMAIN, "index", signed, key)?;
        let index: Index = serde_json::from_str(&signed.signed)
            .map_err(|error| ProtocolError::Malformed("index", error.to_string()))?;
        if index.registry != hex(key.as_bytes()) {
            return Err(ProtocolError::Malformed(
                "index",
                "it names another registry".into(),
            ));
        }
        if now >= index.expires_at {
            return Err(ProtocolError::Expired {
                expired: index.expires_at,
                now,
            });
        }
        Ok(index)
    }

    /// Verifies with whichever key of `root` the index names: its signature by that key first,
    /// then that it is unexpired at `now`.
    pub fn verify_with_root(
        signed: &Signed,
        root: &Root,
        now: u64,
    ) -> Result<Index, ProtocolError> {
        let mut last = ProtocolError::BadSignature("index");
        for key in &root.keys {
            let Ok(key) = package::verifying_key_from_hex(key) else {
                continue;
            };
            match Index::verify(signed, &key, now) {
                Ok(index) => return Ok(index),
                Err(ProtocolError::BadSignature(what)) => last = ProtocolError::BadSignature(what),
                Err(other) => return Err(other),
            }
        }
        Err(last)
    }

    pub fn entry(&self, name: &str, version: &str) -> Option<&IndexEntry> {
        self.packages
            .iter()
            .find(|entry| entry.name == name && entry.version == version)
    }

    pub fn key(&self, public_key: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|key| key.public_key == public_key)
    }
}

/// What happened, as the log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    Publish {
        name: String,
        version: String,
        publisher: String,
        package_sha256: String,
    },
    Yank {
        name: String,
        version: String,
    },
    KeyAdded {
        publisher: String,
        public_key: String,
        /// The existing key that signed this one in, for a rotation, and its signature over
        /// the key statement, so anyone reading the log can check the rotation.
        signed_by: Option<String>,
        signature: Option<String>,
        /// The new key's own signature over the possession statement (registry, publisher,
        /// key): nobody registers a key whose secret they do not hold.
        possession: String,
    },
    KeyRevoked {
        publisher: String,
        public_key: String,
        revoked_at: u64,
        /// For a revocation back-dated before the entry's time: another current key of the
        /// publisher, and its signature over the revocation statement.
        signed_by: Option<String>,
        signature: Option<String>,
        /// A back-dated revocation an admin made without a publisher key's signature: the
        /// registry operator's word, marked as such so hosts can tell it apart.
        by_admin: bool,
    },
}

/// One entry of the append-only log; `previous` is the hash of the entry before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub sequence: u64,
    pub time: u64,
    pub previous: String,
    pub event: Event,
}

/// The hash before the first entry.
pub const LOG_ROOT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl LogEntry {
    pub fn hash(&self) -> String {
        let mut bytes = LOG_DOMAIN.to_vec();
        bytes.extend(serde_json::to_vec(self).unwrap_or_default());
        sha256_hex(&bytes)
    }
}

/// Checks that `entries` chain from the root and end at `head` after `size` entries.
pub fn verify_log(entries: &[LogEntry], size: u64, head: &str) -> Result<(), ProtocolError> {
    let previous = verify_page(entries, 0, LOG_ROOT)?;
    if entries.len() as u64 != size || previous != head {
        return Err(ProtocolError::BrokenLog(format!(
            "{} entries ending at {previous}, the signed checkpoint says {size} ending at {head}",
            entries.len()
        )));
    }
    Ok(())
}

/// Checks that `page` holds entries `from`, `from + 1`, … and chains from `previous` (the hash
/// of entry `from - 1`, or `LOG_ROOT`); returns the hash of its last entry. A page proves
/// nothing alone: only a signed checkpoint it ends at (`verify_log`, or the host's own check)
/// makes its entries the registry's.
pub fn verify_page(page: &[LogEntry], from: u64, previous: &str) -> Result<String, ProtocolError> {
    let mut previous = previous.to_string();
    for (offset, entry) in page.iter().enumerate() {
        let position = from.saturating_add(offset as u64);
        if entry.sequence != position {
            return Err(ProtocolError::BrokenLog(format!(
                "entry {position} says it is number {}",
                entry.sequence
            )));
        }
        if entry.previous != previous {
            return Err(ProtocolError::BrokenLog(format!(
                "entry {position} does not follow the one before it"
            )));
        }
        previous = entry.hash();
    }
    Ok(previous)
}

/// The statement by which a publisher's existing key signs in a new one (a rotation).
pub fn key_statement(publisher: &str, new_key: &str) -> Vec<u8> {
    let mut bytes = KEY_DOMAIN.to_vec();
    bytes.extend(serde_json::to_vec(&(publisher, new_key)).unwrap_or_default());
    bytes
}

pub fn sign_key_statement(publisher: &str, new_key: &str, by: &SigningKey) -> String {
    hex(&by.sign(&key_statement(publisher, new_key)).to_bytes())
}

pub fn verify_key_statement(
    publisher: &str,
    new_key: &str,
    by: &VerifyingKey,
    signature: &str,
) -> bool {
    unhex::<64>(signature).is_some_and(|bytes| {
        by.verify_strict(
            &key_statement(publisher, new_key),
            &Signature::from_bytes(&bytes),
        )
        .is_ok()
    })
}

/// The statement by which a new key proves its holder registers it: it names the registry (its
/// `registry_id`), the publisher and the key, so a proof made for one registry or publisher is
/// worth nothing at another.
pub fn possession_statement(registry: &str, publisher: &str, key: &str) -> Vec<u8> {
    let mut bytes = POSSESSION_DOMAIN.to_vec();
    bytes.extend(serde_json::to_vec(&(registry, publisher, key)).unwrap_or_default());
    bytes
}

/// The new key's signature over its possession statement.
pub fn sign_possession(registry: &str, publisher: &str, key: &SigningKey) -> String {
    let public = hex(key.verifying_key().as_bytes());
    hex(&key
        .sign(&possession_statement(registry, publisher, &public))
        .to_bytes())
}

/// Whether `signature` is `key`'s own signature over its possession statement.
pub fn verify_possession(registry: &str, publisher: &str, key: &str, signature: &str) -> bool {
    verifying_key_from_hex(key).is_ok_and(|verifying| {
        verify_bytes(
            &possession_statement(registry, publisher, key),
            &verifying,
            signature,
        )
    })
}

/// The statement by which one of a publisher's keys revokes another from `revoked_at` on.
pub fn revocation_statement(
    registry: &str,
    publisher: &str,
    key: &str,
    revoked_at: u64,
) -> Vec<u8> {
    let mut bytes = REVOCATION_DOMAIN.to_vec();
    bytes.extend(serde_json::to_vec(&(registry, publisher, key, revoked_at)).unwrap_or_default());
    bytes
}

pub fn sign_revocation(
    registry: &str,
    publisher: &str,
    key: &str,
    revoked_at: u64,
    by: &SigningKey,
) -> String {
    hex(&by
        .sign(&revocation_statement(registry, publisher, key, revoked_at))
        .to_bytes())
}

pub fn verify_revocation(
    registry: &str,
    publisher: &str,
    key: &str,
    revoked_at: u64,
    by: &VerifyingKey,
    signature: &str,
) -> bool {
    verify_bytes(
        &revocation_statement(registry, publisher, key, revoked_at),
        by,
        signature,
    )
}

fn verify_bytes(message: &[u8], by: &VerifyingKey, signature: &str) -> bool {
    unhex::<64>(signature).is_some_and(|bytes| {
        by.verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    })
}

pub use package::verifying_key_from_hex;

/// A package version as the log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub publisher: String,
    pub package_sha256: String,
    pub published_at: u64,
    pub yanked: bool,
}

/// The state the log describes: every publisher key and every version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// By public key.
    pub keys: std::collections::BTreeMap<String, KeyEntry>,
    /// Which key signed each rotated-in key in (a publisher's first key, and a key an admin
    /// registered with every key revoked, have none).
    pub signed_in_by: std::collections::BTreeMap<String, String>,
    /// Keys a back-dated revocation voided from their start ([`voided_by_revocation`]).
    pub voided: std::collections::BTreeSet<String>,
    /// By (name, version).
    pub versions: std::collections::BTreeMap<(String, String), Published>,
}

/// Each publisher's keys that are not revoked, so a signature is checked in O(log n).
type CurrentKeys<'a> = std::collections::BTreeMap<&'a str, std::collections::BTreeSet<String>>;

/// Replays the log of the registry `registry` (its [`registry_id`]), checking every key event:
/// each added key's proof of possession, each rotation's signature by a key of the same
/// publisher that was current at that point, and each back-dated revocation's signature by
/// another current key (or its mark as an admin's). A key added without a rotation signature
/// is a publisher's first key, or one an admin added after all its keys were revoked. What the
/// registry's tables and signed index say must equal what this returns. Entry times never go
/// backwards.
pub fn replay(entries: &[LogEntry], registry: &str) -> Result<Replayed, ProtocolError> {
    let broken = |entry: &LogEntry, why: String| {
        ProtocolError::BrokenLog(format!("entry {}: {why}", entry.sequence))
    };
    let mut state = Replayed::default();
    // A name belongs to the publisher who first published it.
    let mut owners: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut current_keys = CurrentKeys::new();
    let mut last_time = 0;
    for entry in entries {
        // Times only move forward: otherwise a registry could back-date a publish below its
        // key's revocation, and hosts would take it as signed while the key was valid.
        if entry.time < last_time {
            return Err(broken(
                entry,
                format!(
                    "its time {} is before the time {last_time} of the entry before it",
                    entry.time
                ),
            ));
        }
        last_time = entry.time;
        match &entry.event {
            Event::KeyAdded { .. } => {
                replay_key_added(entry, registry, &mut state, &mut current_keys)
                    .map_err(|why| broken(entry, why))?;
            }
            Event::KeyRevoked { .. } => {
                replay_key_revoked(entry, registry, &mut state, &mut current_keys)
                    .map_err(|why| broken(entry, why))?;
            }
            Event::Publish {
                name,
                version,
                publisher,
                package_sha256,
            } => {
                let owner = *owners.entry(name.as_str()).or_insert(publisher.as_str());
                if owner != publisher {
                    return Err(broken(
                        entry,
                        format!("`{publisher}` publishes `{name}`, which belongs to `{owner}`"),
                    ));
                }
                let published = Published {
                    publisher: publisher.clone(),
                    package_sha256: package_sha256.clone(),
                    published_at: entry.time,
                    yanked: false,
                };
                if state
                    .versions
                    .insert((name.clone(), version.clone()), published)
                    .is_some()
                {
                    return Err(broken(
                        entry,
                        format!("{name}@{version} is published twice"),
                    ));
                }
            }
            Event::Yank { name, version } => {
                match state.versions.get_mut(&(name.clone(), version.clone())) {
                    Some(published) if !published.yanked => published.yanked = true,
                    _ => {
                        return Err(broken(
                            entry,
                            format!(
                                "yanks {name}@{version}, which is not published or yanked already"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(state)
}

/// A `KeyAdded` entry: its possession proof, and for a publisher with current keys, the
/// rotation signature of one of them.
fn replay_key_added<'a>(
    entry: &'a LogEntry,
    registry: &str,
    state: &mut Replayed,
    current_keys: &mut CurrentKeys<'a>,
) -> Result<(), String> {
    let Event::KeyAdded {
        publisher,
        public_key,
        signed_by,
        signature,
        possession,
    } = &entry.event
    else {
        return Ok(());
    };
    if state.keys.contains_key(public_key) {
        return Err("a key is added twice".into());
    }
    if !verify_possession(registry, publisher, public_key, possession) {
        return Err(format!(
            "{public_key} was added to `{publisher}` without its own signature proving possession for this registry"
        ));
    }
    let current = current_keys.get(publisher.as_str());
    match (signed_by, signature) {
        (Some(by), Some(signature)) => {
            let valid = current.is_some_and(|keys| keys.contains(by))
                && verifying_key_from_hex(by)
                    .is_ok_and(|by| verify_key_statement(publisher, public_key, &by, signature));
            if !valid {
                return Err(format!(
                    "the rotation to {public_key} is not signed by a current key of `{publisher}`"
                ));
            }
        }
        (None, None) if current.is_none_or(|keys| keys.is_empty()) => {}
        _ => {
            return Err(format!(
                "{public_key} was added to `{publisher}` without a current key's signature"
            ));
        }
    }
    current_keys
        .entry(publisher.as_str())
        .or_default()
        .insert(public_key.clone());
    if let Some(by) = signed_by {
        state.signed_in_by.insert(public_key.clone(), by.clone());
    }
    state.keys.insert(
        public_key.clone(),
        KeyEntry {
            publisher: publisher.clone(),
            public_key: public_key.clone(),
            added_at: entry.time,
            revoked_at: None,
        },
    );
    Ok(())
}

/// A `KeyRevoked` entry: a current key of the publisher; if back-dated (before the entry's
/// time), signed by another current key of the publisher or marked as an admin's.
fn replay_key_revoked(
    entry: &LogEntry,
    registry: &str,
    state: &mut Replayed,
    current_keys: &mut CurrentKeys<'_>,
) -> Result<(), String> {
    let Event::KeyRevoked {
        publisher,
        public_key,
        revoked_at,
        signed_by,
        signature,
        by_admin,
    } = &entry.event
    else {
        return Ok(());
    };
    let current = current_keys.get(publisher.as_str());
    if !current.is_some_and(|keys| keys.contains(public_key)) {
        return Err(format!(
            "revokes {public_key}, which is not a current key of `{publisher}`"
        ));
    }
    match (signed_by, signature, by_admin) {
        (Some(by), Some(signature), false) => {
            let valid = by != public_key
                && current.is_some_and(|keys| keys.contains(by))
                && verifying_key_from_hex(by).is_ok_and(|by| {
                    verify_revocation(registry, publisher, public_key, *revoked_at, &by, signature)
                });
            if !valid {
                return Err(format!(
                    "the revocation of {public_key} is not signed by another current key of `{publisher}`"
                ));
            }
        }
        (None, None, true) => {}
        (None, None, false) if *revoked_at >= entry.time => {}
        _ => {
            return Err(format!(
                "revokes {public_key} back to {revoked_at}, before the entry's time {}, without another current key's signature or an admin's mark",
                entry.time
            ));
        }
    }
    if let Some(keys) = current_keys.get_mut(publisher.as_str()) {
        keys.remove(public_key);
    }
    if let Some(key) = state.keys.get_mut(public_key) {
        key.revoked_at = Some(*revoked_at);
    }
    let spared = if *by_admin {
        None
    } else {
        signed_by.as_deref()
    };
    for (voided, at) in voided_by_revocation(state, public_key, *revoked_at, spared) {
        if let Some(keys) = current_keys.get_mut(publisher.as_str()) {
            keys.remove(&voided);
        }
        if let Some(key) = state.keys.get_mut(&voided) {
            key.revoked_at = Some(at);
        }
        state.voided.insert(voided);
    }
    Ok(())
}

/// The keys a revocation of `key` back to `revoked_at` voids, with the revocation time each
/// then gets. A key `key` signed in after `revoked_at` was signed in by a key already
/// compromised, and so was every key signed in below it, at any time: each is revoked from the
/// moment it was added, so nothing it signed stays valid. A rotation in the same second as the
/// revocation time stands (the log orders the rotation first, and rotating to a new key and
/// revoking the old one at once is routine). The key that signed the revocation, if any, is
/// `spared` with everything below it: its holder vouches for it (a thief holding it could
/// revoke the old key anyway); an admin's back-dating spares nothing. The registry applies this
/// to its keys when it records the revocation, and every replay (the registry's own, `registry
/// check`, hosts') derives the same, so an index that leaves such a key valid is refused.
pub fn voided_by_revocation(
    state: &Replayed,
    key: &str,
    revoked_at: u64,
    spared: Option<&str>,
) -> Vec<(String, u64)> {
    let mut voided: Vec<(String, u64)> = Vec::new();
    // A key, and the time after which what it signed in is void (none: all of it).
    let mut pending: Vec<(String, Option<u64>)> = vec![(key.to_string(), Some(revoked_at))];
    while let Some((signer, void_after)) = pending.pop() {
        for (child, by) in &state.signed_in_by {
            if *by != signer
                || spared == Some(child.as_str())
                || voided.iter().any(|(done, _)| done == child)
            {
                continue;
            }
            let Some(entry) = state.keys.get(child) else {
                continue;
            };
            if void_after.is_some_and(|after| entry.added_at <= after) {
                continue;
            }
            let at = entry.added_at;
            if entry.revoked_at.is_none_or(|current| current > at) {
                voided.push((child.clone(), at));
            }
            // Everything a voided key signed in is void, whenever it was signed.
            pending.push((child.clone(), None));
        }
    }
    voided
}

/// Checks that an index lists exactly the keys and versions its log describes.
pub fn index_matches_log(index: &Index, replayed: &Replayed) -> Result<(), ProtocolError> {
    let keys: std::collections::BTreeMap<String, KeyEntry> = index
        .keys
        .iter()
        .map(|key| (key.public_key.clone(), key.clone()))
        .collect();
    if keys.len() != index.keys.len() || keys != replayed.keys {
        return Err(ProtocolError::BrokenLog(
            "the index's publisher keys are not the ones its log adds and revokes".into(),
        ));
    }
    let listed: std::collections::BTreeSet<(&str, &str)> = index
        .packages
        .iter()
        .map(|entry| (entry.name.as_str(), entry.version.as_str()))
        .collect();
    if listed.len() != index.packages.len() || index.packages.len() != replayed.versions.len() {
        return Err(ProtocolError::BrokenLog(
            "the index lists other versions than its log publishes".into(),
        ));
    }
    for entry in &index.packages {
        let logged = replayed
            .versions
            .get(&(entry.name.clone(), entry.version.clone()));
        let same = logged.is_some_and(|logged| {
            logged.publisher == entry.publisher
                && logged.package_sha256 == entry.package_sha256
                && logged.published_at == entry.published_at
                && logged.yanked == entry.yanked
        });
        if !same {
            return Err(ProtocolError::BrokenLog(format!(
                "the index's {}@{} is not what its log records",
                entry.name, entry.version
            )));
        }
    }
    Ok(())
}

/// The registry's root of trust: the keys that may sign its index, and how many of them must
/// sign the next root. Version 1 is the key a host pins first; every later version must be
/// signed by a threshold of the keys of the version before it and of its own, and no version
/// can be skipped. With one key and a threshold of one (the default) whoever holds that key
/// controls the next root; a root with offline keys and a threshold above one keeps a stolen
/// signing key from handing the registry to someone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub version: u64,
    pub keys: Vec<String>,
    pub threshold: usize,
    pub issued_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSignature {
    pub public_key: String,
    pub signature: String,
}

/// A root document and the signatures over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRoot {
    pub signed: String,
    pub signatures: Vec<RootSignature>,
}

impl Root {
    pub fn sign(&self, keys: &[&SigningKey]) -> SignedRoot {
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut message = ROOT_DOMAIN.to_vec();
        message.extend_from_slice(text.as_bytes());
        SignedRoot {
            signatures: keys
                .iter()
                .map(|key| RootSignature {
                    public_key: hex(key.verifying_key().as_bytes()),
                    signature: hex(&key.sign(&message).to_bytes()),
                })
                .collect(),
            signed: text,
        }
    }

    pub fn parse(signed: &SignedRoot) -> Result<Root, ProtocolError> {
        let root: Root = serde_json::from_str(&signed.signed)
            .map_err(|error| ProtocolError::Malformed("root", error.to_string()))?;
        for key in &root.keys {
            let canonical =
                verifying_key_from_hex(key).is_ok_and(|parsed| hex(parsed.as_bytes()) == *key);
            if !canonical {
                return Err(ProtocolError::BadRoot(format!(
                    "version {} lists `{key}`, which is not a public key in 64 lowercase hex digits",
                    root.version
                )));
            }
        }
        let mut distinct = root.keys.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != root.keys.len() {
            return Err(ProtocolError::BadRoot(format!(
                "version {} lists a key twice",
                root.version
            )));
        }
        if root.keys.is_empty() || root.threshold == 0 || root.threshold > root.keys.len() {
            return Err(ProtocolError::BadRoot(format!(
                "version {} needs {} of {} keys, which can never or always be met",
                root.version,
                root.threshold,
                root.keys.len()
            )));
        }
        Ok(root)
    }

    /// How many distinct keys of `self` made a valid signature over `signed`. A key that
    /// signed twice, or is listed twice, counts once.
    pub fn signers_of(&self, signed: &SignedRoot) -> usize {
        let mut message = ROOT_DOMAIN.to_vec();
        message.extend_from_slice(signed.signed.as_bytes());
        let mut counted: Vec<String> = Vec::new();
        for entry in &signed.signatures {
            if counted.contains(&entry.public_key) || !self.keys.contains(&entry.public_key) {
                continue;
            }
            let valid = package::verifying_key_from_hex(&entry.public_key)
                .ok()
                .zip(unhex::<64>(&entry.signature))
                .is_some_and(|(key, bytes)| {
                    key.verify_strict(&message, &Signature::from_bytes(&bytes))
                        .is_ok()
                });
            if valid {
                counted.push(entry.public_key.clone());
            }
        }
        counted.len()
    }

    /// Accepts `next` as the root after `self`: exactly one version later, and signed by a
    /// threshold of this root's keys and a threshold of its own.
    pub fn verify_next(&self, next: &SignedRoot) -> Result<Root, ProtocolError> {
        let root = Root::parse(next)?;
        if root.version != self.version + 1 {
            return Err(ProtocolError::BadRoot(format!(
                "version {} cannot follow version {}: versions are never skipped",
                root.version, self.version
            )));
        }
        let old = self.signers_of(next);
        if old < self.threshold {
            return Err(ProtocolError::BadRoot(format!(
                "version {} is signed by {old} of the previous root's keys, {} are required",
                root.version, self.threshold
            )));
        }
        let new = root.signers_of(next);
        if new < root.threshold {
            return Err(ProtocolError::BadRoot(format!(
                "version {} is signed by {new} of its own keys, {} are required",
                root.version, root.threshold
            )));
        }
        Ok(root)
    }

    /// Accepts `signed` as a root an operator vouched for by giving one of its keys: it must
    /// list that key, be signed by it, and carry a threshold of its own keys' signatures.
    pub fn verify_pinned(signed: &SignedRoot, pinned_key: &str) -> Result<Root, ProtocolError> {
        let root = Root::parse(signed)?;
        if !root.keys.iter().any(|key| key == pinned_key) {
            return Err(ProtocolError::BadRoot(
                "does not list the pinned key".into(),
            ));
        }
        // Listing the key proves nothing (anyone can write it down): the key itself must have
        // signed this root.
        let only_pinned = Root {
            keys: vec![pinned_key.to_string()],
            threshold: 1,
            ..root.clone()
        };
        if only_pinned.signers_of(signed) == 0 {
            return Err(ProtocolError::BadRoot(format!(
                "version {} is not signed by the pinned key",
                root.version
            )));
        }
        if root.signers_of(signed) < root.threshold {
            return Err(ProtocolError::BadRoot(format!(
                "version {} lacks a threshold of its own signatures",
                root.version
            )));
        }
        Ok(root)
    }
}

/// A registry's identity: the first key of its root version 1 (the `registry.pub` it was created
/// with), in hex. It stays the same across key rotations and whatever URL the registry is
/// reached at, so hosts key what they remember of a registry by it, and possession and
/// revocation statements name it.
///
/// `roots` must be the whole chain from version 1: version 1 signed by that first key itself
/// (so no chain can claim another registry's identity without its key) and by a threshold of
/// its own keys, and every later root following the one before (`Root::verify_next`). A host
/// that trusts a later root must still check that the chain holds that root.
pub fn registry_id(roots: &[SignedRoot]) -> Result<String, ProtocolError> {
    let first = roots
        .first()
        .ok_or_else(|| ProtocolError::BadRoot("chain is empty".into()))?;
    let root = Root::parse(first)?;
    if root.version != 1 {
        return Err(ProtocolError::BadRoot(format!(
            "chain starts at version {}, not 1",
            root.version
        )));
    }
    let id = root
        .keys
        .first()
        .cloned()
        .ok_or_else(|| ProtocolError::BadRoot("version 1 lists no key".into()))?;
    Root::verify_pinned(first, &id).map_err(|_| {
        ProtocolError::BadRoot("version 1 is not signed by its own first key".into())
    })?;
    let mut current = root;
    for signed in &roots[1..] {
        current = current.verify_next(signed)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn index(registry: &SigningKey, expires_at: u64) -> Index {
        Index {
            registry: hex(registry.verifying_key().as_bytes()),
            version: 3,
            issued_at: 10,
            expires_at,
            log_size: 0,
            log_head: LOG_ROOT.into(),
            packages: vec![],
            keys: vec![],
        }
    }

    #[test]
    fn index_signature_binds_the_text_and_the_registry() {
        let registry = key(1);
        let signed = index(&registry, 100).sign(&registry);
        assert!(Index::verify(&signed, &registry.verifying_key(), 50).is_ok());
        let mut altered = signed.clone();
        altered.signed = altered.signed.replace("\"version\":3", "\"version\":4");
        assert_eq!(
            Index::verify(&altered, &registry.verifying_key(), 50),
            Err(ProtocolError::BadSignature("index"))
        );
        assert_eq!(
            Index::verify(&signed, &key(2).verifying_key(), 50),
            Err(ProtocolError::BadSignature("index"))
        );
        // Signed by the right key but naming another registry.
        let mut other = index(&key(2), 100);
        other.version = 1;
        let forged = other.sign(&registry);
        assert!(matches!(
            Index::verify(&forged, &registry.verifying_key(), 50),
            Err(ProtocolError::Malformed(..))
        ));
    }

    #[test]
    fn an_expired_index_is_refused() {
        let registry = key(1);
        let signed = index(&registry, 100).sign(&registry);
        assert_eq!(
            Index::verify(&signed, &registry.verifying_key(), 100),
            Err(ProtocolError::Expired {
                expired: 100,
                now: 100
            })
        );
    }

    #[test]
    fn a_signature_under_another_domain_is_refused() {
        let registry = key(1);
        let text = serde_json::to_string(&index(&registry, 100)).unwrap_or_default();
        // The same text signed as a key statement must not pass as an index.
        let signed = sign(KEY_DOMAIN, text, &registry);
        assert_eq!(
            Index::verify(&signed, &registry.verifying_key(), 50),
            Err(ProtocolError::BadSignature("index"))
        );
    }

    #[test]
    fn the_log_chains() {
        let mut entries = Vec::new();
        let mut previous = LOG_ROOT.to_string();
        for sequence in 0..3 {
            let entry = LogEntry {
                sequence,
                time: sequence,
                previous: previous.clone(),
                event: Event::Yank {
                    name: "a".into(),
                    version: format!("1.0.{sequence}"),
                },
            };
            previous = entry.hash();
            entries.push(entry);
        }
        assert!(verify_log(&entries, 3, &previous).is_ok());
        assert!(verify_log(&entries[..2], 3, &previous).is_err());
        let mut altered = entries.clone();
        altered[1].time = 99;
        assert!(verify_log(&altered, 3, &previous).is_err());
        let mut dropped = entries.clone();
        dropped.remove(1);
        assert!(verify_log(&dropped, 2, &previous).is_err());
    }

    fn root(version: u64, keys: &[&SigningKey], threshold: usize) -> Root {
        Root {
            version,
            keys: keys
                .iter()
                .map(|key| hex(key.verifying_key().as_bytes()))
                .collect(),
            threshold,
            issued_at: 0,
        }
    }

    #[test]
    fn a_new_root_needs_a_threshold_of_old_and_new_keys() {
        let (a, b, c) = (key(1), key(2), key(3));
        let first = root(1, &[&a], 1);
        let second = root(2, &[&b, &c], 2);
        assert_eq!(
            first.verify_next(&second.sign(&[&a, &b, &c])),
            Ok(second.clone())
        );
        // The old key alone (a thief's rotation), the new keys alone, or too few new ones.
        for signers in [vec![&a], vec![&b, &c], vec![&a, &b]] {
            assert!(
                matches!(
                    first.verify_next(&second.sign(&signers)),
                    Err(ProtocolError::BadRoot(_))
                ),
                "{}",
                signers.len()
            );
        }
        // A key that signed twice counts once toward the threshold.
        let mut doubled = second.sign(&[&a, &b]);
        doubled.signatures.push(doubled.signatures[1].clone());
        assert!(first.verify_next(&doubled).is_err());
        // So does a key listed twice in the root.
        let mut listed_twice = root(2, &[&b, &b], 2);
        listed_twice.threshold = 2;
        assert!(first.verify_next(&listed_twice.sign(&[&a, &b])).is_err());
    }

    #[test]
    fn root_versions_cannot_be_skipped_or_replayed() {
        let (a, b) = (key(1), key(2));
        let first = root(1, &[&a], 1);
        let third = root(3, &[&b], 1);
        assert!(matches!(
            first.verify_next(&third.sign(&[&a, &b])),
            Err(ProtocolError::BadRoot(m)) if m.contains("skipped")
        ));
        assert!(first.verify_next(&first.sign(&[&a])).is_err());
        // An impossible threshold is refused outright.
        let impossible = root(2, &[&b], 2);
        assert!(first.verify_next(&impossible.sign(&[&a, &b])).is_err());
    }

    #[test]
    fn an_index_verifies_with_any_key_of_its_root() {
        let (a, b) = (key(1), key(2));
        let both = root(2, &[&a, &b], 1);
        let signed = index(&b, 100).sign(&b);
        assert!(Index::verify_with_root(&signed, &both, 50).is_ok());
        assert_eq!(
            Index::verify_with_root(&signed, &root(1, &[&a], 1), 50),
            Err(ProtocolError::BadSignature("index"))
        );
    }

    fn logged(events: Vec<Event>) -> Vec<LogEntry> {
        let mut entries: Vec<LogEntry> = Vec::new();
        for event in events {
            entries.push(LogEntry {
                sequence: entries.len() as u64,
                time: entries.len() as u64,
                previous: entries
                    .last()
                    .map(LogEntry::hash)
                    .unwrap_or(LOG_ROOT.into()),
                event,
            });
        }
        entries
    }

    const REGISTRY: &str = "registry-one";

    fn added(publisher: &str, new: &SigningKey, by: Option<&SigningKey>) -> Event {
        let public_key = hex(new.verifying_key().as_bytes());
        Event::KeyAdded {
            publisher: publisher.into(),
            signature: by.map(|by| sign_key_statement(publisher, &public_key, by)),
            signed_by: by.map(|by| hex(by.verifying_key().as_bytes())),
            possession: sign_possession(REGISTRY, publisher, new),
            public_key,
        }
    }

    fn revoked(publisher: &str, key: &SigningKey, at: u64) -> Event {
        Event::KeyRevoked {
            publisher: publisher.into(),
            public_key: hex(key.verifying_key().as_bytes()),
            revoked_at: at,
            signed_by: None,
            signature: None,
            by_admin: false,
        }
    }

    #[test]
    fn a_back_dated_revocation_voids_the_keys_its_key_signed_in_after_it() {
        // Times are positions: a at 0, b at 1 (signed in by a), c at 2 (by b), d at 3 (by a),
        // e at 4 (by c); then a is revoked back to 1 by an admin at 5.
        let (a, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
        let public = |key: &SigningKey| hex(key.verifying_key().as_bytes());
        let by_admin = |key: &SigningKey, at: u64| Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: public(key),
            revoked_at: at,
            signed_by: None,
            signature: None,
            by_admin: true,
        };
        let events = vec![
            added("acme", &a, None),
            added("acme", &b, Some(&a)),
            added("acme", &c, Some(&b)),
            added("acme", &d, Some(&a)),
            added("acme", &e, Some(&c)),
            by_admin(&a, 1),
        ];
        let state = replay(&logged(events.clone()), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(revoked_at(&a), Some(1));
        // b was signed in at 1, the revocation's own second: it stands, and so does c below it.
        assert_eq!(revoked_at(&b), None);
        assert_eq!(revoked_at(&c), None);
        // d was signed in by a at 3, after a was compromised: void from its start.
        assert_eq!(revoked_at(&d), Some(3));
        // Back to 0 instead: b is void from 1, and everything below it whenever it came: c
        // from 2, e from 4; d from 3.
        let mut earlier = events.clone();
        earlier[5] = by_admin(&a, 0);
        let state = replay(&logged(earlier.clone()), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(
            [&b, &c, &d, &e].map(revoked_at),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        // Signed by b instead of an admin's mark: b vouches for itself and what it signed in
        // (c, e); d is still void.
        let mut vouched = earlier.clone();
        vouched[5] = Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: public(&a),
            revoked_at: 0,
            signed_by: Some(public(&b)),
            signature: Some(sign_revocation(REGISTRY, "acme", &public(&a), 0, &b)),
            by_admin: false,
        };
        let state = replay(&logged(vouched), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(
            [&b, &c, &d, &e].map(revoked_at),
            [None, None, Some(3), None]
        );
        assert_eq!(state.voided, [public(&d)].into_iter().collect());
        // A voided key is no longer current: it cannot sign a rotation or be revoked again.
        let mut after = earlier.clone();
        after.push(added("acme", &key(6), Some(&d)));
        assert!(replay(&logged(after), REGISTRY).is_err());
        let mut again = earlier;
        again.push(revoked("acme", &d, 7));
        assert!(replay(&logged(again), REGISTRY).is_err());
    }

    #[test]
    fn replaying_the_log_checks_every_rotation() {
        let (a, b, c) = (key(1), key(2), key(3));
        let good = logged(vec![added("acme", &a, None), added("acme", &b, Some(&a))]);
        let state = replay(&good, REGISTRY).unwrap_or_default();
        assert_eq!(state.keys.len(), 2);
        // A second key with no signature, or signed by a key of another publisher.
        assert!(
            replay(
                &logged(vec![added("acme", &a, None), added("acme", &b, None)]),
                REGISTRY
            )
            .is_err()
        );
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    added("evil", &c, None),
                    added("acme", &b, Some(&c)),
                ]),
                REGISTRY
            )
            .is_err()
        );
        // A revoked key cannot sign in a successor.
        let revoked = revoked("acme", &a, 1);
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    revoked.clone(),
                    added("acme", &b, Some(&a)),
                ]),
                REGISTRY
            )
            .is_err()
        );
        // With every key revoked, an unsigned key (an admin's recovery) is accepted.
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    revoked,
                    added("acme", &b, None)
                ]),
                REGISTRY
            )
            .is_ok()
        );
        // A version published twice, or a yank of nothing.
        let publish = Event::Publish {
            name: "n".into(),
            version: "1.0.0".into(),
            publisher: "acme".into(),
            package_sha256: "00".repeat(32),
        };
        assert!(replay(&logged(vec![publish.clone(), publish.clone()]), REGISTRY).is_err());
        // A name published by a second publisher.
        let mut taken = publish.clone();
        if let Event::Publish {
            publisher, version, ..
        } = &mut taken
        {
            *publisher = "evil".into();
            *version = "2.0.0".into();
        }
        assert!(replay(&logged(vec![publish, taken]), REGISTRY).is_err());
        assert!(
            replay(
                &logged(vec![Event::Yank {
                    name: "n".into(),
                    version: "1.0.0".into()
                }]),
                REGISTRY
            )
            .is_err()
        );
    }

    #[test]
    fn key_statements_name_the_publisher_and_the_key() {
        let old = key(1);
        let signature = sign_key_statement("acme", "abcd", &old);
        assert!(verify_key_statement(
            "acme",
            "abcd",
            &old.verifying_key(),
            &signature
        ));
        assert!(!verify_key_statement(
            "evil",
            "abcd",
            &old.verifying_key(),
            &signature
        ));
        assert!(!verify_key_statement(
            "acme",
            "abce",
            &old.verifying_key(),
            &signature
        ));
    }

    #[test]
    fn replay_requires_each_keys_possession_for_this_registry_and_publisher() {
        let (a, b) = (key(1), key(2));
        assert!(replay(&logged(vec![added("acme", &a, None)]), REGISTRY).is_ok());
        // The same log read as another registry's: the proofs name this one.
        assert!(replay(&logged(vec![added("acme", &a, None)]), "registry-two").is_err());
        // Someone registers a key they do not hold: the proof is by another key, or made for
        // another publisher, or missing.
        let public_key = hex(a.verifying_key().as_bytes());
        for possession in [
            sign_possession(REGISTRY, "evil", &b),
            sign_possession(REGISTRY, "acme", &a).replace('0', "1"),
            sign_possession(REGISTRY, "other", &a),
            String::new(),
        ] {
            let forged = Event::KeyAdded {
                publisher: "evil".into(),
                public_key: public_key.clone(),
                signed_by: None,
                signature: None,
                possession,
            };
            assert!(matches!(
                replay(&logged(vec![forged]), REGISTRY),
                Err(ProtocolError::BrokenLog(m)) if m.contains("possession")
            ));
        }
    }

    #[test]
    fn a_back_dated_revocation_needs_another_keys_signature_or_an_admins_mark() {
        let (a, b, c) = (key(1), key(2), key(3));
        let a_hex = hex(a.verifying_key().as_bytes());
        let keys = || vec![added("acme", &a, None), added("acme", &b, Some(&a))];
        let with = |revocation: Event| {
            let mut events = keys();
            events.push(revocation);
            replay(&logged(events), REGISTRY)
        };
        // At its entry's time (2) or later: no signature needed.
        assert!(with(revoked("acme", &a, 2)).is_ok());
        // Back-dated to 0 without a signature: refused.
        assert!(with(revoked("acme", &a, 0)).is_err());
        let signed = |by: &SigningKey, at_signed: u64, at: u64| Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: a_hex.clone(),
            revoked_at: at,
            signed_by: Some(hex(by.verifying_key().as_bytes())),
            signature: Some(sign_revocation(REGISTRY, "acme", &a_hex, at_signed, by)),
            by_admin: false,
        };
        let state = with(signed(&b, 0, 0)).unwrap_or_default();
        assert_eq!(
            state.keys.get(&a_hex).and_then(|key| key.revoked_at),
            Some(0)
        );
        // Signed by the revoked key itself, by a stranger, or over another time.
        assert!(with(signed(&a, 0, 0)).is_err());
        assert!(with(signed(&c, 0, 0)).is_err());
        assert!(with(signed(&b, 1, 0)).is_err());
        // An admin's back-dating is accepted and visible as such.
        let by_admin = Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: a_hex.clone(),
            revoked_at: 0,
            signed_by: None,
            signature: None,
            by_admin: true,
        };
        assert!(with(by_admin).is_ok());
        // A key already revoked cannot sign another's back-dated revocation.
        let mut events = keys();
        events.push(revoked("acme", &b, 2));
        events.push(signed(&b, 0, 0));
        assert!(replay(&logged(events), REGISTRY).is_err());
    }

    #[test]
    fn the_registry_id_is_the_first_key_of_root_version_one() {
        let (a, b) = (key(1), key(2));
        let first = root(1, &[&a], 1).sign(&[&a]);
        let second = root(2, &[&b], 1).sign(&[&a, &b]);
        let id = hex(a.verifying_key().as_bytes());
        assert_eq!(registry_id(&[first.clone(), second.clone()]), Ok(id));
        assert!(registry_id(&[second]).is_err());
        assert!(registry_id(&[]).is_err());
    }

    #[test]
    fn log_times_never_go_backwards() {
        let (a, b) = (key(1), key(2));
        let mut entries = logged(vec![added("acme", &a, None), added("acme", &b, Some(&a))]);
        entries[0].time = 100;
        entries[1].time = 100;
        assert!(replay(&entries, REGISTRY).is_ok(), "equal times are fine");
        entries[1].time = 99;
        assert!(matches!(
            replay(&entries, REGISTRY),
            Err(ProtocolError::BrokenLog(m)) if m.contains("before the time 100")
        ));
    }

    #[test]
    fn a_page_must_chain_from_the_verified_head() {
        let entries = logged(vec![
            added("acme", &key(1), None),
            added("acme", &key(2), Some(&key(1))),
            added("acme", &key(3), Some(&key(2))),
        ]);
        let head = verify_page(&entries[..1], 0, LOG_ROOT).unwrap_or_default();
        assert_eq!(head, entries[0].hash());
        assert_eq!(verify_page(&entries[1..], 1, &head), Ok(entries[2].hash()));
        // The same page presented at another position, or after another head.
        assert!(verify_page(&entries[1..], 2, &head).is_err());
        assert!(verify_page(&entries[1..], 1, LOG_ROOT).is_err());
        // A page with an entry left out.
        assert!(verify_page(&entries[2..], 1, &head).is_err());
    }

    #[test]
    fn a_registry_id_is_the_first_key_of_a_self_signed_version_one() {
        let (a, b, thief) = (key(1), key(2), key(9));
        let first = root(1, &[&a], 1);
        let second = root(2, &[&b], 1);
        let chain = vec![first.sign(&[&a]), second.sign(&[&a, &b])];
        let id = hex(a.verifying_key().as_bytes());
        assert_eq!(registry_id(&chain), Ok(id.clone()));
        assert_eq!(registry_id(&chain[..1]), Ok(id.clone()));
        // Not a chain from version 1, or empty.
        assert!(registry_id(&chain[1..]).is_err());
        assert!(registry_id(&[]).is_err());
        // A version 1 that names someone else's key first, signed by the thief who lists it:
        // claiming another registry's identity needs that registry's key.
        let claimed = Root {
            version: 1,
            keys: vec![id.clone(), hex(thief.verifying_key().as_bytes())],
            threshold: 1,
            issued_at: 0,
        };
        assert!(registry_id(&[claimed.sign(&[&thief])]).is_err());
        // A later root that does not follow.
        let forged = root(2, &[&thief], 1).sign(&[&thief]);
        assert!(registry_id(&[chain[0].clone(), forged]).is_err());
    }
}
