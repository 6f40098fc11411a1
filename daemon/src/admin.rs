//! Administration of the principal store: users, roles, role assignments and credentials.
//! One set of operations behind both the `/v1/admin/...` routes (daemon running) and
//! `warden serve admin ...` (daemon stopped), so the two never answer differently.
//!
//! Every operation answers JSON. No answer ever holds a stored hash; an issued secret is in
//! the answer of its issue and nowhere else.

use crate::auth::permissions::Permissions;
use crate::auth::store::{
    AuthStore, Credential, CredentialKind, MAX_CREDENTIAL_LIFETIME, StoreError, UserKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// How long an issued credential lives when the request does not say.
pub const DEFAULT_LIFETIME: u64 = 90 * 24 * 3600;

/// A new user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    /// `person` (signs in with OpenID Connect, holds PATs) or `technical` (holds API keys).
    pub kind: UserKind,
    /// The `sub` of the provider's tokens this person is.
    #[serde(default)]
    pub subject: Option<String>,
}

/// A role and its permissions, by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    pub permissions: Vec<String>,
}

/// A role given to (or taken from) a user, in one app or every app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRequest {
    pub user: String,
    pub role: String,
    #[serde(default)]
    pub app: Option<String>,
}

/// A credential to issue: an API key for a technical user, a PAT for a person.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub user: String,
    #[serde(default)]
    pub label: Option<String>,
    /// How long it lives, as `90d`, `12h`, …; 90 days unless given, a year at most.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// Seconds from a duration such as `30d`, bounded by the longest lifetime.
pub fn lifetime(text: Option<&str>) -> Result<u64, StoreError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIFETIME);
    };
    let seconds = warden_host::units::parse_duration(text)
        .map_err(|error| StoreError::Invalid(format!("expires_in: {error}")))?
        .as_secs();
    if seconds == 0 || seconds > MAX_CREDENTIAL_LIFETIME {
        return Err(StoreError::Invalid(format!(
            "expires_in is from 1 second to {} days",
            MAX_CREDENTIAL_LIFETIME / 86400
        )));
    }
    Ok(seconds)
}

/// A credential as lists show it: its id, never its hash or secret.
pub fn credential_view(credential: &Credential, now: u64) -> Json {
    let state = if credential.revoked_at.is_some() {
        "revoked"
    } else if now >= credential.expires_at {
        "expired"
    } else {
        "live"
    };
    json!({
        "id": credential.id,
        "kind": credential.kind,
        "user": credential.user,
        "label": credential.label,
        "created_at": credential.created_at,
        "expires_at": credential.expires_at,
        "revoked_at": credential.revoked_at,
        "state": state,
    })
}

pub fn users(store: &AuthStore) -> Result<Json, StoreError> {
    let assignments = store.assignments(None)?;
    let users: Vec<Json> = store
        .users()?
        .into_iter()
        .map(|user| {
            let roles: Vec<Json> = assignments
                .iter()
                .filter(|assignment| assignment.user == user.name)
                .map(|assignment| json!({ "role": assignment.role, "app": assignment.app }))
                .collect();
            json!({
                "name": user.name,
                "kind": user.kind,
                "subject": user.subject,
                "created_at": user.created_at,
                "roles": roles,
            })
        })
        .collect();
    Ok(json!({ "users": users }))
}

pub fn create_user(store: &AuthStore, request: NewUser, now: u64) -> Result<Json, StoreError> {
    // Name, kind and subject are checked and the user written in one transaction: a refused
    // request leaves no user, and two at once cannot both take a subject.
    let user = store.create_user(&request.name, request.kind, request.subject.as_deref(), now)?;
    Ok(json!({ "user": user }))
}

pub fn roles(store: &AuthStore) -> Result<Json, StoreError> {
    let roles: Vec<Json> = store
        .roles()?
        .into_iter()
        .map(|role| {
            json!({
                "name": role.name,
                "permissions": Permissions::from_bits_truncate(role.permissions).names(),
                "bits": role.permissions,
            })
        })
        .collect();
    Ok(json!({ "roles": roles }))
}

pub fn put_role(store: &AuthStore, name: &str, request: RoleRequest) -> Result<Json, StoreError> {
    let permissions = Permissions::from_names(request.permissions.iter().map(String::as_str))
        .map_err(|error| StoreError::Invalid(error.to_string()))?;
    let role = store.put_role(name, permissions)?;
    Ok(json!({
        "role": {
            "name": role.name,
            "permissions": permissions.names(),
            "bits": role.permissions,
        }
    }))
}

pub fn assign(store: &AuthStore, request: AssignmentRequest) -> Result<Json, StoreError> {
    store.assign(&request.user, &request.role, request.app.as_deref())?;
    Ok(json!({ "assigned": { "user": request.user, "role": request.role, "app": request.app } }))
}

