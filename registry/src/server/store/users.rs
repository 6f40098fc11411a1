//! Users and tokens: authentication (a token's whole chain of issuers must be live), users,
//! issuing and revoking tokens, and the audit trail of who did what with them.

use super::{
    AUDIT, AuditEntry, Caller, MAX_TOKEN_DEPTH, MAX_TOKEN_TTL, Store, StoreError, TOKEN_IDS,
    TOKENS, USERS, User, json, parse, storage, too_many, values,
};
use crate::protocol::{TokenKind, now};
use crate::server::auth::{self, Permissions, TokenRecord};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use std::collections::BTreeMap;
use warden_package as package;

impl Store {
    /// Issues a token with local access to a stopped registry: how an operator recovers when
    /// the owner's tokens are lost or expired. Recorded in the audit trail.
    pub fn issue_token_offline(
        &self,
        user: &str,
        kind: TokenKind,
        ttl: u64,
    ) -> Result<(String, TokenRecord), StoreError> {
        let txn = self.write()?;
        let issued = {
            if txn
                .open_table(USERS)
                .map_err(storage)?
                .get(user)
                .map_err(storage)?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no user `{user}`")));
            }
            let issued = insert_token(&txn, user, kind, ttl.clamp(1, MAX_TOKEN_TTL), None)?;
            audit(
                &txn,
                "local operator",
                &format!("issued token {} for `{user}` offline", issued.1.id),
            )?;
            issued
        };
        txn.commit().map_err(storage)?;
        Ok(issued)
    }

    /// Checks a presented token: it must exist, be of the kind its header says, belong to a
    /// user, and be neither revoked nor expired, and so must every token up the chain that
    /// issued it (revoking a token revokes what it issued).
    pub fn authenticate(&self, kind: TokenKind, token: &str) -> Result<Caller, StoreError> {
        let refuse = |why: &str| StoreError::Unauthorized(why.to_string());
        let txn = self.db.begin_read().map_err(storage)?;
        let tokens = txn.open_table(TOKENS).map_err(storage)?;
        let record: TokenRecord = match tokens
            .get(auth::token_hash(token).as_str())
            .map_err(storage)?
        {
            Some(bytes) => parse("token", bytes.value())?,
            None => {
                return Err(refuse(
                    "the token is not known to this registry (revoked, expired or never issued); ask for a new one",
                ));
            }
        };
        if record.kind != kind {
            return Err(refuse(match kind {
                TokenKind::ApiKey => {
                    "a personal access token goes in `Authorization: PAT <token>`, not X-API-Key"
                }
                TokenKind::Pat => "an API key goes in the X-API-Key header, not Authorization",
            }));
        }
        let ids = txn.open_table(TOKEN_IDS).map_err(storage)?;
        if let Some(why) = dead_reason(&record, now(), |id| lookup_token(&tokens, &ids, id))? {
            return Err(refuse(&format!("{why}; ask for a new one")));
        }
        let users = txn.open_table(USERS).map_err(storage)?;
        let user: User = match users.get(record.user.as_str()).map_err(storage)? {
            Some(bytes) => parse("user", bytes.value())?,
            None => return Err(refuse("the token's user no longer exists")),
        };
        let permissions = auth::permissions_of(&user.roles).map_err(storage)?;
        Ok(Caller {
            user,
            permissions,
            token_id: record.id.clone(),
            token: record,
        })
    }

    pub fn create_user(
        &self,
        caller: &Caller,
        name: &str,
        roles: &[String],
        publisher: Option<String>,
    ) -> Result<User, StoreError> {
        caller.require(Permissions::MANAGE_USERS)?;
        let granted = auth::permissions_of(roles)
            .map_err(|error| StoreError::BadRequest(error.to_string()))?;
        // Nobody hands out more than they hold.
        if !caller.permissions.contains(granted) {
            return Err(StoreError::Forbidden(
                "a user cannot be given permissions its creator does not hold".into(),
            ));
        }
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(StoreError::BadRequest(
                "a user name is 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        if let Some(publisher) = &publisher {
            package::validate_name(publisher)
                .map_err(|error| StoreError::BadRequest(format!("publisher: {error}")))?;
        }
        let user = User {
            name: name.to_string(),
            roles: roles.to_vec(),
            publisher,
            created_at: now(),
        };
        let txn = self.write()?;
        {
            let mut users = txn.open_table(USERS).map_err(storage)?;
            if users.get(name).map_err(storage)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "the user `{name}` exists already"
                )));
            }
            users
                .insert(name, json(&user).as_slice())
                .map_err(storage)?;
            audit(
                &txn,
                &caller.user.name,
                &format!("created user `{name}` with roles {roles:?}"),
            )?;
        }
        txn.commit().map_err(storage)?;
        Ok(user)
    }

    /// Issues a token for `user` (the caller's own, or anyone's with manage-users), as a child
    /// of the caller's token: it lives no longer than that token and dies when it is revoked.
    pub fn issue_token(
        &self,
        caller: &Caller,
        user: &str,
        kind: TokenKind,
        ttl: u64,
    ) -> Result<(String, TokenRecord), StoreError> {
        if !(1..=MAX_TOKEN_TTL).contains(&ttl) {
            return Err(StoreError::BadRequest(format!(
                "a token lives from 1 second to {} days",
                MAX_TOKEN_TTL / 86_400
            )));
        }
        if caller.token.depth >= MAX_TOKEN_DEPTH {
            return Err(StoreError::BadRequest(format!(
                "this token is {MAX_TOKEN_DEPTH} issuances away from an offline-issued one, the most allowed; issue from a token closer to it"
            )));
        }
        self.rates
            .issuing
            .take(&caller.user.name)
            .map_err(|wait| too_many("tokens issued", wait))?;
        let txn = self.write()?;
        let issued = {
            if user != caller.user.name {
                Self::manageable(&txn, caller, user)?;
            }
            let live = prune_tokens(&txn, now())?;
            let held = live.iter().filter(|token| token.user == user).count();
            let cap = self.rates.quotas.tokens_per_user;
            if held >= cap {
                return Err(StoreError::Conflict(format!(
                    "`{user}` holds {held} live tokens, the most this registry allows ({cap}); revoke one first (warden registry token --revoke ID)"
                )));
            }
            let issued = insert_token(&txn, user, kind, ttl, Some(&caller.token))?;
            audit(
                &txn,
                &caller.user.name,
                &format!("issued token {} for `{user}`", issued.1.id),
            )?;
            issued
        };
        txn.commit().map_err(storage)?;
        Ok(issued)
    }

    /// Revokes a token (the caller's own user's, or one it may manage) and with it every token
    /// it issued. Its record is deleted; its children fail authentication from then on, since
    /// their chain no longer reaches a live token, and are pruned at the next issuance.
    pub fn revoke_token(&self, caller: &Caller, id: &str) -> Result<(), StoreError> {
        // An unknown id and another user's token get the same answer.
        let refuse = || {
            StoreError::Forbidden(format!(
                "there is no token `{id}` that `{}` may revoke",
                caller.user.name
            ))
        };
        let txn = self.write()?;
        {
            let hash = txn
                .open_table(TOKEN_IDS)
                .map_err(storage)?
                .get(id)
                .map_err(storage)?
                .map(|hash| hash.value().to_string())
                .ok_or_else(refuse)?;
            let record: TokenRecord = match txn
                .open_table(TOKENS)
                .map_err(storage)?
                .get(hash.as_str())
                .map_err(storage)?
            {
                Some(bytes) => parse("token", bytes.value())?,
                None => return Err(refuse()),
            };
            if record.user != caller.user.name {
                Self::manageable(&txn, caller, &record.user).map_err(|_| refuse())?;
            }
            txn.open_table(TOKENS)
                .map_err(storage)?
                .remove(hash.as_str())
                .map_err(storage)?;
            txn.open_table(TOKEN_IDS)
                .map_err(storage)?
                .remove(id)
                .map_err(storage)?;
            audit(&txn, &caller.user.name, &format!("revoked token {id}"))?;
        }
        txn.commit().map_err(storage)
    }

    /// Acting on another user's tokens needs manage-users and every permission that user
    /// holds: an admin cannot mint or revoke an owner's tokens. A user that does not exist gets
    /// the same refusal as one the caller may not manage, so answers do not tell which names
    /// exist.
    fn manageable(txn: &WriteTransaction, caller: &Caller, name: &str) -> Result<User, StoreError> {
        let refuse = || {
            StoreError::Forbidden(format!(
                "`{}` may not manage the tokens of `{name}`: that needs manage-users and every permission `{name}` holds (or there is no such user)",
                caller.user.name
            ))
        };
        caller
            .require(Permissions::MANAGE_USERS)
            .map_err(|_| refuse())?;
        let target: User = match txn
            .open_table(USERS)
            .map_err(storage)?
            .get(name)
            .map_err(storage)?
        {
            Some(bytes) => parse("user", bytes.value())?,
            None => return Err(refuse()),
        };
        let theirs = auth::permissions_of(&target.roles).map_err(storage)?;
        if caller.permissions.contains(theirs) {
            Ok(target)
        } else {
            Err(refuse())
        }
    }

    pub fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        values(&txn.open_table(AUDIT).map_err(storage)?, "audit entry")
    }
}

