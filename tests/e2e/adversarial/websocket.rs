//! WebSocket resources are capped per run: a node that opens connection after connection and
//! never drops them gets `quota-exceeded` past the cap (the server sees no more than the cap, and
//! every descriptor is given back after the run), a dropped connection gives its slot back, and
//! a peer that floods pings and never reads the pongs cannot grow the host's memory past the
//! cap on unsent bytes. Descriptors and peak memory are measured in a child process of their
//! own, so that other tests' sockets and allocations do not count.

use super::hostile;
use super::measure::{child, status_bytes};
use crate::support::serve_loopback;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use warden_host::allowlist::AllowedHosts;
use warden_host::{Capabilities, Limits, NodeComponent, RunOutcome, Runtime, WasmSecurityConfig};

const MIB: usize = 1024 * 1024;

const IMPORTS: &str = r#"
  (import "warden:node/log@0.1.0" "log" (func $log (param i32 i32 i32)))
  (import "warden:node/websocket@0.1.0" "connect" (func $connect (param i32 i32 i32 i32 i32)))
  (import "warden:node/websocket@0.1.0" "[method]connection.receive" (func $receive (param i32 i32 i32 i32)))
  (import "warden:node/websocket@0.1.0" "[resource-drop]connection" (func $drop (param i32)))"#;

// Memory of the nodes: the URL at 1024; the return area of every call at 2048 (a result: its
// case in byte 0, then at 4 the connection handle, or the host error's case in byte 4 and its
// message at 8 and 12); counters at 3000, 3004 and 3008; a flag at 3012; the report's text at
// 3100; connection handles at 4096.
const URL: u32 = 1024;
const RET: u32 = 2048;
const COUNTERS: [u32; 3] = [3000, 3004, 3008];
const FLAG: u32 = 3012;
const REPORT: u32 = 3100;
const HANDLES: u32 = 4096;
/// The host error's case for `quota-exceeded` (denied, invalid, too-large, quota-exceeded,
/// unavailable).
const QUOTA_EXCEEDED: u32 = 3;

/// A WebSocket server that counts the connections it accepts and holds each open until the
/// client goes away.
fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let address = serve_loopback(move |stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(_)) = socket.next().await {}
        }
    });
    (address, count)
}

fn url(address: SocketAddr) -> String {
    format!("ws://{address}/")
}

/// The data segments: the URL, and the report's text with `0000` where each counter goes.
fn data(url: &str, report: &str) -> String {
    format!(
        r#"(data (i32.const {URL}) "{url}")
  (data (i32.const {REPORT}) "{report}")"#
    )
}

/// Adds one to the counter at `address`.
fn increment(address: u32) -> String {
    format!(
        "(i32.store (i32.const {address}) (i32.add (i32.load (i32.const {address})) (i32.const 1)))"
    )
}

/// Writes the counter at `counter` as four decimal digits at `text`.
fn digits(counter: u32, text: u32) -> String {
    [1000, 100, 10, 1]
        .iter()
        .enumerate()
        .map(|(at, unit)| {
            format!(
                "(i32.store8 (i32.const {}) (i32.add (i32.const 48) (i32.rem_u (i32.div_u \
                 (i32.load (i32.const {counter})) (i32.const {unit})) (i32.const 10))))",
                text + at as u32
            )
        })
        .collect()
}

/// In a body given to [`node`], stands for [`count_result`].
const COUNT_RESULT: &str = "COUNT_RESULT";

/// Counts the result of the call just made: ok into the first counter, `quota-exceeded` into
/// the second, any other error into the third; the first error's message is logged.
fn count_result() -> String {
    let [ok, quota, other] = COUNTERS;
    format!(
        "(if (i32.eqz (i32.load8_u (i32.const {RET})))
          (then {})
          (else
            (if (i32.eq (i32.load8_u (i32.const {})) (i32.const {QUOTA_EXCEEDED}))
              (then {}) (else {}))
            (if (i32.eqz (i32.load (i32.const {FLAG})))
              (then (i32.store (i32.const {FLAG}) (i32.const 1))
                    (call $log (i32.const 4) (i32.load (i32.const {})) (i32.load (i32.const {})))))))",
        increment(ok),
        RET + 4,
        increment(quota),
        increment(other),
        RET + 8,
        RET + 12,
    )
}

/// Logs `ok=NNNN quota=NNNN other=NNNN` at info level.
fn report() -> (&'static str, String) {
    let text = "ok=0000 quota=0000 other=0000";
    let [ok, quota, other] = COUNTERS;
    let body = format!(
        "{}{}{}(call $log (i32.const 2) (i32.const {REPORT}) (i32.const {}))",
        digits(ok, REPORT + 3),
        digits(quota, REPORT + 14),
        digits(other, REPORT + 25),
        text.len()
    );
    (text, body)
}

