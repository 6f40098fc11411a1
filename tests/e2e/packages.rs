//! Signed packages: keygen, pack and verify through the CLI, and every tampering refused.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use warden::build::Target;
use warden_package::{self as package, Package, PackageError};

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let prefix = path.join("publisher");
    ok(&warden(&["keygen", "--out", prefix.to_str().unwrap()]));
    Fixture {
        key: path.join("publisher.key"),
        public: path.join("publisher.pub"),
        dir: path,
        _dir: dir,
    }
}

fn pack(fixture: &Fixture, node: &Path, name: &str, version: &str) -> PathBuf {
    let out = fixture.dir.join(format!("{name}-{version}.wpkg"));
    let printed = ok(&warden(&[
        "pack",
        node.to_str().unwrap(),
        "--name",
        name,
        "--version",
        version,
        "--key",
        fixture.key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(printed.trim(), out.to_str().unwrap());
    out
}

#[test]
fn keygen_pack_and_verify() {
    let fixture = fixture();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fixture.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = warden(&[
        "keygen",
        "--out",
        fixture.dir.join("publisher").to_str().unwrap(),
    ]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "keygen must not overwrite a key"
    );
    let counter = example("counter", Target::Unknown);
    let packed = pack(&fixture, &counter, "counter", "1.0.0");
    let report = ok(&warden(&[
        "verify",
        packed.to_str().unwrap(),
        "--trust",
        fixture.public.to_str().unwrap(),
    ]));
    assert!(
        report.contains("verified counter 1.0.0: capabilities [storage-read,storage-write]"),
        "{report}"
    );
    let other = fixture_key_elsewhere();
    let untrusted = warden(&[
        "verify",
        packed.to_str().unwrap(),
        "--trust",
        other.to_str().unwrap(),
    ]);
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("no signature is from a trusted key")
    );
}

fn fixture_key_elsewhere() -> PathBuf {
    let other = fixture();
    let public = other.public.clone();
    let kept = std::env::temp_dir().join(format!("warden-other-{}.pub", std::process::id()));
    std::fs::copy(&public, &kept).unwrap();
    kept
}

fn tampered(packed: &Path, change: impl FnOnce(&mut Package)) -> Result<(), PackageError> {
    let mut package = package::read_file(packed).unwrap();
    change(&mut package);
    let bytes = package::encode(&package);
    package::verify(&package::decode(&bytes)?, None).map(|_| ())
}

#[test]
fn every_tampering_is_refused() {
    let fixture = fixture();
    let counter = pack(
        &fixture,
        &example("counter", Target::Unknown),
        "counter",
        "1.0.0",
    );
    let transform = pack(
        &fixture,
        &example("text-transform", Target::Unknown),
        "text-transform",
        "1.0.0",
    );
    assert_eq!(tampered(&counter, |_| {}), Ok(()));

    let flipped = tampered(&counter, |p| {
        let middle = p.component.len() / 2;
        p.component[middle] ^= 1;
    });
    assert!(
        matches!(flipped, Err(PackageError::ComponentMismatch(_))),
        "{flipped:?}"
    );
    let described = tampered(&counter, |p| p.manifest.description = "now harmless".into());
    assert!(
        matches!(described, Err(PackageError::BadSignature(_))),
        "{described:?}"
    );
    let escalated = tampered(&counter, |p| {
        p.manifest.capabilities.push("http-get".into())
    });
    assert!(
        matches!(escalated, Err(PackageError::CapabilityMismatch { .. })),
        "{escalated:?}"
    );
    let hosts = tampered(&counter, |p| p.manifest.allowed_hosts.push("*".into()));
    assert!(
        matches!(hosts, Err(PackageError::BadSignature(_))),
        "{hosts:?}"
    );
    let renamed = tampered(&counter, |p| p.manifest.name = "counter2".into());
    assert!(
        matches!(renamed, Err(PackageError::BadSignature(_))),
        "{renamed:?}"
    );
    let rolled = tampered(&counter, |p| p.manifest.version = "0.9.0".into());
    assert!(
        matches!(rolled, Err(PackageError::BadSignature(_))),
        "{rolled:?}"
    );
    let other_signature = package::read_file(&transform).unwrap().signatures;
    let transplanted = tampered(&counter, |p| p.signatures = other_signature);
    assert!(
        matches!(transplanted, Err(PackageError::BadSignature(_))),
        "{transplanted:?}"
    );
    // A malleated signature: S + L (the group order) verifies under lax rules, not strict ones.
    let malleated = tampered(&counter, |p| {
        let mut bytes: Vec<u8> = (0..64)
            .map(|i| u8::from_str_radix(&p.signatures[0].signature[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, add) in bytes[32..].iter_mut().zip(order) {
            let sum = *byte as u16 + add as u16 + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        p.signatures[0].signature = bytes.iter().map(|b| format!("{b:02x}")).collect();
    });
    assert!(
        matches!(malleated, Err(PackageError::BadSignature(_))),
        "{malleated:?}"
    );
    // A small-order R with S = 0 (a CCTV edge case that lax verifiers accept for weak keys).
    let small_order = tampered(&counter, |p| {
        p.signatures[0].signature = format!("01{}", "0".repeat(126));
    });
    assert!(
        matches!(small_order, Err(PackageError::BadSignature(_))),
        "{small_order:?}"
    );
    let unsigned = tampered(&counter, |p| p.signatures.clear());
    assert_eq!(unsigned, Err(PackageError::Unsigned));
    // A component swapped for another, with the manifest's hash updated, breaks the signature.
    let swapped_component = package::read_file(&transform).unwrap().component;
    let swapped = tampered(&counter, |p| {
        p.manifest.component_sha256 =
            warden_host::NodeComponent::from_bytes(swapped_component.clone())
                .unwrap()
                .summary()
                .sha256
                .clone();
        p.manifest.component_bytes = swapped_component.len() as u64;
        p.manifest.capabilities.clear();
        p.component = swapped_component;
    });
    assert!(
        matches!(swapped, Err(PackageError::BadSignature(_))),
        "{swapped:?}"
    );
    // Through the CLI: one line, exit code 2.
    let mut package = package::read_file(&counter).unwrap();
    package.manifest.description = "x".into();
    let bad = fixture.dir.join("bad.wpkg");
    std::fs::write(&bad, package::encode(&package)).unwrap();
    let output = warden(&["verify", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not cover this manifest"));
    let garbage = fixture.dir.join("garbage.wpkg");
    std::fs::write(&garbage, b"not a package").unwrap();
    assert!(
        String::from_utf8_lossy(&warden(&["verify", garbage.to_str().unwrap()]).stderr)
            .contains("not a warden package")
    );
}

#[test]
fn pack_refuses_bad_names_and_versions() {
    let fixture = fixture();
    let counter = example("counter", Target::Unknown);
    for (name, version, needle) in [
        ("Counter", "1.0.0", "name `Counter` is invalid"),
        ("counter", "one", "not semantic versioning"),
    ] {
        let output = warden(&[
            "pack",
            counter.to_str().unwrap(),
            "--name",
            name,
            "--version",
            version,
            "--key",
            fixture.key.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn co_signers_meet_a_threshold_and_a_repeated_key_counts_once() {
    let first = fixture();
    let second = fixture();
    let node = example("text-transform", Target::Unknown);
    let both = first.dir.join("both.wpkg");
    ok(&warden(&[
        "pack",
        node.to_str().unwrap(),
        "--name",
        "text-transform",
        "--version",
        "1.0.0",
        "--key",
        first.key.to_str().unwrap(),
        "--key",
        second.key.to_str().unwrap(),
        "--out",
        both.to_str().unwrap(),
    ]));
    let verify = |path: &Path| {
        warden(&[
            "verify",
            path.to_str().unwrap(),
            "--trust",
            first.public.to_str().unwrap(),
            "--trust",
            second.public.to_str().unwrap(),
            "--threshold",
            "2",
        ])
    };
    ok(&verify(&both));
    // The first signer's signature twice is refused outright: a key signs a package once,
    // and one signed package has one encoding.
    let mut doubled = package::read_file(&both).unwrap();
    let again = doubled.signatures[0].clone();
    doubled.signatures[1] = again.clone();
    let doubled_path = first.dir.join("doubled.wpkg");
    std::fs::write(&doubled_path, package::encode(&doubled)).unwrap();
    let refused = verify(&doubled_path);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not in canonical form"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Listed once, a key still counts once: the first signer alone is below two.
    let mut single_signer = package::read_file(&both).unwrap();
    single_signer
        .signatures
        .retain(|entry| entry.public_key == again.public_key);
    let single_path = first.dir.join("single.wpkg");
    std::fs::write(&single_path, package::encode(&single_signer)).unwrap();
    let refused = verify(&single_path);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("1 distinct trusted keys signed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The same key given twice as trusted does not count twice either.
    let single = pack(&first, &node, "text-transform", "1.0.1");
    let twice = warden(&[
        "verify",
        single.to_str().unwrap(),
        "--trust",
        first.public.to_str().unwrap(),
        "--trust",
        first.public.to_str().unwrap(),
        "--threshold",
        "2",
    ]);
    assert_eq!(twice.status.code(), Some(2));
}
