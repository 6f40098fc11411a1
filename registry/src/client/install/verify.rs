//! The checks an install and a sync make, before anything is compiled: the root chain from what
//! the host trusts, the index (signature, registry, expiry, no rollback, no equivocation), the
//! log (it chains to the signed checkpoint, extends what was seen, replays, and describes
//! exactly the index), the version chosen, the package (its hash as indexed, its manifest and
//! signatures) and its signing key (the publisher's, valid at publication, and in the lineage
//! of keys the host accepted before).

use super::error::{Coordinates, InstallError, Refusal};
use super::state::{InstallState, RegistryRecord};
use crate::protocol::{
    self, Index, IndexEntry, LogEntry, Replayed, Root, Signed, SignedRoot, sha256_hex,
};
use std::collections::BTreeSet;
use warden_package::{self as package, Package, hex};

/// Follows the registry's root documents from what this host trusts (the root it accepted
/// before, or the key the operator gave on first use) to the newest, each step signed by a
/// threshold of the old keys and of the new.
pub fn follow_roots(
    known: Option<&Root>,
    registry_key: Option<&str>,
    roots: &[SignedRoot],
    registry: &str,
) -> Result<Root, InstallError> {
    let mut current = match (known, registry_key) {
        (Some(known), Some(given)) if !known.keys.iter().any(|key| key == given.trim()) => {
            return Err(Refusal::KeyNotPinned {
                registry: registry.to_string(),
                pinned: known.keys.clone(),
            }
            .into());
        }
        (Some(known), _) => known.clone(),
        (None, Some(given)) => {
            let given = given.trim();
            package::verifying_key_from_hex(given)
                .map_err(|error| InstallError::Usage(format!("--registry-key: {error}")))?;
            // The oldest root the key the operator vouched for signed and is listed in; every
            // later root must then follow from it by thresholds.
            roots
                .iter()
                .find_map(|signed| Root::verify_pinned(signed, given).ok())
                .ok_or_else(|| Refusal::NoRootListsKey {
                    registry: registry.to_string(),
                    key: given.to_string(),
                })?
        }
        (None, None) => {
            return Err(InstallError::Usage(format!(
                "this host has not used {registry} before: pass its public key with --registry-key (the registry prints it and writes it to registry.pub in its data directory)"
            )));
        }
    };
    for signed in roots {
        let version = Root::parse(signed).map_err(Refusal::Protocol)?.version;
        if version <= current.version {
            continue;
        }
        current = current.verify_next(signed).map_err(Refusal::Protocol)?;
    }
    Ok(current)
}

/// An index accepted by `accept_index`.
#[derive(Debug)]
pub struct Accepted {
    /// The registry's identity (`protocol::registry_id`).
    pub id: String,
    pub index: Index,
    /// The root it was verified with.
    pub root: Root,
    /// What the host remembered of this registry before.
    pub known: Option<RegistryRecord>,
}

/// Verifies a signed index served at `url` against what this host has seen of the registry
/// with the identity its roots prove: the root chain, the signature, the expiry, no rollback,
/// no equivocation. Whatever URL served it, a registry's record is found by its identity.
pub fn accept_index(
    host: &InstallState,
    url: &str,
    signed: &Signed,
    roots: &[SignedRoot],
    registry_key: Option<&str>,
    now: u64,
) -> Result<Accepted, InstallError> {
    let id = protocol::registry_id(roots).map_err(|source| Refusal::NoIdentity {
        url: url.to_string(),
        source,
    })?;
    let known = host.registry_by_id(&id)?;
    let registry_key = registry_key.map(str::trim);
    if let Some(known) = &known {
        // The chain proving the identity must hold the root this host follows, or the
        // server only claims to be that registry.
        let held = roots
            .get((known.root.version as usize).wrapping_sub(1))
            .and_then(|signed| Root::parse(signed).ok())
            .is_some_and(|root| root == known.root);
        if !held {
            return Err(Refusal::RootNotHeld {
                url: url.to_string(),
                id,
                version: known.root.version,
            }
            .into());
        }
    }
    // The identity key itself is a fine thing for an operator to give for a known registry
    // (a mirror, for instance): the root followed is the one this host holds.
    let given = registry_key.filter(|key| known.is_none() || *key != id);
    let root = follow_roots(known.as_ref().map(|known| &known.root), given, roots, url)?;
    let index = Index::verify_with_root(signed, &root, now).map_err(Refusal::Protocol)?;
    let digest = sha256_hex(signed.signed.as_bytes());
    if let Some(known) = &known {
        if index.version < known.index_version {
            return Err(Refusal::Rollback {
                served: index.version,
                seen: known.index_version,
            }
            .into());
        }
        if index.version == known.index_version && digest != known.index_sha256 {
            return Err(Refusal::TwoIndexes {
                version: index.version,
            }
            .into());
        }
        if index.log_size < known.log_size {
            return Err(Refusal::LogShorter.into());
        }
    }
    Ok(Accepted {
        id,
        index,
        root,
        known,
    })
}

