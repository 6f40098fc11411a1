//! The websocket capability against an echo server on loopback: allowed, denied, size-capped.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use warden::build::Target;
use warden_host::allowlist::AllowedHosts;
use warden_host::{
    Capabilities, Limits, RunOutcome, Runtime, RuntimeConfig, Storage, Value, WasmSecurityConfig,
};

/// The test CA (DER) and a TLS acceptor whose certificate it signed, for localhost and 127.0.0.1.
fn tls() -> &'static (Vec<u8>, tokio_rustls::TlsAcceptor) {
    static TLS: OnceLock<(Vec<u8>, tokio_rustls::TlsAcceptor)> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        (
            ca.der().to_vec(),
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        )
    })
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() || message.is_binary() {
            let reply = format!("echo: {}", message.into_text().unwrap_or_default());
            if socket.send(reply.into()).await.is_err() {
                break;
            }
        }
    }
}

/// An echo server speaking wss:// with the test CA's certificate.
fn tls_echo_server() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        serve_loopback(|stream| async move {
            if let Ok(stream) = tls().1.accept(stream).await {
                echo(stream).await;
            }
        })
    })
}

fn echo_server() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| serve_loopback(echo))
}

fn exchange(allowed: &[&str], url: &str, message: &str) -> RunOutcome {
    exchange_with(Limits::default(), allowed, url, message)
}

fn exchange_with(limits: Limits, allowed: &[&str], url: &str, message: &str) -> RunOutcome {
    let node = test_node("ws-probe", Target::Unknown);
    let config = WasmSecurityConfig {
        capabilities: Capabilities::WEBSOCKET,
        limits,
        allowed_hosts: AllowedHosts::parse(allowed).unwrap(),
        ..WasmSecurityConfig::default()
    };
    let inputs = [
        ("url", Value::Text(url.into())),
        ("message", Value::Text(message.into())),
    ];
    let settings = RuntimeConfig {
        root_certificates: vec![tls().0.clone()],
        ..RuntimeConfig::new(Storage::in_memory().unwrap())
    };
    run(
        &Runtime::from_config(settings),
        &node,
        &config,
        request("ws", &inputs),
    )
    .unwrap()
}

fn text(outcome: &RunOutcome, name: &str) -> Option<String> {
    outcome
        .outputs
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| match &f.value {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        })
}

#[test]
fn messages_go_to_allowed_hosts_only() {
    let url = format!("ws://127.0.0.1:{}/", echo_server().port());
    let outcome = exchange(&["127.0.0.1"], &url, "hello");
    assert_eq!(
        text(&outcome, "reply").as_deref(),
        Some("echo: hello"),
        "{:?}",
        outcome.outputs
    );
    for allowed in [&[][..], &["*"], &["localhost"], &["wss://127.0.0.1"]] {
        let outcome = exchange(allowed, &url, "hello");
        let error = text(&outcome, "error").unwrap_or_default();
        assert!(
            error.starts_with("denied:") && error.contains("allowed_hosts"),
            "{allowed:?}: {error}"
        );
    }
    let error = text(
        &exchange(
            &["127.0.0.1"],
            &format!("http://127.0.0.1:{}/", echo_server().port()),
            "x",
        ),
        "error",
    )
    .unwrap_or_default();
    assert!(error.contains("ws:// or wss://"), "{error}");
}

#[test]
fn oversized_messages_are_refused() {
    let url = format!("ws://127.0.0.1:{}/", echo_server().port());
    let big = "x".repeat(warden_host::websocket::MAX_MESSAGE_BYTES + 1);
    // A larger preset lets the input in; the WebSocket cap still holds.
    let outcome = exchange_with(Limits::permissive(), &["127.0.0.1"], &url, &big);
    let error = text(&outcome, "error").unwrap_or_default();
    assert!(error.starts_with("too large:"), "{error}");
}

#[test]
fn wss_uses_tls_with_the_operators_roots() {
    let port = tls_echo_server().port();
    let outcome = exchange(
        &["wss://127.0.0.1"],
        &format!("wss://127.0.0.1:{port}/"),
        "secure",
    );
    assert_eq!(
        text(&outcome, "reply").as_deref(),
        Some("echo: secure"),
        "{:?}",
        outcome.outputs
    );
    // ws:// to the TLS port fails the handshake; wss:// to a host not listed is denied.
    let outcome = exchange(&["127.0.0.1"], &format!("wss://localhost:{port}/"), "x");
    assert!(
        text(&outcome, "error").is_some_and(|e| e.starts_with("denied:")),
        "{:?}",
        outcome.outputs
    );
}

#[test]
fn url_tricks_do_not_reach_other_hosts() {
    let port = echo_server().port();
    let allowed = ["127.0.0.1"];
    for url in [
        format!("ws://127.0.0.1:{port}@forbidden.example/"),
        format!("ws://forbidden.example/127.0.0.1:{port}"),
        "ws://forbidden.example/#127.0.0.1".to_string(),
        format!("ws://127.0.0.1.forbidden.example:{port}/"),
        "ws://169.254.169.254/".to_string(),
    ] {
        let outcome = exchange(&allowed, &url, "x");
        assert!(
            text(&outcome, "error").is_some_and(|e| e.starts_with("denied:")),
            "{url}: {:?}",
            outcome.outputs
        );
    }
    // The numeric spelling of the allowed address is the same address.
    let outcome = exchange(&allowed, &format!("ws://2130706433:{port}/"), "numeric");
    assert_eq!(
        text(&outcome, "reply").as_deref(),
        Some("echo: numeric"),
        "{:?}",
        outcome.outputs
    );
}

/// IPv6 spellings that carry loopback or the metadata address are special ranges: `*` does not
/// reach them (before, `::127.0.0.1` and Teredo passed as public addresses).
#[test]
fn ipv6_spellings_of_special_addresses_are_denied() {
    let port = echo_server().port();
    for url in [
        format!("ws://[::127.0.0.1]:{port}/"),
        format!("ws://[::ffff:0:127.0.0.1]:{port}/"),
        format!("ws://[2001::5601:5601]:{port}/"),
        format!("ws://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/"),
        format!("ws://[64:ff9b::a9fe:a9fe]:{port}/"),
    ] {
        let outcome = exchange(&["*"], &url, "x");
        let error = text(&outcome, "error").unwrap_or_default();
        assert!(
            error.starts_with("denied:") && error.contains("list the address"),
            "{url}: {error}"
        );
    }
}

/// A name allowed on one port reaches its address on that port only, even where the address
/// is listed for another port.
#[test]
fn a_resolved_address_keeps_the_port_of_its_pattern() {
    let port = echo_server().port();
    let url = format!("ws://localhost:{port}/");
    let name = format!("ws://localhost:{port}");
    let listed = format!("127.0.0.1:{port}");
    let outcome = exchange(&[&name, &listed], &url, "by name");
    assert_eq!(
        text(&outcome, "reply").as_deref(),
        Some("echo: by name"),
        "{:?}",
        outcome.outputs
    );
    let elsewhere = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    let outcome = exchange(&[&name, &elsewhere], &url, "x");
    let error = text(&outcome, "error").unwrap_or_default();
    assert!(error.starts_with("denied:"), "{error}");
}
