//! Daemons sharing one PostgreSQL database (`[cluster]`): a node's storage is the same whichever
//! daemon runs it. Skipped, with the reason, where PostgreSQL is not installed.

use super::auth::{create_owner_with, warden_serve};
use super::*;
use warden_cluster::test_services::{Postgres, own_postgres, shared_postgres};

pub(crate) const CLUSTER: &str = r#"
[cluster]
database_url_env = "WARDEN_TEST_DATABASE_URL"
connect_timeout = "1s"
"#;

const PROBE_NODE: &str = r#"
[[nodes]]
name = "storage-probe"
grant = ["storage-read", "storage-write", "storage-delete", "cache-read", "cache-write", "variables-read", "variables-write"]
# A 16 MiB storage quota, so that the quota test fills it with a few dozen runs.
limits = "restrictive"
queue = 64
"#;

pub(crate) fn fresh_database() -> Option<String> {
    Some(database_on(shared_postgres()?))
}

pub(super) fn database_on(server: &Postgres) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(server.fresh_database()).unwrap()
}

/// Polls `/readyz` until it answers `status` (and, for an error, `code`), at most 30 s.
pub(super) fn wait_readiness(daemon: &Daemon, status: u16, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = daemon.call("GET", "/readyz", None);
        if ready.status == status && (status == 200 || ready.code() == code) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {}: {}",
            ready.status,
            ready.shown()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A cluster daemon's files, serving the storage probe.
fn probe_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture.add(
        "storage-probe",
        "1.0.0",
        &build_node("tests/nodes/storage-probe", Target::Unknown, &[]),
    );
    fixture.write_manifest("", &format!("{CLUSTER}{PROBE_NODE}"));
    fixture
}

fn probe_daemon(url: &str) -> (Fixture, Daemon) {
    let fixture = probe_fixture();
    let daemon = Daemon::try_start_with_env(&fixture, &[("WARDEN_TEST_DATABASE_URL", url)])
        .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
    (fixture, daemon)
}

fn probe(daemon: &Daemon, op: &str, key: &str, value: &str) -> Json {
    probe_in(daemon, "board-1", op, key, value)
}

fn probe_in(daemon: &Daemon, board: &str, op: &str, key: &str, value: &str) -> Json {
    let reply = daemon.run(json!({
        "node": "storage-probe",
        "inputs": { "op": op, "scope": "board", "key": key, "value": value },
        "context": { "app_id": "app", "board_id": board, "user_id": "ann" },
    }));
    assert_eq!(reply.status, 200, "{}", reply.shown());
    let outputs = reply.json()["outputs"].clone();
    assert!(outputs.get("error").is_none_or(Json::is_null), "{outputs}");
    outputs["value"].clone()
}

#[test]
fn storage_written_through_one_daemon_is_read_through_another() {
    let Some(url) = fresh_database() else { return };
    let (_a_files, a) = probe_daemon(&url);
    let (_b_files, b) = probe_daemon(&url);
    assert!(
        a.log()
            .contains("storage scopes are in the cluster's PostgreSQL database")
    );

    assert_eq!(probe(&a, "set", "notes/first", "written by A"), json!(true));
    assert_eq!(probe(&b, "get", "notes/first", ""), json!("written by A"));
    assert_eq!(
        probe(&b, "set", "notes/second", "written by B"),
        json!(true)
    );
    assert_eq!(
        probe(&a, "list", "notes/", ""),
        json!("notes/first,notes/second")
    );
    assert_eq!(probe(&b, "delete", "notes/first", ""), json!(true));
    assert_eq!(probe(&a, "exists", "notes/first", ""), json!(false));
}

