//! A node's text is never confused with the host's: not through its log, and not through the
//! error it returns, which the CLI prints after `warden: error:`.

use crate::hostile::{self, LOG};
use warden_host::{Error, NodeComponent, Runtime, WasmSecurityConfig};

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
