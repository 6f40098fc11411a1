//! The `warden` command line: build, inspect and run real nodes; every bad input is one line
//! on stderr with the documented exit code, never a panic.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output};
use warden::build::Target;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the exit code and that stderr is exactly one `warden: error:` line.
fn fails(output: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with('['))
        .collect();
    assert_eq!(lines.len(), 1, "one line of error expected: {stderr}");
    assert!(lines[0].starts_with("warden: error: "), "{stderr}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
    // The CLI itself never panics (a node's panic, in its log lines, is fine).
    assert!(!stderr.contains("thread 'main'"), "{stderr}");
    stderr
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(output)))
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn build_prints_the_component_path() {
    // A target directory of its own: other tests build the same crate at the same time, and a
    // build reads cargo's output after cargo has released its lock.
    let target = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["build", "nodes/text-transform"])
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = stdout(&output);
    let component = Path::new(printed.trim());
    assert!(
        component.ends_with("component/text_transform.wasm"),
        "{printed}"
    );
    assert!(wasmparser::Parser::is_component(
        &std::fs::read(component).unwrap()
    ));
    fails(&warden(&["build", "no/such/crate"]), 2, "no Cargo.toml");
}

#[test]
fn inspect_shows_nodes_pins_and_capabilities() {
    let counter = example("counter", Target::Unknown);
    let text = stdout(&warden(&["inspect", path(&counter)]));
    assert!(text.contains("node counter (Counter)"), "{text}");
    assert!(
        text.contains("in  step: integer = 1 (range -1000 to 1000)"),
        "{text}"
    );
    assert!(
        text.contains("capabilities: storage-read,storage-write"),
        "{text}"
    );
    let document = json(&warden(&["inspect", path(&counter), "--json"]));
    assert_eq!(
        document["capabilities"],
        serde_json::json!(["storage-read", "storage-write"])
    );
    assert_eq!(document["nodes"][0]["pins"][0]["name"], "step");
    let transform = example("text-transform", Target::Wasip2);
    let document = json(&warden(&["inspect", path(&transform), "--json"]));
    assert_eq!(document["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(document["capabilities"], serde_json::json!([]));
}

#[test]
fn run_prints_outputs_and_streams_and_keeps_state_with_data() {
    let wasip2 = example("text-transform", Target::Wasip2);
    let output = warden(&[
        "run",
        path(&wasip2),
        "--node",
        "concat",
        "--input",
        "left=a",
        "--input",
        "right=b",
        "--grant",
        "none",
    ]);
    assert_eq!(json(&output)["result"], "a b");
    let transform = example("text-transform", Target::Unknown);
    let output = warden(&[
        "run",
        path(&transform),
        "--node",
        "text-transform",
        "--input",
        "text=a b c",
        "--input",
        "mode=reverse",
        "--grant",
        "none",
    ]);
    assert_eq!(json(&output)["result"], "c b a");

    let data = tempfile::tempdir().unwrap();
    let counter = example("counter", Target::Unknown);
    let args = [
        "run",
        path(&counter),
        "--grant",
        "storage-read,storage-write",
        "--data",
        path(data.path()),
        "--input",
        "step=7",
    ];
    assert_eq!(json(&warden(&args))["count"], 7);
    let second = warden(&args);
    assert_eq!(json(&second)["count"], 14);
    assert!(String::from_utf8_lossy(&second.stderr).contains("[info log] count 7 -> 14"));

    let greeter = example("greeter", Target::Unknown);
    let output = warden(&[
        "run",
        path(&greeter),
        "--grant",
        "variables-read,cache-all,streaming",
        "--var",
        "name=Ada",
    ]);
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .take(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"chunk": "Hello, "}),
            serde_json::json!({"chunk": "Ada!"})
        ]
    );
    let document = json(&warden(&[
        "run",
        path(&greeter),
        "--grant",
        "variables-read,cache-all,streaming",
        "--var",
        "name=Ada",
        "--json",
    ]));
    assert_eq!(document["outputs"]["message"], "Hello, Ada!");
    assert!(document["fuel_consumed"].as_u64().unwrap() > 0);
}