#[test]
fn the_audit_log_is_one_chain_for_every_daemon() {
    let Some(url) = fresh_database() else { return };
    let (a_files, a) = probe_daemon(&url);
    let (_b_files, mut b) = probe_daemon(&url);
    assert_eq!(probe(&b, "set", "notes/first", "by B"), json!(true));
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(30)).is_some());

    // Either daemon reads the one chain: both starts, and B's shutdown, flushed as it stopped.
    let answer = a.call("GET", "/v1/audit?limit=1000", None);
    assert_eq!(answer.status, 200, "{}", answer.shown());
    let records = answer.json()["records"].as_array().unwrap().clone();
    let daemons_started: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|record| record["event"] == "daemon_start")
        .map(|record| record["daemon"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(daemons_started.len(), 2, "{records:?}");
    let shutdown = records
        .iter()
        .find(|record| record["event"] == "shutdown")
        .expect("B's shutdown record");
    assert!(daemons_started.contains(shutdown["daemon"].as_str().unwrap()));
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], json!(index + 1), "{records:?}");
    }
    assert!(!a_files.path("data/audit.jsonl").exists());

    // The chain verifies in the database; a record forged into the table breaks it, and a
    // daemon starting then says so (and serves: one row must not stop a cluster).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let database = warden_cluster::Database::connect(&url, &Default::default())
            .await
            .unwrap();
        let audit = warden_cluster::PgAudit::new(&database);
        let rows = audit.last(10_000).await.unwrap();
        assert_eq!(rows.len(), records.len());
        warden_daemon::audit::verify_rows(&rows, warden_daemon::audit::ChainStart::Genesis)
            .unwrap();
        audit
            .append(&[()], |(), seq, _| {
                json!({"seq": seq, "event": "forged", "prev": warden_daemon::audit::GENESIS})
                    .to_string()
            })
            .await
            .unwrap();
    });
    let forged_at = records.len() + 1;
    let (_c_files, c) = probe_daemon(&url);
    assert!(
        c.log().contains(&format!(
            "audit log (table warden_audit) is broken at record {forged_at}"
        )),
        "{}",
        c.log()
    );
    assert_eq!(
        metric(&c.metrics_text(), "warden_audit_chain_broken", ""),
        Some(1.0)
    );
    assert_eq!(
        metric(&a.metrics_text(), "warden_audit_chain_broken", ""),
        Some(0.0)
    );
}

#[test]
fn a_cluster_without_its_database_url_or_database_refuses_to_start() {
    let fixture = Fixture::new();
    fixture.write_manifest("", CLUSTER);
    let refused = Daemon::try_start(&fixture).err().expect("refused");
    assert!(refused.contains("WARDEN_TEST_DATABASE_URL"), "{refused}");
    assert!(refused.contains("postgres://"), "{refused}");

    // Without [cluster], a WARDEN_DATABASE_URL that is set but empty is a configuration gone
    // wrong: refused, not a silent fall back to local storage.
    let plain = Fixture::new();
    let refused = Daemon::try_start_with_env(&plain, &[("WARDEN_DATABASE_URL", "")])
        .err()
        .expect("refused");
    assert!(refused.contains("WARDEN_DATABASE_URL"), "{refused}");

    // Nothing listens on this port: the daemon waits for its database, then says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://warden:hunter2@127.0.0.1:{port}/warden");
    let refused = Daemon::try_start_with_env(&fixture, &[("WARDEN_TEST_DATABASE_URL", &url)])
        .err()
        .expect("refused");
    assert!(
        refused.contains("cannot reach the cluster's PostgreSQL database"),
        "{refused}"
    );
    assert!(!refused.contains("hunter2"), "{refused}");
}

