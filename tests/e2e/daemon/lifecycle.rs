//! Starting, reloading and stopping: refusals listed whole, nodes removed while they run,
//! graceful shutdown, and the compiled-code cache across restarts.

use super::*;

fn start_refusal(fixture: &Fixture) -> String {
    match Daemon::try_start(fixture) {
        Ok(_) => panic!("the daemon started"),
        Err(output) => output,
    }
}

#[test]
fn a_start_is_refused_with_every_problem_listed() {
    let fixture = Fixture::new();
    // Each node asks for more than the manifest grants: both are listed, one line each.
    fixture.write_manifest(
        "",
        r#"
[[nodes]]
name = "greeter"
grant = ["variables-read"]

[[nodes]]
name = "text-transform"
version = "^2"
"#,
    );
    let output = start_refusal(&fixture);
    for expected in [
        "`cache-read`",
        "`cache-write`",
        "`streaming`",
        "matches `^2`",
        "4 node problems",
    ] {
        assert!(output.contains(expected), "{expected}: {output}");
    }
    assert_eq!(output.matches("warden: refused: ").count(), 4, "{output}");

    // A manifest with errors names each line and field.
    std::fs::write(
        fixture.path("host.toml"),
        "[api]\nlisten = \"nowhere\"\n[[nodes]]\nname = \"greeter\"\nsource = \"elsewhere\"\ngrant = [\"flying\"]\n",
    )
    .unwrap();
    let output = start_refusal(&fixture);
    for expected in [
        "line 2, api.listen",
        "line 5, nodes[0].source",
        "line 6, nodes[0].grant",
    ] {
        assert!(output.contains(expected), "{expected}: {output}");
    }

    // A package signed by a key the directory does not trust (one the operator took out of
    // `trusted_keys`, say) is not loaded: the node is left out and the daemon is not ready.
    let fixture = Fixture::new();
    let stranger = warden_package::generate_key().unwrap();
    std::fs::write(
        fixture.path("packages/text-transform-1.0.0.wpkg"),
        sign(
            &example("text-transform", Target::Unknown),
            "text-transform",
            "1.0.0",
            &stranger,
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&fixture);
    assert!(
        !daemon.banner.contains("loaded text-transform"),
        "{}",
        daemon.banner
    );
    let ready = daemon.request(&daemon.api, "GET", "/readyz", None, &[]);
    assert_eq!((ready.status, ready.code().as_str()), (503, "not_ready"));
    let reason = ready.json()["error"]["missing"][0]["reason"].to_string();
    assert!(
        reason.contains("no signature is from a trusted key"),
        "{reason}"
    );
    drop(daemon);

    // A FIFO (or a device) among the packages is skipped, not read: it cannot hold a start.
    let fifo = fixture.path("packages/zz-fifo.wpkg");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let daemon = Daemon::start(&fixture);
    assert!(daemon.banner.contains("loaded limits"));
    drop(daemon);

    // And no daemon serves without an API key.
    let fixture = Fixture::new();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(fixture.path("host.toml"))
        .env_remove("WARDEN_API_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no API key is configured"));
}

#[test]
fn a_refused_reload_keeps_the_generation_serving() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    fixture.write_manifest("", &format!("{NODES}\n[[nodes]]\nname = \"missing\"\n"));
    let reload = daemon.call("POST", "/v1/admin/reload", None);
    assert_eq!(
        (reload.status, reload.code().as_str()),
        (422, "reload_refused")
    );
    let problems = reload.json()["error"]["problems"].clone();
    assert!(
        problems[0].as_str().unwrap().contains("`missing`"),
        "{problems}"
    );
    assert_eq!(daemon.call("GET", "/readyz", None).json()["generation"], 1);
    assert_eq!(
        daemon
            .run(json!({ "node": "text-transform", "inputs": { "text": "still" } }))
            .status,
        200
    );
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"reload_refused\""));
}

