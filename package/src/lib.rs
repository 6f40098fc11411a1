//! Signed node packages: one file holding a manifest, Ed25519 signatures, and the component.
//!
//! Layout (all lengths little-endian, each checked against its limit before it is read):
//! `warden-package\0` + format byte `1`, then `u32` manifest length and the manifest (JSON),
//! `u32` signatures length and the signatures (JSON), `u64` component length and the component.
//!
//! What is signed is a domain-separated statement of the whole manifest: the line
//! `warden package signature v1`, then the manifest serialized compactly with its fields in
//! their fixed order. The manifest names the package and version and carries the component's
//! SHA-256 and length, so no field can change, and no signature can move to another package or
//! version, without failing verification. Signatures are checked with `verify_strict`, and
//! weak public keys are refused.
//!
//! One signed package has one byte string. Decoding refuses every encoding but the canonical
//! one: each JSON section must be exactly what serializing its parsed value writes (no
//! whitespace, escapes or key order of the encoder's own choosing), and the signatures must be
//! in ascending order of public key with no key twice. Anyone can re-serialize a manifest; only
//! the canonical bytes decode, so a package's SHA-256 (its content address in the registry and
//! on hosts) names exactly one manifest and one set of signatures.

#[doc(hidden)]
pub mod fuzz_targets;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use warden_host::Capabilities;
use warden_host::component::{self, WIT_VERSION};
use warden_host::preflight;

pub const MAGIC: &[u8; 16] = b"warden-package\0\x01";
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
pub const MAX_SIGNATURES_BYTES: usize = 64 * 1024;
const DOMAIN: &[u8] = b"warden package signature v1\n";

/// What a package says about itself. Field order is part of the signed statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub publisher: String,
    /// Capability names, in bit order; must equal what the component's imports require.
    pub capabilities: Vec<String>,
    pub allowed_hosts: Vec<String>,
    /// The limits preset the package asks for.
    pub limits: String,
    /// The `warden:node` WIT version the component targets.
    pub wit: String,
    pub component_sha256: String,
    pub component_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSignature {
    /// Hex of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Hex of the 64-byte signature over the statement.
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub manifest: Manifest,
    pub signatures: Vec<PackageSignature>,
    pub component: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("not a warden package (the file does not start with the package header)")]
    NotAPackage,
    #[error("the package is truncated or has bytes past its end")]
    BadLength,
    #[error("the package's {what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("the package's {0} is malformed: {1}")]
    Malformed(&'static str, String),
    #[error(
        "the package's {0} is not in canonical form (compact JSON as warden writes it, signatures in ascending order of public key, no key twice); re-encode it with `warden pack`"
    )]
    NotCanonical(&'static str),
    #[error(
        "the package name `{0}` is invalid: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`, starting with a letter"
    )]
    BadName(String),
    #[error("the version `{0}` is not semantic versioning (such as 1.2.3)")]
    BadVersion(String),
    #[error("the component does not match the manifest: {0}")]
    ComponentMismatch(String),
    #[error("the component is not a usable node: {0}")]
    Component(String),
    #[error(
        "the manifest lists capabilities [{listed}] but the component's imports require [{required}]"
    )]
    CapabilityMismatch { listed: String, required: String },
    #[error(
        "the package asks for [{asked}], which its component cannot use: beyond what its imports require, a package may ask only for what its wasi:sockets imports can use ({askable})"
    )]
    CannotUse { asked: String, askable: String },
    #[error("the package has no signature")]
    Unsigned,
    #[error("a signature does not verify: {0}")]
    BadSignature(String),
    #[error("the public key {0} is weak and refused")]
    WeakKey(String),
    #[error("no signature is from a trusted key")]
    Untrusted,
    #[error("{count} distinct trusted keys signed the package; {threshold} are required")]
    BelowThreshold { count: usize, threshold: usize },
    #[error("cannot read {0}: {1}")]
    Io(String, String),
}

