//! wasi:http is ambient: componentize-js builds import it by default, so it links with any
//! grant, and every request is refused unless `http-get` or `http-write` is granted; then it
//! goes through warden's own client, allowlist and limits, and only for the methods the
//! capability covers.
//!
//! The probe is hand-written WAT against the real wasi:http WIT (tests/fixtures/wasi-http), at
//! componentize-js' version 0.2.10, doing what StarlingMonkey's `fetch` does: build a request,
//! hand it to `outgoing-handler.handle`, wait on the future and read the response.

use crate::adversarial::hostile;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use warden_host::allowlist::AllowedHosts;
use warden_host::{Capabilities, RunOutcome, Runtime, WasmSecurityConfig};

const VERSION: &str = "0.2.10";

/// What the probe must see, or it traps (`unreachable`).
enum Expect {
    /// `HTTP-request-denied` from the response future.
    Denied,
    /// A response with status 200.
    Ok,
}

/// The project's WIT and the wasi:http fixture, every WASI package at [`VERSION`], with a
/// world importing `wasi:http/outgoing-handler`.
fn wit(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    hostile::project_wit_at(dir, VERSION);
    hostile::copy_wit(
        &root.join("tests/fixtures/wasi-http"),
        &dir.join("deps/http"),
        VERSION,
    );
    let worlds = dir.join("worlds.wit");
    let text = std::fs::read_to_string(&worlds).unwrap()
        + &format!(
            "\nworld http-probe {{\n    include base;\n    import wasi:http/outgoing-handler@{VERSION};\n}}\n"
        );
    std::fs::write(worlds, text).unwrap();
}

/// A node whose `run` sends `method` to `http://{authority}/` over wasi:http and checks the
/// outcome against `expect`.
fn probe(method: u32, authority: &str, expect: Expect) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    wit(dir.path());
    let types = format!("wasi:http/types@{VERSION}");
    let imports = format!(
        r#"(import "{types}" "[constructor]fields" (func $fields (result i32)))
  (import "{types}" "[constructor]outgoing-request" (func $request (param i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-method" (func $set_method (param i32 i32 i32 i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-scheme" (func $set_scheme (param i32 i32 i32 i32 i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-authority" (func $set_authority (param i32 i32 i32 i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-path-with-query" (func $set_path (param i32 i32 i32 i32) (result i32)))
  (import "{types}" "[method]future-incoming-response.subscribe" (func $subscribe (param i32) (result i32)))
  (import "{types}" "[method]future-incoming-response.get" (func $get (param i32 i32)))
  (import "{types}" "[method]incoming-response.status" (func $status (param i32) (result i32)))
  (import "wasi:io/poll@{VERSION}" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:http/outgoing-handler@{VERSION}" "handle" (func $handle (param i32 i32 i32 i32)))"#
    );
    let data = format!(r#"(data (i32.const 2900) "/") (data (i32.const 3000) "{authority}")"#,);
    let check = match expect {
        // option some @4096, outer ok @4104, inner err @4112, error-code case 15
        // (HTTP-request-denied) @4120.
        Expect::Denied => {
            r#"(if (i32.ne (i32.load8_u (i32.const 4112)) (i32.const 1)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 4120)) (i32.const 15)) (then unreachable))"#
        }
        Expect::Ok => {
            r#"(if (i32.ne (i32.load8_u (i32.const 4112)) (i32.const 0)) (then unreachable))
    (if (i32.ne (call $status (i32.load (i32.const 4120))) (i32.const 200)) (then unreachable))"#
        }
    };
    let body = format!(
        r#"(local.set $i (call $request (call $fields)))
    ;; method: a case without a payload
    (if (call $set_method (local.get $i) (i32.const {method}) (i32.const 0) (i32.const 0)) (then unreachable))
    ;; scheme: some(HTTP)
    (if (call $set_scheme (local.get $i) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)) (then unreachable))
    (if (call $set_authority (local.get $i) (i32.const 1) (i32.const 3000) (i32.const {len})) (then unreachable))
    (if (call $set_path (local.get $i) (i32.const 1) (i32.const 2900) (i32.const 1)) (then unreachable))
    ;; handle: ok(future) @4000, the future @4008
    (call $handle (local.get $i) (i32.const 0) (i32.const 0) (i32.const 4000))
    (if (i32.load8_u (i32.const 4000)) (then unreachable))
    (local.set $j (i32.load (i32.const 4008)))
    (call $block (call $subscribe (local.get $j)))
    (call $get (local.get $j) (i32.const 4096))
    (if (i32.ne (i32.load8_u (i32.const 4096)) (i32.const 1)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 4104)) (i32.const 0)) (then unreachable))
    {check}"#,
        len = authority.len(),
    );
    hostile::component_in(dir.path(), "http-probe", 2, &imports, &data, "", &body)
}

/// `method` values of wasi:http's `method` variant.
const GET: u32 = 0;
const POST: u32 = 2;

/// A plain HTTP/1.1 server answering every request `200 ok`; counts the requests.
fn server() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (address, served)
}

fn config(capabilities: Capabilities, allowed: &[&str]) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities,
        allowed_hosts: AllowedHosts::parse(allowed).unwrap(),
        ..WasmSecurityConfig::default()
    }
}

