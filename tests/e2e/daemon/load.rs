//! Many runs at once: reloads under load, limits hit beside healthy runs, backpressure, and
//! clients too slow to matter.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn a_reload_under_load_fails_no_run_in_flight() {
    let fixture = Fixture::new();
    // Room in the queue for every run: this test is about reloads, not backpressure.
    let nodes = NODES.replace("queue = 4", "queue = 16");
    fixture.write_manifest("", &nodes);
    let daemon = Daemon::start(&fixture);
    let replies = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..12)
            .map(|index| {
                let daemon = &daemon;
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(index * 60));
                    daemon.run(sleep_run(400))
                })
            })
            .collect();
        // Reloads while runs are in flight: by the API, by SIGHUP, and with a changed
        // manifest whose new generation replaces the limits node (another concurrency).
        for round in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            let reload = daemon.call("POST", "/v1/admin/reload", None);
            assert_eq!(reload.status, 200, "{}", reload.text());
            if round == 1 {
                fixture.write_manifest("", &nodes.replace("concurrency = 4", "concurrency = 3"));
                daemon.signal("HUP");
            }
        }
        runs.into_iter()
            .map(|run| run.join().unwrap())
            .collect::<Vec<_>>()
    });
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let limits = daemon.call("GET", "/v1/nodes/limits", None).json();
    assert_eq!(limits["concurrency"], 3, "the new generation serves");
    let ready = daemon.call("GET", "/readyz", None).json();
    assert!(ready["generation"].as_u64().unwrap() >= 5, "{ready}");
}

#[test]
fn runs_killed_by_each_limit_leave_the_others_to_complete() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    let mut bodies = vec![
        json!({ "node": "limits/spin" }),
        json!({ "node": "limits/grow" }),
        json!({ "node": "limits/recurse" }),
        sleep_run(10_000),
    ];
    bodies
        .extend((0..6).map(|_| json!({ "node": "text-transform", "inputs": { "text": "fine" } })));
    bodies.push(sleep_run(300));
    let replies = concurrently(&daemon, bodies);
    let codes: Vec<String> = replies[..4].iter().map(Reply::code).collect();
    assert_eq!(
        codes,
        ["limit_fuel", "limit_memory", "limit_stack", "limit_timeout"]
    );
    for reply in &replies[4..] {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches("\"event\":\"limit_kill\"").count(),
        4,
        "{audit}"
    );
}

#[test]
fn overload_is_answered_with_429_and_retry_after() {
    let fixture = Fixture::new();
    fixture.write_manifest(
        "queue_timeout = \"20s\"",
        &NODES.replace("concurrency = 4\nqueue = 4", "concurrency = 1\nqueue = 1"),
    );
    let daemon = Daemon::start(&fixture);
    // One runs, one waits, the other six are turned away at once.
    let replies = concurrently(&daemon, (0..8).map(|_| sleep_run(800)).collect());
    let ok = replies.iter().filter(|reply| reply.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 429).collect();
    assert_eq!(
        (ok, refused.len()),
        (2, 6),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for reply in refused {
        assert_eq!(reply.code(), "overloaded");
        assert_eq!(reply.headers["retry-after"], "1");
    }
    let metrics = daemon.metrics_text();
    assert_eq!(
        metric(
            &metrics,
            "warden_admission_rejected_total",
            r#"node="limits""#
        ),
        Some(6.0),
        "{metrics}"
    );
    // Other nodes are not held up by a full one.
    let reply = daemon.run(json!({ "node": "text-transform", "inputs": { "text": "free" } }));
    assert_eq!(reply.status, 200);
}

#[test]
fn a_queue_wait_ends_at_the_queue_timeout() {
    let fixture = Fixture::new();
    fixture.write_manifest(
        "queue_timeout = \"300ms\"",
        &NODES.replace("concurrency = 4\nqueue = 4", "concurrency = 1\nqueue = 4"),
    );
    let daemon = Daemon::start(&fixture);
    std::thread::scope(|scope| {
        let holding = scope.spawn(|| daemon.run(sleep_run(2000)));
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let waited = daemon.run(sleep_run(10));
        assert_eq!((waited.status, waited.code().as_str()), (429, "overloaded"));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            waited.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("came free")
        );
        assert_eq!(holding.join().unwrap().status, 200);
    });
}

#[test]
fn a_slow_client_holds_no_run_and_is_cut_off() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    let ca = daemon.ca.clone();
    let address = daemon.api.clone();
    // A caller that sends its headers and then dribbles its body: the body read times out and
    // the connection is closed; no run was admitted.
    let started = Instant::now();
    let answer = block_on(async {
        let mut tls = connect(&address, ca.clone()).await;
        let head = format!(
            "POST /v1/runs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: 1000\r\n\r\n{{"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "cut off in bounded time"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A caller that asks for a stream and never reads it: the run still finishes, on its
    // own, and its record is there.
    let run_id = block_on(async {
        let mut tls = connect(&address, ca).await;
        let body = json!({ "node": "limits/print-flood", "inputs": { "lines": 2000 } }).to_string();
        let head = format!(
            "POST /v1/runs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\naccept: application/x-ndjson\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 2048];
        let read = tls.read(&mut first).await.unwrap();
        let text = String::from_utf8_lossy(&first[..read]).into_owned();
        let id = text
            .lines()
            .find_map(|line| line.strip_prefix("x-warden-run-id: "))
            .unwrap_or_else(|| panic!("{text}"))
            .trim()
            .to_string();
        // Hold the connection without reading.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(tls);
        id
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = daemon.call("GET", &format!("/v1/runs/{run_id}"), None);
        if record.status == 200 {
            assert_eq!(record.json()["outcome"], "ok", "{}", record.text());
            break;
        }
        assert!(Instant::now() < deadline, "the run never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_computing_without_pause_holds_up_neither_the_api_nor_its_stop() {
    let fixture = Fixture::new();
    let spinning = NODES.replace(
        r#"limits = { preset = "default", fuel = 200000000, timeout = "3s", memory = "32MiB" }"#,
        r#"limits = { preset = "default", fuel = "off", timeout = "20s" }"#,
    );
    fixture.write_manifest("stop_grace = \"200ms\"", &spinning);
    let daemon = Daemon::start(&fixture);
    std::thread::scope(|scope| {
        // As many spinning runs as the machine has executor threads, and more.
        let spins: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| daemon.run(json!({ "node": "limits/spin" }))))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..5 {
            let started = Instant::now();
            let health = daemon.request(&daemon.api, "GET", "/healthz", None, &[]);
            assert_eq!(health.status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the API answered in {:?}",
                started.elapsed()
            );
        }
        // Removing the node stops its spinning runs after the grace, not at their timeout.
        let without_limits = spinning
            .split("[[nodes]]\nname = \"limits\"")
            .next()
            .unwrap()
            .to_string();
        fixture.write_manifest("stop_grace = \"200ms\"", &without_limits);
        let started = Instant::now();
        assert_eq!(daemon.call("POST", "/v1/admin/reload", None).status, 200);
        for spin in spins {
            let reply = spin.join().unwrap();
            assert_eq!(reply.code(), "node_stopped", "{}", reply.text());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopped in {:?}",
            started.elapsed()
        );
    });
}
