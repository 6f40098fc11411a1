//! Queued runs (`"mode": "queued"`) across daemons sharing one PostgreSQL database: any daemon
//! takes any run, a caller reads the answer on any daemon, an idempotency key stands for one
//! run, a run whose daemon is killed is taken again after its lease, and the queue survives a
//! database restart. Skipped, with the reason, where PostgreSQL is not installed.

use super::cluster::{CLUSTER, database_on, fresh_database};
use super::*;
use warden_cluster::test_services::own_postgres;

/// The fixture's nodes, the limits package allowed to sleep for long.
const QUEUE_NODES: &str = r#"
[[nodes]]
name = "text-transform"

[[nodes]]
name = "greeter"
grant = ["variables-read", "cache-read", "cache-write", "streaming"]

[[nodes]]
name = "limits"
limits = { preset = "default", timeout = "30s" }
"#;

/// A daemon of the cluster on `url`, with `cluster` lines added to `[cluster]`.
fn queue_daemon(url: &str, cluster: &str) -> (Fixture, Daemon) {
    queue_daemon_with(url, cluster, "")
}

/// The same, with more manifest lines after the nodes.
fn queue_daemon_with(url: &str, cluster: &str, more: &str) -> (Fixture, Daemon) {
    let fixture = Fixture::new();
    fixture.write_manifest("", &format!("{CLUSTER}{cluster}\n{QUEUE_NODES}\n{more}"));
    let daemon = Daemon::try_start_with_env(&fixture, &[("WARDEN_TEST_DATABASE_URL", url)])
        .unwrap_or_else(|output| panic!("the daemon did not start: {output}"));
    (fixture, daemon)
}

fn queued(body: Json) -> Json {
    let mut body = body;
    body["mode"] = json!("queued");
    body
}

/// Queues `body` on `daemon`: the run's id.
fn enqueue(daemon: &Daemon, body: Json) -> String {
    let reply = daemon.run(queued(body));
    assert_eq!(reply.status, 202, "{}", reply.shown());
    let answer = reply.json();
    assert_eq!(answer["state"], "queued", "{answer}");
    let id = answer["run_id"].as_str().unwrap().to_string();
    assert_eq!(answer["result"], format!("/v1/runs/{id}/result"));
    id
}

/// The answer of run `id` read on `daemon`, waiting for it (at most a minute and a half).
fn result(daemon: &Daemon, id: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let reply = daemon.call("GET", &format!("/v1/runs/{id}/result?wait=20"), None);
        if reply.status != 202 {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} still waits: {}",
            reply.shown()
        );
    }
}

