//! The daemon's principals (`data_dir/auth.redb`, or in a cluster the cluster's database): users
//! (people and technical users), roles with their permission bits, role assignments (for every
//! app, or one), and the credentials issued to users: API keys for technical users and personal
//! access tokens for people. The rules are written once, against [`Tables`], and each operation
//! is one transaction of either backend.
//!
//! A credential is 256 random bits behind a prefix that says what it is (`wdh_key_`,
//! `wdh_pat_`); only its SHA-256 is stored, and the stored hash is compared in constant time.
//! Each has an expiry and can be revoked. A PAT carries exactly its user's permissions at the
//! time of use: it holds no permissions of its own.

use super::permissions::Permissions;
use super::tables::{RedbTables, Table, Tables};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;
use warden_cluster::PgPrincipals;

/// Credentials a user may hold live (neither revoked nor expired) at once.
pub const MAX_LIVE_CREDENTIALS: usize = 100;
/// Credentials of a user kept in all; past it, its oldest revoked or expired ones are dropped.
pub const MAX_KEPT_CREDENTIALS: usize = 200;

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
    backend: Backend,
    /// Where it is, for messages: the file's path, or the cluster's table.
    shown: String,
}

enum Backend {
    Redb(redb::Database),
    Cluster(PgPrincipals),
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

/// A subject is 1 to 255 bytes, and only a person has one.
fn check_subject(subject: &str, kind: UserKind) -> Result<(), StoreError> {
    if subject.is_empty() || subject.len() > 255 {
        return Err(StoreError::Invalid(
            "a subject is 1 to 255 bytes (the `sub` claim of the provider's tokens)".into(),
        ));
    }
    if kind != UserKind::Person {
        return Err(StoreError::Invalid(
            "only people sign in through the provider; technical users use API keys".into(),
        ));
    }
    Ok(())
}

/// An app id, when one is named, is not empty and holds no NUL (an empty one would be the
/// key of the assignment for every app).
fn check_app(app: Option<&str>) -> Result<(), StoreError> {
    if app.is_some_and(|app| app.is_empty() || app.contains('\0')) {
        return Err(StoreError::Invalid(
            "an app id is not empty and holds no NUL; leave `app` out for every app".into(),
        ));
    }
    Ok(())
}

/// Where a cluster's principals are, in messages.
const CLUSTER_SHOWN: &str = "in the cluster's database (table warden_principals)";

impl StoreError {
    /// Whether this is a failure of the cluster's database (not of a daemon's own file).
    pub fn in_cluster(&self) -> bool {
        matches!(self, StoreError::Storage { path, .. } if path == CLUSTER_SHOWN)
    }
}

impl From<warden_cluster::ClusterError> for StoreError {
    fn from(error: warden_cluster::ClusterError) -> Self {
        StoreError::Storage {
            path: CLUSTER_SHOWN.to_string(),
            message: error.to_string(),
        }
    }
}

impl AuthStore {
    pub fn open(path: &Path) -> Result<AuthStore, StoreError> {
        let shown = path.display().to_string();
        let db = redb::Database::create(path).map_err(|error| StoreError::Storage {
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
        let store = AuthStore {
            backend: Backend::Redb(db),
            shown,
        };
        if let Backend::Redb(db) = &store.backend {
            let mut txn = RedbTables::write(db).map_err(|e| store.failed(e))?;
            txn.create_all().map_err(|e| store.failed(e))?;
            store.rebuild_indexes(&mut txn)?;
            txn.commit().map_err(|e| store.failed(e))?;
        }
        Ok(store)
    }

    /// The principals of a cluster, in its database: every daemon sees the same users, roles
    /// and credentials. Used from a multi-threaded runtime (each operation blocks its thread
    /// on the database).
    pub fn cluster(principals: PgPrincipals) -> AuthStore {
        AuthStore {
            backend: Backend::Cluster(principals),
            shown: CLUSTER_SHOWN.to_string(),
        }
    }

    /// Where the store is, for the operator: `in PATH`, or in the cluster's database.
    pub fn location(&self) -> String {
        match self.backend {
            Backend::Redb(_) => format!("in {}", self.shown),
            Backend::Cluster(_) => self.shown.clone(),
        }
    }

    /// The indexes are rebuilt when they do not cover the credentials (a store from before
    /// they existed).
    fn rebuild_indexes(&self, t: &mut dyn Tables) -> Result<(), StoreError> {
        let credentials = t.all(Table::Credentials).map_err(|e| self.failed(e))?;
        let indexed = t.all(Table::ById).map_err(|e| self.failed(e))?.len();
        if credentials.len() == indexed {
            return Ok(());
        }
        for (_, bytes) in credentials {
            let credential: Credential = self.decode(&bytes)?;
            self.index_credential(t, &credential)?;
        }
        Ok(())
    }

    fn failed(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Storage {
            path: self.shown.clone(),
            message: error.to_string(),
        }
    }

    fn decode<T: for<'a> Deserialize<'a>>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.failed(format!("a corrupt record: {e}")))
    }

