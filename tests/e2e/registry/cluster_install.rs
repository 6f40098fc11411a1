//! A package published once to a registry is installed and run by every daemon of a cluster, and
//! so is its update. Skipped, with the reason, where PostgreSQL is not installed.

use super::*;
use crate::daemon::cluster::{CLUSTER, fresh_database};
use crate::daemon::{Daemon, Fixture, sleep_run};

#[test]
fn a_package_published_once_is_installed_and_run_on_every_daemon_of_a_cluster() {
    let Some(url) = fresh_database() else { return };
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let limits = build_node("tests/nodes/limits", Target::Wasip2, &[]);
    registry
        .publish(&acme.token, acme.pack(&limits, "limits", "0.1.0"))
        .unwrap();
    let daemons: Vec<(Fixture, Daemon)> = (0..3)
        .map(|_| {
            let fixture = super::daemon_revocation::fixture(&registry, &acme.token);
            let manifest = std::fs::read_to_string(fixture.path("host.toml")).unwrap();
            std::fs::write(fixture.path("host.toml"), format!("{manifest}\n{CLUSTER}")).unwrap();
            let daemon =
                Daemon::try_start_with_env(&fixture, &[("WARDEN_TEST_DATABASE_URL", &url)])
                    .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
            (fixture, daemon)
        })
        .collect();
    for (_, daemon) in &daemons {
        assert!(
            daemon.banner.contains("loaded limits@0.1.0"),
            "{}",
            daemon.banner
        );
        let reply = daemon.run(sleep_run(1));
        assert_eq!(reply.status, 200, "{}", reply.shown());
        assert_eq!(reply.json()["version"], "0.1.0");
    }

    // An update published once reaches every daemon at its next sync (here, a reload).
    registry
        .publish(&acme.token, acme.pack(&limits, "limits", "0.1.1"))
        .unwrap();
    for (_, daemon) in &daemons {
        let reload = daemon.call("POST", "/v1/admin/reload", None);
        assert_eq!(reload.status, 200, "{}", reload.shown());
        let reply = daemon.run(sleep_run(1));
        assert_eq!(reply.status, 200, "{}", reply.shown());
        assert_eq!(reply.json()["version"], "0.1.1", "{}", reply.shown());
        let described = daemon.call("GET", "/v1/nodes/limits", None).json();
        assert_eq!(described["publisher"], "acme", "{described}");
    }
}
