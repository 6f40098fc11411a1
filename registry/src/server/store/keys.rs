//! Publishers' keys: registering one (with its proof of possession, and signed in by a current
//! key once the publisher has one), and revoking one, back-dated only with another key's
//! signature or by an admin, voiding what the revoked key signed in after it.

use super::history::History;
use super::root::registry_id_in;
use super::{Caller, KEYS, LOG, META, Store, StoreError, json, parse, storage, values};
use crate::protocol::{self, Event, KeyEntry, LogEntry, now};
use crate::server::auth::Permissions;
use redb::{ReadableTable, WriteTransaction};
use warden_package::{self as package, hex};

impl Store {
    pub(super) fn keys_of(
        &self,
        txn: &WriteTransaction,
        publisher: &str,
    ) -> Result<Vec<KeyEntry>, StoreError> {
        let keys: Vec<KeyEntry> = values(&txn.open_table(KEYS).map_err(storage)?, "publisher key")?;
        Ok(keys
            .into_iter()
            .filter(|key| key.publisher == publisher)
            .collect())
    }

    pub(super) fn may_act_for(caller: &Caller, publisher: &str) -> Result<(), StoreError> {
        if caller.is_admin() || caller.user.publisher.as_deref() == Some(publisher) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "`{}` does not act for the publisher `{publisher}`",
                caller.user.name
            )))
        }
    }

    /// Registers a publisher's key. Every key proves possession: `possession` is its own
    /// signature over `protocol::possession_statement` (this registry, the publisher, the key),
    /// so nobody registers a key they do not hold. The first key needs only the caller's right
    /// to act for the publisher; every later key is a rotation and must be signed in by a
    /// current key.
    pub fn add_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        possession: &str,
        signed_by: Option<(&str, &str)>,
    ) -> Result<KeyEntry, StoreError> {
        caller.require(Permissions::MANAGE_KEYS)?;
        Self::may_act_for(caller, publisher)?;
        let parsed = package::verifying_key_from_hex(public_key)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        // One spelling per key: exactly its 64 lowercase hex digits.
        if hex(parsed.as_bytes()) != public_key {
            return Err(StoreError::BadRequest(
                "give the public key as exactly 64 lowercase hex digits".into(),
            ));
        }
        let txn = self.write()?;
        let entry = {
            let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
            if !protocol::verify_possession(&registry, publisher, public_key, possession) {
                return Err(StoreError::Forbidden(format!(
                    "the key's proof of possession does not verify: sign the possession statement for registry {registry}, publisher `{publisher}` and this key with the key itself (warden registry key does it from the secret key file)"
                )));
            }
            if txn
                .open_table(KEYS)
                .map_err(storage)?
                .get(public_key)
                .map_err(storage)?
                .is_some()
            {
                return Err(StoreError::Conflict(
                    "this key is registered already; a key is never registered twice".into(),
                ));
            }
            let signer = self.rotation_signer(&txn, caller, publisher, public_key, signed_by)?;
            self.charge_history(&txn, caller, publisher, History::KeyEvents, true)?;
            let time = Self::log_time(&txn, now())?;
            let entry = KeyEntry {
                publisher: publisher.to_string(),
                public_key: public_key.to_string(),
                added_at: time,
                revoked_at: None,
            };
            txn.open_table(KEYS)
                .map_err(storage)?
                .insert(public_key, json(&entry).as_slice())
                .map_err(storage)?;
            self.append(
                &txn,
                time,
                Event::KeyAdded {
                    publisher: publisher.to_string(),
                    public_key: public_key.to_string(),
                    signed_by: signer.as_ref().map(|(by, _)| by.clone()),
                    signature: signer.map(|(_, signature)| signature),
                    possession: possession.to_string(),
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Who signs in `public_key` for `publisher`: nobody for a first key or an admin's
    /// recovery of a publisher whose keys are all revoked, else a current key.
    fn rotation_signer(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        signed_by: Option<(&str, &str)>,
    ) -> Result<Option<(String, String)>, StoreError> {
        let existing = self.keys_of(txn, publisher)?;
        let current: Vec<&KeyEntry> = existing
            .iter()
            .filter(|key| key.revoked_at.is_none())
            .collect();
        if existing.is_empty() {
            return Ok(None);
        }
        if current.is_empty() {
            // Every key is revoked (perhaps by a thief with a stolen token): only an admin
            // can give the publisher a key again. The log records the key as not signed in.
            if !caller.is_admin() {
                return Err(StoreError::Forbidden(format!(
                    "every key of `{publisher}` is revoked; an admin must register its new key"
                )));
            }
            return Ok(None);
        }
        let (by, signature) = signed_by.ok_or_else(|| {
            StoreError::Forbidden(format!(
                "`{publisher}` has keys already: a new key must be signed in by a current one (warden registry key --signed-by)"
            ))
        })?;
        if !current.iter().any(|key| key.public_key == by) {
            return Err(StoreError::Forbidden(
                "the signing-in key is not a current key of this publisher".into(),
            ));
        }
        let verifying = package::verifying_key_from_hex(by)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        if !protocol::verify_key_statement(publisher, public_key, &verifying, signature) {
            return Err(StoreError::Forbidden(
                "the key statement's signature does not verify".into(),
            ));
        }
        Ok(Some((by.to_string(), signature.to_string())))
    }

    /// Revokes a key from `at` on (now by default). A revocation back-dated before now voids
    /// signatures already made, so it needs more than a token: a signature by another current
    /// key of the publisher over `protocol::revocation_statement` (`signed_by`), or an admin,
    /// whose back-dating the log marks as such.
    pub fn revoke_key(
        &self,
        caller: &Caller,
        publisher: &str,
        public_key: &str,
        at: Option<u64>,
        signed_by: Option<(&str, &str)>,
    ) -> Result<KeyEntry, StoreError> {
        caller.require(Permissions::MANAGE_KEYS)?;
        Self::may_act_for(caller, publisher)?;
        let txn = self.write()?;
        let entry = {
            let mut entry: KeyEntry = match txn
                .open_table(KEYS)
                .map_err(storage)?
                .get(public_key)
                .map_err(storage)?
            {
                Some(bytes) => parse("publisher key", bytes.value())?,
                None => return Err(StoreError::NotFound("no such key".into())),
            };
            if entry.publisher != publisher {
                return Err(StoreError::NotFound(format!(
                    "`{publisher}` has no such key"
                )));
            }
            if entry.revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked already".into()));
            }
            // The log's time, which never runs backwards: a revocation "now" is never read as
            // back-dated.
            let time = Self::log_time(&txn, now())?;
            // "From now" is the second after the log's last entry: a version published in this
            // same second (before this revocation: a revoked key publishes nothing) stays valid
            // on hosts, which accept a signature made strictly before `revoked_at`. Anything
            // earlier is back-dating.
            let from_now = time.saturating_add(1);
            let revoked_at = at.unwrap_or(from_now).min(from_now);
            let (signer, by_admin) = if revoked_at >= from_now {
                (None, false)
            } else {
                self.back_dating(&txn, caller, &entry, revoked_at, signed_by)?
            };
            self.charge_history(&txn, caller, publisher, History::KeyEvents, false)?;
            // Keys this key signed in after `revoked_at` were signed by a compromised key: they
            // are revoked from their own start, as every replay of the log derives.
            let voided = {
                let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
                let log: Vec<LogEntry> =
                    values(&txn.open_table(LOG).map_err(storage)?, "log entry")?;
                let state = protocol::replay(&log, &registry).map_err(|error| {
                    StoreError::Storage(format!(
                        "the log does not replay ({error}); run `warden registry check`"
                    ))
                })?;
                let spared = signer.as_ref().map(|(by, _)| by.as_str());
                protocol::voided_by_revocation(&state, public_key, revoked_at, spared)
            };
            entry.revoked_at = Some(revoked_at);
            let mut keys = txn.open_table(KEYS).map_err(storage)?;
            keys.insert(public_key, json(&entry).as_slice())
                .map_err(storage)?;
            for (key, at) in &voided {
                let mut child: KeyEntry = match keys.get(key.as_str()).map_err(storage)? {
                    Some(bytes) => parse("publisher key", bytes.value())?,
                    None => continue,
                };
                child.revoked_at = Some(*at);
                keys.insert(key.as_str(), json(&child).as_slice())
                    .map_err(storage)?;
            }
            drop(keys);
            if !voided.is_empty() {
                tracing::warn!(
                    publisher,
                    revoked = public_key,
                    voided = ?voided.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(),
                    "a back-dated revocation voids keys the revoked key signed in after it"
                );
            }
            self.append(
                &txn,
                time,
                Event::KeyRevoked {
                    publisher: publisher.to_string(),
                    public_key: public_key.to_string(),
                    revoked_at,
                    signed_by: signer.as_ref().map(|(by, _)| by.clone()),
                    signature: signer.map(|(_, signature)| signature),
                    by_admin,
                },
            )?;
            entry
        };
        txn.commit().map_err(storage)?;
        Ok(entry)
    }

    /// What authorizes back-dating `key`'s revocation to `revoked_at`: another current key's
    /// signature, or else an admin caller.
    fn back_dating(
        &self,
        txn: &WriteTransaction,
        caller: &Caller,
        key: &KeyEntry,
        revoked_at: u64,
        signed_by: Option<(&str, &str)>,
    ) -> Result<(Option<(String, String)>, bool), StoreError> {
        let publisher = key.publisher.as_str();
        let Some((by, signature)) = signed_by else {
            if caller.is_admin() {
                return Ok((None, true));
            }
            return Err(StoreError::Forbidden(format!(
                "revoking a key back to {revoked_at}, before now, voids what it signed: it needs a signature by another current key of `{publisher}` (warden registry key --revoke --revoked-at T --signed-by OTHER.key) or an admin"
            )));
        };
        let other_current = by != key.public_key
            && self
                .keys_of(txn, publisher)?
                .iter()
                .any(|other| other.public_key == by && other.revoked_at.is_none());
        if !other_current {
            return Err(StoreError::Forbidden(format!(
                "a back-dated revocation is signed by another current key of `{publisher}`, not by the key revoked or a stranger"
            )));
        }
        let registry = registry_id_in(&txn.open_table(META).map_err(storage)?)?;
        let valid = package::verifying_key_from_hex(by).is_ok_and(|verifying| {
            protocol::verify_revocation(
                &registry,
                publisher,
                &key.public_key,
                revoked_at,
                &verifying,
                signature,
            )
        });
        if !valid {
            return Err(StoreError::Forbidden(format!(
                "the revocation's signature does not verify: sign the revocation statement for registry {registry}, publisher `{publisher}`, the key and revoked_at {revoked_at}"
            )));
        }
        Ok((Some((by.to_string(), signature.to_string())), false))
    }
}
