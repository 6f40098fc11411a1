//! Keys, roots and logs the protocol's unit tests build.

use super::log::{Event, LOG_ROOT, LogEntry};
use super::root::Root;
use super::statements::{sign_key_statement, sign_possession};
use ed25519_dalek::SigningKey;
use warden_package::hex;

pub(super) const REGISTRY: &str = "registry-one";

pub(super) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(super) fn root(version: u64, keys: &[&SigningKey], threshold: usize) -> Root {
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

pub(super) fn logged(events: Vec<Event>) -> Vec<LogEntry> {
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

pub(super) fn added(publisher: &str, new: &SigningKey, by: Option<&SigningKey>) -> Event {
    let public_key = hex(new.verifying_key().as_bytes());
    Event::KeyAdded {
        publisher: publisher.into(),
        signature: by.map(|by| sign_key_statement(publisher, &public_key, by)),
        signed_by: by.map(|by| hex(by.verifying_key().as_bytes())),
        possession: sign_possession(REGISTRY, publisher, new),
        public_key,
    }
}