#[test]
fn a_database_restart_is_survived_and_readiness_follows_it() {
    let Some(mut server) = own_postgres() else {
        return;
    };
    let url = database_on(&server);
    let (files, daemon) = probe_daemon(&url);
    let owner = create_owner_with(&files, "root", &[("WARDEN_TEST_DATABASE_URL", &url)]);
    let as_owner = || daemon.request(&daemon.api, "GET", "/v1/me", None, &[("x-api-key", &owner)]);
    assert_eq!(as_owner().status, 200);
    assert_eq!(
        probe(&daemon, "set", "kept", "before the restart"),
        json!(true)
    );
    wait_readiness(&daemon, 200, "");
    let up = metric(&daemon.metrics_text(), "warden_cluster_database_up", "");
    assert_eq!(up, Some(1.0));

    server.stop();
    wait_readiness(&daemon, 503, "database_unavailable");
    assert_eq!(
        metric(&daemon.metrics_text(), "warden_cluster_database_up", ""),
        Some(0.0)
    );
    // A run that needs storage meanwhile fails, with an answer, and nothing panics.
    let reply = daemon.run(json!({
        "node": "storage-probe",
        "inputs": { "op": "get", "scope": "board", "key": "kept" },
        "context": { "app_id": "app", "board_id": "board-1" },
    }));
    assert_eq!(reply.status, 200, "{}", reply.shown());
    let error = reply.json()["outputs"]["error"].clone();
    let error = error
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.shown()));
    // The node learns that storage is unavailable, and nothing about the database.
    assert!(error.starts_with("unavailable"), "{error}");
    for detail in ["warden-pg", "os error", "PostgreSQL", "5432", "refused"] {
        assert!(!error.contains(detail), "{error}");
    }
    // A key of the cluster's store cannot be checked meanwhile: 503, not a failure of the
    // caller's (no 401, nothing counted against its address). The manifest's keys still work.
    for _ in 0..3 {
        let unchecked = as_owner();
        assert_eq!(
            (unchecked.status, unchecked.code().as_str()),
            (503, "store_unavailable"),
            "{}",
            unchecked.shown()
        );
        assert_eq!(unchecked.headers["retry-after"], "1");
    }
    assert_eq!(daemon.call("GET", "/v1/nodes", None).status, 200);

    server.resume().unwrap();
    wait_readiness(&daemon, 200, "");
    assert_eq!(as_owner().status, 200);
    assert_eq!(
        probe(&daemon, "get", "kept", ""),
        json!("before the restart")
    );
    assert_eq!(probe(&daemon, "set", "after", "the restart"), json!(true));
    assert!(
        daemon
            .log()
            .contains("the cluster's database stopped answering")
    );
    assert!(
        daemon
            .log()
            .contains("the cluster's database answers again")
    );
}

