//! The append-only log: each entry names the hash of the one before it, and the signed index
//! carries the checkpoint (its length and last hash), so a host that checked a page chains it
//! to what it verified before and to that checkpoint.

use super::error::ProtocolError;
use super::signed::sha256_hex;
use serde::{Deserialize, Serialize};

const LOG_DOMAIN: &[u8] = b"warden registry log entry v1\n";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::{added, key, logged};

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
}
