//! What the server's integration tests share: short limits, a server on loopback with a fresh
//! self-signed certificate, a TLS client from any loopback address, a large response body that
//! counts its release, and the process's descriptor and memory counts.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use warden_server::ServerLimits;

/// Short limits, so that every timeout fires within a test's seconds.
pub fn short() -> ServerLimits {
    let millis = Duration::from_millis;
    ServerLimits {
        handshake_timeout: millis(2000),
        first_byte_timeout: millis(2000),
        header_timeout: millis(1000),
        body_read_timeout: millis(1000),
        min_body_rate: 64 * 1024,
        rate_grace: millis(1000),
        send_timeout: millis(1000),
        min_send_rate: 64 * 1024,
        idle_timeout: millis(2000),
        h2_keep_alive_interval: millis(1000),
        h2_keep_alive_timeout: millis(1000),
        h2_max_concurrent_streams: 16,
        max_connections: 1000,
        max_connections_per_ip: 1000,
        shutdown_grace: millis(1000),
    }
}

/// A server on a loopback port, on a runtime of its own that is dropped with it.
pub struct Served {
    pub address: SocketAddr,
    pub ca: CertificateDer<'static>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Serves `router` under `limits` with a fresh self-signed certificate until `shutdown`.
pub fn serve(
    limits: ServerLimits,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Served {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let ca = generated.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ca.clone()], key.into())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Bound without `block_on`: tests call this from within their own runtime.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).unwrap()
    };
    runtime.spawn(warden_server::serve_with_shutdown(
        listener,
        Arc::new(config),
        router,
        limits,
        shutdown,
    ));
    Served {
        address,
        ca,
        runtime: Some(runtime),
    }
}

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to `address` from `from` (Linux routes all of 127/8 to loopback).
pub async fn tcp_from(address: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(address).await
}

/// A TLS connection to `served` from `from`, offering `alpn`.
pub async fn tls_to(
    served: (SocketAddr, &CertificateDer<'static>),
    from: IpAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let (address, ca) = served;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tcp_from(address, from).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A large response handed out 64 KiB at a time, like a registry download; counts itself
/// released when dropped.
pub struct Held {
    pub bytes: Bytes,
    pub released: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.bytes.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.bytes.len().min(64 * 1024);
        Poll::Ready(Some(Ok(http_body::Frame::data(self.bytes.split_to(take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.len() as u64)
    }
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
