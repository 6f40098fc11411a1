//! Anonymous JSON bodies over HTTP/2: every stream of a connection may carry a body, so the
//! registry must not buffer one per stream for clients it has not authenticated.

use super::flood::{loopback, tls_from};
use super::*;
use axum::body::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A request body that sends `first` and then never ends.
struct Stalled {
    first: Option<Bytes>,
}

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(bytes) => Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            None => Poll::Pending,
        }
    }
}

/// An anonymous HTTP/2 connection with `streams` requests to `path`, each with 60 KiB of a
/// 65,000-byte JSON body sent.
async fn stalled_json(
    address: &str,
    ca: &[u8],
    path: &str,
    streams: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tls = tls_from(address, ca, loopback(2), &[b"h2"]).await;
    let io = hyper_util::rt::TokioIo::new(tls);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = connection.await;
    })];
    for _ in 0..streams {
        let mut sender = sender.clone();
        let request = hyper::Request::post(format!("https://{address}{path}"))
            .header("content-type", "application/json")
            .header("content-length", "65000")
            .body(Stalled {
                first: Some(Bytes::from(vec![b' '; 60 * 1024])),
            })
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let _ = sender.send_request(request).await;
        }));
    }
    tasks
}

#[test]
fn anonymous_json_bodies_on_http2_streams_are_not_buffered_per_stream() {
    let served = Served::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (served.address.clone(), served.ca.clone());
    let rss_before = served.status("VmRSS:");
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..16 {
            held.extend(stalled_json(&address, &ca, "/v1/users", 64).await);
        }
        held
    });
    std::thread::sleep(Duration::from_secs(2));
    let grown = served.status("VmRSS:").saturating_sub(rss_before);
    eprintln!("16 anonymous connections x 64 streams x 60 KiB of JSON: RSS +{grown} kB");
    // 1024 streams of 60 KiB would be 60 MiB buffered for clients that proved nothing.
    assert!(
        grown < 16 * 1024,
        "anonymous JSON bodies grew the registry by {grown} kB"
    );
    for task in held {
        task.abort();
    }
}
