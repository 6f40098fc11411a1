//! Spans reach an OTLP receiver on loopback: the daemon's run span, with its run id, exported
//! over HTTP as `OTEL_EXPORTER_OTLP_ENDPOINT` says. Built with `--features otlp` only
//! (`cargo xtask test` runs it so).
#![cfg(feature = "otlp")]

use axum::body::Bytes;
use axum::routing::post;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn run_spans_arrive_at_a_loopback_receiver() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (received, mut receiving) = mpsc::unbounded_channel::<(String, Bytes)>();
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let received = received.clone();
                async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let _ = received.send((content_type, body));
                    ""
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    });
    // The only test of this binary: nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}")) };
    let _entered = runtime.enter();
    let (layer, exporting) = warden_daemon::otlp::layer()
        .unwrap()
        .expect("the endpoint is set");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "run",
            run_id = "run-0123456789abcdef",
            node = "limits/spin",
            board_id = "board-7"
        );
        span.in_scope(|| tracing::info!("run finished"));
    });
    let flushed = std::thread::spawn(move || exporting.flush());
    let (content_type, body) = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), receiving.recv()).await })
        .expect("spans arrive within 30 s")
        .expect("the receiver got a request");
    flushed.join().unwrap();
    assert_eq!(content_type, "application/x-protobuf");
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|window| window == needle);
    assert!(
        contains(b"run-0123456789abcdef"),
        "the run id is in the export"
    );
    assert!(contains(b"board-7"));
    assert!(contains(b"warden"), "the service name");
}
