//! The registry's root of trust and its chain of versions, and the registry's identity: the
//! first key of root version 1.

use super::error::ProtocolError;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use warden_package::{hex, unhex, verifying_key_from_hex};

const ROOT_DOMAIN: &[u8] = b"warden registry root v1\n";

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
            let valid = verifying_key_from_hex(&entry.public_key)
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
    use crate::protocol::test_support::{key, root};

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