fn run(component: Vec<u8>, config: &WasmSecurityConfig) -> RunOutcome {
    let component = warden_host::NodeComponent::from_bytes(component).unwrap();
    let runtime = Runtime::new().unwrap();
    crate::support::run(&runtime, &component, config, hostile::request())
        .unwrap_or_else(|error| panic!("the probe did not see what it expected: {error}"))
}

fn log(outcome: &RunOutcome) -> String {
    crate::support::log_text(outcome)
}

#[test]
fn without_an_http_grant_wasi_http_links_and_every_request_is_denied() {
    let (address, served) = server();
    let outcome = run(
        probe(GET, &address, Expect::Denied),
        &config(Capabilities::empty(), &[&address]),
    );
    let log = log(&outcome);
    assert!(
        log.contains("wasi:http request to") && log.contains("grant http-get"),
        "{log}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[test]
fn with_http_get_a_get_to_an_allowed_host_is_answered() {
    let (address, served) = server();
    run(
        probe(GET, &address, Expect::Ok),
        &config(Capabilities::HTTP_GET, &[&address]),
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[test]
fn the_allowlist_and_the_capabilitys_methods_still_hold() {
    let (address, served) = server();
    // Granted, but the host is not on the allowlist.
    let outcome = run(
        probe(GET, &address, Expect::Denied),
        &config(Capabilities::HTTP_GET, &["example.com"]),
    );
    assert!(log(&outcome).contains("allowed_hosts"), "{}", log(&outcome));
    // http-write does not cover GET, nor http-get POST.
    run(
        probe(GET, &address, Expect::Denied),
        &config(Capabilities::HTTP_WRITE, &[&address]),
    );
    let outcome = run(
        probe(POST, &address, Expect::Denied),
        &config(Capabilities::HTTP_GET, &[&address]),
    );
    assert!(
        log(&outcome).contains("needs the http-write"),
        "{}",
        log(&outcome)
    );
    assert_eq!(served.load(Ordering::SeqCst), 0, "nothing was sent");
    // And http-write does cover POST.
    run(
        probe(POST, &address, Expect::Ok),
        &config(Capabilities::HTTP_WRITE, &[&address]),
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// wasmtime-wasi-http keeps a request's method and authority with no limit of its own: warden
/// caps them, so a node with no grant cannot park megabytes in each request it never sends.
#[test]
fn over_long_methods_and_authorities_are_refused_without_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    wit(dir.path());
    let types = format!("wasi:http/types@{VERSION}");
    let imports = format!(
        r#"(import "{types}" "[constructor]fields" (func $fields (result i32)))
  (import "{types}" "[constructor]outgoing-request" (func $request (param i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-method" (func $set_method (param i32 i32 i32 i32) (result i32)))
  (import "{types}" "[method]outgoing-request.set-authority" (func $set_authority (param i32 i32 i32 i32) (result i32)))"#
    );
    // 2000 bytes of `a` at 4096: a valid token and a valid host name, just too long.
    let data = format!(r#"(data (i32.const 4096) "{}")"#, "a".repeat(2000));
    let body = r#"(local.set $i (call $request (call $fields)))
    ;; other(64 bytes) is taken, other(65) refused
    (if (call $set_method (local.get $i) (i32.const 9) (i32.const 4096) (i32.const 64)) (then unreachable))
    (if (i32.eqz (call $set_method (local.get $i) (i32.const 9) (i32.const 4096) (i32.const 65))) (then unreachable))
    ;; an authority of 1024 bytes is taken, 1025 refused
    (if (call $set_authority (local.get $i) (i32.const 1) (i32.const 4096) (i32.const 1024)) (then unreachable))
    (if (i32.eqz (call $set_authority (local.get $i) (i32.const 1) (i32.const 4096) (i32.const 1025))) (then unreachable))"#;
    let component = hostile::component_in(dir.path(), "http-probe", 2, &imports, &data, "", body);
    run(component, &config(Capabilities::empty(), &[]));
}