/// A loop that calls `connect` `times` times; `then` runs after each call, with the call's
/// number in `$i`.
fn connect_loop(url: &str, times: u32, then: &str) -> String {
    format!(
        "(local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
      (call $connect (i32.const {URL}) (i32.const {}) (i32.const 1200) (i32.const 0) (i32.const {RET}))
      {then}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))",
        url.len()
    )
}

fn node(url: &str, report_text: &str, body: &str) -> NodeComponent {
    let body = body.replace(COUNT_RESULT, &count_result());
    NodeComponent::from_bytes(hostile::component(IMPORTS, &data(url, report_text), &body)).unwrap()
}

fn config(address: SocketAddr) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::WEBSOCKET,
        allowed_hosts: AllowedHosts::parse(&[format!("ws://{address}")]).unwrap(),
        ..WasmSecurityConfig::default()
    }
}

fn messages(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .log
        .iter()
        .map(|record| record.message.clone())
        .collect()
}

/// The descriptors this process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
#[ignore = "run in a child process by a_node_cannot_hold_more_connections_than_the_cap"]
fn connections_child() {
    let (address, accepted) = counting_server();
    let url = url(address);
    let (text, report) = report();
    // 1000 connections, none dropped; every result counted.
    let body = format!("{}{report}", connect_loop(&url, 1000, COUNT_RESULT));
    let node = node(&url, text, &body);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let warden = Runtime::new().unwrap();
    let prepared = tokio
        .block_on(warden.prepare(&node, &config(address)))
        .unwrap();
    let before = open_descriptors();
    let outcome = tokio.block_on(prepared.run(hostile::request())).unwrap();
    let during = accepted.load(Ordering::SeqCst);
    // The server closes its side once it sees the host's go: wait for it (generously).
    let waited = Instant::now();
    let mut after = open_descriptors();
    while after > before + 2 && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
        after = open_descriptors();
    }
    println!(
        "MEASURED accepted={during}\tbefore={before}\tafter={after}\tlog={}",
        messages(&outcome).join(" | ")
    );
}

/// A node opens 1000 connections to a loopback server and drops none: the first `connections`
/// (16 in the default preset) open, every other one is refused with `quota-exceeded` before
/// any connection is made, the run ends normally, and the descriptors are all given back.
#[test]
fn a_node_cannot_hold_more_connections_than_the_cap() {
    let cap = Limits::default().host.connections;
    assert_eq!(cap, 16);
    let field = child("adversarial::websocket::connections_child");
    let accepted: usize = field("accepted").parse().unwrap();
    let before: usize = field("before").parse().unwrap();
    let after: usize = field("after").parse().unwrap();
    let log = field("log");
    assert_eq!(accepted, cap, "the server accepted {accepted}: {log}");
    assert!(
        log.contains(&format!("ok={cap:04} quota={:04} other=0000", 1000 - cap)),
        "{log}"
    );
    assert!(log.contains("WebSocket connections open"), "{log}");
    assert!(
        after <= before + 2,
        "{before} descriptors open before the run, {after} after"
    );
}

/// Slots are given back: 16 connections opened then dropped, 16 more open, and a 17th past
/// those is refused again.
#[test]
fn dropped_connections_give_their_slots_back() {
    let cap = Limits::default().host.connections as u32;
    let (address, accepted) = counting_server();
    let url = url(address);
    let (text, report) = report();
    let keep = format!(
        "{COUNT_RESULT}
      (i32.store (i32.add (i32.const {HANDLES}) (i32.shl (local.get $i) (i32.const 2)))
                 (i32.load (i32.const {})))",
        RET + 4
    );
    let body = format!(
        "{}
    (local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {cap})))
      (call $drop (i32.load (i32.add (i32.const {HANDLES}) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    {}
    {}
    {report}",
        connect_loop(&url, cap, &keep),
        connect_loop(&url, cap, COUNT_RESULT),
        connect_loop(&url, 1, COUNT_RESULT),
    );
    let node = node(&url, text, &body);
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let warden = Runtime::new().unwrap();
            let prepared = warden.prepare(&node, &config(address)).await.unwrap();
            prepared.run(hostile::request()).await
        })
        .unwrap();
    let log = messages(&outcome);
    println!("{log:?}");
    assert!(
        log.iter()
            .any(|line| line == &format!("ok={:04} quota=0001 other=0000", 2 * cap)),
        "{log:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2 * cap as usize, "{log:?}");
}

/// What the flooding server did: pings sent, and for how long (ms) it went on sending.
#[derive(Clone, Default)]
struct Flood {
    pings: Arc<AtomicU64>,
    millis: Arc<AtomicU64>,
}

