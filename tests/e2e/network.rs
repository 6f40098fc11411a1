//! tcp, udp and dns through wasi:sockets, confined to allowed_hosts, against echo servers the
//! test starts on loopback.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use warden::build::Target;
use warden_host::allowlist::AllowedHosts;
use warden_host::{Capabilities, RunOutcome, Runtime, Value, WasmSecurityConfig};

/// A TCP echo server on loopback that answers a fixed number of connections, then stops.
fn tcp_echo_server(connections: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 1024];
            if let Ok(size) = stream.read(&mut buffer) {
                let _ = stream.write_all(&buffer[..size]);
            }
        }
    });
    address
}

/// A UDP echo server on loopback that answers a fixed number of datagrams, then stops.
fn udp_echo_server(datagrams: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        for _ in 0..datagrams {
            let Ok((size, from)) = socket.recv_from(&mut buffer) else {
                return;
            };
            let _ = socket.send_to(&buffer[..size], from);
        }
    });
    address
}

fn config(allowed: &[&str]) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::TCP | Capabilities::UDP | Capabilities::DNS,
        allow_wasi: true,
        allow_wasi_network: true,
        allowed_hosts: AllowedHosts::parse(allowed).unwrap(),
        ..WasmSecurityConfig::default()
    }
}

fn probe(runtime: &Runtime, config: &WasmSecurityConfig, op: &str, address: &str) -> RunOutcome {
    let node = test_node("net-probe", Target::Wasip2);
    let request = request(
        "net",
        &[
            ("op", Value::Text(op.into())),
            ("address", Value::Text(address.into())),
        ],
    );
    run(runtime, &node, config, request).unwrap()
}

fn text(outcome: &RunOutcome, name: &str) -> Option<String> {
    outcome
        .outputs
        .iter()
        .find(|field| field.name == name)
        .map(|field| match &field.value {
            Value::Text(text) => text.clone(),
            other => format!("{other:?}"),
        })
}

fn host_warnings(outcome: &RunOutcome) -> String {
    crate::support::log_text(outcome)
}

#[test]
fn tcp_reaches_only_allowed_addresses() {
    let runtime = Runtime::new().unwrap();
    let server = tcp_echo_server(1);
    let allowed = probe(
        &runtime,
        &config(&["127.0.0.1"]),
        "tcp-echo",
        &server.to_string(),
    );
    assert_eq!(
        text(&allowed, "reply").as_deref(),
        Some("ping"),
        "{:?}",
        allowed.outputs
    );

    for patterns in [
        &[][..],
        &["*"],
        &["localhost"],
        &["127.0.0.2"],
        &["tcp://127.0.0.1:1"],
        &["udp://127.0.0.1"],
    ] {
        let denied = probe(&runtime, &config(patterns), "tcp-echo", &server.to_string());
        assert!(
            text(&denied, "error").is_some(),
            "{patterns:?}: {:?}",
            denied.outputs
        );
        assert!(
            host_warnings(&denied).contains("tcp connection denied"),
            "{}",
            host_warnings(&denied)
        );
    }
    let scheme_and_port = format!("tcp://127.0.0.1:{}", server.port());
    let server = tcp_echo_server(1);
    let exact = probe(
        &runtime,
        &config(&[&format!("tcp://127.0.0.1:{}", server.port())]),
        "tcp-echo",
        &server.to_string(),
    );
    assert_eq!(
        text(&exact, "reply").as_deref(),
        Some("ping"),
        "{scheme_and_port}: {:?}",
        exact.outputs
    );
}

