//! Storage, cache and variables through a node: scopes confine every key, escapes are refused,
//! caps and quotas hold, and data persists in the redb file.

use crate::support::*;
use warden::build::Target;
use warden_host::{
    Capabilities, Limits, NodeComponent, RunContext, RunOutcome, Runtime, Scope, Storage, Value,
    WasmSecurityConfig,
};

fn grant() -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::STORAGE_ALL
            | Capabilities::CACHE_ALL
            | Capabilities::VARIABLES_READ
            | Capabilities::VARIABLES_WRITE,
        ..WasmSecurityConfig::default()
    }
}

struct Probe {
    runtime: Runtime,
    node: NodeComponent,
    config: WasmSecurityConfig,
}

impl Probe {
    fn new() -> Self {
        Probe {
            runtime: Runtime::new().unwrap(),
            node: test_node("storage-probe", Target::Unknown),
            config: grant(),
        }
    }

    fn op(
        &self,
        context: &RunContext,
        op: &str,
        scope: &str,
        key: &str,
        value: &str,
    ) -> RunOutcome {
        let mut request = request(
            "storage",
            &[
                ("op", Value::Text(op.into())),
                ("scope", Value::Text(scope.into())),
                ("key", Value::Text(key.into())),
                ("value", Value::Text(value.into())),
            ],
        );
        request.context = context.clone();
        run(&self.runtime, &self.node, &self.config, request).unwrap()
    }

    fn value(&self, context: &RunContext, op: &str, scope: &str, key: &str, value: &str) -> Value {
        let outcome = self.op(context, op, scope, key, value);
        if let Some(field) = outcome.outputs.iter().find(|field| field.name == "error") {
            panic!("{op} {scope} {key}: {:?}", field.value);
        }
        output(&outcome, "value").clone()
    }

    fn error(&self, context: &RunContext, op: &str, scope: &str, key: &str, value: &str) -> String {
        let outcome = self.op(context, op, scope, key, value);
        match outcome.outputs.iter().find(|field| field.name == "error") {
            Some(field) => match &field.value {
                Value::Text(text) => text.clone(),
                other => panic!("{other:?}"),
            },
            None => panic!("{op} {scope} {key} succeeded: {:?}", outcome.outputs),
        }
    }
}

