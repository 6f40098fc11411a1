//! Replaying the log: the state it describes (every publisher key and every version), each key
//! event checked on the way, and whether an index lists exactly that state.

use super::error::{KeyEventError, ProtocolError};
use super::index::{Index, KeyEntry};
use super::log::{Event, LogEntry};
use super::statements::{
    verify_key_statement, verify_possession, verify_revocation, verifying_key_from_hex,
};

/// A package version as the log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub publisher: String,
    pub package_sha256: String,
    pub published_at: u64,
    pub yanked: bool,
}

/// The state the log describes: every publisher key and every version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// By public key.
    pub keys: std::collections::BTreeMap<String, KeyEntry>,
    /// Which key signed each rotated-in key in (a publisher's first key, and a key an admin
    /// registered with every key revoked, have none).
    pub signed_in_by: std::collections::BTreeMap<String, String>,
    /// Keys a back-dated revocation voided from their start ([`voided_by_revocation`]).
    pub voided: std::collections::BTreeSet<String>,
    /// By (name, version).
    pub versions: std::collections::BTreeMap<(String, String), Published>,
}

/// Each publisher's keys that are not revoked, so a signature is checked in O(log n).
type CurrentKeys<'a> = std::collections::BTreeMap<&'a str, std::collections::BTreeSet<String>>;

