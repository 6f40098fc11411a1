//! A package published once to a registry is installed and run by every daemon of a cluster, and
//! so is its update. Skipped, with the reason, where PostgreSQL is not installed.

use super::*;
use crate::daemon::cluster::{CLUSTER, fresh_database};
use crate::daemon::{Daemon, Fixture, metric, sleep_run};
use sha2::Digest;
use warden_cluster::test_services::{S3, own_s3};
use warden_cluster::{BlobSettings, BlobStore};

/// A registry where `acme` published the limits node as `limits@0.1.0`: the registry, the
/// publisher, the component and the package.
fn published() -> (Registry, Publisher, std::path::PathBuf, Vec<u8>) {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let limits = build_node("tests/nodes/limits", Target::Wasip2, &[]);
    let package = acme.pack(&limits, "limits", "0.1.0");
    registry.publish(&acme.token, package.clone()).unwrap();
    (registry, acme, limits, package)
}

#[test]
fn a_package_published_once_is_installed_and_run_on_every_daemon_of_a_cluster() {
    let Some(url) = fresh_database() else { return };
    let (registry, acme, limits, _) = published();
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

/// `[cluster]` with packages shared through the object storage at `server`, under `prefix`.
fn with_blobs(server: &S3, prefix: &str) -> String {
    format!(
        "{CLUSTER}blobs = \"{}\"\nblobs_endpoint = \"{}\"\n",
        server.url(prefix),
        server.endpoint()
    )
}

fn packages_from(daemon: &Daemon, from: &str) -> f64 {
    let text = daemon.metrics_text();
    metric(
        &text,
        "warden_cluster_packages_total",
        &format!("from=\"{from}\""),
    )
    .unwrap_or(0.0)
}

#[test]
fn daemons_of_a_cluster_download_a_package_once_and_share_it_through_object_storage() {
    let Some(url) = fresh_database() else { return };
    let Some(s3) = own_s3() else { return };
    let (registry, acme, _, package) = published();
    let sha256: String = sha2::Sha256::digest(&package)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = BlobSettings {
        url: s3.url("shared"),
        endpoint: Some(s3.endpoint()),
        region: None,
        ca_certs: Vec::new(),
    };
    let store = BlobStore::open_with_keys(&settings, S3::KEY_ID, S3::SECRET).unwrap();
    let env = [
        ("WARDEN_TEST_DATABASE_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", S3::KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", S3::SECRET),
    ];
    let start = || {
        let fixture = super::daemon_revocation::fixture(&registry, &acme.token);
        let manifest = std::fs::read_to_string(fixture.path("host.toml")).unwrap();
        let cluster = with_blobs(&s3, "shared");
        std::fs::write(
            fixture.path("host.toml"),
            format!("{manifest}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{cluster}"),
        )
        .unwrap();
        let daemon = Daemon::try_start_with_env(&fixture, &env)
            .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
        assert!(
            daemon.banner.contains("loaded limits@0.1.0"),
            "{}",
            daemon.banner
        );
        (fixture, daemon)
    };
    // The first daemon downloads the package from the registry and stores it; the others take
    // it from the object storage, verified against the same signed index.
    let first = start();
    assert_eq!(packages_from(&first.1, "registry"), 1.0);
    assert_eq!(packages_from(&first.1, "blobs"), 0.0);
    // Stored in the background: wait for it.
    wait_for_blob(&runtime, &store, &sha256, &package);
    let others: Vec<_> = (0..2).map(|_| start()).collect();
    for (_, daemon) in &others {
        assert_eq!(packages_from(daemon, "blobs"), 1.0);
        assert_eq!(packages_from(daemon, "registry"), 0.0);
        let reply = daemon.run(sleep_run(1));
        assert_eq!(reply.status, 200, "{}", reply.shown());
    }

    // Bytes swapped in the store behind the daemons' backs (another package of the same size
    // would do no better: the name is the hash) are refused: the daemon downloads the package
    // from the registry again, runs it, and stores it afresh for the next.
    let mut forged = package.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    runtime
        .block_on(store.overwrite_unchecked(&sha256, &forged))
        .unwrap();
    let (_, second) = &others[0];
    let reload = second.call("POST", "/v1/admin/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.shown());
    let text = second.metrics_text();
    assert_eq!(
        metric(
            &text,
            "warden_cluster_blob_failures_total",
            "operation=\"get\",kind=\"corrupt\""
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(packages_from(second, "registry"), 1.0);
    let reply = second.run(sleep_run(1));
    assert_eq!(reply.status, 200, "{}", reply.shown());
    wait_for_blob(&runtime, &store, &sha256, &package);
    let (_, third) = &others[1];
    let reload = third.call("POST", "/v1/admin/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.shown());
    assert_eq!(packages_from(third, "blobs"), 2.0);
    assert_eq!(packages_from(third, "registry"), 0.0);
}

/// Waits (at most 30 s) until `store` holds `package` under `sha256`.
fn wait_for_blob(
    runtime: &tokio::runtime::Runtime,
    store: &BlobStore,
    sha256: &str,
    package: &[u8],
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match runtime.block_on(store.get(sha256, package.len() as u64)) {
            Ok(Some(stored)) => {
                assert_eq!(stored, package);
                return;
            }
            Ok(None) => {}
            Err(error) => panic!("{error}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the package was not stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_package_store_that_does_not_answer_costs_one_wait_then_is_left_alone() {
    let Some(url) = fresh_database() else { return };
    let (registry, acme, _, _) = published();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fixture = super::daemon_revocation::fixture(&registry, &acme.token);
    let manifest = std::fs::read_to_string(fixture.path("host.toml")).unwrap();
    std::fs::write(
        fixture.path("host.toml"),
        format!(
            "{manifest}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{CLUSTER}blobs = \"s3://warden/x\"\nblobs_endpoint = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let env = [
        ("WARDEN_TEST_DATABASE_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
    ];
    let daemon = Daemon::try_start_with_env(&fixture, &env)
        .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
    // The node loads from the registry; the store's failure is counted and said.
    assert!(
        daemon.banner.contains("loaded limits@0.1.0"),
        "{}",
        daemon.banner
    );
    assert_eq!(daemon.run(sleep_run(1)).status, 200);
    let failures = |daemon: &Daemon| {
        metric(
            &daemon.metrics_text(),
            "warden_cluster_blob_failures_total",
            "operation=\"get\",kind=\"unavailable\"",
        )
        .unwrap_or(0.0)
    };
    assert_eq!(failures(&daemon), 1.0);
    assert_eq!(packages_from(&daemon, "registry"), 1.0);
    // A reload soon after leaves the store alone rather than waiting for it again.
    let reload = daemon.call("POST", "/v1/admin/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.shown());
    assert_eq!(failures(&daemon), 1.0);
    assert_eq!(packages_from(&daemon, "registry"), 2.0);
    assert_eq!(daemon.run(sleep_run(1)).status, 200);
}