#[test]
fn udp_reaches_only_allowed_addresses() {
    let runtime = Runtime::new().unwrap();
    let server = udp_echo_server(1);
    let allowed = probe(
        &runtime,
        &config(&["127.0.0.0/8"]),
        "udp-echo",
        &server.to_string(),
    );
    assert_eq!(
        text(&allowed, "reply").as_deref(),
        Some("ping"),
        "{:?} {}",
        allowed.outputs,
        host_warnings(&allowed)
    );
    let denied = probe(
        &runtime,
        &config(&["10.0.0.0/8"]),
        "udp-echo",
        &server.to_string(),
    );
    assert!(text(&denied, "error").is_some(), "{:?}", denied.outputs);
    assert!(
        host_warnings(&denied).contains("udp connection denied"),
        "{}",
        host_warnings(&denied)
    );
}

#[test]
fn names_resolve_only_when_allowed_and_special_addresses_need_listing() {
    let runtime = Runtime::new().unwrap();
    let denied = probe(&runtime, &config(&["example.com"]), "resolve", "localhost");
    assert!(text(&denied, "error").is_some(), "{:?}", denied.outputs);
    assert!(
        host_warnings(&denied).contains("name lookup denied"),
        "{}",
        host_warnings(&denied)
    );
    // The name is allowed, but it resolves to loopback, which a name never allows.
    let filtered = probe(&runtime, &config(&["localhost"]), "resolve", "localhost");
    assert!(
        text(&filtered, "reply").is_none_or(|reply| reply.is_empty())
            || text(&filtered, "error").is_some(),
        "{:?}",
        filtered.outputs
    );
    assert!(
        host_warnings(&filtered).contains("loopback"),
        "{}",
        host_warnings(&filtered)
    );
    // Listing the address too lets it through; the resolved address may then be connected to.
    let listed = probe(
        &runtime,
        &config(&["localhost", "127.0.0.1", "::1"]),
        "resolve",
        "localhost",
    );
    assert!(
        text(&listed, "reply")
            .is_some_and(|reply| reply.contains("127.0.0.1") || reply.contains("::1")),
        "{:?}",
        listed.outputs
    );
    let server = tcp_echo_server(1);
    let by_name = probe(
        &runtime,
        &config(&["localhost", "127.0.0.1"]),
        "tcp-echo",
        &format!("localhost:{}", server.port()),
    );
    assert_eq!(
        text(&by_name, "reply").as_deref(),
        Some("ping"),
        "{:?} {}",
        by_name.outputs,
        host_warnings(&by_name)
    );
}

/// wasi:sockets is ambient: a node importing it links and runs whatever the grant, but every
/// operation is denied unless its capability is granted with `allow_wasi_network`, and then
/// only toward the allowlist.
#[test]
fn sockets_link_without_a_grant_and_do_nothing_without_it_and_the_network_switch() {
    let runtime = Runtime::new().unwrap();
    let server = tcp_echo_server(3);
    let address = format!("127.0.0.1:{}", server.port());
    let denied = |config: &WasmSecurityConfig, op: &str, target: &str| {
        let outcome = probe(&runtime, config, op, target);
        assert_eq!(text(&outcome, "reply"), None, "{op}: {:?}", outcome.outputs);
        let error = text(&outcome, "error").unwrap_or_default();
        assert!(!error.is_empty(), "{op}: {:?}", outcome.outputs);
    };
    let nothing = WasmSecurityConfig {
        capabilities: Capabilities::empty(),
        allow_wasi_network: true,
        ..config(&["127.0.0.1", "localhost"])
    };
    denied(&nothing, "tcp-echo", &address);
    denied(&nothing, "resolve", "localhost");
    let switch_off = WasmSecurityConfig {
        allow_wasi_network: false,
        ..config(&["127.0.0.1", "localhost"])
    };
    denied(&switch_off, "tcp-echo", &address);
    denied(&switch_off, "resolve", "localhost");
    // UDP and DNS granted, TCP not: the connect is refused, the lookup works.
    let udp_dns = WasmSecurityConfig {
        capabilities: Capabilities::UDP | Capabilities::DNS,
        ..config(&["127.0.0.1", "localhost"])
    };
    denied(&udp_dns, "tcp-echo", &address);
    let resolved = probe(&runtime, &udp_dns, "resolve", "localhost");
    assert!(text(&resolved, "reply").is_some(), "{:?}", resolved.outputs);
    // All of it: the echo answers.
    let granted = probe(
        &runtime,
        &config(&["127.0.0.1", "localhost"]),
        "tcp-echo",
        &address,
    );
    assert_eq!(
        text(&granted, "reply").as_deref(),
        Some("ping"),
        "{:?}",
        granted.outputs
    );
}