/// Replays the log of the registry `registry` (its `registry_id`), checking every key event:
/// each added key's proof of possession, each rotation's signature by a key of the same
/// publisher that was current at that point, and each back-dated revocation's signature by
/// another current key (or its mark as an admin's). A key added without a rotation signature
/// is a publisher's first key, or one an admin added after all its keys were revoked. What the
/// registry's tables and signed index say must equal what this returns. Entry times never go
/// backwards.
pub fn replay(entries: &[LogEntry], registry: &str) -> Result<Replayed, ProtocolError> {
    let broken = |entry: &LogEntry, why: String| {
        ProtocolError::BrokenLog(format!("entry {}: {why}", entry.sequence))
    };
    let mut state = Replayed::default();
    // A name belongs to the publisher who first published it.
    let mut owners: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut current_keys = CurrentKeys::new();
    let mut last_time = 0;
    for entry in entries {
        // Times only move forward: otherwise a registry could back-date a publish below its
        // key's revocation, and hosts would take it as signed while the key was valid.
        if entry.time < last_time {
            return Err(broken(
                entry,
                format!(
                    "its time {} is before the time {last_time} of the entry before it",
                    entry.time
                ),
            ));
        }
        last_time = entry.time;
        match &entry.event {
            Event::KeyAdded { .. } => {
                replay_key_added(entry, registry, &mut state, &mut current_keys)
                    .map_err(|why| ProtocolError::key_event(entry.sequence, why))?;
            }
            Event::KeyRevoked { .. } => {
                replay_key_revoked(entry, registry, &mut state, &mut current_keys)
                    .map_err(|why| ProtocolError::key_event(entry.sequence, why))?;
            }
            Event::Publish {
                name,
                version,
                publisher,
                package_sha256,
            } => {
                let owner = *owners.entry(name.as_str()).or_insert(publisher.as_str());
                if owner != publisher {
                    return Err(broken(
                        entry,
                        format!("`{publisher}` publishes `{name}`, which belongs to `{owner}`"),
                    ));
                }
                let published = Published {
                    publisher: publisher.clone(),
                    package_sha256: package_sha256.clone(),
                    published_at: entry.time,
                    yanked: false,
                };
                if state
                    .versions
                    .insert((name.clone(), version.clone()), published)
                    .is_some()
                {
                    return Err(broken(
                        entry,
                        format!("{name}@{version} is published twice"),
                    ));
                }
            }
            Event::Yank { name, version } => {
                match state.versions.get_mut(&(name.clone(), version.clone())) {
                    Some(published) if !published.yanked => published.yanked = true,
                    _ => {
                        return Err(broken(
                            entry,
                            format!(
                                "yanks {name}@{version}, which is not published or yanked already"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(state)
}

/// A `KeyAdded` entry: its possession proof, and for a publisher with current keys, the
/// rotation signature of one of them.
fn replay_key_added<'a>(
    entry: &'a LogEntry,
    registry: &str,
    state: &mut Replayed,
    current_keys: &mut CurrentKeys<'a>,
) -> Result<(), KeyEventError> {
    let Event::KeyAdded {
        publisher,
        public_key,
        signed_by,
        signature,
        possession,
    } = &entry.event
    else {
        return Ok(());
    };
    if state.keys.contains_key(public_key) {
        return Err(KeyEventError::AddedTwice);
    }
    if !verify_possession(registry, publisher, public_key, possession) {
        return Err(KeyEventError::NoPossession {
            publisher: publisher.clone(),
            key: public_key.clone(),
        });
    }
    let current = current_keys.get(publisher.as_str());
    match (signed_by, signature) {
        (Some(by), Some(signature)) => {
            let valid = current.is_some_and(|keys| keys.contains(by))
                && verifying_key_from_hex(by)
                    .is_ok_and(|by| verify_key_statement(publisher, public_key, &by, signature));
            if !valid {
                return Err(KeyEventError::RotationNotSigned {
                    publisher: publisher.clone(),
                    key: public_key.clone(),
                });
            }
        }
        (None, None) if current.is_none_or(|keys| keys.is_empty()) => {}
        _ => {
            return Err(KeyEventError::AddedUnsigned {
                publisher: publisher.clone(),
                key: public_key.clone(),
            });
        }
    }
    current_keys
        .entry(publisher.as_str())
        .or_default()
        .insert(public_key.clone());
    if let Some(by) = signed_by {
        state.signed_in_by.insert(public_key.clone(), by.clone());
    }
    state.keys.insert(
        public_key.clone(),
        KeyEntry {
            publisher: publisher.clone(),
            public_key: public_key.clone(),
            added_at: entry.time,
            revoked_at: None,
        },
    );
    Ok(())
}

/// A `KeyRevoked` entry: a current key of the publisher; if back-dated (before the entry's
/// time), signed by another current key of the publisher or marked as an admin's.
fn replay_key_revoked(
    entry: &LogEntry,
    registry: &str,
    state: &mut Replayed,
    current_keys: &mut CurrentKeys<'_>,
) -> Result<(), KeyEventError> {
    let Event::KeyRevoked {
        publisher,
        public_key,
        revoked_at,
        signed_by,
        signature,
        by_admin,
    } = &entry.event
    else {
        return Ok(());
    };
    let current = current_keys.get(publisher.as_str());
    if !current.is_some_and(|keys| keys.contains(public_key)) {
        return Err(KeyEventError::NotCurrent {
            publisher: publisher.clone(),
            key: public_key.clone(),
        });
    }
    match (signed_by, signature, by_admin) {
        (Some(by), Some(signature), false) => {
            let valid = by != public_key
                && current.is_some_and(|keys| keys.contains(by))
                && verifying_key_from_hex(by).is_ok_and(|by| {
                    verify_revocation(registry, publisher, public_key, *revoked_at, &by, signature)
                });
            if !valid {
                return Err(KeyEventError::RevocationNotSigned {
                    publisher: publisher.clone(),
                    key: public_key.clone(),
                });
            }
        }
        (None, None, true) => {}
        (None, None, false) if *revoked_at >= entry.time => {}
        _ => {
            return Err(KeyEventError::BackDatedUnsigned {
                key: public_key.clone(),
                revoked_at: *revoked_at,
                time: entry.time,
            });
        }
    }
    if let Some(keys) = current_keys.get_mut(publisher.as_str()) {
        keys.remove(public_key);
    }
    if let Some(key) = state.keys.get_mut(public_key) {
        key.revoked_at = Some(*revoked_at);
    }
    let spared = if *by_admin {
        None
    } else {
        signed_by.as_deref()
    };
    for (voided, at) in voided_by_revocation(state, public_key, *revoked_at, spared) {
        if let Some(keys) = current_keys.get_mut(publisher.as_str()) {
            keys.remove(&voided);
        }
        if let Some(key) = state.keys.get_mut(&voided) {
            key.revoked_at = Some(at);
        }
        state.voided.insert(voided);
    }
    Ok(())
}

/// The keys a revocation of `key` back to `revoked_at` voids, with the revocation time each
/// then gets. A key `key` signed in after `revoked_at` was signed in by a key already
/// compromised, and so was every key signed in below it, at any time: each is revoked from the
/// moment it was added, so nothing it signed stays valid. A rotation in the same second as the
/// revocation time stands (the log orders the rotation first, and rotating to a new key and
/// revoking the old one at once is routine). The key that signed the revocation, if any, is
/// `spared` with everything below it: its holder vouches for it (a thief holding it could
/// revoke the old key anyway); an admin's back-dating spares nothing. The registry applies this
/// to its keys when it records the revocation, and every replay (the registry's own, `registry
/// check`, hosts') derives the same, so an index that leaves such a key valid is refused.
pub fn voided_by_revocation(
    state: &Replayed,
    key: &str,
    revoked_at: u64,
    spared: Option<&str>,
) -> Vec<(String, u64)> {
    let mut voided: Vec<(String, u64)> = Vec::new();
    // A key, and the time after which what it signed in is void (none: all of it).
    let mut pending: Vec<(String, Option<u64>)> = vec![(key.to_string(), Some(revoked_at))];
    while let Some((signer, void_after)) = pending.pop() {
        for (child, by) in &state.signed_in_by {
            if *by != signer
                || spared == Some(child.as_str())
                || voided.iter().any(|(done, _)| done == child)
            {
                continue;
            }
            let Some(entry) = state.keys.get(child) else {
                continue;
            };
            if void_after.is_some_and(|after| entry.added_at <= after) {
                continue;
            }
            let at = entry.added_at;
            if entry.revoked_at.is_none_or(|current| current > at) {
                voided.push((child.clone(), at));
            }
            // Everything a voided key signed in is void, whenever it was signed.
            pending.push((child.clone(), None));
        }
    }
    voided
}

/// Checks that an index lists exactly the keys and versions its log describes.
pub fn index_matches_log(index: &Index, replayed: &Replayed) -> Result<(), ProtocolError> {
    let keys: std::collections::BTreeMap<String, KeyEntry> = index
        .keys
        .iter()
        .map(|key| (key.public_key.clone(), key.clone()))
        .collect();
    if keys.len() != index.keys.len() || keys != replayed.keys {
        return Err(ProtocolError::BrokenLog(
            "the index's publisher keys are not the ones its log adds and revokes".into(),
        ));
    }
    let listed: std::collections::BTreeSet<(&str, &str)> = index
        .packages
        .iter()
        .map(|entry| (entry.name.as_str(), entry.version.as_str()))
        .collect();
    if listed.len() != index.packages.len() || index.packages.len() != replayed.versions.len() {
        return Err(ProtocolError::BrokenLog(
            "the index lists other versions than its log publishes".into(),
        ));
    }
    for entry in &index.packages {
        let logged = replayed
            .versions
            .get(&(entry.name.clone(), entry.version.clone()));
        let same = logged.is_some_and(|logged| {
            logged.publisher == entry.publisher
                && logged.package_sha256 == entry.package_sha256
                && logged.published_at == entry.published_at
                && logged.yanked == entry.yanked
        });
        if !same {
            return Err(ProtocolError::BrokenLog(format!(
                "the index's {}@{} is not what its log records",
                entry.name, entry.version
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::statements::{sign_possession, sign_revocation};
    use crate::protocol::test_support::{REGISTRY, added, key, logged};
    use ed25519_dalek::SigningKey;
    use warden_package::hex;

    fn revoked(publisher: &str, key: &SigningKey, at: u64) -> Event {
        Event::KeyRevoked {
            publisher: publisher.into(),
            public_key: hex(key.verifying_key().as_bytes()),
            revoked_at: at,
            signed_by: None,
            signature: None,
            by_admin: false,
        }
    }

    #[test]
    fn a_back_dated_revocation_voids_the_keys_its_key_signed_in_after_it() {
        // Times are positions: a at 0, b at 1 (signed in by a), c at 2 (by b), d at 3 (by a),
        // e at 4 (by c); then a is revoked back to 1 by an admin at 5.
        let (a, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
        let public = |key: &SigningKey| hex(key.verifying_key().as_bytes());
        let by_admin = |key: &SigningKey, at: u64| Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: public(key),
            revoked_at: at,
            signed_by: None,
            signature: None,
            by_admin: true,
        };
        let events = vec![
            added("acme", &a, None),
            added("acme", &b, Some(&a)),
            added("acme", &c, Some(&b)),
            added("acme", &d, Some(&a)),
            added("acme", &e, Some(&c)),
            by_admin(&a, 1),
        ];
        let state = replay(&logged(events.clone()), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(revoked_at(&a), Some(1));
        // b was signed in at 1, the revocation's own second: it stands, and so does c below it.
        assert_eq!(revoked_at(&b), None);
        assert_eq!(revoked_at(&c), None);
        // d was signed in by a at 3, after a was compromised: void from its start.
        assert_eq!(revoked_at(&d), Some(3));
        // Back to 0 instead: b is void from 1, and everything below it whenever it came: c
        // from 2, e from 4; d from 3.
        let mut earlier = events.clone();
        earlier[5] = by_admin(&a, 0);
        let state = replay(&logged(earlier.clone()), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(
            [&b, &c, &d, &e].map(revoked_at),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        // Signed by b instead of an admin's mark: b vouches for itself and what it signed in
        // (c, e); d is still void.
        let mut vouched = earlier.clone();
        vouched[5] = Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: public(&a),
            revoked_at: 0,
            signed_by: Some(public(&b)),
            signature: Some(sign_revocation(REGISTRY, "acme", &public(&a), 0, &b)),
            by_admin: false,
        };
        let state = replay(&logged(vouched), REGISTRY).unwrap_or_default();
        let revoked_at = |key: &SigningKey| state.keys.get(&public(key)).and_then(|k| k.revoked_at);
        assert_eq!(
            [&b, &c, &d, &e].map(revoked_at),
            [None, None, Some(3), None]
        );
        assert_eq!(state.voided, [public(&d)].into_iter().collect());
        // A voided key is no longer current: it cannot sign a rotation or be revoked again.
        let mut after = earlier.clone();
        after.push(added("acme", &key(6), Some(&d)));
        assert!(replay(&logged(after), REGISTRY).is_err());
        let mut again = earlier;
        again.push(revoked("acme", &d, 7));
        assert!(replay(&logged(again), REGISTRY).is_err());
    }

    #[test]
    fn replaying_the_log_checks_every_rotation() {
        let (a, b, c) = (key(1), key(2), key(3));
        let good = logged(vec![added("acme", &a, None), added("acme", &b, Some(&a))]);
        let state = replay(&good, REGISTRY).unwrap_or_default();
        assert_eq!(state.keys.len(), 2);
        // A second key with no signature, or signed by a key of another publisher.
        assert!(
            replay(
                &logged(vec![added("acme", &a, None), added("acme", &b, None)]),
                REGISTRY
            )
            .is_err()
        );
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    added("evil", &c, None),
                    added("acme", &b, Some(&c)),
                ]),
                REGISTRY
            )
            .is_err()
        );
        // A revoked key cannot sign in a successor.
        let revoked = revoked("acme", &a, 1);
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    revoked.clone(),
                    added("acme", &b, Some(&a)),
                ]),
                REGISTRY
            )
            .is_err()
        );
        // With every key revoked, an unsigned key (an admin's recovery) is accepted.
        assert!(
            replay(
                &logged(vec![
                    added("acme", &a, None),
                    revoked,
                    added("acme", &b, None)
                ]),
                REGISTRY
            )
            .is_ok()
        );
        // A version published twice, or a yank of nothing.
        let publish = Event::Publish {
            name: "n".into(),
            version: "1.0.0".into(),
            publisher: "acme".into(),
            package_sha256: "00".repeat(32),
        };
        assert!(replay(&logged(vec![publish.clone(), publish.clone()]), REGISTRY).is_err());
        // A name published by a second publisher.
        let mut taken = publish.clone();
        if let Event::Publish {
            publisher, version, ..
        } = &mut taken
        {
            *publisher = "evil".into();
            *version = "2.0.0".into();
        }
        assert!(replay(&logged(vec![publish, taken]), REGISTRY).is_err());
        assert!(
            replay(
                &logged(vec![Event::Yank {
                    name: "n".into(),
                    version: "1.0.0".into()
                }]),
                REGISTRY
            )
            .is_err()
        );
    }

    #[test]
    fn replay_requires_each_keys_possession_for_this_registry_and_publisher() {
        let (a, b) = (key(1), key(2));
        assert!(replay(&logged(vec![added("acme", &a, None)]), REGISTRY).is_ok());
        // The same log read as another registry's: the proofs name this one.
        assert!(replay(&logged(vec![added("acme", &a, None)]), "registry-two").is_err());
        // Someone registers a key they do not hold: the proof is by another key, or made for
        // another publisher, or missing.
        let public_key = hex(a.verifying_key().as_bytes());
        for possession in [
            sign_possession(REGISTRY, "evil", &b),
            sign_possession(REGISTRY, "acme", &a).replace('0', "1"),
            sign_possession(REGISTRY, "other", &a),
            String::new(),
        ] {
            let forged = Event::KeyAdded {
                publisher: "evil".into(),
                public_key: public_key.clone(),
                signed_by: None,
                signature: None,
                possession,
            };
            assert!(matches!(
                replay(&logged(vec![forged]), REGISTRY),
                Err(ProtocolError::BadKeyEvent {
                    sequence: 0,
                    reason: KeyEventError::NoPossession { .. }
                })
            ));
        }
    }

    #[test]
    fn a_back_dated_revocation_needs_another_keys_signature_or_an_admins_mark() {
        let (a, b, c) = (key(1), key(2), key(3));
        let a_hex = hex(a.verifying_key().as_bytes());
        let keys = || vec![added("acme", &a, None), added("acme", &b, Some(&a))];
        let with = |revocation: Event| {
            let mut events = keys();
            events.push(revocation);
            replay(&logged(events), REGISTRY)
        };
        // At its entry's time (2) or later: no signature needed.
        assert!(with(revoked("acme", &a, 2)).is_ok());
        // Back-dated to 0 without a signature: refused.
        assert!(with(revoked("acme", &a, 0)).is_err());
        let signed = |by: &SigningKey, at_signed: u64, at: u64| Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: a_hex.clone(),
            revoked_at: at,
            signed_by: Some(hex(by.verifying_key().as_bytes())),
            signature: Some(sign_revocation(REGISTRY, "acme", &a_hex, at_signed, by)),
            by_admin: false,
        };
        let state = with(signed(&b, 0, 0)).unwrap_or_default();
        assert_eq!(
            state.keys.get(&a_hex).and_then(|key| key.revoked_at),
            Some(0)
        );
        // Signed by the revoked key itself, by a stranger, or over another time.
        assert!(with(signed(&a, 0, 0)).is_err());
        assert!(with(signed(&c, 0, 0)).is_err());
        assert!(with(signed(&b, 1, 0)).is_err());
        // An admin's back-dating is accepted and visible as such.
        let by_admin = Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: a_hex.clone(),
            revoked_at: 0,
            signed_by: None,
            signature: None,
            by_admin: true,
        };
        assert!(with(by_admin).is_ok());
        // A key already revoked cannot sign another's back-dated revocation.
        let mut events = keys();
        events.push(revoked("acme", &b, 2));
        events.push(signed(&b, 0, 0));
        assert!(replay(&logged(events), REGISTRY).is_err());
    }

    #[test]
    fn log_times_never_go_backwards() {
        let (a, b) = (key(1), key(2));
        let mut entries = logged(vec![added("acme", &a, None), added("acme", &b, Some(&a))]);
        entries[0].time = 100;
        entries[1].time = 100;
        assert!(replay(&entries, REGISTRY).is_ok(), "equal times are fine");
        entries[1].time = 99;
        assert!(matches!(
            replay(&entries, REGISTRY),
            Err(ProtocolError::BrokenLog(m)) if m.contains("before the time 100")
        ));
    }
}
