//! The bodies of the registry's fuzz targets (the package's are in `warden_package`), shared by
//! `fuzz/` (cargo fuzz, libFuzzer) and the bounded mutation run in `tests/e2e/fuzz_parsers.rs` that
//! CI executes on stable Rust. Each one feeds untrusted bytes to a parser and, when parsing
//! succeeds, to its verifier: neither may panic, allocate without bound, or hang.

use crate::protocol::{self, Index, LogEntry, Root, Signed, SignedRoot};
use ed25519_dalek::SigningKey;

/// A signed index as a host receives it, verified with a fixed registry key.
pub fn index(data: &[u8]) {
    let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    if let Ok(signed) = serde_json::from_slice::<Signed>(data) {
        let _ = Index::verify(&signed, &key, 0);
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        let _ = index.entry("a", "1.0.0");
    }
    if let Ok(roots) = serde_json::from_slice::<Vec<SignedRoot>>(data) {
        let first = Root {
            version: 1,
            keys: vec![warden_package::public_key_hex(&SigningKey::from_bytes(
                &[1; 32],
            ))],
            threshold: 1,
            issued_at: 0,
        };
        for signed in &roots {
            let _ = first.verify_next(signed);
            let _ = Root::verify_pinned(signed, &first.keys[0]);
        }
    }
}

/// A log as a host receives it, checked against a checkpoint.
pub fn log(data: &[u8]) {
    if let Ok(entries) = serde_json::from_slice::<Vec<LogEntry>>(data) {
        let size = entries.len() as u64;
        let _ = protocol::verify_log(&entries, size, protocol::LOG_ROOT);
        let _ = protocol::replay(&entries, protocol::LOG_ROOT);
    }
}