/// Checks the whole log of the registry `registry_id` (`protocol::registry_id` of its roots):
/// it chains to the index's signed checkpoint, extends what was seen, replays (key possession
/// and revocation proofs name the registry), and describes exactly the index's keys and
/// versions. Returns the replayed state.
pub fn check_log(
    entries: &[LogEntry],
    index: &Index,
    known: Option<&RegistryRecord>,
    registry_id: &str,
) -> Result<Replayed, InstallError> {
    let replayed = protocol::verify_log(entries, index.log_size, &index.log_head)
        .and_then(|()| protocol::replay(entries, registry_id))
        .and_then(|replayed| protocol::index_matches_log(index, &replayed).map(|()| replayed))
        .map_err(Refusal::Protocol)?;
    if let Some(known) = known
        && known.log_size > 0
    {
        let extends = entries
            .get(known.log_size as usize - 1)
            .is_some_and(|entry| entry.hash() == known.log_head);
        if !extends {
            return Err(Refusal::LogRewritten.into());
        }
    }
    Ok(replayed)
}

/// Picks the version to install: the one asked for, or the highest not yanked.
pub fn choose<'a>(
    index: &'a Index,
    name: &str,
    version: Option<&str>,
) -> Result<&'a IndexEntry, InstallError> {
    let entry = match version {
        Some(version) => index.entry(name, version).ok_or_else(|| {
            InstallError::Usage(format!("the registry does not list {name}@{version}"))
        })?,
        None => highest(index, name, |_| true).ok_or_else(|| {
            InstallError::Usage(format!(
                "the registry lists no installable version of `{name}`"
            ))
        })?,
    };
    if entry.yanked {
        return Err(Refusal::Yanked {
            name: name.to_string(),
            version: entry.version.clone(),
        }
        .into());
    }
    Ok(entry)
}

/// Picks the highest version not yanked that `requirement` accepts.
pub fn choose_matching<'a>(
    index: &'a Index,
    name: &str,
    requirement: &semver::VersionReq,
) -> Result<&'a IndexEntry, InstallError> {
    highest(index, name, |version| requirement.matches(version)).ok_or_else(|| {
        InstallError::Usage(format!(
            "the registry lists no installable version of `{name}` that matches `{requirement}`"
        ))
    })
}

/// The highest version of `name` not yanked that `accept` takes.
fn highest<'a>(
    index: &'a Index,
    name: &str,
    accept: impl Fn(&semver::Version) -> bool,
) -> Option<&'a IndexEntry> {
    index
        .packages
        .iter()
        .filter(|entry| entry.name == name && !entry.yanked)
        .filter_map(|entry| {
            semver::Version::parse(&entry.version)
                .ok()
                .filter(|version| accept(version))
                .map(|parsed| (parsed, entry))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, entry)| entry)
}

/// Checks a downloaded package against its index entry and the index's keys.
pub fn check_package(
    bytes: &[u8],
    entry: &IndexEntry,
    index: &Index,
) -> Result<Package, InstallError> {
    check_package_signers(bytes, entry, index).map(|(package, _)| package)
}

/// `check_package`, also returning the keys (hex) whose signatures on the package verify and
/// that were valid keys of its publisher when it was published.
pub fn check_package_signers(
    bytes: &[u8],
    entry: &IndexEntry,
    index: &Index,
) -> Result<(Package, Vec<String>), InstallError> {
    if bytes.len() as u64 != entry.package_bytes || sha256_hex(bytes) != entry.package_sha256 {
        return Err(Refusal::FileNotIndexed {
            name: entry.name.clone(),
            version: entry.version.clone(),
        }
        .into());
    }
    let package = package::decode(bytes).map_err(Refusal::Package)?;
    let signers = package::verify(&package, None).map_err(Refusal::Package)?;
    let manifest = &package.manifest;
    if manifest.name != entry.name
        || manifest.version != entry.version
        || manifest.publisher != entry.publisher
    {
        return Err(Refusal::OtherPackage {
            package: Box::new(Coordinates {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                publisher: manifest.publisher.clone(),
            }),
            listed: Box::new(Coordinates {
                name: entry.name.clone(),
                version: entry.version.clone(),
                publisher: entry.publisher.clone(),
            }),
        }
        .into());
    }
    if manifest.capabilities != entry.capabilities
        || manifest.component_sha256 != entry.component_sha256
    {
        return Err(Refusal::ManifestDiffers.into());
    }
    let valid: Vec<String> = signers
        .iter()
        .map(|signer| hex(signer.as_bytes()))
        .filter(|signer| valid_signer(std::slice::from_ref(signer), entry, index))
        .collect();
    if valid.is_empty() {
        return Err(Refusal::NoValidSigner {
            name: entry.name.clone(),
            version: entry.version.clone(),
            publisher: entry.publisher.clone(),
        }
        .into());
    }
    Ok((package, valid))
}