#[test]
fn malformed_allow_host_patterns_are_refused_by_the_cli() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            "nodes-do-not-matter.wasm",
            "--allow-host",
            "api.*.example.com",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
}

/// A name allowed for one port resolves; its address then takes connects on that port only.
/// Before, any address a lookup returned was open on every port and protocol for the run.
#[test]
fn a_resolved_address_keeps_the_scheme_and_port_of_its_pattern() {
    let runtime = Runtime::new().unwrap();
    let allowed = tcp_echo_server(1);
    let other = tcp_echo_server(1);
    let patterns = [
        format!("tcp://localhost:{}", allowed.port()),
        format!("tcp://127.0.0.1:{}", allowed.port()),
    ];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let by_name = probe(
        &runtime,
        &config(&patterns),
        "tcp-echo",
        &format!("localhost:{}", allowed.port()),
    );
    assert_eq!(
        text(&by_name, "reply").as_deref(),
        Some("ping"),
        "{:?} {}",
        by_name.outputs,
        host_warnings(&by_name)
    );
    // The same name, another port: the lookup succeeds, the connect is refused.
    let elsewhere = probe(
        &runtime,
        &config(&patterns),
        "tcp-echo",
        &format!("localhost:{}", other.port()),
    );
    assert!(
        text(&elsewhere, "reply").is_none() && text(&elsewhere, "error").is_some(),
        "{:?}",
        elsewhere.outputs
    );
    let warnings = host_warnings(&elsewhere);
    assert!(
        warnings.contains("tcp connection denied")
            && warnings.contains(&format!("tcp://localhost:{}", other.port()))
            && warnings.contains("resolved to"),
        "{warnings}"
    );

    // A name allowed for https only: its address takes no tcp connect, not even on that port;
    // the address is listed for another port only.
    let https_only = [
        format!("https://localhost:{}", other.port()),
        format!("127.0.0.1:{}", allowed.port()),
    ];
    let https_only: Vec<&str> = https_only.iter().map(String::as_str).collect();
    let outcome = probe(
        &runtime,
        &config(&https_only),
        "tcp-echo",
        &format!("localhost:{}", other.port()),
    );
    assert!(
        text(&outcome, "error").is_some(),
        "{:?} {}",
        outcome.outputs,
        host_warnings(&outcome)
    );
    assert!(
        host_warnings(&outcome).contains("tcp connection denied"),
        "{}",
        host_warnings(&outcome)
    );
}

#[test]
fn udp_to_a_resolved_address_keeps_the_scheme_and_port_of_its_pattern() {
    let runtime = Runtime::new().unwrap();
    let allowed = udp_echo_server(1);
    let other = udp_echo_server(1);
    let patterns = [
        format!("udp://localhost:{}", allowed.port()),
        format!("udp://127.0.0.1:{}", allowed.port()),
    ];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let by_name = probe(
        &runtime,
        &config(&patterns),
        "udp-echo",
        &format!("localhost:{}", allowed.port()),
    );
    assert_eq!(
        text(&by_name, "reply").as_deref(),
        Some("ping"),
        "{:?} {}",
        by_name.outputs,
        host_warnings(&by_name)
    );
    let elsewhere = probe(
        &runtime,
        &config(&patterns),
        "udp-echo",
        &format!("localhost:{}", other.port()),
    );
    assert!(
        text(&elsewhere, "error").is_some(),
        "{:?}",
        elsewhere.outputs
    );
    assert!(
        host_warnings(&elsewhere).contains("udp connection denied"),
        "{}",
        host_warnings(&elsewhere)
    );
    // A literal address checks the port and the scheme too.
    for pattern in [
        format!("udp://127.0.0.1:{}", allowed.port()),
        format!("tcp://127.0.0.1:{}", other.port()),
    ] {
        let denied = probe(
            &runtime,
            &config(&[&pattern]),
            "udp-echo",
            &other.to_string(),
        );
        assert!(
            text(&denied, "error").is_some(),
            "{pattern}: {:?}",
            denied.outputs
        );
    }
}