#[test]
fn a_node_removed_while_it_runs_is_stopped_within_its_grace() {
    let fixture = Fixture::new();
    fixture.write_manifest("stop_grace = \"300ms\"", NODES);
    let daemon = Daemon::start(&fixture);
    std::thread::scope(|scope| {
        let running = scope.spawn(|| daemon.run(sleep_run(2500)));
        std::thread::sleep(Duration::from_millis(500));
        let without_limits = NODES
            .split("[[nodes]]\nname = \"limits\"")
            .next()
            .unwrap()
            .to_string();
        fixture.write_manifest("stop_grace = \"300ms\"", &without_limits);
        let started = Instant::now();
        assert_eq!(daemon.call("POST", "/v1/admin/reload", None).status, 200);
        // No new runs of it.
        assert_eq!(daemon.run(sleep_run(1)).code(), "unknown_node");
        let stopped = running.join().unwrap();
        assert_eq!(
            (stopped.status, stopped.code().as_str()),
            (503, "node_stopped"),
            "{}",
            stopped.text()
        );
        assert!(
            stopped.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("removed")
        );
        assert!(
            started.elapsed() < Duration::from_millis(1800),
            "stopped after its grace, not at its end"
        );
    });
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"node_stopping\""), "{audit}");
}

#[test]
fn sigterm_lets_runs_finish_then_exits() {
    let fixture = Fixture::new();
    fixture.write_manifest("shutdown_grace = \"5s\"", NODES);
    let mut daemon = Daemon::start(&fixture);
    let reply = std::thread::scope(|scope| {
        let running = scope.spawn(|| daemon.run(sleep_run(1500)));
        std::thread::sleep(Duration::from_millis(400));
        daemon.signal("TERM");
        running.join().unwrap()
    });
    assert_eq!(
        reply.status,
        200,
        "a run in flight finishes: {}",
        reply.text()
    );
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon exits");
    assert!(status.success(), "{status:?}: {}", daemon.log());
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"shutdown\""));

    // Past the grace, runs are stopped and the daemon still exits.
    fixture.write_manifest("shutdown_grace = \"300ms\"", NODES);
    let mut daemon = Daemon::start(&fixture);
    let reply = std::thread::scope(|scope| {
        let running = scope.spawn(|| daemon.run(sleep_run(2800)));
        std::thread::sleep(Duration::from_millis(400));
        daemon.signal("TERM");
        running.join().unwrap()
    });
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (503, "shutting_down"),
        "{}",
        reply.text()
    );
    assert!(
        daemon
            .wait_exit(Duration::from_secs(20))
            .expect("the daemon exits")
            .success()
    );
}

#[test]
fn compiled_code_is_cached_verified_and_recompiled_when_tampered() {
    let fixture = Fixture::new();
    let cache_total = |daemon: &Daemon, event: &str| {
        metric(
            &daemon.metrics_text(),
            "warden_code_cache_total",
            &format!("event=\"{event}\""),
        )
        .unwrap_or(0.0)
    };
    // Cold: every component compiled and stored.
    let daemon = Daemon::start(&fixture);
    assert_eq!(cache_total(&daemon, "hit"), 0.0);
    assert!(cache_total(&daemon, "stored") >= 3.0);
    drop(daemon);
    // Warm: loaded, not compiled.
    let daemon = Daemon::start(&fixture);
    assert!(cache_total(&daemon, "hit") >= 3.0);
    assert_eq!(cache_total(&daemon, "miss"), 0.0);
    drop(daemon);
    // Tampered: every entry with a byte changed is thrown away and the code compiled again.
    let code = fixture.path("data/code");
    let mut tampered = 0;
    for entry in std::fs::read_dir(&code).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "cache.key" {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
        tampered += 1;
    }
    assert!(tampered >= 3);
    let daemon = Daemon::start(&fixture);
    assert!(cache_total(&daemon, "rejected") >= 3.0);
    assert_eq!(cache_total(&daemon, "hit"), 0.0);
    let reply = daemon.run(json!({ "node": "text-transform", "inputs": { "text": "recompiled" } }));
    assert_eq!(reply.json()["outputs"]["result"], "RECOMPILED");
}

#[test]
fn with_watch_on_a_changed_manifest_is_reloaded() {
    let fixture = Fixture::new();
    fixture.write_manifest("watch = true", NODES);
    let daemon = Daemon::start(&fixture);
    fixture.write_manifest(
        "watch = true",
        &NODES.replace("concurrency = 4", "concurrency = 2"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.call("GET", "/v1/nodes/limits", None).json()["concurrency"] != 2 {
        assert!(Instant::now() < deadline, "the change was not picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"event\":\"reload_applied\",\"generation\":2"),
        "{audit}"
    );
}
