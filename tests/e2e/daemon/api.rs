//! Every route and every error code, as a caller sees them.

use super::*;

#[test]
fn every_endpoint_answers_and_every_error_has_its_code() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    assert!(
        daemon.banner.contains("loaded limits@0.1.0"),
        "{}",
        daemon.banner
    );

    // Probes need no key.
    let health = daemon.request(&daemon.api, "GET", "/healthz", None, &[]);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("alive"))
    );
    let ready = daemon.request(&daemon.api, "GET", "/readyz", None, &[]);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["nodes"], 3);

    // Everything else does, and a wrong one is refused the same way.
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-key-0123456789")],
        vec![("x-api-key", "nope")],
    ] {
        let refused = daemon.request(&daemon.api, "GET", "/v1/nodes", None, &headers);
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (401, "unauthenticated")
        );
        assert_eq!(refused.headers["www-authenticate"], "Bearer");
    }
    let by_header = daemon.request(&daemon.api, "GET", "/v1/nodes", None, &[("x-api-key", KEY)]);
    assert_eq!(by_header.status, 200);

    // The nodes, described.
    let nodes = daemon.call("GET", "/v1/nodes", None).json();
    let packages = nodes["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 3);
    let greeter = daemon.call("GET", "/v1/nodes/greeter", None).json();
    let mut grant: Vec<&str> = greeter["grant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    grant.sort();
    assert_eq!(
        grant,
        ["cache-read", "cache-write", "streaming", "variables-read"]
    );
    assert_eq!(greeter["version"], "1.0.0");
    assert_eq!(greeter["publisher"], "acme");
    assert_eq!(greeter["package_sha256"].as_str().unwrap().len(), 64);
    assert!(greeter["nodes"][0]["pins"].is_array());
    assert_eq!(greeter["limits"]["preset"], "default");
    let by_node = daemon.call("GET", "/v1/nodes/limits/spin", None).json();
    assert_eq!(by_node["package"], "limits");
    assert_eq!(
        daemon.call("GET", "/v1/nodes/nothing", None).code(),
        "unknown_node"
    );

    // A run, answered whole, then its record.
    let reply = daemon.run(json!({
        "node": "text-transform/text-transform",
        "inputs": { "text": "hello", "mode": "upper" },
        "context": { "app_id": "app", "board_id": "b1", "user_id": "u1", "event_id": "e1", "node_instance_id": "n1" },
    }));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["outputs"]["result"], "HELLO");
    assert!(body["usage"]["fuel"].as_u64().unwrap() > 0);
    assert!(body["usage"]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(body["usage"]["duration_ms"].as_f64().unwrap() > 0.0);
    let id = body["run_id"].as_str().unwrap();
    let record = daemon.call("GET", &format!("/v1/runs/{id}"), None).json();
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["node"], "text-transform/text-transform");
    assert_eq!(record["context"]["board_id"], "b1");
    assert_eq!(record["context"]["event_id"], "e1");
    assert_eq!(record["inputs"]["sha256"].as_str().unwrap().len(), 64);
    assert!(record["outputs"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        record["package_sha256"],
        greeter_sha(&daemon, "text-transform")
    );
    assert_eq!(record["grant"], json!([]));
    assert_eq!(
        daemon.call("GET", "/v1/runs/run-unknown", None).code(),
        "unknown_run"
    );

    // Bad requests are 400 with their code.
    let cases: Vec<(Json, u16, &str)> = vec![
        (
            json!({ "node": "limits/sleep", "inputs": { "ms": "soon" } }),
            400,
            "invalid_input",
        ),
        (
            json!({ "node": "limits/sleep", "inputs": { "seconds": 1 } }),
            400,
            "invalid_input",
        ),
        (json!({ "node": "nothing" }), 404, "unknown_node"),
        (
            json!({ "node": "limits/noop", "context": { "board_id": "" } }),
            400,
            "invalid_context",
        ),
        (
            json!({ "node": "limits/noop", "surprise": true }),
            400,
            "bad_request",
        ),
        (json!({ "inputs": {} }), 400, "bad_request"),
        // Limits are 422 with a code naming the limit; the node's own failures too.
        (json!({ "node": "limits/spin" }), 422, "limit_fuel"),
        (json!({ "node": "limits/grow" }), 422, "limit_memory"),
        (json!({ "node": "limits/recurse" }), 422, "limit_stack"),
        (sleep_run(10_000), 422, "limit_timeout"),
        (
            json!({ "node": "limits/big-output", "inputs": { "bytes": 20_000_000 } }),
            422,
            "limit_output_size",
        ),
        (json!({ "node": "limits/fail" }), 422, "node_failed"),
        (json!({ "node": "limits/panic" }), 422, "node_trapped"),
    ];
    for (body, status, code) in cases {
        let reply = daemon.run(body.clone());
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (status, code),
            "{body}: {}",
            reply.text()
        );
        if status == 422 {
            let error = &reply.json()["error"];
            assert!(error["run_id"].is_string(), "{error}");
            let record = daemon
                .call(
                    "GET",
                    &format!("/v1/runs/{}", error["run_id"].as_str().unwrap()),
                    None,
                )
                .json();
            assert_eq!(record["error"]["code"], code);
        }
        if code.starts_with("limit_") {
            assert_eq!(
                reply.json()["error"]["limit"],
                code.trim_start_matches("limit_").replace('_', " ")
            );
        }
    }
    let failed = daemon.run(json!({ "node": "limits/fail" })).json();
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deliberate failure")
    );

    // Malformed JSON, an oversized body, unknown routes and methods.
    let broken = daemon.raw(
        &daemon.api,
        "POST",
        "/v1/runs",
        b"{not json".to_vec(),
        &[("authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(
        (broken.status, broken.code().as_str()),
        (400, "bad_request")
    );
    let huge = daemon.raw(
        &daemon.api,
        "POST",
        "/v1/runs",
        vec![b' '; 9 * 1024 * 1024],
        &[("authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(
        (huge.status, huge.code().as_str()),
        (413, "payload_too_large")
    );
    assert_eq!(daemon.call("GET", "/v2/anything", None).code(), "not_found");
    let wrong_method = daemon.call("DELETE", "/v1/runs", None);
    assert_eq!(
        (wrong_method.status, wrong_method.code().as_str()),
        (405, "method_not_allowed")
    );

    // The metrics listener, separately.
    let metrics = daemon.metrics_text();
    assert!(
        metric(
            &metrics,
            "warden_runs_total",
            r#"node="text-transform",outcome="ok""#
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "warden_limit_hits_total", r#"limit="stack""#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "warden_http_requests_total",
            r#"route="/v1/runs",status="422""#
        )
        .unwrap()
            >= 8.0
    );
    assert!(
        metrics.contains("warden_run_duration_seconds_bucket{node=\"limits\""),
        "{metrics}"
    );
    assert!(metric(&metrics, "warden_fuel_consumed_total", r#"node="limits""#).unwrap() > 0.0);

    // The audit log chains, and holds the loads, the limit kills and the refused keys.
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    for event in [
        "daemon_start",
        "node_loaded",
        "reload_applied",
        "limit_kill",
        "authentication_failed",
    ] {
        assert!(
            audit.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {audit}"
        );
    }
    warden_daemon::audit::verify(&fixture.path("data/audit.jsonl")).unwrap();

    // One JSON log line per run, in a span that carries the run's ids.
    let log = daemon.log();
    let line = log
        .lines()
        .find(|line| line.contains(id))
        .unwrap_or_else(|| panic!("no log line of {id}: {log}"));
    let line: Json = serde_json::from_str(line).unwrap();
    assert_eq!(line["span"]["board_id"], "b1");
    assert_eq!(line["span"]["user_id"], "u1");
}

fn greeter_sha(daemon: &Daemon, package: &str) -> Json {
    daemon
        .call("GET", &format!("/v1/nodes/{package}"), None)
        .json()["package_sha256"]
        .clone()
}

#[test]
fn runs_stream_as_ndjson_and_server_sent_events() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    let body = json!({ "node": "greeter", "variables": { "name": "Ada" } });
    let headers = [
        ("authorization", format!("Bearer {KEY}")),
        ("accept", "application/x-ndjson".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = daemon.request(&daemon.api, "POST", "/v1/runs", Some(&body), &headers);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let events: Vec<Json> = reply
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let chunks: Vec<&str> = events
        .iter()
        .filter(|event| event["event"] == "chunk")
        .map(|event| event["value"].as_str().unwrap())
        .collect();
    assert_eq!(chunks, ["Hello, ", "Ada!"]);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "result");
    assert_eq!(last["outputs"]["message"], "Hello, Ada!");

    let headers = [
        ("authorization", format!("Bearer {KEY}")),
        ("accept", "text/event-stream".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = daemon.request(&daemon.api, "POST", "/v1/runs", Some(&body), &headers);
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let text = reply.text();
    assert!(text.starts_with("event: chunk\ndata: "), "{text}");
    assert!(text.contains("event: result\ndata: "), "{text}");

    // A failure after the stream began is the stream's last event.
    let reply = daemon.request(
        &daemon.api,
        "POST",
        "/v1/runs",
        Some(&json!({ "node": "limits/spin" })),
        &headers,
    );
    assert!(
        reply.text().contains("event: error\ndata: "),
        "{}",
        reply.text()
    );
    assert!(reply.text().contains("limit_fuel"));
}

#[test]
fn an_idempotency_key_runs_once_and_replays_the_answer() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    let body =
        json!({ "node": "text-transform", "inputs": { "text": "once" }, "idempotency_key": "k-1" });
    let first = daemon.run(body.clone());
    assert_eq!(first.status, 200);
    let again = daemon.run(body.clone());
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replay"], "true");
    assert_eq!(again.json()["run_id"], first.json()["run_id"]);
    let other = daemon.run(json!({ "node": "text-transform", "inputs": { "text": "twice" }, "idempotency_key": "k-1" }));
    assert_eq!(
        (other.status, other.code().as_str()),
        (422, "idempotency_key_reused")
    );
    // The header works as the field does; a run in progress is 409.
    let slow = sleep_run(1500);
    let headers = [
        ("authorization", format!("Bearer {KEY}")),
        ("idempotency-key", "k-2".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    std::thread::scope(|scope| {
        let running =
            scope.spawn(|| daemon.request(&daemon.api, "POST", "/v1/runs", Some(&slow), &headers));
        std::thread::sleep(Duration::from_millis(400));
        let during = daemon.request(&daemon.api, "POST", "/v1/runs", Some(&slow), &headers);
        assert_eq!(
            (during.status, during.code().as_str()),
            (409, "run_in_progress")
        );
        assert_eq!(running.join().unwrap().status, 200);
    });
}

#[test]
fn a_callers_key_runs_nodes_but_only_an_admin_reloads_or_reads_others_runs() {
    use sha2::Digest;
    let fixture = Fixture::new();
    let bob = "bob-key-0123456789abcdef";
    let hash = warden_package::hex(&sha2::Sha256::digest(bob.as_bytes()));
    fixture.write_manifest(
        "",
        &format!("{NODES}\n[[api.keys]]\nname = \"bob\"\nsha256 = \"{hash}\"\n"),
    );
    let daemon = Daemon::start(&fixture);
    let as_bob = |method: &str, path: &str, body: Option<&Json>| {
        daemon.request(
            &daemon.api,
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {bob}"))],
        )
    };
    let mine = as_bob(
        "POST",
        "/v1/runs",
        Some(&json!({ "node": "text-transform", "inputs": { "text": "bob" } })),
    );
    assert_eq!(mine.status, 200);
    let mine = mine.json()["run_id"].as_str().unwrap().to_string();
    let theirs = daemon
        .run(json!({ "node": "text-transform", "inputs": { "text": "op" } }))
        .json()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        as_bob("GET", &format!("/v1/runs/{mine}"), None).json()["caller"],
        "bob"
    );
    let hidden = as_bob("GET", &format!("/v1/runs/{theirs}"), None);
    assert_eq!(
        (hidden.status, hidden.code().as_str()),
        (404, "unknown_run")
    );
    // The operator's key is an admin's: it reads every record, and it alone reloads.
    assert_eq!(
        daemon.call("GET", &format!("/v1/runs/{mine}"), None).status,
        200
    );
    let reload = as_bob("POST", "/v1/admin/reload", None);
    assert_eq!((reload.status, reload.code().as_str()), (403, "forbidden"));
    assert_eq!(daemon.call("POST", "/v1/admin/reload", None).status, 200);
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"trigger\":\"api:env:WARDEN_API_KEY\""),
        "{audit}"
    );
}

#[test]
fn warden_call_speaks_to_the_daemon_as_a_caller_would() {
    let fixture = Fixture::new();
    let daemon = Daemon::start(&fixture);
    let url = format!("https://{}", daemon.api);
    let ca = fixture.path("data/tls/cert.pem");
    let call = |args: &[&str], key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .arg("call")
            .args(args)
            .args(["--daemon", &url, "--ca-cert"])
            .arg(&ca)
            .env_remove("WARDEN_API_KEY");
        if let Some(key) = key {
            command.env("WARDEN_API_KEY", key);
        }
        command.output().unwrap()
    };
    let ran = call(
        &[
            "POST",
            "/v1/runs",
            "--data",
            r#"{"node": "text-transform", "inputs": {"text": "called"}}"#,
        ],
        Some(KEY),
    );
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let body: Json = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(body["outputs"]["result"], "CALLED");
    let streamed = call(
        &[
            "POST",
            "/v1/runs",
            "--stream",
            "--data",
            r#"{"node": "greeter", "variables": {"name": "Ada"}}"#,
        ],
        Some(KEY),
    );
    let lines = String::from_utf8_lossy(&streamed.stdout).into_owned();
    assert!(lines.starts_with("{\"event\":\"chunk\""), "{lines}");
    // A streamed run that fails after it began: its last event says why, and so does the
    // exit code.
    let failed = call(
        &[
            "POST",
            "/v1/runs",
            "--stream",
            "--data",
            r#"{"node": "limits/spin"}"#,
        ],
        Some(KEY),
    );
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("limit_fuel"));
    // An error answer is printed, and the exit code says it failed.
    let refused = call(&["GET", "/v1/nodes"], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("unauthenticated"));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let bad = call(&["POST", "/v1/runs", "--data", "{not json"], Some(KEY));
    assert_eq!(bad.status.code(), Some(2));
}

/// A hand-written node (no SDK) whose `run` returns an output it never declared.
fn undeclared_output() -> Vec<u8> {
    crate::adversarial::hostile::component(
        "",
        // The result: ok, a list of one field at 512. The field: its name ("bogus", at 600)
        // and a null value.
        r#"(data (i32.const 256) "\00\00\00\00\00\02\00\00\01\00\00\00")
  (data (i32.const 512) "\58\02\00\00\05\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 600) "bogus")"#,
        "",
    )
}

#[test]
fn the_rarer_error_codes_are_given_too() {
    let fixture = Fixture::new();
    // A second package with the same component: its node names need `package/node`.
    fixture.add(
        "text-tools",
        "1.0.0",
        &example("text-transform", Target::Unknown),
    );
    let bogus = fixture.path("bogus.wasm");
    std::fs::write(&bogus, undeclared_output()).unwrap();
    fixture.add("bogus", "1.0.0", &bogus);
    fixture.write_manifest(
        "",
        &format!(
            "{NODES}\n[[nodes]]\nname = \"text-tools\"\nlimits = \"restrictive\"\n\n[[nodes]]\nname = \"bogus\"\n"
        ),
    );
    let daemon = Daemon::start(&fixture);

    let ambiguous =
        daemon.run(json!({ "node": "concat", "inputs": { "left": "a", "right": "b" } }));
    assert_eq!(
        (ambiguous.status, ambiguous.code().as_str()),
        (400, "ambiguous_node")
    );
    assert_eq!(
        ambiguous.json()["error"]["candidates"],
        json!(["text-transform/concat", "text-tools/concat"]),
        "in the manifest's order"
    );
    let named =
        daemon.run(json!({ "node": "text-tools/concat", "inputs": { "left": "a", "right": "b" } }));
    assert_eq!(named.json()["outputs"]["result"], "a b");

    let invalid = daemon.run(json!({ "node": "bogus" }));
    assert_eq!(
        (invalid.status, invalid.code().as_str()),
        (422, "invalid_output"),
        "{}",
        invalid.text()
    );
    assert!(invalid.text().contains("bogus"));

    // Its restrictive preset takes 1 MiB of inputs.
    let big_input = daemon.run(
        json!({ "node": "text-tools/text-transform", "inputs": { "text": "x".repeat(1_200_000) } }),
    );
    assert_eq!(
        (big_input.status, big_input.code().as_str()),
        (422, "limit_input_size")
    );

    // An answer too large to keep for replays: the retry is told where the record is.
    let body = json!({ "node": "limits/big-output", "inputs": { "bytes": 2_000_000 }, "idempotency_key": "large" });
    let first = daemon.run(body.clone());
    assert_eq!(first.status, 200);
    let again = daemon.run(body);
    assert_eq!(
        (again.status, again.code().as_str()),
        (410, "replay_unavailable")
    );
    assert_eq!(again.json()["error"]["run_id"], first.json()["run_id"]);
}
