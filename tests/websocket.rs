//! The websocket capability against an echo server on loopback: allowed, denied, size-capped.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::OnceLock;
use support::*;
use warden::build::Target;
use warden_host::allowlist::AllowedHosts;
use warden_host::{Capabilities, Limits, RunOutcome, Runtime, Value, WasmSecurityConfig};

fn echo_server() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                            return;
                        };
                        while let Some(Ok(message)) = socket.next().await {
                            if message.is_text() || message.is_binary() {
                                let reply =
                                    format!("echo: {}", message.into_text().unwrap_or_default());
                                if socket.send(reply.into()).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                }
            });
        });
        receiver.recv().unwrap()
    })
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
    run(
        &Runtime::new().unwrap(),
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