pub(super) fn insert_token(
    txn: &WriteTransaction,
    user: &str,
    kind: TokenKind,
    ttl: u64,
    parent: Option<&TokenRecord>,
) -> Result<(String, TokenRecord), StoreError> {
    let (token, hash) = auth::new_token(kind).map_err(storage)?;
    let time = now();
    let mut expires_at = time.saturating_add(ttl);
    if let Some(parent) = parent {
        // A child never outlives its issuer, so pruning an expired token never strands a
        // live one.
        expires_at = expires_at.min(parent.expires_at);
    }
    let record = TokenRecord {
        id: hash[..16].to_string(),
        user: user.to_string(),
        kind,
        created_at: time,
        expires_at,
        revoked: false,
        parent: parent.map(|parent| parent.id.clone()),
        depth: parent.map_or(0, |parent| parent.depth + 1),
    };
    txn.open_table(TOKENS)
        .map_err(storage)?
        .insert(hash.as_str(), json(&record).as_slice())
        .map_err(storage)?;
    txn.open_table(TOKEN_IDS)
        .map_err(storage)?
        .insert(record.id.as_str(), hash.as_str())
        .map_err(storage)?;
    Ok((token, record))
}

/// The token with public id `id`.
fn lookup_token(
    tokens: &impl ReadableTable<&'static str, &'static [u8]>,
    ids: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some(hash) = ids.get(id).map_err(storage)? else {
        return Ok(None);
    };
    match tokens.get(hash.value()).map_err(storage)? {
        Some(bytes) => parse("token", bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Why `record` no longer authenticates at `time`, if it does not: it, or a token up the
/// chain that issued it, is revoked, expired or gone (a revoked token's record is deleted).
/// The walk is bounded by `MAX_TOKEN_DEPTH`.
fn dead_reason(
    record: &TokenRecord,
    time: u64,
    mut lookup: impl FnMut(&str) -> Result<Option<TokenRecord>, StoreError>,
) -> Result<Option<&'static str>, StoreError> {
    if record.revoked {
        return Ok(Some("the token was revoked"));
    }
    if time >= record.expires_at {
        return Ok(Some("the token expired"));
    }
    let mut parent = record.parent.clone();
    for _ in 0..=MAX_TOKEN_DEPTH {
        let Some(id) = parent else {
            return Ok(None);
        };
        match lookup(&id)? {
            Some(issuer) if !issuer.revoked && time < issuer.expires_at => parent = issuer.parent,
            _ => return Ok(Some("the token that issued this token was revoked")),
        }
    }
    Ok(Some("the token's chain of issuers is too long"))
}

/// Deletes every token that no longer authenticates, so the table holds live tokens only (at
/// most the per-user cap each, plus those that died since the last issuance); returns the
/// live ones. One pass over the table: it is bounded by that cap.
fn prune_tokens(txn: &WriteTransaction, time: u64) -> Result<Vec<TokenRecord>, StoreError> {
    let mut all: BTreeMap<String, (String, TokenRecord)> = BTreeMap::new();
    for item in txn
        .open_table(TOKENS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (hash, bytes) = item.map_err(storage)?;
        let record: TokenRecord = parse("token", bytes.value())?;
        all.insert(record.id.clone(), (hash.value().to_string(), record));
    }
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for (id, (hash, record)) in &all {
        let lookup = |id: &str| Ok(all.get(id).map(|(_, record)| record.clone()));
        if dead_reason(record, time, lookup)?.is_some() {
            dead.push((id.as_str(), hash.as_str()));
        } else {
            live.push(record.clone());
        }
    }
    let mut tokens = txn.open_table(TOKENS).map_err(storage)?;
    let mut ids = txn.open_table(TOKEN_IDS).map_err(storage)?;
    for (id, hash) in dead {
        tokens.remove(hash).map_err(storage)?;
        ids.remove(id).map_err(storage)?;
    }
    Ok(live)
}

pub(super) fn audit(txn: &WriteTransaction, actor: &str, action: &str) -> Result<(), StoreError> {
    let mut table = txn.open_table(AUDIT).map_err(storage)?;
    let next = table
        .last()
        .map_err(storage)?
        .map(|(key, _)| key.value() + 1)
        .unwrap_or(0);
    let entry = AuditEntry {
        time: now(),
        actor: actor.to_string(),
        action: action.to_string(),
    };
    table
        .insert(next, json(&entry).as_slice())
        .map_err(storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, parent: Option<&str>, expires_at: u64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            user: "u".into(),
            kind: TokenKind::Pat,
            created_at: 0,
            expires_at,
            revoked: false,
            parent: parent.map(Into::into),
            depth: 0,
        }
    }

    fn reason(record: &TokenRecord, known: &[TokenRecord], time: u64) -> Option<&'static str> {
        dead_reason(record, time, |id| {
            Ok(known.iter().find(|token| token.id == id).cloned())
        })
        .unwrap_or(Some("lookup failed"))
    }

    #[test]
    fn a_token_dies_with_any_token_above_it() {
        let root = token("a", None, 100);
        let child = token("b", Some("a"), 100);
        let grandchild = token("c", Some("b"), 100);
        let all = vec![root.clone(), child.clone(), grandchild.clone()];
        assert_eq!(reason(&grandchild, &all, 10), None);
        // The middle one gone (revoked records are deleted), revoked, or expired.
        assert!(reason(&grandchild, &[root.clone(), grandchild.clone()], 10).is_some());
        let revoked = TokenRecord {
            revoked: true,
            ..child.clone()
        };
        assert!(
            reason(
                &grandchild,
                &[root.clone(), revoked, grandchild.clone()],
                10
            )
            .is_some()
        );
        let expired = token("b", Some("a"), 5);
        assert!(reason(&grandchild, &[root, expired, grandchild.clone()], 10).is_some());
        // Its own expiry.
        assert_eq!(reason(&grandchild, &all, 100), Some("the token expired"));
    }

    #[test]
    fn a_chain_longer_than_allowed_is_refused_even_if_stored() {
        // A forged cycle in the table cannot make authentication loop.
        let looped = vec![token("a", Some("b"), 100), token("b", Some("a"), 100)];
        assert_eq!(
            reason(&looped[0], &looped, 10),
            Some("the token's chain of issuers is too long")
        );
    }
}