/// Polls run `id` on `daemon` until it is in `state`.
fn wait_state(daemon: &Daemon, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = daemon.call("GET", &format!("/v1/runs/{id}/result"), None);
        if reply.status == 202 && reply.json()["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} is not {state}: {} {}",
            reply.status,
            reply.shown()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn claims(daemon: &Daemon, delivery: &str) -> f64 {
    metric(
        &daemon.metrics_text(),
        "warden_cluster_claims_total",
        &format!("delivery=\"{delivery}\""),
    )
    .unwrap_or(0.0)
}

#[test]
fn three_daemons_answer_every_queued_run_once_by_its_idempotency_key() {
    let Some(url) = fresh_database() else { return };
    let daemons: Vec<(Fixture, Daemon)> = (0..3).map(|_| queue_daemon(&url, "")).collect();
    let daemon = |index: usize| &daemons[index % 3].1;
    let body = |i: usize| {
        json!({
            "node": "text-transform",
            "inputs": { "text": format!("run {i}") },
            "idempotency_key": format!("key-{i}"),
        })
    };
    let runs = 30;
    let mut ids = Vec::new();
    for i in 0..runs {
        let id = enqueue(daemon(i), body(i));
        // The same request through another daemon is the same run, queued or answered.
        let again = daemon(i + 1).run(queued(body(i)));
        assert!(
            again.status == 202 || again.status == 200,
            "{}",
            again.shown()
        );
        assert_eq!(again.headers["idempotent-replay"], "true");
        assert_eq!(again.json()["run_id"], id.as_str(), "{}", again.shown());
        ids.push(id);
    }
    // A key used for another request is refused, on any daemon.
    let reused = daemon(2).run(queued(json!({
        "node": "text-transform",
        "inputs": { "text": "something else" },
        "idempotency_key": "key-0",
    })));
    assert_eq!(
        (reused.status, reused.code().as_str()),
        (422, "idempotency_key_reused")
    );

    for (i, id) in ids.iter().enumerate() {
        let reply = result(daemon(i + 2), id);
        assert_eq!(reply.status, 200, "{}", reply.shown());
        let answer = reply.json();
        assert_eq!(answer["run_id"], id.as_str());
        assert!(
            answer["outputs"]
                .to_string()
                .to_lowercase()
                .contains(&format!("run {i}")),
            "{answer}"
        );
        // Its record, on any daemon: taken once.
        let record = daemon(i + 1).call("GET", &format!("/v1/runs/{id}"), None);
        assert_eq!(record.status, 200, "{}", record.shown());
        let record = record.json();
        assert_eq!(
            (record["state"].as_str(), record["attempts"].as_i64()),
            (Some("finished"), Some(1)),
            "{record}"
        );
        assert_eq!(record["outcome"], "ok", "{record}");
    }
    // Every run was claimed exactly once in the whole cluster.
    let first: f64 = (0..3).map(|index| claims(daemon(index), "first")).sum();
    let again: f64 = (0..3)
        .map(|index| claims(daemon(index), "redelivered"))
        .sum();
    assert_eq!((first, again), (runs as f64, 0.0));
    // Keys replay the answer after the run, too.
    let replayed = daemon(1).run(queued(body(0)));
    assert_eq!(replayed.status, 200, "{}", replayed.shown());
    assert_eq!(replayed.headers["idempotent-replay"], "true");
    assert_eq!(replayed.json()["run_id"], ids[0].as_str());

    // Someone else's run is one that does not exist.
    let stranger = daemon(0).request(
        &daemon(0).api,
        "GET",
        &format!("/v1/runs/{}/result", ids[0]),
        None,
        &[("authorization", "Bearer not-a-key")],
    );
    assert_eq!(stranger.status, 401, "{}", stranger.shown());
    let unknown = daemon(0).call("GET", "/v1/runs/run-0000/result", None);
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_run")
    );
}

#[test]
fn runs_answered_at_once_share_their_keys_and_records_across_daemons() {
    let Some(url) = fresh_database() else { return };
    let (_a_files, a) = queue_daemon(&url, "");
    let (_b_files, b) = queue_daemon(&url, "");
    let body = json!({
        "node": "text-transform",
        "inputs": { "text": "once" },
        "idempotency_key": "k1",
    });
    let first = a.run(body.clone());
    assert_eq!(first.status, 200, "{}", first.shown());
    assert!(first.headers.get("idempotent-replay").is_none());
    // A retry that reaches another daemon gets the first answer, not a second run.
    let again = b.run(body.clone());
    assert_eq!(again.status, 200, "{}", again.shown());
    assert_eq!(again.headers["idempotent-replay"], "true");
    assert_eq!(again.json(), first.json());
    let mut other = body.clone();
    other["inputs"]["text"] = json!("twice");
    let reused = b.run(other);
    assert_eq!(
        (reused.status, reused.code().as_str()),
        (422, "idempotency_key_reused")
    );
    // The key of a run answered at once is not a queued run's.
    let queued_too = b.run(queued(body.clone()));
    assert_eq!(
        (queued_too.status, queued_too.code().as_str()),
        (422, "idempotency_key_reused"),
        "{}",
        queued_too.shown()
    );

    // While the key's run is going on one daemon, another answers 409 with its id.
    let slow =
        json!({ "node": "limits/sleep", "inputs": { "ms": 3000 }, "idempotency_key": "slow" });
    let running = std::thread::scope(|scope| {
        let first = scope.spawn(|| a.run(slow.clone()));
        // A holds an instance for the run once it has claimed the key (and before it ends).
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(
            &a.metrics_text(),
            "warden_instances_in_use",
            "node=\"limits\"",
        )
        .unwrap_or(0.0)
            < 1.0
        {
            assert!(Instant::now() < deadline, "the run did not start on A");
            std::thread::sleep(Duration::from_millis(20));
        }
        let in_progress = b.run(slow.clone());
        assert_eq!(in_progress.status, 409, "{}", in_progress.shown());
        assert_eq!(in_progress.code(), "run_in_progress");
        let first = first.join().unwrap();
        assert_eq!(first.status, 200, "{}", first.shown());
        assert_eq!(
            in_progress.json()["error"]["run_id"],
            first.json()["run_id"]
        );
        first
    });
    let replayed = b.run(slow);
    assert_eq!(replayed.status, 200, "{}", replayed.shown());
    assert_eq!(replayed.json()["run_id"], running.json()["run_id"]);

    // A run's record is found on every daemon, with or without a key.
    let plain = a.run(json!({ "node": "text-transform", "inputs": { "text": "plain" } }));
    assert_eq!(plain.status, 200, "{}", plain.shown());
    for answer in [&first, &plain] {
        let id = answer.json()["run_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let record = loop {
            let record = b.call("GET", &format!("/v1/runs/{id}"), None);
            if record.status == 200 {
                break record.json();
            }
            // The record of a run without a key is shared in the background.
            assert!(Instant::now() < deadline, "{}", record.shown());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            (record["run_id"].as_str(), record["outcome"].as_str()),
            (Some(id.as_str()), Some("ok")),
            "{record}"
        );
        assert_eq!(record["caller"], "env:WARDEN_API_KEY", "{record}");
    }
    assert_eq!(
        metric(
            &a.metrics_text(),
            "warden_cluster_records_unshared_total",
            ""
        ),
        None
    );
}

#[test]
fn a_queued_runs_events_stream_to_a_caller_on_another_daemon() {
    let Some(url) = fresh_database() else { return };
    let (_a_files, a) = queue_daemon(&url, "");
    let (_b_files, b) = queue_daemon(&url, "");
    let id = enqueue(
        &a,
        json!({ "node": "greeter", "variables": { "name": "Ada" } }),
    );
    let follow = |daemon: &Daemon, query: &str, accept: &str| {
        daemon.request(
            &daemon.api,
            "GET",
            &format!("/v1/runs/{id}/events{query}"),
            None,
            &[
                ("authorization", &format!("Bearer {KEY}")),
                ("accept", accept),
            ],
        )
    };
    // Followed on B, whichever daemon runs it: its chunks in order, numbered, then its result.
    let reply = follow(&b, "?wait=30", "application/x-ndjson");
    assert_eq!(reply.status, 200, "{}", reply.shown());
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let events: Vec<Json> = reply
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let chunks: Vec<(&str, i64)> = events
        .iter()
        .filter(|event| event["event"] == "chunk")
        .map(|event| {
            (
                event["value"].as_str().unwrap(),
                event["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chunks.iter().map(|chunk| chunk.0).collect::<Vec<_>>(),
        ["Hello, ", "Ada!"]
    );
    assert!(
        chunks.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "{chunks:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "result", "{events:?}");
    assert_eq!(last["outputs"]["message"], "Hello, Ada!");
    // Read again after the first chunk, as a server-sent event stream.
    let first = chunks[0].1;
    let again = follow(&a, &format!("?after={first}"), "text/event-stream").text();
    assert!(!again.contains(r#""value":"Hello, ""#), "{again}");
    assert!(again.contains("event: chunk\ndata: "), "{again}");
    assert!(
        again.contains("Ada!") && again.contains("event: result"),
        "{again}"
    );

    // A run still waiting is followed until `wait`, then told where it is.
    let slow = enqueue(&a, sleep_run(3000));
    let started = Instant::now();
    let waiting = b
        .request(
            &b.api,
            "GET",
            &format!("/v1/runs/{slow}/events?wait=1"),
            None,
            &[("authorization", &format!("Bearer {KEY}"))],
        )
        .text();
    let end: Json = serde_json::from_str(waiting.lines().last().unwrap()).unwrap();
    assert_eq!(end["event"], "waiting", "{waiting}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(result(&b, &slow).status, 200);
    // The events of a run answered at once are not a queued run's.
    let direct = b.run(
        json!({ "node": "text-transform", "inputs": { "text": "x" }, "idempotency_key": "d" }),
    );
    let direct = direct.json()["run_id"].as_str().unwrap().to_string();
    let none = b.call("GET", &format!("/v1/runs/{direct}/events"), None);
    assert_eq!((none.status, none.code().as_str()), (404, "unknown_run"));
}

#[test]
fn a_queued_run_whose_daemon_is_killed_is_taken_again_after_its_lease() {
    let Some(url) = fresh_database() else { return };
    let (_a_files, mut a) = queue_daemon(&url, r#"lease = "2s""#);
    let id = enqueue(
        &a,
        json!({ "node": "limits/sleep", "inputs": { "ms": 3000 }, "idempotency_key": "slow" }),
    );
    wait_state(&a, &id, "running");
    // SIGKILL mid-run: nothing of A answers or gives the run back.
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let (_b_files, b) = queue_daemon(&url, r#"lease = "2s""#);
    let reply = result(&b, &id);
    assert_eq!(reply.status, 200, "{}", reply.shown());
    assert_eq!(reply.json()["outputs"]["result"], 3000);
    let record = b.call("GET", &format!("/v1/runs/{id}"), None).json();
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(claims(&b, "redelivered"), 1.0);
    assert!(b.log().contains("taking a queued run again"), "{}", b.log());
    // The key still stands for that run; a run answered at once cannot take it.
    let again = b.run(queued(
        json!({ "node": "limits/sleep", "inputs": { "ms": 3000 }, "idempotency_key": "slow" }),
    ));
    assert_eq!(again.status, 200, "{}", again.shown());
    assert_eq!(again.json()["run_id"], id.as_str());
    let direct =
        b.run(json!({ "node": "limits/sleep", "inputs": { "ms": 1 }, "idempotency_key": "slow" }));
    assert_eq!(
        (direct.status, direct.code().as_str()),
        (422, "idempotency_key_reused")
    );

    // A run whose workers keep dying is answered run_lost once they died `max_attempts` times,
    // rather than run again (it may be what kills them).
    let mut b = b;
    let second = enqueue(
        &b,
        json!({ "node": "limits/sleep", "inputs": { "ms": 3000 } }),
    );
    wait_state(&b, &second, "running");
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let (_c_files, c) = queue_daemon(&url, "lease = \"2s\"\nmax_attempts = 1");
    let reply = result(&c, &second);
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (503, "run_lost"),
        "{}",
        reply.shown()
    );
    let record = c.call("GET", &format!("/v1/runs/{second}"), None).json();
    assert_eq!(record["outcome"], "refused", "{record}");
    assert_eq!(record["caller"], "env:WARDEN_API_KEY", "{record}");
}

#[test]
fn the_queue_is_bounded_per_caller_private_to_it_and_needs_a_cluster() {
    use sha2::Digest;
    let Some(url) = fresh_database() else { return };
    let bob = "bob-key-0123456789abcdef";
    let hash = warden_package::hex(&sha2::Sha256::digest(bob.as_bytes()));
    let (_files, daemon) = queue_daemon_with(
        &url,
        "workers = 1\nmax_queued_per_caller = 2",
        &format!("[[api.keys]]\nname = \"bob\"\nsha256 = \"{hash}\"\n"),
    );
    let as_bob = |method: &str, path: &str, body: Option<&Json>| {
        daemon.request(
            &daemon.api,
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {bob}"))],
        )
    };
    let first = enqueue(&daemon, sleep_run(2000));
    wait_state(&daemon, &first, "running");
    let second = enqueue(&daemon, sleep_run(10));
    // Two unfinished: the third waits for one of them.
    let third = daemon.run(queued(sleep_run(10)));
    assert_eq!(
        (third.status, third.code().as_str()),
        (429, "overloaded"),
        "{}",
        third.shown()
    );
    assert!(third.headers.contains_key("retry-after"));
    // The bound is the caller's: another caller still queues, and reads only its own runs.
    let bobs = as_bob("POST", "/v1/runs", Some(&queued(sleep_run(10))));
    assert_eq!(bobs.status, 202, "{}", bobs.shown());
    let bobs = bobs.json()["run_id"].as_str().unwrap().to_string();
    for path in [
        format!("/v1/runs/{first}/result"),
        format!("/v1/runs/{first}/events?wait=0"),
        format!("/v1/runs/{first}"),
    ] {
        let hidden = as_bob("GET", &path, None);
        assert_eq!(
            (hidden.status, hidden.code().as_str()),
            (404, "unknown_run"),
            "{path}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let own = as_bob("GET", &format!("/v1/runs/{bobs}/result?wait=10"), None);
        if own.status == 200 {
            assert_eq!(own.json()["outputs"]["result"], 10);
            break;
        }
        assert_eq!(own.status, 202, "{}", own.shown());
        assert!(Instant::now() < deadline);
    }
    // An admin reads anyone's.
    assert_eq!(result(&daemon, &bobs).status, 200);
    assert_eq!(result(&daemon, &first).status, 200);
    assert_eq!(result(&daemon, &second).status, 200);
    enqueue(&daemon, sleep_run(10));

    // A request that cannot run is refused at once, not queued.
    let unknown = daemon.run(queued(json!({ "node": "no-such-node" })));
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_node")
    );
    let bad = daemon.run(queued(
        json!({ "node": "limits/sleep", "inputs": { "ms": "long" } }),
    ));
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_input"));
    // A request over the 1 MiB a queued run keeps is refused (it would run if sent at once).
    let large = json!({ "node": "text-transform", "inputs": { "text": "x".repeat(1100 * 1024) } });
    let refused = daemon.run(queued(large.clone()));
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        refused.shown()
    );
    assert_eq!(daemon.run(large).status, 200);
    // An answer over the 4 MiB a queued run keeps is answered `answer_too_large`, saying how
    // large it was; the same run answered at once returns it.
    let big = json!({ "node": "limits/big-output", "inputs": { "bytes": 5 * 1024 * 1024 } });
    let id = enqueue(&daemon, big.clone());
    let answer = result(&daemon, &id);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (422, "answer_too_large"),
        "{}",
        answer.shown()
    );
    assert!(
        answer.shown().contains("more than the 4194304"),
        "{}",
        answer.shown()
    );
    let record = daemon.call("GET", &format!("/v1/runs/{id}"), None).json();
    assert_eq!(record["state"], "finished", "{record}");
    let at_once = daemon.run(big);
    assert_eq!(at_once.status, 200, "{}", at_once.shown());
    assert_eq!(
        at_once.json()["outputs"]["result"].as_str().map(str::len),
        Some(5 * 1024 * 1024)
    );

    // One machine has no queue: it says so.
    let fixture = Fixture::new();
    let alone = Daemon::start(&fixture);
    let refused = alone.run(queued(sleep_run(10)));
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "queue_unavailable")
    );
}

#[test]
fn queued_runs_survive_a_database_restart() {
    let Some(mut server) = own_postgres() else {
        return;
    };
    let url = database_on(&server);
    // A lease shorter than the outage: runs whose answers cannot be recorded in time, or
    // whose leases cannot be renewed, are stopped and run again once the database is back.
    let (_files, daemon) = queue_daemon(&url, r#"lease = "2s""#);
    let ids: Vec<String> = (0..4).map(|_| enqueue(&daemon, sleep_run(1000))).collect();
    server.stop();
    // Meanwhile nothing can be queued, and the caller is told to retry.
    let refused = daemon.run(queued(sleep_run(10)));
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (503, "database_unavailable"),
        "{}",
        refused.shown()
    );
    assert!(refused.headers.contains_key("retry-after"));
    std::thread::sleep(Duration::from_secs(4));
    server.resume().unwrap();
    for id in &ids {
        let reply = result(&daemon, id);
        assert_eq!(reply.status, 200, "{}", reply.shown());
        assert_eq!(reply.json()["outputs"]["result"], 1000);
    }
    enqueue(&daemon, sleep_run(10));
}
