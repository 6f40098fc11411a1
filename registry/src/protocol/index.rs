//! The signed index: everything the registry serves at one moment, its version, its expiry and
//! the checkpoint of its log, verified against the registry's key or any key of its root.

use super::error::ProtocolError;
use super::root::Root;
use super::signed::{Signed, sign, verify};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use warden_package::hex;

const INDEX_DOMAIN: &[u8] = b"warden registry index v1\n";

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
            let Ok(key) = warden_package::verifying_key_from_hex(key) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::log::LOG_ROOT;
    use crate::protocol::statements::KEY_DOMAIN;
    use crate::protocol::test_support::{key, root};

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
}
