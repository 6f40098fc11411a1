//! A daemon loading its nodes from a registry: verified as `warden install` verifies, and a
//! node whose signing key the publisher revokes is stopped while it runs, at the daemon's
//! next sync.

use super::*;
use crate::daemon::{Daemon, Fixture, sleep_run};
use std::time::{Duration, Instant};

/// A fixture whose manifest loads `limits` from `registry`, read with `token`.
pub(super) fn fixture(registry: &Registry, token: &str) -> Fixture {
    let fixture = Fixture {
        dir: tempfile::tempdir().unwrap(),
        key: package::generate_key().unwrap(),
    };
    std::fs::copy(registry.cert_path(), fixture.path("registry-ca.pem")).unwrap();
    std::fs::write(fixture.path("registry.token"), token).unwrap();
    let manifest = format!(
        r#"[api]
listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[host]
sync_interval = "off"

[[registries]]
name = "main"
url = "{}"
root_key = "{}"
ca_certs = ["registry-ca.pem"]
token_file = "registry.token"

[[nodes]]
name = "limits"
version = "^0.1"
limits = {{ preset = "default", timeout = "10s" }}
"#,
        registry.url, registry.public_key
    );
    std::fs::write(fixture.path("host.toml"), manifest).unwrap();
    fixture
}

#[test]
fn a_node_revoked_while_it_runs_is_stopped_at_the_next_sync() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let limits = build_node("tests/nodes/limits", Target::Wasip2, &[]);
    registry
        .publish(&acme.token, acme.pack(&limits, "limits", "0.1.0"))
        .unwrap();
    // A version the requirement does not take is not loaded.
    registry
        .publish(&acme.token, acme.pack(&limits, "limits", "0.2.0"))
        .unwrap();
    let fixture = fixture(&registry, &acme.token);
    let daemon = Daemon::start(&fixture);
    assert!(
        daemon.banner.contains("loaded limits@0.1.0"),
        "{}",
        daemon.banner
    );
    let described = daemon.call("GET", "/v1/nodes/limits", None).json();
    assert_eq!(described["origin"]["kind"], "registry");
    assert_eq!(described["publisher"], "acme");

    std::thread::scope(|scope| {
        let running = scope.spawn(|| daemon.run(sleep_run(8000)));
        std::thread::sleep(Duration::from_millis(500));
        // The publisher revokes the key that signed 0.1.0, back to its beginning, with a key
        // signed in beside it.
        let next = package::generate_key().unwrap();
        registry
            .add_key(&acme.token, "acme", &next, Some(&acme.key))
            .unwrap();
        registry.revoke_from_the_start(&acme, &next).unwrap();
        // The reload syncs first: the node is blocked and stopped. No valid version is left,
        // so the node is left out of the new generation (a publisher cannot stop a host from
        // reloading), and the daemon is not ready until the operator acts.
        let started = Instant::now();
        let reload = daemon.call("POST", "/v1/admin/reload", None);
        assert_eq!(reload.status, 200, "{}", reload.text());
        let stopped = running.join().unwrap();
        assert_eq!(
            (stopped.status, stopped.code().as_str()),
            (503, "node_stopped"),
            "{}",
            stopped.text()
        );
        assert!(stopped.text().contains("blocked"), "{}", stopped.text());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stopped at the sync, not at its end"
        );
    });
    assert_eq!(daemon.run(sleep_run(1)).code(), "unknown_node");
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"node_blocked\""), "{audit}");
    assert!(audit.contains("\"event\":\"node_skipped\""), "{audit}");
    let ready = daemon.request(&daemon.api, "GET", "/readyz", None, &[]);
    assert_eq!((ready.status, ready.code().as_str()), (503, "not_ready"));
    assert_eq!(ready.json()["error"]["missing"][0]["node"], "limits");
    // A restart leaves it out too.
    drop(daemon);
    let daemon = Daemon::start(&fixture);
    assert!(
        !daemon.banner.contains("loaded limits"),
        "{}",
        daemon.banner
    );
    assert_eq!(daemon.run(sleep_run(1)).code(), "unknown_node");
    let ready = daemon.request(&daemon.api, "GET", "/readyz", None, &[]);
    assert_eq!(ready.status, 503);
}
