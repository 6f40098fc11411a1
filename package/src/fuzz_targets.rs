//! The bodies of the package fuzz targets, shared by `fuzz/` (cargo fuzz, libFuzzer) and the
//! bounded mutation run in `tests/e2e/fuzz_parsers.rs` that CI executes on stable Rust. Each one
//! feeds untrusted bytes to a parser and, when parsing succeeds, to its verifier: neither may
//! panic, allocate without bound, or hang.

/// A package file: the header, the length fields, the manifest, the signatures, the component.
pub fn package(data: &[u8]) {
    if let Ok(parsed) = crate::decode(data) {
        let _ = crate::verify(&parsed, None);
        let _ = crate::encode(&parsed);
    }
}

/// A manifest's JSON, and the statement a signature would cover.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = serde_json::from_slice::<crate::Manifest>(data) {
        let _ = crate::statement(&manifest);
        let _ = crate::validate_name(&manifest.name);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::verifying_key_from_hex(text);
    }
}