pub fn hex(bytes: &[u8]) -> String {
    // Digit by digit: the daemon writes a run id and digests for every run, and a `format!` per
    // byte showed in its profile.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    // Lowercase hex digits only: one spelling per value.
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (index, chunk) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[index] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The bytes a signature covers.
pub fn statement(manifest: &Manifest) -> Vec<u8> {
    let mut bytes = DOMAIN.to_vec();
    // Struct fields serialize in declaration order; serde_json writes them compactly.
    bytes.extend(serde_json::to_vec(manifest).unwrap_or_default());
    bytes
}

pub fn validate_name(name: &str) -> Result<(), PackageError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PackageError::BadName(name.to_string()))
    }
}

/// A new signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, PackageError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|error| PackageError::Io("the random source".into(), error.to_string()))?;
    Ok(SigningKey::from_bytes(&secret))
}

pub fn public_key_hex(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

pub fn secret_key_hex(key: &SigningKey) -> String {
    hex(&key.to_bytes())
}

pub fn signing_key_from_hex(text: &str) -> Option<SigningKey> {
    unhex::<32>(text.trim()).map(|bytes| SigningKey::from_bytes(&bytes))
}

pub fn verifying_key_from_hex(text: &str) -> Result<VerifyingKey, PackageError> {
    let bytes = unhex::<32>(text.trim())
        .ok_or_else(|| PackageError::Malformed("public key", "not 64 hex digits".into()))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|error| PackageError::Malformed("public key", error.to_string()))?;
    if key.is_weak() {
        return Err(PackageError::WeakKey(text.trim().to_string()));
    }
    // One key, one spelling: an encoding of y at or above the field prime names the same
    // point as the canonical one and could pass as a second, distinct key.
    if key.to_edwards().compress().to_bytes() != bytes {
        return Err(PackageError::Malformed(
            "public key",
            "it is not the canonical encoding of its point".into(),
        ));
    }
    Ok(key)
}

