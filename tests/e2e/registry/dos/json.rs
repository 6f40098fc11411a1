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

/// An HTTP/2 connection with `streams` requests to `path`, each with `sent` bytes of a JSON
/// body of `sent` + 1000 bytes, and `token`'s credentials if given.
async fn stalled_json(
    address: &str,
    ca: &[u8],
    path: &str,
    streams: usize,
    sent: usize,
    token: Option<&str>,
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
        let mut request = hyper::Request::post(format!("https://{address}{path}"))
            .header("content-type", "application/json")
            .header("content-length", (sent + 1000).to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("PAT {token}"));
        }
        let request = request
            .body(Stalled {
                first: Some(Bytes::from(vec![b' '; sent])),
            })
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let _ = sender.send_request(request).await;
        }));
    }
    tasks
}

#[test]
fn json_bodies_are_read_only_after_authentication_and_bounded_per_stream() {
    let served = Served::start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (served.address.clone(), served.ca.clone());
    let rss_before = served.status("VmRSS:");
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..16 {
            held.extend(stalled_json(&address, &ca, "/v1/users", 64, 60 * 1024, None).await);
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

    // A token holder may send bodies, each under the 16 KiB limit: 1024 streams hold at most
    // 16 MiB, and only for the body timeouts.
    let token = served.owner.clone();
    let rss_before = served.status("VmRSS:");
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..16 {
            let sent = 15 * 1024;
            held.extend(stalled_json(&address, &ca, "/v1/tokens", 64, sent, Some(&token)).await);
        }
        held
    });
    std::thread::sleep(Duration::from_secs(2));
    let grown = served.status("VmRSS:").saturating_sub(rss_before);
    eprintln!("16 authenticated connections x 64 streams x 15 KiB of JSON: RSS +{grown} kB");
    assert!(
        grown < 32 * 1024,
        "JSON bodies grew the registry by {grown} kB"
    );
    for task in held {
        task.abort();
    }
}
