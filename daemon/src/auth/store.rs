//! The daemon's principals (`data_dir/auth.redb`): users (people and technical users), roles
//! with their permission bits, role assignments (for every app, or one), and the credentials
//! issued to users: API keys for technical users and personal access tokens for people.
//!
//! A credential is 256 random bits behind a prefix that says what it is (`wdh_key_`,
//! `wdh_pat_`); only its SHA-256 is stored, and the stored hash is compared in constant time.
//! Each has an expiry and can be revoked. A PAT carries exactly its user's permissions at the
//! time of use: it holds no permissions of its own.

use super::permissions::Permissions;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
/// Keyed `user\0role\0app` (`app` empty for every app).
const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");
/// Keyed by the hex SHA-256 of the secret.
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");

/// What a credential is, by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// `X-API-Key`, for technical users.
    ApiKey,
    /// `Authorization: PAT`, for people.
    Pat,
}

impl CredentialKind {
    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "wdh_key_",
            CredentialKind::Pat => "wdh_pat_",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Person,
    Technical,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub kind: UserKind,
    /// The OpenID Connect subject this user is, when people sign in through a provider.
    pub subject: Option<String>,
    pub created_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub user: String,
    pub role: String,
    /// The app it holds in; every app when `None`.
    pub app: Option<String>,
}

/// A credential as stored: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Its public id: the first 16 hex digits of its hash (what lists and revocations name).
    pub id: String,
    pub kind: CredentialKind,
    pub user: String,
    /// What its owner called it.
    pub label: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
    sha256: String,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the auth store {path}: {message}")]
    Storage { path: String, message: String },
    #[error("no user `{0}`")]
    UnknownUser(String),
    #[error("no role `{0}`")]
    UnknownRole(String),
    #[error("no credential `{0}`")]
    UnknownCredential(String),
    #[error("a user `{0}` exists already")]
    UserExists(String),
    #[error("{0}")]
    Invalid(String),
}

/// Why a presented secret does not authenticate: the kind goes to the audit log and the
/// metrics, never to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    WrongKind,
    Expired,
    Revoked,
    NoUser,
}

impl Refused {
    pub fn kind(self) -> &'static str {
        match self {
            Refused::Unknown => "unknown_credential",
            Refused::WrongKind => "wrong_kind",
            Refused::Expired => "expired",
            Refused::Revoked => "revoked",
            Refused::NoUser => "no_user",
        }
    }
}

/// The longest a credential may live.
pub const MAX_CREDENTIAL_LIFETIME: u64 = 365 * 24 * 3600;

pub struct AuthStore {
    db: Database,
    path: String,
}

