//! The statements a publisher's keys sign: a rotation (an existing key signs in a new one),
//! possession (a new key signs for itself, naming the registry and the publisher), and a
//! revocation (another key revokes one from a time on). Each has its own domain string.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
pub use warden_package::verifying_key_from_hex;
use warden_package::{hex, unhex};

pub(super) const KEY_DOMAIN: &[u8] = b"warden publisher key v1\n";
const POSSESSION_DOMAIN: &[u8] = b"warden publisher key possession v1\n";
const REVOCATION_DOMAIN: &[u8] = b"warden publisher key revocation v1\n";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::key;

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
}
