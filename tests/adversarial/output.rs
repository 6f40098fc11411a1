//! A node's output is never confused with the host's: what it logs, and the error it returns,
//! reach the terminal escaped, one line each, marked as the node's; with `--json`, inside JSON
//! strings.

use crate::hostile::{self, LOG};
use std::process::Command;

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
