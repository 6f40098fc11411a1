//! Permissions as bits, at the values Flow-Like uses (so role data carries over), and the one
//! table that says which permission each route needs.

use bitflags::bitflags;

bitflags! {
    /// What a principal may do. `OWNER` and `ADMIN` imply every other permission
    /// ([`Permissions::effective`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Permissions: u32 {
        const OWNER = 1 << 0;
        const ADMIN = 1 << 1;
        const READ_TEAM = 1 << 2;
        const READ_ROLES = 1 << 3;
        const READ_FILES = 1 << 4;
        const WRITE_FILES = 1 << 5;
        const INVOKE_API = 1 << 6;
        const WRITE_META = 1 << 7;
        const READ_BOARDS = 1 << 8;
        const EXECUTE_BOARDS = 1 << 9;
        const WRITE_BOARDS = 1 << 10;
        const LIST_EVENTS = 1 << 11;
        const READ_EVENTS = 1 << 12;
        const EXECUTE_EVENTS = 1 << 13;
        const WRITE_EVENTS = 1 << 14;
        const READ_LOGS = 1 << 15;
        const READ_ANALYTICS = 1 << 16;
        const READ_CONFIG = 1 << 17;
        const WRITE_CONFIG = 1 << 18;
        const READ_TEMPLATES = 1 << 19;
        const WRITE_TEMPLATES = 1 << 20;
        const READ_COURSES = 1 << 21;
        const WRITE_COURSES = 1 << 22;
        const READ_WIDGETS = 1 << 23;
        const WRITE_WIDGETS = 1 << 24;
        const WRITE_ROUTES = 1 << 25;
    }
}

/// Each permission's name as roles and errors spell it, in bit order.
pub const NAMES: [(&str, Permissions); 26] = [
    ("Owner", Permissions::OWNER),
    ("Admin", Permissions::ADMIN),
    ("ReadTeam", Permissions::READ_TEAM),
    ("ReadRoles", Permissions::READ_ROLES),
    ("ReadFiles", Permissions::READ_FILES),
    ("WriteFiles", Permissions::WRITE_FILES),
    ("InvokeApi", Permissions::INVOKE_API),
    ("WriteMeta", Permissions::WRITE_META),
    ("ReadBoards", Permissions::READ_BOARDS),
    ("ExecuteBoards", Permissions::EXECUTE_BOARDS),
    ("WriteBoards", Permissions::WRITE_BOARDS),
    ("ListEvents", Permissions::LIST_EVENTS),
    ("ReadEvents", Permissions::READ_EVENTS),
    ("ExecuteEvents", Permissions::EXECUTE_EVENTS),
    ("WriteEvents", Permissions::WRITE_EVENTS),
    ("ReadLogs", Permissions::READ_LOGS),
    ("ReadAnalytics", Permissions::READ_ANALYTICS),
    ("ReadConfig", Permissions::READ_CONFIG),
    ("WriteConfig", Permissions::WRITE_CONFIG),
    ("ReadTemplates", Permissions::READ_TEMPLATES),
    ("WriteTemplates", Permissions::WRITE_TEMPLATES),
    ("ReadCourses", Permissions::READ_COURSES),
    ("WriteCourses", Permissions::WRITE_COURSES),
    ("ReadWidgets", Permissions::READ_WIDGETS),
    ("WriteWidgets", Permissions::WRITE_WIDGETS),
    ("WriteRoutes", Permissions::WRITE_ROUTES),
];

/// A permission name no permission has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a permission; the permissions are: {list}", list = NAMES.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "))]
pub struct UnknownPermission(pub String);

impl Permissions {
    /// What these permissions allow: everything when they hold `OWNER` or `ADMIN`.
    pub fn effective(self) -> Permissions {
        if self.intersects(Permissions::OWNER | Permissions::ADMIN) {
            Permissions::all()
        } else {
            self
        }
    }

    /// Whether these permissions allow `needed`.
    pub fn allows(self, needed: Permissions) -> bool {
        self.effective().contains(needed)
    }

    /// The names of the permissions set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(_, bit)| self.contains(*bit))
            .map(|(name, _)| *name)
            .collect()
    }

    /// Permissions from their names.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Permissions, UnknownPermission> {
        names
            .into_iter()
            .try_fold(Permissions::empty(), |all, name| {
                NAMES
                    .iter()
                    .find(|(known, _)| known.eq_ignore_ascii_case(name.trim()))
                    .map(|(_, bit)| all | *bit)
                    .ok_or_else(|| UnknownPermission(name.to_string()))
            })
    }
}

/// What a route needs. `Public` routes need no credential at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Public,
    /// A credential with this permission.
    Permission(Permissions),
    /// Running a node: `EXECUTE_BOARDS`, or `EXECUTE_EVENTS` for an event-triggered run (one
    /// whose context names an event), in the run's app; checked by the handler, which knows
    /// the app.
    Run,
    /// Any caller for what is its own (the runs it made); this permission for everyone's.
    OwnOr(Permissions),
    /// Any identified caller but the executor: about itself (`/v1/me`, its own PATs).
    SignedIn,
}