#[test]
fn bad_inputs_exit_2_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let transform = example("text-transform", Target::Unknown);
    let transform = path(&transform);
    let write = |name: &str, bytes: &[u8]| {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        file
    };
    let text = write("notes.txt", b"not wasm");
    let module = write("module.wasm", &wat::parse_str("(module)").unwrap());
    let empty = write("component.wasm", &wat::parse_str("(component)").unwrap());
    let bytes = std::fs::read(transform).unwrap();
    let truncated = write("truncated.wasm", &bytes[..bytes.len() / 2]);
    let files = [
        ("/no/such/node.wasm", "cannot read /no/such/node.wasm"),
        (path(&text), "not WebAssembly"),
        (path(&module), "core WebAssembly module, not a component"),
        (path(&empty), "does not export `warden:node/node@0.1.0`"),
        (path(&truncated), "malformed"),
    ];
    for (file, needle) in files {
        fails(&warden(&["run", file]), 2, needle);
        fails(&warden(&["inspect", file]), 2, needle);
    }

    let node = ["run", transform, "--node", "text-transform"];
    let cases: [(&[&str], &str); 12] = [
        (&[], "input `text` is required"),
        (&["--input", "txt=x"], "has no input `txt`"),
        (&["--input", "oops"], "not NAME=VALUE"),
        (
            &["--input", "text=x", "--input", "mode=sideways"],
            "must be one of",
        ),
        (&["--grant", "teleport"], "unknown capability `teleport`"),
        (&["--preset", "lenient"], "unknown preset"),
        (&["--memory", "lots"], "--memory"),
        (&["--memory", "5GiB"], "invalid limits"),
        (&["--timeout", "0s"], "--timeout"),
        (&["--fuel", "lots"], "--fuel"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["--var", "=x"], "not NAME=VALUE"),
    ];
    for (extra, needle) in cases {
        let args: Vec<&str> = node.iter().chain(extra).copied().collect();
        fails(&warden(&args), 2, needle);
    }
    fails(
        &warden(&["run", transform, "--grant", "none"]),
        2,
        "choose one with --node",
    );
    let counter = example("counter", Target::Unknown);
    fails(
        &warden(&[
            "run",
            path(&counter),
            "--grant",
            "storage-all",
            "--input",
            "step=ten",
        ]),
        2,
        "not a whole number",
    );
    fails(&warden(&["run"]), 2, "required arguments were not provided");
    fails(&warden(&["explode"]), 2, "unrecognized subcommand");
}

#[test]
fn refusals_limits_and_failures_have_their_exit_codes() {
    let counter = example("counter", Target::Unknown);
    let stderr = fails(
        &warden(&["run", path(&counter), "--grant", "storage-read"]),
        3,
        "capability refused",
    );
    assert!(stderr.contains("--grant storage-write"), "{stderr}");
    fails(
        &warden(&["run", path(&counter), "--grant", "none"]),
        3,
        "--grant storage-read,storage-write",
    );
    let limits = build_node("tests/nodes/limits", Target::Unknown, &[]);
    let limits = path(&limits);
    fails(
        &warden(&[
            "run", limits, "--node", "spin", "--fuel", "1000000", "--grant", "none",
        ]),
        4,
        "limit hit: fuel",
    );
    fails(
        &warden(&[
            "run",
            limits,
            "--node",
            "spin",
            "--fuel",
            "off",
            "--timeout",
            "200ms",
            "--grant",
            "none",
        ]),
        4,
        "limit hit: timeout",
    );
    fails(
        &warden(&[
            "run", limits, "--node", "grow", "--memory", "8MiB", "--grant", "none",
        ]),
        4,
        "limit hit: memory",
    );
    fails(
        &warden(&[
            "run",
            limits,
            "--node",
            "recurse",
            "--preset",
            "restrictive",
            "--grant",
            "none",
        ]),
        4,
        "limit hit: stack",
    );
    fails(
        &warden(&["run", limits, "--node", "fail", "--grant", "none"]),
        5,
        "the node failed: deliberate failure",
    );
    fails(
        &warden(&["run", limits, "--node", "panic", "--grant", "none"]),
        5,
        "deliberate panic",
    );
}