pub fn unassign(store: &AuthStore, request: AssignmentRequest) -> Result<Json, StoreError> {
    if !store.unassign(&request.user, &request.role, request.app.as_deref())? {
        return Err(StoreError::Invalid(format!(
            "user `{}` does not hold the role `{}` {}",
            request.user,
            request.role,
            match &request.app {
                Some(app) => format!("in app `{app}`"),
                None => "in every app".into(),
            }
        )));
    }
    Ok(json!({ "unassigned": { "user": request.user, "role": request.role, "app": request.app } }))
}

pub fn credentials(store: &AuthStore, user: Option<&str>, now: u64) -> Result<Json, StoreError> {
    let credentials: Vec<Json> = store
        .credentials(user)?
        .iter()
        .map(|credential| credential_view(credential, now))
        .collect();
    Ok(json!({ "credentials": credentials }))
}

/// Issues the credential that fits the user's kind; the answer holds the secret, once.
pub fn issue(store: &AuthStore, request: IssueRequest, now: u64) -> Result<Json, StoreError> {
    let user = store
        .user(&request.user)?
        .ok_or_else(|| StoreError::UnknownUser(request.user.clone()))?;
    let kind = match user.kind {
        UserKind::Technical => CredentialKind::ApiKey,
        UserKind::Person => CredentialKind::Pat,
    };
    let lifetime = lifetime(request.expires_in.as_deref())?;
    let label = request.label.as_deref().unwrap_or("");
    let (credential, secret) = store.issue(&user.name, kind, label, lifetime, now)?;
    Ok(json!({
        "credential": credential_view(&credential, now),
        "secret": secret,
        "send_as": match kind {
            CredentialKind::ApiKey => "X-API-Key: <secret>",
            CredentialKind::Pat => "Authorization: PAT <secret>",
        },
    }))
}

/// Revokes credential `id`; with `owner`, only one of that user's. `changed` is false for one
/// revoked already.
pub fn revoke(
    store: &AuthStore,
    id: &str,
    owner: Option<&str>,
    now: u64,
) -> Result<Json, StoreError> {
    let (credential, changed) = store.revoke(id, owner, now)?;
    Ok(json!({ "revoked": credential_view(&credential, now), "changed": changed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_answer_without_hashes_and_issue_by_the_users_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::open(&dir.path().join("auth.redb")).unwrap();
        let request = |json: Json| serde_json::from_value::<NewUser>(json).unwrap();
        create_user(
            &store,
            request(json!({"name": "ci", "kind": "technical"})),
            1,
        )
        .unwrap();
        create_user(
            &store,
            request(json!({"name": "ada", "kind": "person", "subject": "sub-1"})),
            1,
        )
        .unwrap();
        // A subject is one person's; a technical user has none, and a refusal leaves no user.
        assert!(
            create_user(
                &store,
                request(json!({"name": "bob", "kind": "person", "subject": "sub-1"})),
                1
            )
            .is_err()
        );
        assert!(
            create_user(
                &store,
                request(json!({"name": "bot", "kind": "technical", "subject": "x"})),
                1
            )
            .is_err()
        );
        assert!(store.user("bob").unwrap().is_none());
        put_role(
            &store,
            "runner",
            RoleRequest {
                permissions: vec!["ExecuteBoards".into(), "readboards".into()],
            },
        )
        .unwrap();
        assert!(
            put_role(
                &store,
                "x",
                RoleRequest {
                    permissions: vec!["Root".into()]
                }
            )
            .is_err()
        );
        let assignment = || AssignmentRequest {
            user: "ci".into(),
            role: "runner".into(),
            app: Some("app-a".into()),
        };
        assign(&store, assignment()).unwrap();
        let listed = users(&store).unwrap().to_string();
        assert!(
            listed.contains("app-a") && listed.contains("sub-1"),
            "{listed}"
        );
        let key = issue(
            &store,
            IssueRequest {
                user: "ci".into(),
                label: Some("deploys".into()),
                expires_in: Some("1h".into()),
            },
            10,
        )
        .unwrap();
        assert!(key["secret"].as_str().unwrap().starts_with("wdh_key_"));
        assert_eq!(key["credential"]["expires_at"], 3610);
        let pat = issue(
            &store,
            IssueRequest {
                user: "ada".into(),
                label: None,
                expires_in: None,
            },
            10,
        )
        .unwrap();
        assert!(pat["secret"].as_str().unwrap().starts_with("wdh_pat_"));
        let too_long = IssueRequest {
            user: "ada".into(),
            label: None,
            expires_in: Some("400d".into()),
        };
        assert!(issue(&store, too_long, 10).is_err());
        let listed = credentials(&store, None, 20).unwrap().to_string();
        assert!(
            !listed.contains("sha256") && !listed.contains("wdh_"),
            "{listed}"
        );
        let id = pat["credential"]["id"].as_str().unwrap();
        assert!(revoke(&store, id, Some("ci"), 30).is_err());
        let revoked = revoke(&store, id, Some("ada"), 30).unwrap();
        assert_eq!(revoked["revoked"]["state"], "revoked");
        unassign(&store, assignment()).unwrap();
        assert!(unassign(&store, assignment()).is_err());
        assert!(store.assignments(Some("ci")).unwrap().is_empty());
    }
}