/// A secret file that could not be written (it exists already, or the write failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct SecretFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Creates `path` readable by its owner only, before anything secret is written to it, and
/// refuses to overwrite an existing file.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), SecretFileError> {
    use std::io::Write;
    let fail = |source: std::io::Error| SecretFileError {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// The capabilities a package lists: those its imports require, and of those the author asks
/// for (`asked`) the ones its ambient imports can make real (`tcp`, `udp`, `dns` for a node
/// importing wasi:sockets). Asking for anything else is refused: the package could not use it.
fn capabilities_to_list(imports: &[String], asked: &[String]) -> Result<Vec<String>, PackageError> {
    let required = preflight::required_capabilities(imports);
    let ambient = preflight::ambient_capabilities(imports);
    let asked: Capabilities = asked
        .join(",")
        .parse::<Capabilities>()
        .or_else(|error| match asked.is_empty() {
            true => Ok(Capabilities::empty()),
            false => Err(error),
        })
        .map_err(|error| PackageError::Malformed("manifest", error.to_string()))?;
    let extra = asked.difference(required);
    if !ambient.contains(extra) {
        return Err(PackageError::CannotUse {
            asked: extra.difference(ambient).names().join(","),
            askable: match ambient.is_empty() {
                true => "none".into(),
                false => ambient.names().join(","),
            },
        });
    }
    Ok((required | extra)
        .names()
        .iter()
        .map(|s| s.to_string())
        .collect())
}

/// Builds the manifest for `component` (capabilities filled in from its imports, with the
/// ambient-backed ones the manifest asks for) and signs it.
pub fn pack(
    component: &[u8],
    mut manifest: Manifest,
    key: &SigningKey,
) -> Result<Vec<u8>, PackageError> {
    let summary = component::summarize(component)
        .map_err(|error| PackageError::Component(error.to_string()))?;
    manifest.capabilities = capabilities_to_list(&summary.imports, &manifest.capabilities)?;
    manifest.component_sha256 = summary.sha256;
    manifest.component_bytes = component.len() as u64;
    manifest.wit = WIT_VERSION.to_string();
    check_fields(&manifest)?;
    let mut package = Package {
        manifest,
        signatures: Vec::new(),
        component: component.to_vec(),
    };
    add_signature(&mut package, key);
    Ok(encode(&package))
}

/// Adds `key`'s signature over the package's statement (a co-signer, for thresholds), in its
/// place in the canonical order; a key that signed already is not added again.
pub fn add_signature(package: &mut Package, key: &SigningKey) {
    let public_key = public_key_hex(key);
    let Err(position) = package
        .signatures
        .binary_search_by(|entry| entry.public_key.as_str().cmp(public_key.as_str()))
    else {
        return;
    };
    let signature = key.sign(&statement(&package.manifest));
    package.signatures.insert(
        position,
        PackageSignature {
            public_key,
            signature: hex(&signature.to_bytes()),
        },
    );
}

fn check_fields(manifest: &Manifest) -> Result<(), PackageError> {
    validate_name(&manifest.name)?;
    semver::Version::parse(&manifest.version)
        .map_err(|_| PackageError::BadVersion(manifest.version.clone()))?;
    warden_host::allowlist::AllowedHosts::parse(&manifest.allowed_hosts)
        .map_err(|error| PackageError::Malformed("manifest", error.to_string()))?;
    manifest
        .limits
        .parse::<warden_host::Preset>()
        .map_err(|error| PackageError::Malformed("manifest", error.to_string()))?;
    Ok(())
}

pub fn encode(package: &Package) -> Vec<u8> {
    let manifest = serde_json::to_vec(&package.manifest).unwrap_or_default();
    let signatures = serde_json::to_vec(&package.signatures).unwrap_or_default();
    let mut bytes = Vec::with_capacity(
        MAGIC.len() + 16 + manifest.len() + signatures.len() + package.component.len(),
    );
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&manifest);
    bytes.extend_from_slice(&(signatures.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&signatures);
    bytes.extend_from_slice(&(package.component.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&package.component);
    bytes
}

/// Parses a package, checking every length against its limit before using it.
pub fn decode(bytes: &[u8]) -> Result<Package, PackageError> {
    let mut rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(PackageError::NotAPackage)?;
    let mut take = |count: usize| -> Result<&[u8], PackageError> {
        if rest.len() < count {
            return Err(PackageError::BadLength);
        }
        let (head, tail) = rest.split_at(count);
        rest = tail;
        Ok(head)
    };
    let manifest: Manifest = json_section(&mut take, "manifest", MAX_MANIFEST_BYTES)?;
    let signatures: Vec<PackageSignature> =
        json_section(&mut take, "signatures", MAX_SIGNATURES_BYTES)?;
    let ascending = signatures
        .windows(2)
        .all(|pair| pair[0].public_key < pair[1].public_key);
    if !ascending {
        return Err(PackageError::NotCanonical("signatures"));
    }
    let component_len =
        u64::from_le_bytes(take(8)?.try_into().map_err(|_| PackageError::BadLength)?);
    if component_len > component::MAX_COMPONENT_BYTES as u64 {
        return Err(PackageError::TooLarge {
            what: "component",
            size: component_len,
            limit: component::MAX_COMPONENT_BYTES as u64,
        });
    }
    let component = take(component_len as usize)?.to_vec();
    if !rest.is_empty() {
        return Err(PackageError::BadLength);
    }
    Ok(Package {
        manifest,
        signatures,
        component,
    })
}

/// Reads a `u32` length, checks it against `limit`, parses that many bytes as JSON, and
/// refuses them unless they are exactly what serializing the parsed value writes.
fn json_section<'a, T: serde::de::DeserializeOwned + Serialize>(
    take: &mut impl FnMut(usize) -> Result<&'a [u8], PackageError>,
    what: &'static str,
    limit: usize,
) -> Result<T, PackageError> {
    let length =
        u32::from_le_bytes(take(4)?.try_into().map_err(|_| PackageError::BadLength)?) as usize;
    if length > limit {
        return Err(PackageError::TooLarge {
            what,
            size: length as u64,
            limit: limit as u64,
        });
    }
    let bytes = take(length)?;
    let value: T = serde_json::from_slice(bytes)
        .map_err(|error| PackageError::Malformed(what, error.to_string()))?;
    if serde_json::to_vec(&value).ok().as_deref() != Some(bytes) {
        return Err(PackageError::NotCanonical(what));
    }
    Ok(value)
}

/// Reads a package file, refusing one larger than any valid package before reading it whole.
pub fn read_file(path: &Path) -> Result<Package, PackageError> {
    let io =
        |error: std::io::Error| PackageError::Io(path.display().to_string(), error.to_string());
    let size = std::fs::metadata(path).map_err(io)?.len();
    let limit = (MAGIC.len()
        + 16
        + MAX_MANIFEST_BYTES
        + MAX_SIGNATURES_BYTES
        + component::MAX_COMPONENT_BYTES) as u64;
    if size > limit {
        return Err(PackageError::TooLarge {
            what: "file",
            size,
            limit,
        });
    }
    decode(&std::fs::read(path).map_err(io)?)
}

/// Verifies everything before anything is compiled: the fields, the component against the
/// manifest, the capabilities against the imports, and every signature. With `trusted`, at
/// least one signature must be from one of those keys. Returns the signers' public keys.
pub fn verify(
    package: &Package,
    trusted: Option<&[VerifyingKey]>,
) -> Result<Vec<VerifyingKey>, PackageError> {
    let manifest = &package.manifest;
    check_fields(manifest)?;
    if package.component.len() as u64 != manifest.component_bytes {
        return Err(PackageError::ComponentMismatch(format!(
            "it is {} bytes, the manifest says {}",
            package.component.len(),
            manifest.component_bytes
        )));
    }
    let digest = hex(&Sha256::digest(&package.component));
    if digest != manifest.component_sha256 {
        return Err(PackageError::ComponentMismatch(
            "its SHA-256 differs from the manifest's".into(),
        ));
    }
    if !component::compatible_version(&manifest.wit) {
        return Err(PackageError::Malformed(
            "manifest",
            format!(
                "it targets warden:node {}, this host implements {WIT_VERSION}",
                manifest.wit
            ),
        ));
    }
    let summary = component::summarize(&package.component)
        .map_err(|error| PackageError::Component(error.to_string()))?;
    // What it lists must be what its imports require, plus only ambient-backed ones, in the
    // table's order: anything else was not made by `pack` (or was changed since).
    let expected =
        capabilities_to_list(&summary.imports, &manifest.capabilities).map_err(|_| {
            PackageError::CapabilityMismatch {
                listed: manifest.capabilities.join(","),
                required: preflight::required_capabilities(&summary.imports)
                    .names()
                    .join(","),
            }
        })?;
    if expected != manifest.capabilities {
        return Err(PackageError::CapabilityMismatch {
            listed: manifest.capabilities.join(","),
            required: expected.join(","),
        });
    }
    if package.signatures.is_empty() {
        return Err(PackageError::Unsigned);
    }
    let statement = statement(manifest);
    let mut signers: Vec<VerifyingKey> = Vec::new();
    for entry in &package.signatures {
        let key = verifying_key_from_hex(&entry.public_key)?;
        let bytes = unhex::<64>(&entry.signature)
            .ok_or_else(|| PackageError::BadSignature("not 128 hex digits".into()))?;
        let signature = Signature::from_bytes(&bytes);
        key.verify_strict(&statement, &signature).map_err(|_| {
            PackageError::BadSignature(format!(
                "the signature by {} does not cover this manifest",
                entry.public_key
            ))
        })?;
        // A key that signed twice counts once.
        if !signers.contains(&key) {
            signers.push(key);
        }
    }
    if let Some(trusted) = trusted
        && !signers.iter().any(|signer| trusted.contains(signer))
    {
        return Err(PackageError::Untrusted);
    }
    Ok(signers)
}

/// Verifies like [`verify`] and also requires signatures by at least `threshold` distinct
/// keys of `trusted`; a key that signed twice, or appears twice in `trusted`, counts once.
pub fn verify_threshold(
    package: &Package,
    trusted: &[VerifyingKey],
    threshold: usize,
) -> Result<Vec<VerifyingKey>, PackageError> {
    let signers = verify(package, None)?;
    let count = signers
        .iter()
        .filter(|signer| trusted.contains(signer))
        .count();
    if count < threshold.max(1) {
        return Err(PackageError::BelowThreshold {
            count,
            threshold: threshold.max(1),
        });
    }
    Ok(signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(unhex::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(unhex::<2>("zzzz"), None);
        assert_eq!(unhex::<2>("+f+f"), None);
        assert_eq!(unhex::<2>("0AFF"), None);
        let every: Vec<u8> = (0..=255).collect();
        let text = hex(&every);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(unhex::<256>(&text), every.try_into().ok());
    }

    #[test]
    fn a_package_asks_beyond_its_requirements_only_for_what_its_ambient_imports_can_use() {
        let imports: Vec<String> = [
            "warden:node/storage-read@0.1.0",
            "wasi:sockets/tcp@0.2.9",
            "wasi:sockets/network@0.2.9",
            "wasi:filesystem/types@0.2.9",
        ]
        .iter()
        .map(|import| import.to_string())
        .collect();
        let list = |asked: &[&str]| {
            let asked: Vec<String> = asked.iter().map(|name| name.to_string()).collect();
            capabilities_to_list(&imports, &asked)
        };
        assert_eq!(list(&[]).unwrap(), ["storage-read"]);
        // tcp is what its wasi:sockets imports can use; the order is the table's.
        assert_eq!(list(&["tcp"]).unwrap(), ["storage-read", "tcp"]);
        assert_eq!(
            list(&["tcp", "storage-read"]).unwrap(),
            ["storage-read", "tcp"]
        );
        // http-get is not behind any of its imports, nor is anything for the filesystem.
        assert!(matches!(
            list(&["http-get"]),
            Err(PackageError::CannotUse { .. })
        ));
        assert!(matches!(
            list(&["teleport"]),
            Err(PackageError::Malformed(..))
        ));
        // A component without wasi:sockets imports can ask for no network capability.
        let plain = vec!["warden:node/log@0.1.0".to_string()];
        assert!(capabilities_to_list(&plain, &["tcp".to_string()]).is_err());
    }

    #[test]
    fn names_and_headers() {
        assert!(validate_name("text-transform").is_ok());
        for bad in ["", "Upper", "1abc", "a/b", "ä", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(decode(b"nope"), Err(PackageError::NotAPackage));
        let mut truncated = MAGIC.to_vec();
        truncated.extend_from_slice(&10u32.to_le_bytes());
        assert_eq!(decode(&truncated), Err(PackageError::BadLength));
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&huge),
            Err(PackageError::TooLarge {
                what: "manifest",
                ..
            })
        ));
    }

    #[test]
    fn non_canonical_keys_are_refused() {
        // y = p + k for small k: the same points as y = k, spelled differently.
        let mut decompressed = 0;
        for k in 0u8..19 {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f;
            if VerifyingKey::from_bytes(&bytes).is_ok() {
                decompressed += 1;
                assert!(verifying_key_from_hex(&hex(&bytes)).is_err(), "{k}");
            }
        }
        assert!(decompressed > 0, "no non-canonical encoding was tried");
        let good = generate_key()
            .map(|key| public_key_hex(&key))
            .unwrap_or_default();
        assert!(verifying_key_from_hex(&good).is_ok());
    }

    /// A package with two signatures (the component is not checked by `decode`).
    fn two_signed() -> Package {
        let mut package = Package {
            manifest: Manifest {
                name: "text-transform".into(),
                version: "1.0.0".into(),
                description: "caf\u{e9} \"quoted\"".into(),
                publisher: "acme".into(),
                capabilities: vec!["log".into()],
                allowed_hosts: vec![],
                limits: "default".into(),
                wit: WIT_VERSION.into(),
                component_sha256: "00".repeat(32),
                component_bytes: 3,
            },
            signatures: Vec::new(),
            component: vec![1, 2, 3],
        };
        for seed in [9u8, 3] {
            add_signature(&mut package, &SigningKey::from_bytes(&[seed; 32]));
        }
        package
    }

    /// `package` encoded with its manifest section replaced by `manifest`.
    fn with_sections(package: &Package, manifest: &[u8], signatures: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        bytes.extend_from_slice(manifest);
        bytes.extend_from_slice(&(signatures.len() as u32).to_le_bytes());
        bytes.extend_from_slice(signatures);
        bytes.extend_from_slice(&(package.component.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&package.component);
        bytes
    }

    #[test]
    fn one_signed_package_has_one_byte_string() {
        let package = two_signed();
        let canonical = encode(&package);
        assert_eq!(decode(&canonical).as_ref(), Ok(&package));
        assert_eq!(
            encode(&decode(&canonical).unwrap_or(package.clone())),
            canonical
        );
        // Signatures are kept in ascending order of key, and a key signs once.
        let keys: Vec<&str> = package
            .signatures
            .iter()
            .map(|s| s.public_key.as_str())
            .collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        let mut again = package.clone();
        add_signature(&mut again, &SigningKey::from_bytes(&[9; 32]));
        assert_eq!(again.signatures.len(), 2);

        let manifest = serde_json::to_string(&package.manifest).unwrap_or_default();
        let signatures = serde_json::to_vec(&package.signatures).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&manifest).unwrap_or_default();
        let spaced = serde_json::to_string_pretty(&value).unwrap_or_default();
        let escaped = manifest.replacen("text-transform", "\\u0074ext-transform", 1);
        let reordered = manifest.replacen(
            "{\"name\":\"text-transform\",\"version\":\"1.0.0\",",
            "{\"version\":\"1.0.0\",\"name\":\"text-transform\",",
            1,
        );
        let trailing = format!("{manifest} ");
        let unicode = manifest.replacen("caf\u{e9}", "caf\\u00e9", 1);
        for (what, variant) in [
            ("pretty-printed", &spaced),
            ("escaped letter", &escaped),
            ("keys reordered", &reordered),
            ("trailing space", &trailing),
            ("escaped accent", &unicode),
        ] {
            assert_ne!(
                variant, &manifest,
                "{what}: the variant did not change anything"
            );
            let parsed: Result<Manifest, _> = serde_json::from_str(variant);
            assert_eq!(
                parsed.ok().as_ref(),
                Some(&package.manifest),
                "{what}: not equivalent"
            );
            assert_eq!(
                decode(&with_sections(&package, variant.as_bytes(), &signatures)),
                Err(PackageError::NotCanonical("manifest")),
                "{what}"
            );
        }
        let mut reversed = package.signatures.clone();
        reversed.reverse();
        let mut doubled = package.signatures.clone();
        doubled.insert(0, doubled[0].clone());
        for (what, list) in [("reversed", reversed), ("a key twice", doubled)] {
            let section = serde_json::to_vec(&list).unwrap_or_default();
            assert_eq!(
                decode(&with_sections(&package, manifest.as_bytes(), &section)),
                Err(PackageError::NotCanonical("signatures")),
                "{what}"
            );
        }
        let spaced_signatures =
            serde_json::to_string_pretty(&package.signatures).unwrap_or_default();
        assert_eq!(
            decode(&with_sections(
                &package,
                manifest.as_bytes(),
                spaced_signatures.as_bytes()
            )),
            Err(PackageError::NotCanonical("signatures"))
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point is a small-order (weak) key.
        let identity = "0100000000000000000000000000000000000000000000000000000000000000";
        assert!(matches!(
            verifying_key_from_hex(identity),
            Err(PackageError::WeakKey(_))
        ));
    }
}
