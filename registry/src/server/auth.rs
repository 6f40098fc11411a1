//! Who may do what: permissions as bitflags, roles as named sets of them, and tokens.
//!
//! Tokens carry 256 bits from the operating system's random source and are stored only as
//! their SHA-256: with that much entropy a fast hash is enough (there is nothing to guess),
//! and a stolen database does not yield a usable token. API keys (`X-API-Key`) are for
//! technical users such as CI pipelines; personal access tokens (`Authorization: PAT ...`)
//! are for people. Both expire and both can be revoked.

use crate::protocol::{TokenKind, sha256_hex};
use bitflags::bitflags;
use serde::{Deserialize, Serialize};
use warden_package::hex;

bitflags! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct Permissions: u32 {
        const OWNER = 1 << 0;
        const ADMIN = 1 << 1;
        const READ_NODES = 1 << 2;
        const PUBLISH_NODES = 1 << 3;
        const YANK_NODES = 1 << 4;
        const MANAGE_KEYS = 1 << 5;
        const MANAGE_USERS = 1 << 6;
        const READ_AUDIT = 1 << 7;
    }
}

pub const PERMISSION_NAMES: [(&str, Permissions); 8] = [
    ("owner", Permissions::OWNER),
    ("admin", Permissions::ADMIN),
    ("read-nodes", Permissions::READ_NODES),
    ("publish-nodes", Permissions::PUBLISH_NODES),
    ("yank-nodes", Permissions::YANK_NODES),
    ("manage-keys", Permissions::MANAGE_KEYS),
    ("manage-users", Permissions::MANAGE_USERS),
    ("read-audit", Permissions::READ_AUDIT),
];

/// The built-in roles. A user's permissions are the union of their roles'.
pub const ROLES: [(&str, Permissions); 5] = [
    ("owner", Permissions::all()),
    ("admin", Permissions::all().difference(Permissions::OWNER)),
    (
        "publisher",
        Permissions::READ_NODES
            .union(Permissions::PUBLISH_NODES)
            .union(Permissions::YANK_NODES)
            .union(Permissions::MANAGE_KEYS),
    ),
    ("reader", Permissions::READ_NODES),
    (
        "auditor",
        Permissions::READ_NODES.union(Permissions::READ_AUDIT),
    ),
];

impl Permissions {
    pub fn name(self) -> &'static str {
        PERMISSION_NAMES
            .iter()
            .find(|(_, flag)| *flag == self)
            .map(|(name, _)| *name)
            .unwrap_or("several permissions")
    }
}

/// A role that is not one of [`ROLES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{role}`; the roles are {}", ROLES.map(|(name, _)| name).join(", "))]
pub struct UnknownRole {
    pub role: String,
}

/// The union of the permissions of `roles`; an unknown role is an error naming it.
pub fn permissions_of(roles: &[String]) -> Result<Permissions, UnknownRole> {
    roles.iter().try_fold(Permissions::empty(), |all, role| {
        ROLES
            .iter()
            .find(|(name, _)| name == role)
            .map(|(_, permissions)| all | *permissions)
            .ok_or_else(|| UnknownRole { role: role.clone() })
    })
}

/// A token as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A short public id, for listing and revoking.
    pub id: String,
    pub user: String,
    pub kind: TokenKind,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked: bool,
    /// The id of the token that issued this one (none when issued offline or at creation):
    /// revoking it revokes this one too.
    #[serde(default)]
    pub parent: Option<String>,
    /// How many tokens up the chain of issuers go.
    #[serde(default)]
    pub depth: u32,
}

/// The operating system's random source failed, so no token was made.
#[derive(Debug, thiserror::Error)]
#[error("the random source failed: {0}")]
pub struct RandomSourceFailed(pub getrandom::Error);

/// A new token of `kind`: its text (shown once) and the hash to store.
pub fn new_token(kind: TokenKind) -> Result<(String, String), RandomSourceFailed> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(RandomSourceFailed)?;
    let token = format!("{}{}", kind.prefix(), hex(&secret));
    let hash = token_hash(&token);
    Ok((token, hash))
}

pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// What a request presented: the token and the kind its header says it is.
pub fn presented(
    api_key: Option<&str>,
    authorization: Option<&str>,
) -> Option<(TokenKind, String)> {
    if let Some(key) = api_key {
        return Some((TokenKind::ApiKey, key.trim().to_string()));
    }
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("pat")
        .then(|| (TokenKind::Pat, token.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_union() {
        let permissions =
            permissions_of(&["reader".into(), "auditor".into()]).unwrap_or(Permissions::empty());
        assert_eq!(
            permissions,
            Permissions::READ_NODES | Permissions::READ_AUDIT
        );
        assert!(permissions_of(&["root".into()]).is_err());
        assert!(
            !permissions_of(&["admin".into()])
                .unwrap_or(Permissions::all())
                .contains(Permissions::OWNER)
        );
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_hashed() {
        let (first, hash) = new_token(TokenKind::Pat).unwrap_or_default();
        let (second, _) = new_token(TokenKind::Pat).unwrap_or_default();
        assert!(first.starts_with("wdn_pat_") && first.len() == 8 + 64);
        assert_ne!(first, second);
        assert_eq!(token_hash(&first), hash);
        assert!(!hash.contains(&first[8..]));
    }

    #[test]
    fn headers() {
        assert_eq!(
            presented(None, Some("PAT wdn_pat_x")),
            Some((TokenKind::Pat, "wdn_pat_x".into()))
        );
        assert_eq!(
            presented(Some("wdn_key_y"), None),
            Some((TokenKind::ApiKey, "wdn_key_y".into()))
        );
        assert_eq!(presented(None, Some("Bearer abc")), None);
        assert_eq!(presented(None, None), None);
    }
}