/// Whether one of `signers` is a key of the entry's publisher that the index says was added
/// before, and not revoked at, the entry's publication.
pub(super) fn valid_signer(signers: &[String], entry: &IndexEntry, index: &Index) -> bool {
    signers.iter().any(|signer| {
        index.key(signer).is_some_and(|key| {
            key.publisher == entry.publisher
                && key.added_at <= entry.published_at
                && key
                    .revoked_at
                    .is_none_or(|revoked| entry.published_at < revoked)
        })
    })
}

/// The keys of `publisher` this host accepts, given the ones it `accepted` before: those, and
/// every key the log shows signed in (a rotation whose signature replay checked) by one of
/// them. A key added without such a signature (an admin's after every key was revoked) is not
/// in the lineage, nor is one that a later back-dated revocation of its signer voided
/// (`protocol::voided_by_revocation`; `replayed`, the final state, lists them): that revocation
/// voids what the key signed from then on, its rotation statements included.
pub(super) fn lineage(
    accepted: &[String],
    entries: &[LogEntry],
    replayed: &Replayed,
    publisher: &str,
) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = accepted.iter().cloned().collect();
    for entry in entries {
        if let protocol::Event::KeyAdded {
            publisher: of,
            public_key,
            signed_by: Some(by),
            ..
        } = &entry.event
            && of == publisher
            && keys.contains(by)
            && !replayed.voided.contains(public_key)
        {
            keys.insert(public_key.clone());
        }
    }
    keys
}