fn sha256_hex(text: &str) -> String {
    warden_package::hex(&Sha256::digest(text.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.@".contains(&byte))
}

impl AuthStore {
    pub fn open(path: &Path) -> Result<AuthStore, StoreError> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|error| StoreError::Storage {
            path: shown.clone(),
            message: error.to_string(),
        })?;
        // Hashes, users and roles are the daemon's alone.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |error| StoreError::Storage {
                    path: shown.clone(),
                    message: error.to_string(),
                },
            )?;
        }
        let store = AuthStore { db, path: shown };
        let txn = store.write()?;
        for table in [USERS, ROLES, ASSIGNMENTS, CREDENTIALS] {
            txn.open_table(table).map_err(|e| store.failed(e))?;
        }
        txn.commit().map_err(|e| store.failed(e))?;
        Ok(store)
    }

    fn failed(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Storage {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.db.begin_write().map_err(|e| self.failed(e))
    }

    fn get<T: for<'a> Deserialize<'a>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(table).map_err(|e| self.failed(e))?;
        let Some(bytes) = table.get(key).map_err(|e| self.failed(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.failed(format!("a corrupt record: {e}")))
    }

    fn all<T: for<'a> Deserialize<'a>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(table).map_err(|e| self.failed(e))?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(|e| self.failed(e))? {
            let (_, bytes) = entry.map_err(|e| self.failed(e))?;
            all.push(
                serde_json::from_slice(bytes.value())
                    .map_err(|e| self.failed(format!("a corrupt record: {e}")))?,
            );
        }
        Ok(all)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.failed(e))?;
        let txn = self.write()?;
        txn.open_table(table)
            .map_err(|e| self.failed(e))?
            .insert(key, bytes.as_slice())
            .map_err(|e| self.failed(e))?;
        txn.commit().map_err(|e| self.failed(e))
    }

    pub fn create_user(&self, name: &str, kind: UserKind, now: u64) -> Result<User, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Invalid(format!(
                "`{name}` is not a user name: 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
            )));
        }
        if self.user(name)?.is_some() {
            return Err(StoreError::UserExists(name.to_string()));
        }
        let user = User {
            name: name.to_string(),
            kind,
            subject: None,
            created_at: now,
        };
        self.put(USERS, name, &user)?;
        Ok(user)
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get(USERS, name)
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.all(USERS)
    }

    /// Creates or replaces a role.
    pub fn put_role(&self, name: &str, permissions: Permissions) -> Result<Role, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Invalid(format!("`{name}` is not a role name")));
        }
        let role = Role {
            name: name.to_string(),
            permissions: permissions.bits(),
        };
        self.put(ROLES, name, &role)?;
        Ok(role)
    }

    pub fn roles(&self) -> Result<Vec<Role>, StoreError> {
        self.all(ROLES)
    }

    /// Gives `user` the role `role`, in `app` or in every app.
    pub fn assign(&self, user: &str, role: &str, app: Option<&str>) -> Result<(), StoreError> {
        if self.user(user)?.is_none() {
            return Err(StoreError::UnknownUser(user.to_string()));
        }
        if self.get::<Role>(ROLES, role)?.is_none() {
            return Err(StoreError::UnknownRole(role.to_string()));
        }
        if app.is_some_and(|app| app.is_empty() || app.contains('\0')) {
            return Err(StoreError::Invalid(
                "an app id is not empty and holds no NUL".into(),
            ));
        }
        let key = format!("{user}\0{role}\0{}", app.unwrap_or(""));
        let assignment = Assignment {
            user: user.to_string(),
            role: role.to_string(),
            app: app.map(str::to_string),
        };
        self.put(ASSIGNMENTS, &key, &assignment)
    }

    /// Takes the role `role` in `app` (every app with `None`) from `user`; `false` when the
    /// user did not hold it there.
    pub fn unassign(&self, user: &str, role: &str, app: Option<&str>) -> Result<bool, StoreError> {
        let key = format!("{user}\0{role}\0{}", app.unwrap_or(""));
        let txn = self.write()?;
        let removed = txn
            .open_table(ASSIGNMENTS)
            .map_err(|e| self.failed(e))?
            .remove(key.as_str())
            .map_err(|e| self.failed(e))?
            .is_some();
        txn.commit().map_err(|e| self.failed(e))?;
        Ok(removed)
    }

    /// The role assignments of `user` (everyone's with `None`).
    pub fn assignments(&self, user: Option<&str>) -> Result<Vec<Assignment>, StoreError> {
        Ok(self
            .all::<Assignment>(ASSIGNMENTS)?
            .into_iter()
            .filter(|assignment| user.is_none_or(|user| assignment.user == user))
            .collect())
    }

    /// Makes `user` the one an OpenID Connect token with this `subject` stands for (no one,
    /// with `None`). A subject is one user's at most.
    pub fn set_subject(&self, user: &str, subject: Option<&str>) -> Result<User, StoreError> {
        let mut record = self
            .user(user)?
            .ok_or_else(|| StoreError::UnknownUser(user.to_string()))?;
        if let Some(subject) = subject {
            if subject.is_empty() || subject.len() > 255 {
                return Err(StoreError::Invalid(
                    "a subject is 1 to 255 bytes (the `sub` claim of the provider's tokens)".into(),
                ));
            }
            if record.kind != UserKind::Person {
                return Err(StoreError::Invalid(
                    "only people sign in through the provider; technical users use API keys".into(),
                ));
            }
            if let Some(holder) = self.user_by_subject(subject)?
                && holder.name != user
            {
                return Err(StoreError::Invalid(format!(
                    "the subject is user `{}`'s already",
                    holder.name
                )));
            }
        }
        record.subject = subject.map(str::to_string);
        self.put(USERS, user, &record)?;
        Ok(record)
    }

    /// The user an OpenID Connect `subject` stands for.
    pub fn user_by_subject(&self, subject: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .users()?
            .into_iter()
            .find(|user| user.subject.as_deref() == Some(subject)))
    }

    /// What `user` may do in `app` (in what holds for every app, with `None`): the union of
    /// the roles assigned to it there and everywhere, Owner and Admin implying the rest.
    pub fn permissions(&self, user: &str, app: Option<&str>) -> Result<Permissions, StoreError> {
        let roles: Vec<Role> = self.all(ROLES)?;
        let mut permissions = Permissions::empty();
        for assignment in self.all::<Assignment>(ASSIGNMENTS)? {
            let applies = assignment.user == user
                && (assignment.app.is_none() || assignment.app.as_deref() == app);
            if applies && let Some(role) = roles.iter().find(|role| role.name == assignment.role) {
                permissions |= Permissions::from_bits_truncate(role.permissions);
            }
        }
        Ok(permissions.effective())
    }

    /// Issues a credential of `kind` to `user`, valid for `lifetime` seconds; returns its
    /// record and the secret, which is shown this once and never stored.
    pub fn issue(
        &self,
        user: &str,
        kind: CredentialKind,
        label: &str,
        lifetime: u64,
        now: u64,
    ) -> Result<(Credential, String), StoreError> {
        let owner = self
            .user(user)?
            .ok_or_else(|| StoreError::UnknownUser(user.to_string()))?;
        let fits = matches!(
            (kind, owner.kind),
            (CredentialKind::ApiKey, UserKind::Technical) | (CredentialKind::Pat, UserKind::Person)
        );
        if !fits {
            return Err(StoreError::Invalid(
                "API keys are for technical users, personal access tokens for people".into(),
            ));
        }
        if lifetime == 0 || lifetime > MAX_CREDENTIAL_LIFETIME {
            return Err(StoreError::Invalid(format!(
                "a credential lives from 1 second to {} days",
                MAX_CREDENTIAL_LIFETIME / 86400
            )));
        }
        let mut random = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| self.failed("the system's random source failed"))?;
        let secret = format!("{}{}", kind.prefix(), warden_package::hex(&random));
        let sha256 = sha256_hex(&secret);
        let credential = Credential {
            id: sha256[..16].to_string(),
            kind,
            user: user.to_string(),
            label: label.chars().take(128).collect(),
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            revoked_at: None,
            sha256: sha256.clone(),
        };
        self.put(CREDENTIALS, &sha256, &credential)?;
        Ok((credential, secret))
    }

    /// The credentials of `user` (every user's with `None`), without secrets.
    pub fn credentials(&self, user: Option<&str>) -> Result<Vec<Credential>, StoreError> {
        Ok(self
            .all::<Credential>(CREDENTIALS)?
            .into_iter()
            .filter(|credential| user.is_none_or(|user| credential.user == user))
            .collect())
    }

    /// Whether any credential is not revoked: a daemon with one can be reached without an
    /// operator key.
    pub fn has_live_credential(&self) -> Result<bool, StoreError> {
        Ok(self
            .credentials(None)?
            .iter()
            .any(|credential| credential.revoked_at.is_none()))
    }

    /// Revokes the credential `id`; when `owner` is given, only one of that user's.
    pub fn revoke(
        &self,
        id: &str,
        owner: Option<&str>,
        now: u64,
    ) -> Result<Credential, StoreError> {
        let mut credential = self
            .credentials(owner)?
            .into_iter()
            .find(|credential| credential.id == id)
            .ok_or_else(|| StoreError::UnknownCredential(id.to_string()))?;
        credential.revoked_at.get_or_insert(now);
        self.put(CREDENTIALS, &credential.sha256.clone(), &credential)?;
        Ok(credential)
    }

    /// The user a presented `secret` of `kind` stands for, at `now`.
    pub fn authenticate(
        &self,
        secret: &str,
        kind: CredentialKind,
        now: u64,
    ) -> Result<Result<(User, Credential), Refused>, StoreError> {
        let sha256 = sha256_hex(secret);
        let Some(credential) = self.get::<Credential>(CREDENTIALS, &sha256)? else {
            return Ok(Err(Refused::Unknown));
        };
        // Found by its hash; compared again in constant time, whatever the lookup did.
        if !bool::from(credential.sha256.as_bytes().ct_eq(sha256.as_bytes())) {
            return Ok(Err(Refused::Unknown));
        }
        if credential.kind != kind {
            return Ok(Err(Refused::WrongKind));
        }
        if credential.revoked_at.is_some() {
            return Ok(Err(Refused::Revoked));
        }
        if now >= credential.expires_at {
            return Ok(Err(Refused::Expired));
        }
        match self.user(&credential.user)? {
            Some(user) => Ok(Ok((user, credential))),
            None => Ok(Err(Refused::NoUser)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, AuthStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(&dir.path().join("auth.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn credentials_are_random_prefixed_hashed_and_expire_and_revoke() {
        let (dir, store) = store();
        store.create_user("ci", UserKind::Technical, 100).unwrap();
        store.create_user("ada", UserKind::Person, 100).unwrap();
        let (key, secret) = store
            .issue("ci", CredentialKind::ApiKey, "deploys", 3600, 100)
            .unwrap();
        assert!(secret.starts_with("wdh_key_") && secret.len() == 8 + 64);
        let (_, other) = store
            .issue("ci", CredentialKind::ApiKey, "b", 3600, 100)
            .unwrap();
        assert_ne!(secret, other);
        // Only the hash is stored.
        drop(store);
        let bytes = std::fs::read(dir.path().join("auth.redb")).unwrap();
        let needle = secret.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the secret is not stored"
        );
        let store = AuthStore::open(&dir.path().join("auth.redb")).unwrap();

        let ok = store
            .authenticate(&secret, CredentialKind::ApiKey, 200)
            .unwrap();
        assert_eq!(ok.unwrap().0.name, "ci");
        let check = |secret: &str, kind, now| store.authenticate(secret, kind, now).unwrap().err();
        assert_eq!(
            check(&secret, CredentialKind::Pat, 200),
            Some(Refused::WrongKind)
        );
        assert_eq!(
            check(&secret, CredentialKind::ApiKey, 3700),
            Some(Refused::Expired)
        );
        assert_eq!(
            check("wdh_key_00", CredentialKind::ApiKey, 200),
            Some(Refused::Unknown)
        );
        store.revoke(&key.id, None, 300).unwrap();
        assert_eq!(
            check(&secret, CredentialKind::ApiKey, 301),
            Some(Refused::Revoked)
        );
        // Kinds fit users; lifetimes are bounded; a PAT is revoked only by its owner.
        assert!(
            store
                .issue("ada", CredentialKind::ApiKey, "x", 60, 0)
                .is_err()
        );
        assert!(store.issue("ci", CredentialKind::Pat, "x", 60, 0).is_err());
        assert!(store.issue("ada", CredentialKind::Pat, "x", 0, 0).is_err());
        let (pat, _) = store
            .issue("ada", CredentialKind::Pat, "laptop", 60, 0)
            .unwrap();
        assert!(store.revoke(&pat.id, Some("ci"), 1).is_err());
        assert_eq!(store.credentials(Some("ada")).unwrap().len(), 1);
        store.revoke(&pat.id, Some("ada"), 1).unwrap();
    }

    #[test]
    fn permissions_are_the_union_of_roles_per_app() {
        let (_dir, store) = store();
        store.create_user("ada", UserKind::Person, 0).unwrap();
        store
            .put_role("reader", Permissions::READ_BOARDS | Permissions::READ_LOGS)
            .unwrap();
        store
            .put_role("runner", Permissions::EXECUTE_BOARDS)
            .unwrap();
        store.put_role("admin", Permissions::ADMIN).unwrap();
        store.assign("ada", "reader", None).unwrap();
        store.assign("ada", "runner", Some("app-a")).unwrap();
        let in_a = store.permissions("ada", Some("app-a")).unwrap();
        let in_b = store.permissions("ada", Some("app-b")).unwrap();
        assert!(in_a.allows(Permissions::EXECUTE_BOARDS | Permissions::READ_BOARDS));
        assert!(!in_b.allows(Permissions::EXECUTE_BOARDS));
        assert!(in_b.allows(Permissions::READ_LOGS));
        assert!(store.assign("ada", "nobody", None).is_err());
        assert!(store.assign("bob", "reader", None).is_err());
        store.assign("ada", "admin", Some("app-b")).unwrap();
        assert_eq!(
            store.permissions("ada", Some("app-b")).unwrap(),
            Permissions::all()
        );
        assert!(
            !store
                .permissions("ada", Some("app-c"))
                .unwrap()
                .allows(Permissions::WRITE_CONFIG)
        );
        assert!(store.create_user("ada", UserKind::Person, 0).is_err());
        assert!(store.create_user("bad name", UserKind::Person, 0).is_err());
    }
}
