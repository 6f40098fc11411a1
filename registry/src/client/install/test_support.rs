//! Indexes, logs and keys the install unit tests build.

use super::state::{InstallState, RegistryRecord};
use crate::protocol::{
    self, Event, Index, IndexEntry, LOG_ROOT, LogEntry, Root, Signed, SignedRoot, sha256_hex,
};
use ed25519_dalek::SigningKey;
use warden_package::hex;

/// An index that lists exactly what `log` publishes.
pub(super) fn index(key: &SigningKey, version: u64, log: &[LogEntry]) -> Index {
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

pub(super) fn log(versions: &[&str]) -> Vec<LogEntry> {
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

pub(super) fn root_of(index: &Index) -> Root {
    Root {
        version: 1,
        keys: vec![index.registry.clone()],
        threshold: 1,
        issued_at: 0,
    }
}

pub(super) fn remember(host: &InstallState, signed: &Signed, index: &Index) {
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

pub(super) fn roots(key: &SigningKey) -> Vec<SignedRoot> {
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

pub(super) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(super) fn public(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

/// `new` added to `acme` of registry `r`, signed in by `by` (a rotation) or not.
pub(super) fn added(new: &SigningKey, by: Option<&SigningKey>) -> Event {
    Event::KeyAdded {
        publisher: "acme".into(),
        public_key: public(new),
        signed_by: by.map(public),
        signature: by.map(|by| protocol::sign_key_statement("acme", &public(new), by)),
        possession: protocol::sign_possession("r", "acme", new),
    }
}