fn ctx(node: &str, board: &str, user: &str) -> RunContext {
    RunContext::for_node(node).with_board(board).with_user(user)
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

#[test]
fn each_scope_is_confined_to_its_owner() {
    let probe = Probe::new();
    let a = ctx("node-a", "board-1", "alice");
    let b_same_board = ctx("node-b", "board-1", "bob");
    let a_other_board = ctx("node-a", "board-2", "alice");
    let a_as_bob = ctx("node-a", "board-1", "bob");
    for scope in ["board", "node", "user", "cache"] {
        assert_eq!(
            probe.value(&a, "set", scope, "k", scope),
            Value::Boolean(true)
        );
        assert_eq!(probe.value(&a, "get", scope, "k", ""), text(scope));
    }
    // Node scope: private to the node instance.
    assert_eq!(
        probe.value(&b_same_board, "get", "node", "k", ""),
        Value::Null
    );
    assert_eq!(
        probe.value(&a_other_board, "get", "node", "k", ""),
        Value::Null
    );
    // Board scope: shared by the board's nodes, not across boards.
    assert_eq!(
        probe.value(&b_same_board, "get", "board", "k", ""),
        text("board")
    );
    assert_eq!(
        probe.value(&a_other_board, "get", "board", "k", ""),
        Value::Null
    );
    // User scope: follows the user, not the node or board.
    assert_eq!(
        probe.value(&a_other_board, "get", "user", "k", ""),
        text("user")
    );
    assert_eq!(probe.value(&a_as_bob, "get", "user", "k", ""), Value::Null);
    // Cache scope: the node instance's scratch space.
    assert_eq!(
        probe.value(&b_same_board, "get", "cache", "k", ""),
        Value::Null
    );
    // Scopes do not see each other's keys either.
    assert_eq!(
        probe.value(&a, "set", "node", "only-node", "x"),
        Value::Boolean(true)
    );
    assert_eq!(
        probe.value(&a, "get", "board", "only-node", ""),
        Value::Null
    );
}

#[test]
fn the_upload_scope_is_read_only_for_nodes_and_filled_by_the_embedder() {
    let probe = Probe::new();
    let alice = ctx("n", "b", "alice");
    let error = probe.error(&alice, "set", "upload", "report.csv", "forged");
    assert!(
        error.starts_with("denied:") && error.contains("read-only"),
        "{error}"
    );
    let error = probe.error(&alice, "delete", "upload", "report.csv", "");
    assert!(error.starts_with("denied:"), "{error}");
    block_on(probe.runtime.storage().put(
        &alice,
        Scope::Upload,
        "report.csv",
        b"a,b\n1,2",
        u64::MAX,
    ))
    .unwrap();
    assert_eq!(
        probe.value(&alice, "get", "upload", "report.csv", ""),
        text("a,b\n1,2")
    );
    assert_eq!(
        probe.value(&ctx("n", "b", "mallory"), "get", "upload", "report.csv", ""),
        Value::Null
    );
}

#[test]
fn keys_that_could_escape_a_scope_are_refused() {
    let probe = Probe::new();
    let context = ctx("n", "b", "u");
    let long = "k".repeat(513);
    let deep = vec!["d"; 33].join("/");
    let cases = [
        ("..", "`.` or `..`"),
        ("../other-node/k", "`.` or `..`"),
        ("a/../../b", "`.` or `..`"),
        ("./k", "`.` or `..`"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("", "empty"),
        ("a\u{0}b", "NUL"),
        ("..\\windows", "`\\`"),
        (long.as_str(), "at most 512 bytes"),
        (deep.as_str(), "at most 32"),
    ];
    for (key, expected) in cases {
        for op in ["get", "set", "delete", "exists"] {
            let error = probe.error(&context, op, "node", key, "v");
            assert!(
                error.starts_with("invalid:") && error.contains(expected),
                "{op} {key:?}: {error}"
            );
        }
    }
    let error = probe.error(&context, "list", "node", "../", "");
    assert!(error.starts_with("invalid:"), "{error}");
    let error = probe.error(&context, "cache-set", "node", "../x", "v");
    assert!(error.starts_with("invalid:"), "{error}");
}

#[test]
fn list_delete_and_exists() {
    let probe = Probe::new();
    let context = ctx("n", "b", "u");
    for key in ["docs/a", "docs/b", "docs2/c", "other"] {
        probe.value(&context, "set", "board", key, "x");
    }
    assert_eq!(
        probe.value(&context, "list", "board", "docs", ""),
        text("docs/a,docs/b")
    );
    assert_eq!(
        probe.value(&context, "list", "board", "", ""),
        text("docs/a,docs/b,docs2/c,other")
    );
    assert_eq!(
        probe.value(&context, "exists", "board", "docs/a", ""),
        Value::Boolean(true)
    );
    assert_eq!(
        probe.value(&context, "delete", "board", "docs/a", ""),
        Value::Boolean(true)
    );
    assert_eq!(
        probe.value(&context, "delete", "board", "docs/a", ""),
        Value::Boolean(false)
    );
    assert_eq!(
        probe.value(&context, "exists", "board", "docs/a", ""),
        Value::Boolean(false)
    );
}

#[test]
fn value_size_and_scope_quota_are_enforced() {
    let mut probe = Probe::new();
    let mut limits = Limits::default();
    limits.host.storage_value_bytes = 1000;
    limits.host.storage_quota_bytes = 2500;
    probe.config.limits = limits;
    let context = ctx("n", "b", "u");
    let sized = |key: &str, size: i64| {
        let mut request = request(
            "storage",
            &[
                ("op", text("set")),
                ("scope", text("node")),
                ("key", text(key)),
                ("size", Value::Integer(size)),
            ],
        );
        request.context = context.clone();
        run(&probe.runtime, &probe.node, &probe.config, request).unwrap()
    };
    let too_large = sized("big", 1001);
    assert!(matches!(output(&too_large, "error"), Value::Text(e) if e.starts_with("too large:")));
    for key in ["a", "b"] {
        assert_eq!(output(&sized(key, 1000), "value"), &Value::Boolean(true));
    }
    let over = sized("c", 1000);
    assert!(
        matches!(output(&over, "error"), Value::Text(e) if e.starts_with("quota exceeded:")),
        "{:?}",
        over.outputs
    );
    // Replacing a value counts only the difference; another scope has its own quota.
    assert_eq!(output(&sized("a", 900), "value"), &Value::Boolean(true));
    assert_eq!(
        probe.value(&context, "set", "board", "c", "fits"),
        Value::Boolean(true)
    );
}

#[test]
fn cache_entries_are_shared_per_node_and_expire() {
    let probe = Probe::new();
    let context = ctx("n", "b", "u");
    assert_eq!(
        probe.value(&context, "cache-set", "node", "answer", "42"),
        Value::Boolean(true)
    );
    assert_eq!(
        probe.value(&context, "cache-get", "node", "answer", ""),
        text("42")
    );
    assert_eq!(
        probe.value(&ctx("other", "b", "u"), "cache-get", "node", "answer", ""),
        Value::Null
    );
    let mut request = request(
        "storage",
        &[
            ("op", text("cache-set")),
            ("key", text("brief")),
            ("value", text("soon gone")),
            ("ttl-ms", Value::Integer(1)),
        ],
    );
    request.context = context.clone();
    run(&probe.runtime, &probe.node, &probe.config, request).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(
        probe.value(&context, "cache-get", "node", "brief", ""),
        Value::Null
    );
}

#[test]
fn variables_are_read_and_written_per_run() {
    let probe = Probe::new();
    let mut request = request(
        "storage",
        &[("op", text("var-get")), ("key", text("greeting"))],
    );
    request.variables.insert("greeting".into(), text("hi"));
    let outcome = run(&probe.runtime, &probe.node, &probe.config, request.clone()).unwrap();
    assert_eq!(output(&outcome, "value"), &text("hi"));
    request.inputs = vec![
        warden_host::Field::new("op", text("var-set")),
        warden_host::Field::new("key", text("result")),
        warden_host::Field::new("value", text("done")),
    ];
    let outcome = run(&probe.runtime, &probe.node, &probe.config, request).unwrap();
    assert_eq!(outcome.variables.get("result"), Some(&text("done")));
    assert_eq!(outcome.variables.get("greeting"), Some(&text("hi")));
    // Without variables-write the node is refused outright.
    let read_only = WasmSecurityConfig {
        capabilities: grant().capabilities - Capabilities::VARIABLES_WRITE,
        ..grant()
    };
    let error = run(
        &probe.runtime,
        &probe.node,
        &read_only,
        self::request("storage", &[("op", text("var-get"))]),
    )
    .unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
}

#[test]
fn storage_persists_in_the_redb_file_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let node = load(&example("counter", Target::Unknown));
    let config = WasmSecurityConfig {
        capabilities: Capabilities::STORAGE_READ | Capabilities::STORAGE_WRITE,
        ..Default::default()
    };
    for expected in 1..=3 {
        let runtime = Runtime::with_storage(Storage::open(&path).unwrap());
        let outcome = run(&runtime, &node, &config, request("counter", &[])).unwrap();
        assert_eq!(output(&outcome, "count"), &Value::Integer(expected));
    }
    // Another node instance starts from zero.
    let runtime = Runtime::with_storage(Storage::open(&path).unwrap());
    let mut other = request("counter", &[]);
    other.context = RunContext::for_node("counter-2");
    assert_eq!(
        output(&run(&runtime, &node, &config, other).unwrap(), "count"),
        &Value::Integer(1)
    );
}
