//! The hardened HTTPS server under `warden registry serve` (and, later, the host daemon):
//! axum over hyper (HTTP/1.1 and HTTP/2, detected per connection) over rustls, where no
//! client can hold a resource without making progress.
//!
//! - Every phase has a timeout: the TLS handshake, the first byte, protocol detection and
//!   headers, each read of a request body (with a minimum average rate), each chunk of a
//!   response (with a minimum rate), idleness, and HTTP/2 keep-alive pings.
//! - Connections are capped in total and per source address; past a cap a new connection is
//!   closed at once, before its TLS handshake, so refused connections cost one accept.
//!
//! [`ServerLimits`] holds every limit; docs/registry.md ("Server limits") describes them.

mod body;
mod caps;
mod files;
mod limits;
mod progress;

pub use body::{BodyTimeout, body_timeout};
pub use caps::Refusal;
pub use files::{FileLimit, fit_file_limit};
pub use limits::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP, ServerLimits};
pub use progress::Verdict;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use body::{RequestBody, SendBody};
use caps::{Admission, Caps};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use progress::{Progress, Tracked};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Serves `router` over TLS on `listener` under `limits` until the future is dropped, which
/// ends every connection with it.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServerLimits,
) {
    serve_with_shutdown(listener, tls, router, limits, std::future::pending()).await
}

/// Serves like [`serve`] until `shutdown` completes; then stops accepting, asks every
/// connection to finish (HTTP/2 gets a GOAWAY, idle HTTP/1.1 connections close), and ends
/// those still open after `limits.shutdown_grace`.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits.sanitized());
    let acceptor = TlsAcceptor::from(tls);
    let caps = Caps::new(limits.max_connections, limits.max_connections_per_ip);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refusals = RefusalLog::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait for connections to end rather
                // than spin.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match caps.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                // Closed before the handshake: a refused connection holds nothing, and costs
                // less than the TLS handshake a 503 would need.
                drop(stream);
                refusals.note(peer, refusal);
                continue;
            }
        };
        // Answers are written in several pieces (TLS records, HTTP/2 frames, a streamed
        // body): with Nagle's algorithm a piece could wait for the client's delayed ACK,
        // 40 ms on Linux.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            limits: limits.clone(),
            router: router.clone(),
            stopping: stopping.clone(),
            _admission: admission,
        };
        connections.spawn(connection.run(acceptor.clone(), stream));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    let grace = limits.shutdown_grace + limits.watchdog_tick() * 2;
    if tokio::time::timeout(grace, drained).await.is_err() {
        connections.abort_all();
    }
}

/// Refused connections, logged at most once every ten seconds so that a flood of them cannot
/// flood the log as well.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, refusal: Refusal) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now - last >= Duration::from_secs(10))
        {
            tracing::warn!(
                %peer,
                refused = self.since_last,
                "refused connections: {refusal} (raise --max-connections or --max-connections-per-ip if these are legitimate)"
            );
            self.last = Some(now);
            self.since_last = 0;
        }
    }
}

/// One admitted connection: its handshake, its HTTP, and the watchdog that ends it when the
/// client stops making progress.
struct Connection {
    peer: SocketAddr,
    limits: Arc<ServerLimits>,
    router: Router,
    stopping: watch::Receiver<bool>,
    /// Its place under the caps, held until the connection ends.
    _admission: Admission,
}

impl Connection {
    async fn run(mut self, acceptor: TlsAcceptor, stream: TcpStream) {
        let peer = self.peer;
        let tls = match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, "TLS handshake failed: {error}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let progress = Progress::new();
        let service = Guarded {
            peer,
            router: self.router.clone(),
            progress: progress.clone(),
            limits: self.limits.clone(),
        };
        let builder = builder(&self.limits);
        let io = TokioIo::new(Tracked::new(tls, progress.clone()));
        let mut connection = std::pin::pin!(builder.serve_connection(io, service));
        let mut tick = tokio::time::interval(self.limits.watchdog_tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Once a graceful shutdown has begun: when the connection is ended regardless.
        let mut draining: Option<Instant> = None;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(error) = ended {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                    return;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if draining.is_some_and(|deadline| now >= deadline) {
                        tracing::debug!(%peer, "closing: did not finish within its grace");
                        return;
                    }
                    match progress.verdict(&self.limits, now) {
                        None => {}
                        Some(Verdict::Idle) if draining.is_some() => {}
                        Some(Verdict::Idle) => {
                            connection.as_mut().graceful_shutdown();
                            draining = Some(now + self.limits.header_timeout);
                        }
                        Some(verdict) => {
                            tracing::debug!(%peer, "closing: the client {verdict}");
                            return;
                        }
                    }
                }
                _ = self.stopping.changed(), if draining.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    draining = Some(Instant::now() + self.limits.shutdown_grace);
                }
            }
        }
    }
}

/// The most an HTTP/1.1 connection buffers: a request's head must fit (hyper closes the
/// connection otherwise). hyper's default, about 400 KB, let each connection hold that much of
/// an unfinished head for the whole header timeout: 200 MB over 512 connections. Requests to
/// the registry have heads of well under 8 KiB.
const H1_MAX_BUFFER: usize = 64 * 1024;

fn builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper restarts the header timer when a kept-alive connection waits for its next
    // request, so this bounds that idle wait as well as slowly trickled headers.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(H1_MAX_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout)
        .max_concurrent_streams(limits.h2_max_concurrent_streams);
    builder
}

/// The router behind the connection's accounting: request bodies get their read timeout and
/// minimum rate, responses report their progress, and the connection counts as busy from a
/// request's arrival until its response body is done.
#[derive(Clone)]
struct Guarded {
    /// Given to handlers as `axum::extract::ConnectInfo` (the registry limits failed
    /// authentications per source address with it).
    peer: SocketAddr,
    router: Router,
    progress: Arc<Progress>,
    limits: Arc<ServerLimits>,
}

impl hyper::service::Service<Request<Incoming>> for Guarded {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let active = self.progress.begin_request();
        let mut request = request.map(|body| Body::new(RequestBody::new(body, &self.limits)));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let router = self.router.clone();
        let progress = self.progress.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|body| Body::new(SendBody::new(body, progress, active))))
        })
    }
}
