//! A node's output is never confused with the host's: what it logs, and the error it returns,
//! reach the terminal escaped, one line each, marked as the node's; with `--json`, inside JSON
//! strings.

use super::hostile::{self, LOG};
use std::process::Command;
use warden_host::{Error, NodeComponent, Runtime, WasmSecurityConfig};

/// Bytes as a WAT string literal.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// Logs lines that imitate warden's own, with terminal escapes, then fails with an error that
/// does the same.
fn forger() -> Vec<u8> {
    let forged =
        "ok\n\x1b[2Jwarden: error: the host was compromised\n{\"outputs\":{}}\x1b]0;title\x07";
    let error = "failed\nwarden: error: forged\r\u{202e}";
    let data = format!(
        r#"(data (i32.const 1024) "{}")
  (data (i32.const 1536) "{}")
  (data (i32.const 512) "\01\00\00\00\00\06\00\00{}")"#,
        wat_bytes(forged.as_bytes()),
        wat_bytes(error.as_bytes()),
        wat_bytes(&(error.len() as u32).to_le_bytes()),
    );
    hostile::component(
        LOG,
        &data,
        &format!(
            "(call $log (i32.const 2) (i32.const 1024) (i32.const {}))
             (return (i32.const 512))",
            forged.len()
        ),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forger.wasm");
    std::fs::write(&path, forger()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg(&path)
        .args(["--grant", "none"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn node_text_cannot_pass_for_the_hosts() {
    let (code, stdout, stderr) = run(&[]);
    println!("{stderr}");
    assert_eq!(code, 5, "{stderr}");
    assert_eq!(stdout, "", "the node's text reached stdout");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\r') && !stderr.contains('\u{202e}'));
    let lines: Vec<&str> = stderr.lines().collect();
    let errors = lines
        .iter()
        .filter(|line| line.starts_with("warden: error:"));
    assert_eq!(errors.count(), 1, "{stderr}");
    for line in &lines {
        assert!(
            line.starts_with("[info log] ") || line.starts_with("warden: error: the node failed: "),
            "a line that is neither the node's nor warden's: {line}"
        );
    }
    assert!(
        stderr.contains(r"ok\n\u{1b}[2Jwarden: error: the host was compromised\n"),
        "{stderr}"
    );
    assert!(stderr.contains(r"title\u{7}"), "{stderr}");
}

#[test]
fn with_json_node_text_stays_inside_json_strings() {
    let (code, stdout, stderr) = run(&["--json"]);
    assert_eq!(code, 5, "{stderr}");
    assert_eq!(stdout, "");
    let mut lines = stderr.lines().peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            assert!(
                line.starts_with("warden: error: the node failed: failed\\n"),
                "{line}"
            );
            break;
        }
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {line}: {error}"));
        assert!(record["log"]["message"].is_string(), "{line}");
    }
}

/// What the node returns as its error: a carriage return and an ANSI "erase line" to hide the
/// host's prefix, a forged host line after a newline and after a Unicode line separator, and
/// then a megabyte of padding.
const FORGED: &str = "fine\r\u{1b}[2Kwarden: error: forged by the node\nwarden: error: again\u{2028}warden: error: and again";
const PADDING: usize = 1024 * 1024;

/// A node whose `run` returns `Err(FORGED + "x" * PADDING)`.
fn fails_with_forged_lines() -> Vec<u8> {
    let data = format!(
        r#"(data (i32.const 1024) "{}")"#,
        FORGED
            .bytes()
            .map(|byte| format!("\\{byte:02x}"))
            .collect::<String>()
    );
    let body = format!(
        "(memory.fill (i32.const {start}) (i32.const 0x78) (i32.const {PADDING}))
         (i32.store8 (i32.const 256) (i32.const 1))
         (i32.store (i32.const 260) (i32.const 1024))
         (i32.store (i32.const 264) (i32.const {len}))",
        start = 1024 + FORGED.len(),
        len = FORGED.len() + PADDING,
    );
    // 1 MiB of padding above 1024 needs 17 pages before the heap; give it 32.
    hostile::component_with_memory(32, "", &data, &body)
}

fn is_suspect(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

#[test]
fn a_node_error_is_escaped_and_bounded_for_embedders() {
    let node = NodeComponent::from_bytes(fails_with_forged_lines()).unwrap();
    let warden = Runtime::new().unwrap();
    let result = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let prepared = warden
            .prepare(&node, &WasmSecurityConfig::default())
            .await
            .unwrap();
        prepared.run(hostile::request()).await
    });
    let Err(Error::NodeFailed(message)) = result else {
        panic!("expected the node's error, got {result:?}");
    };
    println!(
        "node error: {} bytes kept of {}",
        message.len(),
        FORGED.len() + PADDING
    );
    assert!(!message.chars().any(is_suspect), "{:?}", &message[..100]);
    assert!(message.len() <= 64 * 1024, "kept {} bytes", message.len());
}

#[test]
fn a_node_error_cannot_forge_a_host_line_in_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forger.wasm");
    std::fs::write(&path, fails_with_forged_lines()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("CLI stderr: {} bytes", stderr.len());
    assert_eq!(output.status.code(), Some(5), "{}", &stderr[..200]);
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.contains("warden: error:"))
            .count(),
        1,
        "{}",
        &stderr[..200]
    );
    assert!(
        !stderr.trim_end().chars().any(is_suspect),
        "{:?}",
        &stderr[..200]
    );
    assert!(stderr.len() <= 64 * 1024, "printed {} bytes", stderr.len());
}

#[test]
fn a_log_record_holds_no_unicode_line_separator() {
    // "a" U+2028 "warden: error: x" U+2029 "b" U+0085 "c"
    let text = "a\u{2028}warden: error: x\u{2029}b\u{85}c";
    let data = format!(
        r#"(data (i32.const 1024) "{}")"#,
        text.bytes()
            .map(|byte| format!("\\{byte:02x}"))
            .collect::<String>()
    );
    let body = format!(
        "(call $log (i32.const 2) (i32.const 1024) (i32.const {}))",
        text.len()
    );
    let node = NodeComponent::from_bytes(hostile::component(LOG, &data, &body)).unwrap();
    let warden = Runtime::new().unwrap();
    let outcome = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            let prepared = warden
                .prepare(&node, &WasmSecurityConfig::default())
                .await
                .unwrap();
            prepared.run(hostile::request()).await
        })
        .unwrap();
    let message = &outcome.log[0].message;
    println!("log record: {message:?}");
    assert!(!message.chars().any(is_suspect), "{message:?}");
}
