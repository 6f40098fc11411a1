//! `warden serve --manifest host.toml admin ...`: the principal store administered offline
//! (the daemon stopped: `auth.redb` is its file while it runs; a running daemon is
//! administered through `/v1/admin/...`, e.g. with `warden call`). The operations are
//! `warden_daemon::admin`'s, the same the API routes run.

use crate::failure::Failure;
use crate::output::out;
use std::path::Path;
use warden_daemon::admin::{self, AssignmentRequest, IssueRequest, NewUser, RoleRequest};
use warden_daemon::auth::store::{StoreError, UserKind};

#[derive(clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// List the users, their kinds, subjects and roles.
    Users,
    /// Create a user: a person (signs in through OpenID Connect, holds PATs) or, with
    /// --technical, a technical user (holds API keys).
    AddUser {
        name: String,
        #[arg(long)]
        technical: bool,
        /// The `sub` of the provider's tokens this person is.
        #[arg(long, value_name = "SUB")]
        subject: Option<String>,
    },
    /// List the roles and their permissions.
    Roles,
    /// Create or replace a role with these permissions (comma separated, e.g.
    /// ReadBoards,ExecuteBoards).
    SetRole {
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
    },
    /// Give USER the role ROLE, in one app or (without --app) in every app.
    Assign {
        user: String,
        role: String,
        #[arg(long)]
        app: Option<String>,
    },
    /// Take the role ROLE from USER (in --app, or the assignment for every app).
    Unassign {
        user: String,
        role: String,
        #[arg(long)]
        app: Option<String>,
    },
    /// List credentials (never their secrets), of one user with --user.
    Credentials {
        #[arg(long)]
        user: Option<String>,
    },
    /// Issue a credential to USER: an API key to a technical user, a PAT to a person. The
    /// secret is printed once.
    Issue {
        user: String,
        #[arg(long)]
        label: Option<String>,
        /// How long it lives (`90d`, `12h`, …); 90 days by default, a year at most.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Revoke the credential ID (as `credentials` lists it).
    Revoke { id: String },
}

fn refused(error: StoreError) -> Failure {
    match error {
        StoreError::Storage { .. } if !error.in_cluster() => Failure::failed(format!(
            "{error} (is the daemon running? it holds the store while it runs: stop it, or use /v1/admin/... with `warden call`)"
        )),
        // The cluster's database failed: not the operator's mistake.
        StoreError::Storage { .. } => Failure::failed(error.to_string()),
        other => Failure::usage(other.to_string()),
    }
}

pub(crate) fn execute(manifest_path: &Path, command: AdminCommand) -> Result<(), Failure> {
    let manifest = warden_daemon::Manifest::load(manifest_path)
        .map_err(|error| Failure::usage(error.to_string()))?;
    std::fs::create_dir_all(&manifest.data_dir).map_err(|error| {
        Failure::failed(format!(
            "cannot create {}: {error}",
            manifest.data_dir.display()
        ))
    })?;
    // In a cluster, the cluster's database: the same users and keys for every daemon.
    let runtime = crate::async_runtime::tokio_multi_thread()?;
    let _entered = runtime.enter();
    let store = warden_daemon::cluster::auth_store(&manifest, &runtime)
        .map_err(|error| Failure::failed(error.to_string()))?;
    let now = warden_registry::protocol::now();
    let answer = match command {
        AdminCommand::Users => admin::users(&store),
        AdminCommand::AddUser {
            name,
            technical,
            subject,
        } => admin::create_user(
            &store,
            NewUser {
                name,
                kind: if technical {
                    UserKind::Technical
                } else {
                    UserKind::Person
                },
                subject,
            },
            now,
        ),
        AdminCommand::Roles => admin::roles(&store),
        AdminCommand::SetRole { name, permissions } => {
            admin::put_role(&store, &name, RoleRequest { permissions })
        }
        AdminCommand::Assign { user, role, app } => {
            admin::assign(&store, AssignmentRequest { user, role, app })
        }
        AdminCommand::Unassign { user, role, app } => {
            admin::unassign(&store, AssignmentRequest { user, role, app })
        }
        AdminCommand::Credentials { user } => admin::credentials(&store, user.as_deref(), now),
        AdminCommand::Issue {
            user,
            label,
            expires_in,
        } => admin::issue(
            &store,
            IssueRequest {
                user,
                label,
                expires_in,
            },
            now,
        ),
        AdminCommand::Revoke { id } => admin::revoke(&store, &id, None, now),
    }
    .map_err(refused)?;
    let text = serde_json::to_string_pretty(&answer)
        .map_err(|error| Failure::failed(error.to_string()))?;
    out(&format!("{text}\n"));
    Ok(())
}
