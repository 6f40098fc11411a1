//! The signed envelope: a JSON document's exact text and the registry's signature over a
//! domain string and that text, so no re-serialization can change what a signature covers and
//! a signature made for one kind of document never verifies as another.

use super::error::ProtocolError;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_package::{hex, unhex};

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

pub(super) fn sign(domain: &[u8], text: String, key: &SigningKey) -> Signed {
    let mut message = domain.to_vec();
    message.extend_from_slice(text.as_bytes());
    Signed {
        signature: hex(&key.sign(&message).to_bytes()),
        signed: text,
    }
}

pub(super) fn verify(
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