#[test]
fn capabilities_lists_the_table() {
    let text = stdout(&warden(&["capabilities"]));
    assert!(text.contains("0x00001  storage-read"), "{text}");
    assert!(text.contains("0x40000  dns"), "{text}");
    assert!(
        text.contains("standard = storage-read,http-get,variables-read,cache-read,cache-write"),
        "{text}"
    );
}

#[test]
fn the_docs_hold_the_current_capability_table() {
    let generated = stdout(&warden(&["capabilities", "--markdown"]));
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/capabilities.md"))
            .unwrap();
    let start = docs.find("<!-- capability-table:start -->\n").unwrap()
        + "<!-- capability-table:start -->\n".len();
    let end = docs.find("<!-- capability-table:end -->").unwrap();
    assert_eq!(
        &docs[start..end],
        generated,
        "regenerate with `warden capabilities --markdown`"
    );
}

#[test]
fn every_capability_has_a_docs_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for info in warden_host::CAPABILITIES {
        let page =
            std::fs::read_to_string(root.join(format!("docs/capabilities/{}.md", info.name)))
                .unwrap_or_else(|error| panic!("docs/capabilities/{}.md: {error}", info.name));
        assert!(
            page.starts_with(&format!("# `{}` ({:#x})", info.name, info.bit.bits())),
            "{}",
            info.name
        );
        assert!(page.contains("## How a denial looks"), "{}", info.name);
    }
}

#[test]
fn values_are_checked_before_the_component_is_read() {
    // The component path does not exist: each bad value must be the reported error, so it
    // was checked before the file was read, let alone instantiated.
    let long = "u".repeat(300);
    let cases: [(&[&str], &str); 16] = [
        (&["--timeout", "99999999999999999999s"], "--timeout"),
        (&["--timeout", "999999999999999999d"], "too long"),
        (&["--timeout", "25h"], "24h"),
        (&["--timeout=-5s"], "--timeout"),
        (&["--memory", "99999999999T"], "--memory"),
        (&["--memory", "99999999999999999999999"], "too large"),
        (&["--memory", "5GiB"], "invalid limits"),
        (&["--fuel", "99999999999999999999999"], "too large"),
        (&["--fuel=-1"], "--fuel"),
        (&["--input", "oops"], "--input `oops` is not NAME=VALUE"),
        (&["--input", "a=1", "--input", "a=2"], "given twice"),
        (&["--var", "oops"], "--var `oops` is not NAME=VALUE"),
        (&["--board", ""], "--board"),
        (&["--user", long.as_str()], "--user"),
        (&["--instance", "a\u{1}b"], "--instance"),
        (&["--preset", "lenient"], "unknown preset"),
    ];
    for (extra, needle) in cases {
        let args: Vec<&str> = ["run", "/no/such/node.wasm"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let stderr = fails(&warden(&args), 2, needle);
        assert!(!stderr.contains("cannot read"), "{extra:?}: {stderr}");
    }
}

#[test]
fn errors_print_their_root_cause_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // A component whose `node` export has none of the functions the WIT gives it.
    let empty_export = dir.path().join("empty-export.wasm");
    let bytes = wat::parse_str(
        r#"(component (instance $node) (export "warden:node/node@0.1.0" (instance $node)))"#,
    )
    .unwrap();
    std::fs::write(&empty_export, bytes).unwrap();
    let stderr = fails(
        &warden(&["run", path(&empty_export), "--grant", "none"]),
        2,
        "does not match warden's WIT: ",
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
    // The cause follows the colon: something more than the first line of a chain.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("warden: error:"))
        .unwrap();
    let cause = line.split("does not match warden's WIT: ").nth(1).unwrap();
    assert!(cause.len() > 10, "{line}");

    // A trap says what trapped, not "error while executing at wasm backtrace:".
    let limits = build_node("tests/nodes/limits", Target::Unknown, &[]);
    let stderr = fails(
        &warden(&["run", path(&limits), "--node", "panic", "--grant", "none"]),
        5,
        "unreachable",
    );
    assert!(!stderr.contains("backtrace:"), "{stderr}");
}

#[test]
fn nested_components_over_the_instance_limit_exit_4_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested.wasm");
    let bytes = wat::parse_str(
        r#"(component
            (component $inner
                (core module $m)
                (core instance (instantiate $m))
                (core instance (instantiate $m))
                (core instance (instantiate $m))
                (core instance (instantiate $m)))
            (instance (instantiate $inner))
            (instance (instantiate $inner))
            (instance (instantiate $inner))
            (instance $node)
            (export "warden:node/node@0.1.0" (instance $node)))"#,
    )
    .unwrap();
    std::fs::write(&file, bytes).unwrap();
    fails(
        &warden(&[
            "run",
            path(&file),
            "--preset",
            "restrictive",
            "--grant",
            "none",
        ]),
        2,
        "does not match",
    );
    // 12 core instances; the restrictive preset allows 32, so lower it with a nested pair.
    let file = dir.path().join("nested-more.wasm");
    let bytes = wat::parse_str(
        r#"(component
            (component $inner
                (core module $m)
                (core instance (instantiate $m))
                (core instance (instantiate $m))
                (core instance (instantiate $m))
                (core instance (instantiate $m)))
            (component $outer
                (alias outer 1 0 (component $i))
                (instance (instantiate $i))
                (instance (instantiate $i))
                (instance (instantiate $i)))
            (instance (instantiate $outer))
            (instance (instantiate $outer))
            (instance (instantiate $outer))
            (instance $node)
            (export "warden:node/node@0.1.0" (instance $node)))"#,
    )
    .unwrap();
    std::fs::write(&file, bytes).unwrap();
    fails(
        &warden(&[
            "run",
            path(&file),
            "--preset",
            "restrictive",
            "--grant",
            "none",
        ]),
        4,
        "limit hit: instances",
    );
}