/// A WebSocket server that, once the handshake is done, sends pings as fast as it can and
/// never reads: the pongs the client owes pile up on the client's side.
fn flooding_server() -> (SocketAddr, Flood) {
    let flood = Flood::default();
    let counted = flood.clone();
    let address = serve_loopback(move |stream| {
        let flood = counted.clone();
        async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let payload = Bytes::from(vec![0x70u8; 125]);
            let start = Instant::now();
            'flood: loop {
                for _ in 0..1000 {
                    if socket.feed(Message::Ping(payload.clone())).await.is_err() {
                        break 'flood;
                    }
                }
                if socket.flush().await.is_err() {
                    break;
                }
                flood.pings.fetch_add(1000, Ordering::Relaxed);
                let millis = start.elapsed().as_millis() as u64;
                flood.millis.store(millis, Ordering::Relaxed);
            }
        }
    });
    (address, flood)
}

/// How long each `receive` waits for a message, in ms.
const RECEIVE_TIMEOUT_MS: u32 = 3000;

#[test]
#[ignore = "run in a child process by a_peer_flooding_pings_cannot_grow_the_host"]
fn flood_child() {
    let (address, flood) = flooding_server();
    let url = url(address);
    let [calls, _, _] = COUNTERS;
    let text = "calls=0000";
    // One connection, then `receive` until an error or 2000 calls; the error is logged.
    let body = format!(
        "(call $connect (i32.const {URL}) (i32.const {len}) (i32.const 1200) (i32.const 0) (i32.const {RET}))
    (if (i32.load8_u (i32.const {RET}))
      (then (call $log (i32.const 4) (i32.load (i32.const {msg})) (i32.load (i32.const {msg_len})))
            (return (i32.const 256))))
    (local.set $j (i32.load (i32.const {handle})))
    (local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const 2000)))
      (call $receive (local.get $j) (i32.const 1) (i32.const {RECEIVE_TIMEOUT_MS}) (i32.const {RET}))
      {count}
      (if (i32.load8_u (i32.const {RET}))
        (then (call $log (i32.const 4) (i32.load (i32.const {msg})) (i32.load (i32.const {msg_len})))
              (br $done)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    {digits}
    (call $log (i32.const 2) (i32.const {REPORT}) (i32.const {text_len}))",
        len = url.len(),
        msg = RET + 8,
        msg_len = RET + 12,
        handle = RET + 4,
        count = increment(calls),
        digits = digits(calls, REPORT + 6),
        text_len = text.len(),
    );
    let node = node(&url, text, &body);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let warden = Runtime::new().unwrap();
    let prepared = tokio
        .block_on(warden.prepare(&node, &config(address)))
        .unwrap();
    // Compiled and linked: what the run adds from here is what the flood makes the host keep.
    let baseline = status_bytes("VmRSS:").unwrap();
    let outcome = tokio.block_on(prepared.run(hostile::request())).unwrap();
    let peak = status_bytes("VmHWM:").unwrap();
    println!(
        "MEASURED grown={}\tbaseline={baseline}\tpeak={peak}\tpings={}\tflood_ms={}\tlog={}",
        peak.saturating_sub(baseline),
        flood.pings.load(Ordering::Relaxed),
        flood.millis.load(Ordering::Relaxed),
        messages(&outcome).join(" | ")
    );
}

/// A peer floods pings and never reads: the pongs the host owes it are capped at
/// `MAX_UNSENT_BYTES` (about 16 MiB), so the host grows by far less than the seconds of flood
/// would otherwise make it keep.
#[test]
fn a_peer_flooding_pings_cannot_grow_the_host() {
    let field = child("adversarial::websocket::flood_child");
    let grown: usize = field("grown").parse().unwrap();
    let pings: u64 = field("pings").parse().unwrap();
    let millis: u64 = field("flood_ms").parse().unwrap();
    let log = field("log");
    // Each pong owed is a 131-byte frame (125 bytes, a header and a mask).
    let owed = pings as usize * 131;
    println!(
        "the flood lasted {millis} ms, {pings} pings ({} MiB of pongs owed, {} MiB/s); the host grew by {} MiB",
        owed / MIB,
        owed as u64 * 1000 / millis.max(1) / MIB as u64,
        grown / MIB
    );
    assert!(
        log.contains("no message arrived within"),
        "the node did not wait out a receive: {log}"
    );
    assert!(
        millis >= 2000,
        "the flood lasted only {millis} ms: the test proves nothing"
    );
    assert!(
        grown < 64 * MIB,
        "the host grew by {} MiB under a flood of {pings} pings: {log}",
        grown / MIB
    );
}