/// Every key the replayed log gives `publisher`, revoked ones included.
pub(super) fn publisher_keys_of(replayed: &Replayed, publisher: &str) -> Vec<String> {
    replayed
        .keys
        .values()
        .filter(|key| key.publisher == publisher)
        .map(|key| key.public_key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::install::test_support::{added, index, key, log, public, remember, roots};
    use crate::protocol::{Event, KeyEventError, LOG_ROOT, ProtocolError};
    use ed25519_dalek::SigningKey;

    #[test]
    fn two_different_indexes_with_one_version_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let first = index(&key, 5, &[]);
        let signed = first.sign(&key);
        let roots = roots(&key);
        assert!(accept_index(&host, "r", &signed, &roots, Some(&first.registry), 10).is_ok());
        remember(&host, &signed, &first);
        // The same version again is fine; a different document under that version is not.
        assert!(accept_index(&host, "r", &signed, &roots, None, 10).is_ok());
        let mut other = first.clone();
        other.issued_at = 1;
        let result = accept_index(&host, "r", &other.sign(&key), &roots, None, 10);
        assert!(matches!(
            result,
            Err(InstallError::Refused(Refusal::TwoIndexes { version: 5 }))
        ));
    }

    #[test]
    fn a_rewritten_or_shortened_log_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let seen_log = log(&["1", "2"]);
        let seen = index(&key, 1, &seen_log);
        remember(&host, &seen.sign(&key), &seen);
        let known = host.registry("r").unwrap_or_default();
        assert!(known.is_some());

        // An extension of the log seen before passes.
        let grown = log(&["1", "2", "3"]);
        assert!(check_log(&grown, &index(&key, 2, &grown), known.as_ref(), "r").is_ok());
        // A different history of the same length or longer, even if signed, does not.
        let forked = log(&["1", "X", "3"]);
        let result = check_log(&forked, &index(&key, 2, &forked), known.as_ref(), "r");
        assert!(matches!(
            result,
            Err(InstallError::Refused(Refusal::LogRewritten))
        ));
        // A log shorter than seen is refused with the index.
        let short = log(&["1"]);
        let result = accept_index(
            &host,
            "r",
            &index(&key, 2, &short).sign(&key),
            &roots(&key),
            None,
            10,
        );
        assert!(matches!(
            result,
            Err(InstallError::Refused(Refusal::LogShorter))
        ));
        // A log that does not chain to the signed checkpoint is refused.
        let result = check_log(&grown[..2], &index(&key, 2, &grown), None, "r");
        assert!(matches!(
            result,
            Err(InstallError::Refused(Refusal::Protocol(
                ProtocolError::BrokenLog(_)
            )))
        ));
        // An index that lists a version, or a key, the log never recorded is refused.
        let mut padded = index(&key, 2, &grown);
        let mut extra = padded.packages[0].clone();
        extra.version = "9".into();
        padded.packages.push(extra);
        let result = check_log(&grown, &padded, known.as_ref(), "r");
        assert!(
            matches!(result, Err(InstallError::Refused(Refusal::Protocol(ProtocolError::BrokenLog(m)))) if m.contains("other versions"))
        );
        // A version listed twice in place of another the log records.
        let mut doubled = index(&key, 2, &grown);
        let first = doubled.packages[0].clone();
        doubled.packages[1] = first;
        let result = check_log(&grown, &doubled, known.as_ref(), "r");
        assert!(
            matches!(result, Err(InstallError::Refused(Refusal::Protocol(ProtocolError::BrokenLog(m)))) if m.contains("other versions"))
        );
        let mut keyed = index(&key, 2, &grown);
        keyed.keys.push(crate::protocol::KeyEntry {
            publisher: "p".into(),
            public_key: "ab".repeat(32),
            added_at: 0,
            revoked_at: None,
        });
        let result = check_log(&grown, &keyed, known.as_ref(), "r");
        assert!(
            matches!(result, Err(InstallError::Refused(Refusal::Protocol(ProtocolError::BrokenLog(m)))) if m.contains("publisher keys"))
        );
    }

    #[test]
    fn the_lineage_follows_signed_rotations_only() {
        let (a, b, c, other) = (key(1), key(2), key(3), key(4));
        let events = [
            added(&a, None),
            added(&b, Some(&a)),
            // An admin's unsigned key after every key was revoked, and a key it signs in.
            added(&c, None),
            added(&other, Some(&c)),
        ];
        let entries: Vec<LogEntry> = events
            .into_iter()
            .enumerate()
            .map(|(sequence, event)| LogEntry {
                sequence: sequence as u64,
                time: 0,
                previous: String::new(),
                event,
            })
            .collect();
        let replayed = Replayed::default();
        let keys = lineage(&[public(&a)], &entries, &replayed, "acme");
        assert_eq!(keys, [public(&a), public(&b)].into_iter().collect());
        assert!(lineage(&[public(&a)], &entries, &replayed, "evil").len() == 1);
    }

    #[test]
    fn a_root_grafted_onto_another_chain_takes_no_registrys_log() {
        let (k1, k2, thief, publisher) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
            SigningKey::from_bytes(&[4; 32]),
        );
        let public = |key: &SigningKey| hex(key.verifying_key().as_bytes());
        let root = |version: u64, key: &SigningKey| Root {
            version,
            keys: vec![public(key)],
            threshold: 1,
            issued_at: 0,
        };
        // Registry R: created with k1 (its identity), rotated to k2.
        let genuine = vec![root(1, &k1).sign(&[&k1]), root(2, &k2).sign(&[&k1, &k2])];
        // The thief's chain: its own version 1, then R's public version 2 with the thief's
        // signature added, which makes it "follow" the thief's root. The chain verifies.
        let mut grafted_two = genuine[1].clone();
        grafted_two
            .signatures
            .extend(root(2, &k2).sign(&[&thief]).signatures);
        let grafted = vec![root(1, &thief).sign(&[&thief]), grafted_two];
        assert_eq!(protocol::registry_id(&grafted), Ok(public(&thief)));
        // R's log and index, served through the grafted chain to a host given R's current key.
        let log = vec![LogEntry {
            sequence: 0,
            time: 0,
            previous: LOG_ROOT.into(),
            event: Event::KeyAdded {
                publisher: "acme".into(),
                public_key: public(&publisher),
                signed_by: None,
                signature: None,
                possession: protocol::sign_possession(&public(&k1), "acme", &publisher),
            },
        }];
        let keys = protocol::replay(&log, &public(&k1))
            .unwrap_or_default()
            .keys
            .into_values()
            .collect();
        let signed = Index {
            keys,
            ..index(&k2, 1, &log)
        }
        .sign(&k2);
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let host = InstallState::open(dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let accepted = accept_index(&host, "m", &signed, &grafted, Some(&public(&k2)), 10);
        // The index verifies under R's keys, yet the identity is the thief's: what stops the
        // graft is the log, whose possession proofs name R's identity.
        let accepted = accepted.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(accepted.id, public(&thief));
        let result = check_log(&log, &accepted.index, None, &accepted.id);
        assert!(
            matches!(
                &result,
                Err(InstallError::Refused(Refusal::Protocol(
                    ProtocolError::BadKeyEvent {
                        reason: KeyEventError::NoPossession { .. },
                        ..
                    }
                )))
            ),
            "{result:?}"
        );
        // Through R's own chain the same index and log are R's.
        let honest = accept_index(&host, "m", &signed, &genuine, Some(&public(&k2)), 10)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(honest.id, public(&k1));
        assert!(check_log(&log, &honest.index, None, &honest.id).is_ok());
    }

    #[test]
    fn extreme_and_equal_log_times() {
        let publisher = SigningKey::from_bytes(&[1; 32]);
        let public = hex(publisher.verifying_key().as_bytes());
        let entries = |times: [u64; 3], revoked_at: u64| -> Vec<LogEntry> {
            let events = [
                Event::KeyAdded {
                    publisher: "acme".into(),
                    public_key: public.clone(),
                    signed_by: None,
                    signature: None,
                    possession: protocol::sign_possession("r", "acme", &publisher),
                },
                Event::Publish {
                    name: "a".into(),
                    version: "1.0.0".into(),
                    publisher: "acme".into(),
                    package_sha256: "00".repeat(32),
                },
                Event::KeyRevoked {
                    publisher: "acme".into(),
                    public_key: public.clone(),
                    revoked_at,
                    signed_by: None,
                    signature: None,
                    by_admin: false,
                },
            ];
            events
                .into_iter()
                .zip(times)
                .enumerate()
                .map(|(sequence, (event, time))| LogEntry {
                    sequence: sequence as u64,
                    time,
                    previous: String::new(),
                    event,
                })
                .collect()
        };
        // The index the tests' helper makes lists the keys and versions the log replays to.
        let valid = |log: &[LogEntry]| {
            let index = index(&SigningKey::from_bytes(&[9; 32]), 1, log);
            index.keys.len() == 1
                && valid_signer(std::slice::from_ref(&public), &index.packages[0], &index)
        };
        // The largest time everywhere replays (no overflow), and a revocation at the very time
        // of the publish voids it: signatures from `revoked_at` on are refused.
        let max = entries([u64::MAX; 3], u64::MAX);
        assert!(protocol::replay(&max, "r").is_ok());
        assert!(!valid(&max));
        let same_second = entries([100, 100, 100], 100);
        assert!(protocol::replay(&same_second, "r").is_ok());
        assert!(!valid(&same_second));
        // A second later, the publish stands.
        assert!(valid(&entries([100, 100, 101], 101)));
        // Revoking from before the entry's time needs a signature or an admin's mark.
        assert!(protocol::replay(&entries([100, 100, 101], 100), "r").is_err());
    }

    #[test]
    fn a_rotation_voided_by_its_signers_back_dated_revocation_leaves_the_lineage() {
        let (a, b, c) = (key(1), key(2), key(3));
        // A thief holding `a` signs in `b` at 20, and `b` signs in `c`; the publisher then
        // revokes `a` back to `revoked_at` (an admin's mark: nobody else holds a key).
        let lineage_with = |revoked_at: u64| {
            let events = [
                (10, added(&a, None)),
                (20, added(&b, Some(&a))),
                (30, added(&c, Some(&b))),
                (
                    40,
                    Event::KeyRevoked {
                        publisher: "acme".into(),
                        public_key: public(&a),
                        revoked_at,
                        signed_by: None,
                        signature: None,
                        by_admin: true,
                    },
                ),
            ];
            let entries: Vec<LogEntry> = events
                .into_iter()
                .enumerate()
                .map(|(sequence, (time, event))| LogEntry {
                    sequence: sequence as u64,
                    time,
                    previous: String::new(),
                    event,
                })
                .collect();
            let replayed = protocol::replay(&entries, "r").unwrap_or_default();
            assert_eq!(replayed.keys.len(), 3, "the log replays");
            lineage(&[public(&a)], &entries, &replayed, "acme")
        };
        // Revoked from 15: the rotation at 20 is void, and so is what the voided key signed.
        assert_eq!(lineage_with(15), [public(&a)].into_iter().collect());
        // Revoked at the rotation's own second, or after it: the rotation stands.
        let all: BTreeSet<String> = [public(&a), public(&b), public(&c)].into_iter().collect();
        assert_eq!(lineage_with(20), all);
        assert_eq!(lineage_with(40), all);
    }
}