/// `warden` under `ulimit -v 8 GiB`.
fn warden_under_ulimit(args: &[&str]) -> Output {
    Command::new("sh")
        .args(["-c", "ulimit -v 8388608 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_works_under_an_8_gib_address_space_limit() {
    let limits = build_node("tests/nodes/limits", Target::Wasip2, &[]);
    let limits = path(&limits);
    let output = warden_under_ulimit(&["run", limits, "--node", "noop", "--grant", "none"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let output = warden_under_ulimit(&["inspect", limits]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The permissive preset's pool (32 memories of 4 GiB) cannot be reserved: one warning,
    // and the run still happens.
    let output = warden_under_ulimit(&[
        "run",
        limits,
        "--node",
        "noop",
        "--grant",
        "none",
        "--preset",
        "permissive",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warden: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
    // A limit still names itself under the ulimit.
    fails(
        &warden_under_ulimit(&[
            "run", limits, "--node", "grow", "--memory", "8MiB", "--grant", "none",
        ]),
        4,
        "limit hit: memory",
    );
}

#[test]
fn install_and_approve_show_the_approval_flags_of_run() {
    // The spellings before are hidden aliases: they work (tests/e2e/registry/approval_flags.rs)
    // but help shows one word per flag, the word `run` uses.
    let run = stdout(&warden(&["run", "--help"]));
    for command in ["install", "approve"] {
        let help = stdout(&warden(&[command, "--help"]));
        for flag in [
            "--grant <CAP[,CAP]...>",
            "--allow-host <PATTERN>",
            "--preset <",
        ] {
            assert!(help.contains(flag), "{command}: `{flag}` not in {help}");
            assert!(run.contains(flag), "run: `{flag}` not in {run}");
        }
        for old in [
            "--approve ",
            "--approve-host",
            "--approve-preset",
            "--host ",
        ] {
            assert!(!help.contains(old), "{command}: `{old}` in {help}");
        }
    }
}