    /// Runs `work` in one transaction that only reads.
    fn read<R>(
        &self,
        work: impl FnOnce(&mut dyn Tables) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.backend {
            Backend::Redb(db) => {
                let mut txn = RedbTables::read(db).map_err(|e| self.failed(e))?;
                work(&mut txn)
            }
            Backend::Cluster(principals) => principals.transaction(false, |tx| work(tx)),
        }
    }

    /// Runs `work` in one transaction that writes, committed when `work` succeeds. Writers
    /// take turns (in a cluster, the daemons' writers too).
    fn write<R>(
        &self,
        work: impl FnOnce(&mut dyn Tables) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.backend {
            Backend::Redb(db) => {
                let mut txn = RedbTables::write(db).map_err(|e| self.failed(e))?;
                let result = work(&mut txn)?;
                txn.commit().map_err(|e| self.failed(e))?;
                Ok(result)
            }
            Backend::Cluster(principals) => principals.transaction(true, |tx| work(tx)),
        }
    }

    fn get<T: for<'a> Deserialize<'a>>(
        &self,
        t: &mut dyn Tables,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match t.get(table, key).map_err(|e| self.failed(e))? {
            Some(bytes) => self.decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn all<T: for<'a> Deserialize<'a>>(
        &self,
        t: &mut dyn Tables,
        table: Table,
    ) -> Result<Vec<T>, StoreError> {
        t.all(table)
            .map_err(|e| self.failed(e))?
            .iter()
            .map(|(_, bytes)| self.decode(bytes))
            .collect()
    }

    fn put<T: Serialize>(
        &self,
        t: &mut dyn Tables,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.failed(e))?;
        t.put(table, key, &bytes).map_err(|e| self.failed(e))
    }

    /// Creates the user `name`, with its OpenID Connect `subject` when given (a person's only,
    /// and no other user's): checked and written in one transaction, so two creations at once
    /// cannot both take a name or a subject.
    pub fn create_user(
        &self,
        name: &str,
        kind: UserKind,
        subject: Option<&str>,
        now: u64,
    ) -> Result<User, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Invalid(format!(
                "`{name}` is not a user name: 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
            )));
        }
        if let Some(subject) = subject {
            check_subject(subject, kind)?;
        }
        let user = User {
            name: name.to_string(),
            kind,
            subject: subject.map(str::to_string),
            created_at: now,
        };
        self.write(|t| {
            if t.get(Table::Users, name)
                .map_err(|e| self.failed(e))?
                .is_some()
            {
                return Err(StoreError::UserExists(name.to_string()));
            }
            if let Some(subject) = subject
                && let Some(holder) = self.subject_holder(t, subject)?
            {
                return Err(StoreError::Invalid(format!(
                    "the subject is user `{holder}`'s already"
                )));
            }
            self.put(t, Table::Users, name, &user)
        })?;
        Ok(user)
    }

    /// The name of the user holding `subject`.
    fn subject_holder(
        &self,
        t: &mut dyn Tables,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .all::<User>(t, Table::Users)?
            .into_iter()
            .find(|user| user.subject.as_deref() == Some(subject))
            .map(|user| user.name))
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(|t| self.get(t, Table::Users, name))
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|t| self.all(t, Table::Users))
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
        self.write(|t| self.put(t, Table::Roles, name, &role))?;
        Ok(role)
    }

    pub fn roles(&self) -> Result<Vec<Role>, StoreError> {
        self.read(|t| self.all(t, Table::Roles))
    }

    /// Gives `user` the role `role`, in `app` or in every app: the user and the role are
    /// checked in the transaction that writes the assignment.
    pub fn assign(&self, user: &str, role: &str, app: Option<&str>) -> Result<(), StoreError> {
        check_app(app)?;
        let key = format!("{user}\0{role}\0{}", app.unwrap_or(""));
        let assignment = Assignment {
            user: user.to_string(),
            role: role.to_string(),
            app: app.map(str::to_string),
        };
        self.write(|t| {
            if self.get::<User>(t, Table::Users, user)?.is_none() {
                return Err(StoreError::UnknownUser(user.to_string()));
            }
            if self.get::<Role>(t, Table::Roles, role)?.is_none() {
                return Err(StoreError::UnknownRole(role.to_string()));
            }
            self.put(t, Table::Assignments, &key, &assignment)
        })
    }

    /// Takes the role `role` in `app` (every app with `None`) from `user`; `false` when the
    /// user did not hold it there.
    pub fn unassign(&self, user: &str, role: &str, app: Option<&str>) -> Result<bool, StoreError> {
        check_app(app)?;
        let key = format!("{user}\0{role}\0{}", app.unwrap_or(""));
        self.write(|t| {
            t.remove(Table::Assignments, &key)
                .map_err(|e| self.failed(e))
        })
    }

    /// The role assignments of `user` (everyone's with `None`).
    pub fn assignments(&self, user: Option<&str>) -> Result<Vec<Assignment>, StoreError> {
        Ok(self
            .read(|t| self.all::<Assignment>(t, Table::Assignments))?
            .into_iter()
            .filter(|assignment| user.is_none_or(|user| assignment.user == user))
            .collect())
    }

    /// Makes `user` the one an OpenID Connect token with this `subject` stands for (no one,
    /// with `None`). A subject is one user's at most: checked and written in one transaction.
    pub fn set_subject(&self, user: &str, subject: Option<&str>) -> Result<User, StoreError> {
        self.write(|t| {
            let Some(mut record) = self.get::<User>(t, Table::Users, user)? else {
                return Err(StoreError::UnknownUser(user.to_string()));
            };
            if let Some(subject) = subject {
                check_subject(subject, record.kind)?;
                if let Some(holder) = self.subject_holder(t, subject)?
                    && holder != user
                {
                    return Err(StoreError::Invalid(format!(
                        "the subject is user `{holder}`'s already"
                    )));
                }
            }
            record.subject = subject.map(str::to_string);
            self.put(t, Table::Users, user, &record)?;
            Ok(record)
        })
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
        // The user's range of the assignments (keyed `user\0role\0app`), then its roles: two
        // reads, whatever the number of users and roles.
        let roles = self.read(|t| {
            let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
            let names: Vec<String> = t
                .range(Table::Assignments, &from, &to)
                .map_err(|e| self.failed(e))?
                .iter()
                .map(|(_, bytes)| self.decode::<Assignment>(bytes))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|assignment| {
                    assignment.user == user
                        && (assignment.app.is_none() || assignment.app.as_deref() == app)
                })
                .map(|assignment| assignment.role)
                .collect();
            t.get_many(Table::Roles, &names)
                .map_err(|e| self.failed(e))?
                .iter()
                .map(|bytes| self.decode::<Role>(bytes))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let permissions = roles
            .iter()
            .fold(Permissions::empty(), |permissions, role| {
                permissions | Permissions::from_bits_truncate(role.permissions)
            });
        Ok(permissions.effective())
    }

    /// Whether `secret` has the shape of a credential (a prefix and 64 lower-case hex digits):
    /// anything else is refused without a lookup.
    pub fn well_formed(secret: &str) -> bool {
        [CredentialKind::ApiKey, CredentialKind::Pat]
            .iter()
            .filter_map(|kind| secret.strip_prefix(kind.prefix()))
            .any(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
            })
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
        // A user at its bound is refused from a read, without the write lock (and without
        // reading all of a long list).
        let full = || {
            StoreError::Invalid(format!(
                "user `{user}` holds {MAX_LIVE_CREDENTIALS} live credentials, the most it may; revoke some first"
            ))
        };
        if self.live_count(user, now, MAX_LIVE_CREDENTIALS)? >= MAX_LIVE_CREDENTIALS {
            return Err(full());
        }
        // Counted again, pruned and written in one transaction: a user holds at most
        // MAX_LIVE_CREDENTIALS live ones however fast it asks, and its dead ones are bounded.
        self.write(|t| {
            let held = self.user_credentials(t, user)?;
            let live = held
                .iter()
                .filter(|held| held.revoked_at.is_none() && now < held.expires_at)
                .count();
            if live >= MAX_LIVE_CREDENTIALS {
                return Err(full());
            }
            // Dead: revoked, or expired a day ago or more (a clock that jumps a little ahead
            // does not drop credentials that are still good).
            let mut dead: Vec<&Credential> = held
                .iter()
                .filter(|held| {
                    held.revoked_at.is_some() || now >= held.expires_at.saturating_add(86_400)
                })
                .collect();
            dead.sort_by_key(|held| held.created_at);
            let excess = (held.len() + 1).saturating_sub(MAX_KEPT_CREDENTIALS);
            for old in dead.into_iter().take(excess) {
                self.remove_credential(t, old)?;
            }
            self.put(t, Table::Credentials, &credential.sha256, &credential)?;
            self.index_credential(t, &credential)
        })?;
        Ok((credential, secret))
    }

    /// `user`'s credentials: its range of the index, each looked up by hash.
    fn user_credentials(
        &self,
        t: &mut dyn Tables,
        user: &str,
    ) -> Result<Vec<Credential>, StoreError> {
        let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
        let hashes: Vec<String> = t
            .range(Table::ByUser, &from, &to)
            .map_err(|e| self.failed(e))?
            .into_iter()
            .map(|(_, sha256)| String::from_utf8_lossy(&sha256).into_owned())
            .collect();
        t.get_many(Table::Credentials, &hashes)
            .map_err(|e| self.failed(e))?
            .iter()
            .map(|bytes| self.decode(bytes))
            .collect()
    }

    /// Adds `credential` to the indexes by id and by user.
    fn index_credential(
        &self,
        t: &mut dyn Tables,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        let sha256 = credential.sha256.as_bytes();
        t.put(Table::ById, &credential.id, sha256)
            .map_err(|e| self.failed(e))?;
        t.put(
            Table::ByUser,
            &format!("{}\0{}", credential.user, credential.id),
            sha256,
        )
        .map_err(|e| self.failed(e))
    }

    fn remove_credential(
        &self,
        t: &mut dyn Tables,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        t.remove(Table::Credentials, &credential.sha256)
            .map_err(|e| self.failed(e))?;
        t.remove(Table::ById, &credential.id)
            .map_err(|e| self.failed(e))?;
        t.remove(
            Table::ByUser,
            &format!("{}\0{}", credential.user, credential.id),
        )
        .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// The credentials of `user` (every user's with `None`), without secrets.
    pub fn credentials(&self, user: Option<&str>) -> Result<Vec<Credential>, StoreError> {
        self.read(|t| match user {
            None => self.all::<Credential>(t, Table::Credentials),
            Some(user) => self.user_credentials(t, user),
        })
    }

    /// The credential with this id.
    pub fn credential(&self, id: &str) -> Result<Option<Credential>, StoreError> {
        self.read(|t| self.credential_in(t, id))
    }

    fn credential_in(
        &self,
        t: &mut dyn Tables,
        id: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let Some(sha256) = t.get(Table::ById, id).map_err(|e| self.failed(e))? else {
            return Ok(None);
        };
        self.get(t, Table::Credentials, &String::from_utf8_lossy(&sha256))
    }

    /// Whether any credential is not revoked: a daemon with one can be reached without an
    /// operator key.
    pub fn has_live_credential(&self) -> Result<bool, StoreError> {
        Ok(self
            .credentials(None)?
            .iter()
            .any(|credential| credential.revoked_at.is_none()))
    }

    /// Revokes the credential `id`; when `owner` is given, only one of that user's. Found,
    /// checked and written in one transaction (a credential pruned meanwhile is not written
    /// back); one revoked already is left as it is. The flag says whether this call revoked it.
    pub fn revoke(
        &self,
        id: &str,
        owner: Option<&str>,
        now: u64,
    ) -> Result<(Credential, bool), StoreError> {
        let unknown = || StoreError::UnknownCredential(id.to_string());
        self.write(|t| {
            let mut credential = self.credential_in(t, id)?.ok_or_else(unknown)?;
            if owner.is_some_and(|owner| credential.user != owner) {
                return Err(unknown());
            }
            if credential.revoked_at.is_some() {
                return Ok((credential, false));
            }
            credential.revoked_at = Some(now);
            self.put(t, Table::Credentials, &credential.sha256, &credential)?;
            Ok((credential, true))
        })
    }

    /// How many of `user`'s credentials are live at `now`, counting up to `limit` at most.
    fn live_count(&self, user: &str, now: u64, limit: usize) -> Result<usize, StoreError> {
        let held = self.read(|t| self.user_credentials(t, user))?;
        Ok(held
            .iter()
            .filter(|credential| credential.revoked_at.is_none() && now < credential.expires_at)
            .take(limit)
            .count())
    }

    /// The user a presented `secret` of `kind` stands for, at `now`.
    pub fn authenticate(
        &self,
        secret: &str,
        kind: CredentialKind,
        now: u64,
    ) -> Result<Result<(User, Credential), Refused>, StoreError> {
        if !Self::well_formed(secret) {
            return Ok(Err(Refused::Unknown));
        }
        let sha256 = sha256_hex(secret);
        self.read(|t| {
            let Some(credential) = self.get::<Credential>(t, Table::Credentials, &sha256)? else {
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
            match self.get::<User>(t, Table::Users, &credential.user)? {
                Some(user) => Ok(Ok((user, credential))),
                None => Ok(Err(Refused::NoUser)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;
    use warden_cluster::{Database, DatabaseOptions};

    /// Runs `test` on an embedded store, then on one in a real PostgreSQL when there is one
    /// (the rules are the same code on both; this checks the two backends keep them alike).
    fn on_each_backend(test: impl Fn(&AuthStore)) {
        let dir = tempfile::tempdir().unwrap();
        test(&AuthStore::open(&dir.path().join("auth.redb")).unwrap());
        if let Some((runtime, _, database)) = cluster_database() {
            let _entered = runtime.enter();
            test(&AuthStore::cluster(PgPrincipals::new(&database)));
        }
    }

    /// A fresh database on the tests' PostgreSQL (its URL, and a pool on it), and the runtime
    /// its connections live on.
    fn cluster_database() -> Option<(tokio::runtime::Runtime, String, Database)> {
        let server = warden_cluster::test_services::shared_postgres()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (url, database) = runtime.block_on(async {
            let url = server.fresh_database().await.unwrap();
            let database = Database::connect(&url, &DatabaseOptions::default())
                .await
                .unwrap();
            (url, database)
        });
        Some((runtime, url, database))
    }

    #[test]
    fn the_embedded_store_keeps_only_hashes_and_rebuilds_its_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.redb");
        let store = AuthStore::open(&path).unwrap();
        store.create_user("bob", UserKind::Person, None, 0).unwrap();
        let (bobs, secret) = store.issue("bob", CredentialKind::Pat, "b", 60, 0).unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let needle = secret.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the secret is not stored"
        );
        // A store written before the indexes existed gets them at open.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["credentials_by_id", "credentials_by_user"] {
            txn.delete_table(TableDefinition::<&str, &str>::new(name))
                .unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let store = AuthStore::open(&path).unwrap();
        assert_eq!(store.credentials(Some("bob")).unwrap()[0].id, bobs.id);
        assert!(store.credential(&bobs.id).unwrap().is_some());
    }

    #[test]
    fn credentials_are_random_prefixed_hashed_and_expire_and_revoke() {
        on_each_backend(credentials_expire_and_revoke);
    }

    fn credentials_expire_and_revoke(store: &AuthStore) {
        store
            .create_user("ci", UserKind::Technical, None, 100)
            .unwrap();
        store
            .create_user("ada", UserKind::Person, None, 100)
            .unwrap();
        let (key, secret) = store
            .issue("ci", CredentialKind::ApiKey, "deploys", 3600, 100)
            .unwrap();
        assert!(secret.starts_with("wdh_key_") && secret.len() == 8 + 64);
        let (_, other) = store
            .issue("ci", CredentialKind::ApiKey, "b", 3600, 100)
            .unwrap();
        assert_ne!(secret, other);

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
        // Only the shape of a credential is looked up.
        assert!(AuthStore::well_formed(&secret));
        let upper = format!("wdh_key_{}", "A".repeat(64));
        for shape in ["wdh_key_", "wdh_pat_0", upper.as_str(), &secret[..71], "x"] {
            assert!(!AuthStore::well_formed(shape), "{shape}");
        }
        let unknown = format!("wdh_pat_{}", "0".repeat(64));
        assert!(AuthStore::well_formed(&unknown));
        assert_eq!(
            check(&unknown, CredentialKind::Pat, 200),
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
    fn a_user_holds_a_bounded_number_of_credentials_found_by_index() {
        on_each_backend(bounded_credentials);
    }

    fn bounded_credentials(store: &AuthStore) {
        store.create_user("ada", UserKind::Person, None, 0).unwrap();
        store.create_user("bob", UserKind::Person, None, 0).unwrap();
        let (bobs, _) = store.issue("bob", CredentialKind::Pat, "b", 60, 0).unwrap();
        let mut ids = Vec::new();
        for _ in 0..MAX_LIVE_CREDENTIALS {
            ids.push(
                store
                    .issue("ada", CredentialKind::Pat, "x", 60, 0)
                    .unwrap()
                    .0
                    .id,
            );
        }
        let refused = store.issue("ada", CredentialKind::Pat, "x", 60, 0);
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        // Revoked or expired ones make room, and the dead are pruned past the kept bound.
        store.revoke(&ids[0], Some("ada"), 1).unwrap();
        store.issue("ada", CredentialKind::Pat, "x", 60, 1).unwrap();
        for step in 0..MAX_KEPT_CREDENTIALS as u64 {
            // Each issued more than a day after the one before expired.
            store
                .issue("ada", CredentialKind::Pat, "x", 60, 1000 + step * 100_000)
                .unwrap();
        }
        let held = store.credentials(Some("ada")).unwrap();
        assert!(held.len() <= MAX_KEPT_CREDENTIALS, "{}", held.len());
        assert!(
            store.credential(&ids[0]).unwrap().is_none(),
            "the oldest dead went first"
        );
        // A pruned credential is not written back by a late revocation; a second revocation
        // changes nothing.
        assert!(store.revoke(&ids[0], Some("ada"), 5).is_err());
        let (again, changed) = store.revoke(&bobs.id, None, 7).unwrap();
        assert!(changed && again.revoked_at == Some(7));
        let (again, changed) = store.revoke(&bobs.id, None, 9).unwrap();
        assert!(!changed && again.revoked_at == Some(7));
        // The index keeps users apart.
        assert_eq!(store.credentials(Some("bob")).unwrap().len(), 1);
        assert!(store.revoke(&bobs.id, Some("ada"), 1).is_err());
    }

    #[test]
    fn subjects_and_apps_are_checked_before_anything_is_written() {
        on_each_backend(subjects_and_apps);
    }

    fn subjects_and_apps(store: &AuthStore) {
        assert!(
            store
                .create_user("eve", UserKind::Person, Some(""), 0)
                .is_err()
        );
        assert!(
            store
                .create_user("eve", UserKind::Person, Some(&"s".repeat(300)), 0)
                .is_err()
        );
        assert!(
            store
                .create_user("bot", UserKind::Technical, Some("s"), 0)
                .is_err()
        );
        assert!(store.user("eve").unwrap().is_none() && store.user("bot").unwrap().is_none());
        store
            .create_user("ada", UserKind::Person, Some("sub-1"), 0)
            .unwrap();
        assert!(
            store
                .create_user("ann", UserKind::Person, Some("sub-1"), 0)
                .is_err()
        );
        assert_eq!(store.user_by_subject("sub-1").unwrap().unwrap().name, "ada");
        store.create_user("ann", UserKind::Person, None, 0).unwrap();
        assert!(store.set_subject("ann", Some("sub-1")).is_err());
        store.set_subject("ada", None).unwrap();
        store.set_subject("ann", Some("sub-1")).unwrap();
        // An empty app is not a way to name the assignment for every app.
        store.put_role("reader", Permissions::READ_BOARDS).unwrap();
        store.assign("ann", "reader", None).unwrap();
        assert!(store.assign("ann", "reader", Some("")).is_err());
        assert!(store.unassign("ann", "reader", Some("")).is_err());
        assert!(
            store
                .permissions("ann", None)
                .unwrap()
                .allows(Permissions::READ_BOARDS)
        );
    }

    #[test]
    fn permissions_are_the_union_of_roles_per_app() {
        on_each_backend(permissions_per_app);
    }

    fn permissions_per_app(store: &AuthStore) {
        store.create_user("ada", UserKind::Person, None, 0).unwrap();
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
        assert!(store.create_user("ada", UserKind::Person, None, 0).is_err());
        assert!(
            store
                .create_user("bad name", UserKind::Person, None, 0)
                .is_err()
        );
    }

    #[test]
    fn daemons_of_a_cluster_share_users_and_credentials_and_their_bounds() {
        let Some((runtime, url, database)) = cluster_database() else {
            return;
        };
        // The second daemon: its own pool on the same database.
        let other = runtime
            .block_on(Database::connect(&url, &DatabaseOptions::default()))
            .unwrap();
        let _entered = runtime.enter();
        let a = AuthStore::cluster(PgPrincipals::new(&database));
        let b = AuthStore::cluster(PgPrincipals::new(&other));
        a.create_user("ci", UserKind::Technical, None, 0).unwrap();
        a.put_role("runner", Permissions::EXECUTE_BOARDS).unwrap();
        b.assign("ci", "runner", None).unwrap();
        assert!(matches!(
            b.create_user("ci", UserKind::Technical, None, 0),
            Err(StoreError::UserExists(_))
        ));
        // A key issued through one daemon opens the other; revoked through it, neither.
        let (key, secret) = a.issue("ci", CredentialKind::ApiKey, "k", 600, 0).unwrap();
        let (user, _) = b
            .authenticate(&secret, CredentialKind::ApiKey, 1)
            .unwrap()
            .unwrap();
        assert_eq!(user.name, "ci");
        assert!(
            b.permissions("ci", None)
                .unwrap()
                .allows(Permissions::EXECUTE_BOARDS)
        );
        b.revoke(&key.id, None, 2).unwrap();
        assert_eq!(
            a.authenticate(&secret, CredentialKind::ApiKey, 3)
                .unwrap()
                .err(),
            Some(Refused::Revoked)
        );
        // Issuing from both daemons at once, the user's bound holds: writers take turns.
        let issued = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for store in [&a, &b] {
                let issued = &issued;
                let handle = runtime.handle().clone();
                scope.spawn(move || {
                    let _entered = handle.enter();
                    for _ in 0..MAX_LIVE_CREDENTIALS {
                        if store
                            .issue("ci", CredentialKind::ApiKey, "x", 600, 10)
                            .is_ok()
                        {
                            issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(
            issued.load(std::sync::atomic::Ordering::SeqCst),
            MAX_LIVE_CREDENTIALS
        );
        let live = a
            .credentials(Some("ci"))
            .unwrap()
            .iter()
            .filter(|credential| credential.revoked_at.is_none())
            .count();
        assert_eq!(live, MAX_LIVE_CREDENTIALS);
    }
}