/// Every route of the daemon's API (and of its metrics listener) and what it needs: the one
/// table the middleware checks before any handler runs, and that docs/auth.md lists (a test
/// holds the two together).
pub const ROUTES: &[(&str, &str, Needs)] = &[
    ("GET", "/healthz", Needs::Public),
    ("GET", "/readyz", Needs::Public),
    ("GET", "/auth/discovery", Needs::Public),
    ("GET", "/auth/jwks", Needs::Public),
    ("GET", "/auth/authorize", Needs::Public),
    ("POST", "/auth/token", Needs::Public),
    ("GET", "/auth/userinfo", Needs::Public),
    ("POST", "/auth/revoke", Needs::Public),
    ("POST", "/v1/runs", Needs::Run),
    ("GET", "/v1/runs/{id}", Needs::OwnOr(Permissions::READ_LOGS)),
    (
        "GET",
        "/v1/runs/{id}/result",
        Needs::OwnOr(Permissions::ADMIN),
    ),
    (
        "GET",
        "/v1/runs/{id}/events",
        Needs::OwnOr(Permissions::ADMIN),
    ),
    (
        "GET",
        "/v1/nodes",
        Needs::Permission(Permissions::READ_BOARDS),
    ),
    (
        "GET",
        "/v1/nodes/{*name}",
        Needs::Permission(Permissions::READ_BOARDS),
    ),
    (
        "GET",
        "/v1/audit",
        Needs::Permission(Permissions::READ_LOGS),
    ),
    (
        "GET",
        "/v1/metrics",
        Needs::Permission(Permissions::READ_ANALYTICS),
    ),
    (
        "GET",
        "/metrics",
        Needs::Permission(Permissions::READ_ANALYTICS),
    ),
    ("GET", "/v1/me", Needs::SignedIn),
    ("GET", "/v1/me/pats", Needs::SignedIn),
    ("POST", "/v1/me/pats", Needs::SignedIn),
    ("DELETE", "/v1/me/pats/{id}", Needs::SignedIn),
    (
        "POST",
        "/v1/admin/reload",
        Needs::Permission(Permissions::WRITE_CONFIG),
    ),
    (
        "GET",
        "/v1/admin/users",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "POST",
        "/v1/admin/users",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "GET",
        "/v1/admin/roles",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "PUT",
        "/v1/admin/roles/{name}",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "POST",
        "/v1/admin/assignments",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "DELETE",
        "/v1/admin/assignments",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "GET",
        "/v1/admin/credentials",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "POST",
        "/v1/admin/credentials",
        Needs::Permission(Permissions::ADMIN),
    ),
    (
        "DELETE",
        "/v1/admin/credentials/{id}",
        Needs::Permission(Permissions::ADMIN),
    ),
];

/// What the route `pattern` (as axum matched it) needs for `method`; `None` for a route the
/// table does not know, which the middleware refuses.
pub fn needs(method: &str, pattern: &str) -> Option<Needs> {
    ROUTES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == pattern)
        .map(|(_, _, needs)| *needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bits_are_flow_likes_and_every_one_is_named_once() {
        assert_eq!(Permissions::all().bits(), (1 << 26) - 1);
        assert_eq!(Permissions::EXECUTE_BOARDS.bits(), 512);
        assert_eq!(Permissions::WRITE_ROUTES.bits(), 1 << 25);
        for (index, (name, bit)) in NAMES.iter().enumerate() {
            assert_eq!(bit.bits(), 1 << index, "{name}");
            assert_eq!(Permissions::from_names([*name]).unwrap(), *bit);
        }
        assert_eq!(
            Permissions::from_names(["readboards", " ExecuteBoards "]).unwrap(),
            Permissions::READ_BOARDS | Permissions::EXECUTE_BOARDS
        );
        assert!(Permissions::from_names(["Root"]).is_err());
    }

    #[test]
    fn owner_and_admin_imply_every_permission_and_nothing_else_does() {
        assert!(Permissions::ADMIN.allows(Permissions::WRITE_CONFIG | Permissions::READ_LOGS));
        assert!(Permissions::OWNER.allows(Permissions::all()));
        let reader = Permissions::READ_BOARDS | Permissions::READ_LOGS;
        assert!(reader.allows(Permissions::READ_BOARDS));
        assert!(!reader.allows(Permissions::EXECUTE_BOARDS));
        assert!(
            !Permissions::all()
                .difference(Permissions::OWNER | Permissions::ADMIN)
                .allows(Permissions::ADMIN)
        );
    }

    #[test]
    fn every_route_is_in_the_table_once() {
        for (index, (method, pattern, _)) in ROUTES.iter().enumerate() {
            let twice = ROUTES
                .iter()
                .skip(index + 1)
                .any(|(m, p, _)| m == method && p == pattern);
            assert!(!twice, "{method} {pattern}");
        }
        assert_eq!(needs("GET", "/healthz"), Some(Needs::Public));
        assert_eq!(needs("POST", "/v1/runs"), Some(Needs::Run));
        assert_eq!(needs("DELETE", "/v1/runs"), None);
    }

    #[test]
    fn docs_auth_md_lists_every_route_with_what_it_needs() {
        let docs = include_str!("../../../docs/auth.md");
        let section = "## What each route needs";
        let docs = &docs[docs.find(section).expect("docs/auth.md has the section")..];
        for (method, pattern, needs) in ROUTES {
            let needed = match needs {
                Needs::Public => "none".to_string(),
                Needs::Run => "ExecuteBoards or ExecuteEvents".to_string(),
                Needs::OwnOr(permission) | Needs::Permission(permission) => {
                    permission.names().join(" or ")
                }
                Needs::SignedIn => "any caller".to_string(),
            };
            let row = format!("| `{method} {pattern}` |");
            let line = docs
                .lines()
                .find(|line| line.starts_with(&row))
                .unwrap_or_else(|| panic!("docs/auth.md has no row {row}"));
            assert!(line.contains(&needed), "{line} should say {needed}");
        }
    }
}