/// IPv6 spellings that carry loopback are special: `*` does not reach them. (wasmtime-wasi
/// itself refuses IPv4-compatible and IPv4-mapped remote addresses; Teredo, 6to4 and NAT64 reach
/// the host's check.)
#[test]
fn ipv6_spellings_of_loopback_need_listing() {
    let runtime = Runtime::new().unwrap();
    for address in [
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]:9",
        "[2002:7f00:1::1]:9",
        "[64:ff9b::7f00:1]:9",
    ] {
        let denied = probe(&runtime, &config(&["*"]), "tcp-echo", address);
        assert!(
            text(&denied, "error").is_some(),
            "{address}: {:?}",
            denied.outputs
        );
        assert!(
            host_warnings(&denied).contains("tcp connection denied"),
            "{address}: {}",
            host_warnings(&denied)
        );
    }
}

/// Every socket a node holds is an entry of its run's resource table (a connected TCP stream
/// takes three: the socket and its two streams), and the table has a cap: a node that connects
/// again and again, holding every connection, is stopped far before it can use up the host's
/// descriptors, and they all return when the run ends.
#[test]
fn a_node_cannot_hold_sockets_without_bound() {
    in_child("network::sockets_child");
}

/// Counts this process's descriptors: run in a child process of its own by
/// `a_node_cannot_hold_sockets_without_bound`, so that the other tests' sockets do not count.
#[test]
#[ignore = "run in a child process by a_node_cannot_hold_sockets_without_bound"]
fn sockets_child() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        // Each connection is accepted and closed at once: only the node's side stays open.
        for stream in listener.incoming() {
            drop(stream);
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let descriptors = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let runtime = Runtime::new().unwrap();
    let pattern = format!("tcp://{address}");
    let config = config(&[pattern.as_str()]);
    // Warm the runtime up (engine, pool, compiled node) before counting descriptors.
    let _ = probe(&runtime, &config, "tcp-echo", "127.0.0.1:9");
    let before = descriptors();
    let node = test_node("net-probe", Target::Wasip2);
    let request = request(
        "net",
        &[
            ("op", Value::Text("tcp-hold".into())),
            ("address", Value::Text(address.to_string())),
        ],
    );
    let result = run(&runtime, &node, &config, request);
    // Closing is not instant everywhere (the runtime's own descriptors come and go too): give
    // it a moment to settle before counting.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut after = descriptors();
    while after > before + 2 && std::time::Instant::now() < settled {
        std::thread::sleep(std::time::Duration::from_millis(50));
        after = descriptors();
    }
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "held: {accepted} connections accepted, descriptors {before} before, {after} after: {result:?}"
    );
    let cap = warden_host::Limits::default().host.resources;
    assert!(
        accepted <= cap,
        "{accepted} connections for a table of {cap}"
    );
    match &result {
        Ok(outcome) => {
            let error = text(outcome, "error").unwrap_or_default();
            assert!(
                error.contains("held"),
                "the node held every connection: {outcome:?}"
            );
        }
        Err(error) => assert!(
            matches!(
                error,
                warden_host::Error::Trapped(_) | warden_host::Error::Limit { .. }
            ),
            "{error}"
        ),
    }
    // The node held up to 256 sockets: a few descriptors of the runtime's own may remain (one
    // CI run saw 3), none of the node's.
    assert!(
        after <= before + 8,
        "descriptors {before} before the run, {after} after"
    );
}
