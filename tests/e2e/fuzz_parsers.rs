//! A bounded fuzz run on stable Rust, for CI: valid seeds of each untrusted format are mutated
//! (bit flips, interesting bytes, huge length fields, truncation, insertion, deletion,
//! duplication) and fed to the same target bodies `fuzz/` gives libFuzzer. A panic fails the
//! test; the length checks keep allocations bounded. Deeper runs: `cargo +nightly fuzz run
//! package` in `fuzz/`.

use crate::support::*;
use warden::build::Target;
use warden_package::{self as package, Manifest};
use warden_registry::fuzz_targets;
use warden_registry::protocol::{Event, Index, IndexEntry, KeyEntry, LOG_ROOT, LogEntry};

const INTERESTING: [u8; 12] = [
    0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b'[', b',', b':', b'9',
];

fn mutate(random: &mut Random, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + random.below(4) {
        let at = random.below(data.len());
        match random.below(8) {
            0 if !data.is_empty() => data[at] ^= 1 << random.below(8),
            1 if !data.is_empty() => data[at] = INTERESTING[random.below(INTERESTING.len())],
            2 if data.len() >= at + 8 => {
                // A length field claiming far more than is there.
                let huge = [u32::MAX as u64, u64::MAX, 1 << 40, 0x10000][random.below(4)];
                data[at..at + 8].copy_from_slice(&huge.to_le_bytes());
            }
            3 => data.truncate(at),
            4 => {
                let bytes: Vec<u8> = (0..random.below(16)).map(|_| random.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            5 => {
                let end = (at + random.below(64)).min(data.len());
                data.drain(at..end);
            }
            6 => {
                let end = (at + random.below(256)).min(data.len());
                let chunk = data[at..end].to_vec();
                let to = random.below(data.len());
                data.splice(to..to, chunk);
            }
            _ => {}
        }
    }
    data
}

fn run(name: &str, seeds: &[Vec<u8>], iterations: usize, target: fn(&[u8])) {
    let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for seed in seeds {
        target(seed);
    }
    for _ in 0..iterations {
        let seed = &seeds[random.below(seeds.len())];
        target(&mutate(&mut random, seed));
    }
    // Random bytes with no structure at all.
    for _ in 0..iterations / 10 {
        let length = random.below(512);
        let bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
        target(&bytes);
    }
}

fn seed_package() -> Vec<u8> {
    let component = std::fs::read(example("text-transform", Target::Unknown)).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let manifest = Manifest {
        name: "text-transform".into(),
        version: "1.0.0".into(),
        description: "seed".into(),
        publisher: "acme".into(),
        capabilities: vec![],
        allowed_hosts: vec!["api.example.com".into()],
        limits: "default".into(),
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    };
    package::pack(&component, manifest, &key).unwrap()
}

#[test]
fn the_package_parser_survives_mutations() {
    let good = seed_package();
    // The target must accept the seed, or the mutations test only the first check.
    package::verify(&package::decode(&good).unwrap(), None).unwrap();
    // A small package too, so mutations reach the later fields often.
    let mut small = package::decode(&good).unwrap();
    small.component = b"\0asm\x0d\0\x01\0".to_vec();
    run(
        "package",
        &[good, package::encode(&small)],
        5_000,
        package::fuzz_targets::package,
    );
}

#[test]
fn the_manifest_parser_survives_mutations() {
    let package = package::decode(&seed_package()).unwrap();
    let manifest = serde_json::to_vec(&package.manifest).unwrap();
    let key = package.signatures[0].public_key.clone().into_bytes();
    run(
        "manifest",
        &[manifest, key],
        100_000,
        package::fuzz_targets::manifest,
    );
}

#[test]
fn the_index_and_log_parsers_survive_mutations() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let mut log: Vec<LogEntry> = Vec::new();
    for (sequence, event) in [
        Event::KeyAdded {
            publisher: "acme".into(),
            public_key: "ab".repeat(32),
            signed_by: None,
            signature: None,
            possession: String::new(),
        },
        Event::Publish {
            name: "a".into(),
            version: "1.0.0".into(),
            publisher: "acme".into(),
            package_sha256: "cd".repeat(32),
        },
        Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: "ab".repeat(32),
            revoked_at: 5,
            signed_by: None,
            signature: None,
            by_admin: false,
        },
    ]
    .into_iter()
    .enumerate()
    {
        log.push(LogEntry {
            sequence: sequence as u64,
            time: 1,
            previous: log.last().map(LogEntry::hash).unwrap_or(LOG_ROOT.into()),
            event,
        });
    }
    let index = Index {
        registry: package::public_key_hex(&key),
        version: 7,
        issued_at: 1,
        expires_at: u64::MAX,
        log_size: log.len() as u64,
        log_head: log.last().map(LogEntry::hash).unwrap_or_default(),
        packages: vec![IndexEntry {
            name: "a".into(),
            version: "1.0.0".into(),
            publisher: "acme".into(),
            package_sha256: "cd".repeat(32),
            package_bytes: 10,
            component_sha256: "ef".repeat(32),
            capabilities: vec!["storage-read".into()],
            signers: vec!["ab".repeat(32)],
            published_at: 2,
            yanked: false,
        }],
        keys: vec![KeyEntry {
            publisher: "acme".into(),
            public_key: "ab".repeat(32),
            added_at: 1,
            revoked_at: Some(5),
        }],
    };
    let signed = serde_json::to_vec(&index.sign(&key)).unwrap();
    let bare = serde_json::to_vec(&index).unwrap();
    let next = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let roots = vec![
        warden_registry::protocol::Root {
            version: 2,
            keys: vec![
                package::public_key_hex(&next),
                package::public_key_hex(&key),
            ],
            threshold: 2,
            issued_at: 1,
        }
        .sign(&[&key, &next]),
    ];
    let roots = serde_json::to_vec(&roots).unwrap();
    run(
        "index",
        &[signed, bare, roots],
        100_000,
        fuzz_targets::index,
    );
    run(
        "log",
        &[serde_json::to_vec(&log).unwrap()],
        100_000,
        fuzz_targets::log,
    );
}

#[test]
fn the_node_boundary_survives_mutations() {
    // Bytes that decode to a node with pins of every type, and outputs for it.
    let mut seed = vec![2u8];
    for index in 0..6u8 {
        seed.extend([4, b'n', b'o', b'd', b'e', 2, b'h', b'i', 0, 0, 3]);
        seed.extend([
            index & 1,
            3,
            b'p',
            b'i',
            b'n',
            0,
            index,
            1,
            4,
            2,
            b'o',
            b'k',
            2,
            0,
            1,
        ]);
        seed.extend([0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x40, 0x24, 0, 0, 0, 0, 0, 0]);
    }
    seed.extend([
        5, 3, b'p', b'i', b'n', 6, 7, b'{', b'"', b'a', b'"', b':', b'1', b'}',
    ]);
    let seeds = vec![seed, vec![0; 64], (0..=255).collect()];
    run(
        "node boundary",
        &seeds,
        20_000,
        warden_host::fuzz_targets::node_boundary,
    );
}

#[test]
fn node_text_and_ui_documents_survive_mutations() {
    let seeds = vec![
        br#"{"version":"0.1","root":{"type":"column","children":[{"type":"image","src":"https://example.com/a.png"},{"type":"button","text":"Go","action":"submit"}]}}"#.to_vec(),
        b"line\n\x1b[31mred\x1b[0m\r\n\xe2\x80\xaeevil\xc2\x9b\\u{1b}\n".to_vec(),
    ];
    run(
        "node text",
        &seeds,
        20_000,
        warden_host::fuzz_targets::node_text,
    );
}
