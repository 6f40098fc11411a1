//! Allowlists hold across every transport: a hand-built component sets `Host` on a WebSocket
//! handshake and on an HTTP request to an allowed loopback server, hoping to reach another
//! virtual host behind it. The host refuses both before connecting: the server counts no
//! connection. (The lookup-then-other-port attack on wasi:sockets is in tests/e2e/network.rs, with
//! the SDK-built net-probe node: the harness's world has no wasi:sockets.)

use super::hostile::{self, LOG};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use warden_host::allowlist::AllowedHosts;
use warden_host::{Capabilities, NodeComponent, Runtime, WasmSecurityConfig};

const CONNECT: &str = r#"(import "warden:node/websocket@0.1.0" "connect" (func $connect (param i32 i32 i32 i32 i32)))"#;
const FETCH: &str = r#"(import "warden:node/http-get@0.1.0" "fetch" (func $fetch (param i32 i32 i32 i32 i32 i32 i32 i32)))"#;

/// A loopback server that counts the connections it accepts and closes each at once.
fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

/// Data for the calls: the URL at 1024, one header record at 1200 naming `header` (at 1300)
/// with the value `internal.example` (at 1400). The call's return area is at 2048; on an error
/// the node logs the host error's message (a string at 2056).
fn data(url: &str, header: &str) -> String {
    let le = |value: usize| {
        (value as u32)
            .to_le_bytes()
            .iter()
            .map(|byte| format!("\\{byte:02x}"))
            .collect::<String>()
    };
    format!(
        r#"(data (i32.const 1024) "{url}")
           (data (i32.const 1200) "{}{}{}{}")
           (data (i32.const 1300) "{header}")
           (data (i32.const 1400) "internal.example")"#,
        le(1300),
        le(header.len()),
        le(1400),
        le("internal.example".len()),
    )
}

const LOG_ERROR: &str = "
    (if (i32.load8_u (i32.const 2048))
      (then (call $log (i32.const 3) (i32.load (i32.const 2056)) (i32.load (i32.const 2060)))))";

fn run(component: Vec<u8>, capability: Capabilities, port: u16) -> Vec<String> {
    let node = NodeComponent::from_bytes(component).unwrap();
    let config = WasmSecurityConfig {
        capabilities: capability,
        allowed_hosts: AllowedHosts::parse(&[format!("127.0.0.1:{port}")]).unwrap(),
        ..WasmSecurityConfig::default()
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let warden = Runtime::new().unwrap();
            let prepared = warden.prepare(&node, &config).await.unwrap();
            prepared.run(hostile::request()).await
        })
        .unwrap();
    outcome
        .log
        .into_iter()
        .map(|record| record.message)
        .collect()
}

fn websocket(port: u16, header: &str) -> Vec<u8> {
    let url = format!("ws://127.0.0.1:{port}/");
    let body = format!(
        "(call $connect (i32.const 1024) (i32.const {}) (i32.const 1200) (i32.const 1) (i32.const 2048)) {LOG_ERROR}",
        url.len()
    );
    hostile::component(&format!("{LOG}{CONNECT}"), &data(&url, header), &body)
}

fn http(port: u16, header: &str) -> Vec<u8> {
    let url = format!("http://127.0.0.1:{port}/");
    // http-request flattened: method (get), url, headers, body (empty), then the return area.
    let body = format!(
        "(call $fetch (i32.const 0) (i32.const 1024) (i32.const {}) (i32.const 1200) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 2048)) {LOG_ERROR}",
        url.len()
    );
    hostile::component(&format!("{LOG}{FETCH}"), &data(&url, header), &body)
}

#[test]
fn host_headers_are_refused_before_any_connection() {
    for (transport, capability) in [
        ("websocket", Capabilities::WEBSOCKET),
        ("http", Capabilities::HTTP_GET),
    ] {
        let build = |port, header| match transport {
            "websocket" => websocket(port, header),
            _ => http(port, header),
        };
        // The control: an ordinary header reaches the server (which hangs up).
        let (port, count) = counting_server();
        let log = run(build(port, "x-probe"), capability, port);
        assert_eq!(count.load(Ordering::SeqCst), 1, "{transport}: {log:?}");
        for header in [
            "Host",
            "host",
            "HOST",
            "Connection",
            "Upgrade",
            "Transfer-Encoding",
        ] {
            let (port, count) = counting_server();
            let log = run(build(port, header), capability, port);
            let connections = count.load(Ordering::SeqCst);
            println!("{transport} with `{header}`: {connections} connections, log {log:?}");
            assert_eq!(connections, 0, "{transport} `{header}`: {log:?}");
            assert!(
                log.iter()
                    .any(|line| line.contains(&format!("cannot set the `{header}` header"))),
                "{transport} `{header}`: {log:?}"
            );
        }
    }
}