#[test]
fn a_quota_holds_for_writers_on_two_daemons() {
    let Some(url) = fresh_database() else { return };
    let (_a_files, a) = probe_daemon(&url);
    let (_b_files, b) = probe_daemon(&url);
    // The restrictive preset: 16 MiB per scope. 67 values of 250,000 bytes and 3-byte keys fit
    // (16,750,201 bytes); the 68th would not.
    let write = |i: usize| {
        json!({
            "node": "storage-probe",
            "inputs": { "op": "set", "scope": "board", "key": format!("k{i:02}"), "size": 250_000 },
            "context": { "app_id": "app", "board_id": "quota-board" },
        })
    };
    let (from_a, from_b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| concurrently(&a, (0..40).map(write).collect()));
        let b = scope.spawn(|| concurrently(&b, (40..80).map(write).collect()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut stored = 0;
    let mut refused = 0;
    for reply in from_a.iter().chain(&from_b) {
        assert_eq!(reply.status, 200, "{}", reply.shown());
        let outputs = reply.json()["outputs"].clone();
        match outputs["error"].as_str() {
            None => stored += 1,
            Some(error) if error.contains("quota") => refused += 1,
            Some(other) => panic!("{other}"),
        }
    }
    assert_eq!((stored, refused), (67, 13));
    let listed = probe_in(&a, "quota-board", "list", "", "");
    assert_eq!(listed.as_str().unwrap().split(',').count(), 67);
}

#[test]
fn overload_on_every_daemon_of_a_cluster_is_answered_429_with_bounded_counts() {
    let Some(url) = fresh_database() else { return };
    let nodes = NODES.replace("concurrency = 4\nqueue = 4", "concurrency = 1\nqueue = 1");
    let daemons: Vec<(Fixture, Daemon)> = (0..3)
        .map(|_| {
            let fixture = Fixture::new();
            fixture.write_manifest("queue_timeout = \"20s\"", &format!("{CLUSTER}{nodes}"));
            let daemon =
                Daemon::try_start_with_env(&fixture, &[("WARDEN_TEST_DATABASE_URL", &url)])
                    .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
            (fixture, daemon)
        })
        .collect();
    // Eight runs at once on each daemon: on each, one runs, one waits, six are turned away at
    // once, whatever the others do.
    let replies: Vec<Vec<Reply>> = std::thread::scope(|scope| {
        let waves: Vec<_> = daemons
            .iter()
            .map(|(_, daemon)| {
                scope.spawn(move || concurrently(daemon, (0..8).map(|_| sleep_run(800)).collect()))
            })
            .collect();
        waves.into_iter().map(|wave| wave.join().unwrap()).collect()
    });
    for ((_, daemon), replies) in daemons.iter().zip(&replies) {
        let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
        let ok = statuses.iter().filter(|status| **status == 200).count();
        let refused: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 429).collect();
        assert_eq!((ok, refused.len()), (2, 6), "{statuses:?}");
        for reply in refused {
            assert_eq!(reply.code(), "overloaded");
            assert_eq!(reply.headers["retry-after"], "1");
        }
        assert_eq!(
            metric(
                &daemon.metrics_text(),
                "warden_admission_rejected_total",
                r#"node="limits""#
            ),
            Some(6.0)
        );
        // A daemon turning runs away still serves its other nodes.
        let free = daemon.run(json!({ "node": "text-transform", "inputs": { "text": "free" } }));
        assert_eq!(free.status, 200, "{}", free.shown());
    }
}

#[test]
fn users_and_keys_made_through_one_daemon_hold_on_every_daemon() {
    let Some(url) = fresh_database() else { return };
    let (a_files, a) = probe_daemon(&url);
    let (b_files, b) = probe_daemon(&url);
    // The first owner, made offline, in the cluster's database rather than a daemon's file.
    let in_cluster = [("WARDEN_TEST_DATABASE_URL", url.as_str())];
    let made = warden_serve(&a_files, &["--create-owner", "root"], &in_cluster);
    assert!(made.contains("in the cluster's database"), "{made}");
    assert!(!a_files.path("data/auth.redb").exists());
    let owner = made
        .split_whitespace()
        .find(|word| word.starts_with("wdh_key_"))
        .unwrap()
        .to_string();
    let keyed = |daemon: &Daemon, key: &str, method: &str, path: &str, body: Option<&Json>| {
        daemon.request(&daemon.api, method, path, body, &[("x-api-key", key)])
    };
    // Users, roles and keys made through B...
    for (method, path, body) in [
        (
            "POST",
            "/v1/admin/users",
            json!({"name": "ci", "kind": "technical"}),
        ),
        (
            "PUT",
            "/v1/admin/roles/runner",
            json!({"permissions": ["ExecuteBoards"]}),
        ),
        (
            "POST",
            "/v1/admin/assignments",
            json!({"user": "ci", "role": "runner"}),
        ),
    ] {
        let reply = keyed(&b, &owner, method, path, Some(&body));
        assert!(reply.status < 300, "{path}: {}", reply.shown());
    }
    let issued = keyed(
        &b,
        &owner,
        "POST",
        "/v1/admin/credentials",
        Some(&json!({"user": "ci", "label": "deploys", "expires_in": "1h"})),
    );
    assert_eq!(issued.status, 201, "{}", issued.shown());
    let key = issued.json()["secret"].as_str().unwrap().to_string();
    let id = issued.json()["credential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // ...open A, with their permissions.
    let run = json!({
        "node": "storage-probe",
        "inputs": { "op": "exists", "scope": "board", "key": "k", "value": "" },
        "context": { "app_id": "app", "board_id": "b" },
    });
    let ran = keyed(&a, &key, "POST", "/v1/runs", Some(&run));
    assert_eq!(ran.status, 200, "{}", ran.shown());
    assert_eq!(keyed(&a, &key, "GET", "/v1/audit", None).status, 403);
    // Revoked through A, the key opens neither daemon, at once.
    let revoked = keyed(
        &a,
        &owner,
        "DELETE",
        &format!("/v1/admin/credentials/{id}"),
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.shown());
    assert_eq!(keyed(&b, &key, "POST", "/v1/runs", Some(&run)).status, 401);
    assert_eq!(keyed(&a, &key, "POST", "/v1/runs", Some(&run)).status, 401);
    // Offline administration reads the cluster's users while the daemons run.
    let users = warden_serve(&b_files, &["admin", "users"], &in_cluster);
    assert!(
        users.contains("\"ci\"") && users.contains("\"root\""),
        "{users}"
    );
}
