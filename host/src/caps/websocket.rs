//! The `websocket` capability: connections to allowlisted hosts over the same checks and TLS as
//! HTTP (the address connected to is one that was checked), with a cap on message size.

use crate::bindings::warden::node::websocket::Message;
use crate::bindings::warden::node::{types, websocket};
use crate::bindings::wit::{Header, HostError};
use crate::net::client as http;
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::policy::allowlist::Denied;
use crate::policy::limits::HostLimits;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use url::Host;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Handshake headers the WebSocket client computes itself, refused besides [`http::RESERVED`].
const HANDSHAKE: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];

/// The largest message a node may send or receive.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes the client buffers before it writes them.
const WRITE_BUFFER_BYTES: usize = 128 * 1024;
/// The most a connection may hold unsent: one message past the buffer. A peer that floods
/// pings and never reads would otherwise grow the queue of pongs without end; past this the
/// connection fails instead.
pub const MAX_UNSENT_BYTES: usize = WRITE_BUFFER_BYTES + MAX_MESSAGE_BYTES + 64 * 1024;

/// An open connection, with the slot it holds among the run's connections.
pub struct Connection {
    socket: Socket,
    _slot: Slot,
}

enum Socket {
    Plain(Box<WebSocketStream<TcpStream>>),
    Tls(Box<WebSocketStream<TlsStream<TcpStream>>>),
    Closed,
}

/// Counts open connections, of one run or of a whole runtime; a [`Slot`] is one of each,
/// given back when dropped.
#[derive(Clone, Default)]
pub(crate) struct Connections(Arc<AtomicUsize>);

/// One open connection: its place among the run's and among the runtime's connections.
pub(crate) struct Slot {
    run: Arc<AtomicUsize>,
    runtime: Arc<AtomicUsize>,
}

/// Counts one more in `counter` unless it is at `cap`; the count it was at otherwise.
fn claim(counter: &AtomicUsize, cap: usize) -> Result<(), usize> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < cap).then_some(open + 1)
        })
        .map(|_| ())
}

impl Connections {
    /// A slot, unless this run has `cap` connections open already, or the runtime
    /// `runtime_cap` over all its runs.
    pub fn take(
        &self,
        cap: usize,
        runtime: &Connections,
        runtime_cap: usize,
    ) -> Result<Slot, HostError> {
        claim(&self.0, cap).map_err(|open| {
            HostError::QuotaExceeded(format!(
                "this run has {open} WebSocket connections open, the most it may; close one \
                 (drop it) before opening another"
            ))
        })?;
        if let Err(open) = claim(&runtime.0, runtime_cap) {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return Err(HostError::Unavailable(format!(
                "the host has {open} WebSocket connections open over all runs, the most it \
                 allows; try again later"
            )));
        }
        Ok(Slot {
            run: self.0.clone(),
            runtime: runtime.0.clone(),
        })
    }

    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.run.fetch_sub(1, Ordering::AcqRel);
        self.runtime.fetch_sub(1, Ordering::AcqRel);
    }
}

fn failed(error: impl std::fmt::Display) -> HostError {
    HostError::Unavailable(format!("the WebSocket failed: {error}"))
}

/// Opens a connection to `url` (ws or wss), checked against the allowlist, in `slot`.
pub(crate) async fn connect(
    tls: &TlsRoots,
    policy: &NetworkPolicy,
    url: &str,
    headers: &[Header],
    deadline: Instant,
    slot: Slot,
) -> Result<Connection, HostError> {
    check_headers(headers)?;
    let destination = policy
        .check_url(url)
        .map_err(|denied| http::deny(policy, &denied))?;
    if destination.scheme != "ws" && destination.scheme != "wss" {
        let denied = Denied {
            destination: url.to_string(),
            reason: format!(
                "a WebSocket URL starts with ws:// or wss://, not {}://",
                destination.scheme
            ),
            hint: "use a ws:// or wss:// URL".into(),
        };
        return Err(HostError::Invalid(denied.to_string()));
    }
    let mut request = url
        .into_client_request()
        .map_err(|error| HostError::Invalid(format!("`{url}` is not a WebSocket URL: {error}")))?;
    for header in headers {
        let name = tungstenite::http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|error| HostError::Invalid(error.to_string()))?;
        let value = tungstenite::http::HeaderValue::from_str(&header.value)
            .map_err(|error| HostError::Invalid(error.to_string()))?;
        request.headers_mut().insert(name, value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_UNSENT_BYTES);
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .min(http::REQUEST_TIMEOUT);
    let open = async {
        let addresses = http::resolve(policy, &destination).await?;
        let stream = http::connect(&addresses).await?;
        if destination.scheme == "wss" {
            let name = match &destination.host {
                Host::Domain(name) => {
                    rustls::pki_types::ServerName::try_from(name.clone()).map_err(failed)?
                }
                Host::Ipv4(v4) => {
                    rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(*v4).into())
                }
                Host::Ipv6(v6) => {
                    rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V6(*v6).into())
                }
            };
            let connector = tokio_rustls::TlsConnector::from(tls.websocket_config()?);
            let stream = connector.connect(name, stream).await.map_err(failed)?;
            let (socket, _) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(failed)?;
            Ok::<Socket, HostError>(Socket::Tls(Box::new(socket)))
        } else {
            let (socket, _) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(failed)?;
            Ok(Socket::Plain(Box::new(socket)))
        }
    };
    let socket = tokio::time::timeout(remaining, open)
        .await
        .map_err(|_| HostError::Unavailable(format!("connecting to {url} timed out")))??;
    Ok(Connection {
        socket,
        _slot: slot,
    })
}

/// The same reserved headers as HTTP (`Host`, `Connection`, `Upgrade`, …), refused the same
/// way, and the handshake's own.
fn check_headers(headers: &[Header]) -> Result<(), HostError> {
    http::refuse_reserved(headers, "a WebSocket request")?;
    match headers
        .iter()
        .find(|header| http::is_reserved(&header.name, HANDSHAKE))
    {
        Some(header) => Err(HostError::Invalid(format!(
            "a WebSocket request cannot set the `{}` header: the host's WebSocket client sets \
             it; remove it from the request",
            header.name
        ))),
        None => Ok(()),
    }
}

impl Connection {
    pub async fn send(&mut self, message: Message) -> Result<(), HostError> {
        let frame = match message {
            Message::Text(text) => Frame::text(text),
            Message::Binary(bytes) => Frame::binary(bytes),
        };
        if frame.len() > MAX_MESSAGE_BYTES {
            return Err(HostError::TooLarge(format!(
                "a message is at most {MAX_MESSAGE_BYTES} bytes"
            )));
        }
        match &mut self.socket {
            Socket::Plain(socket) => socket.send(frame).await.map_err(failed),
            Socket::Tls(socket) => socket.send(frame).await.map_err(failed),
            Socket::Closed => Err(HostError::Invalid("the connection is closed".into())),
        }
    }

    /// The next text or binary message; `None` once the peer closed.
    pub async fn receive(
        &mut self,
        timeout: Option<Duration>,
        deadline: Instant,
    ) -> Result<Option<Message>, HostError> {
        let limit = deadline.saturating_duration_since(Instant::now());
        let limit = timeout.map_or(limit, |timeout| timeout.min(limit));
        let next = async {
            loop {
                let frame = match &mut self.socket {
                    Socket::Plain(socket) => socket.next().await,
                    Socket::Tls(socket) => socket.next().await,
                    Socket::Closed => return Ok(None),
                };
                match frame {
                    None | Some(Ok(Frame::Close(_))) => {
                        self.socket = Socket::Closed;
                        return Ok(None);
                    }
                    Some(Ok(Frame::Text(text))) => {
                        return Ok(Some(Message::Text(text.to_string())));
                    }
                    Some(Ok(Frame::Binary(bytes))) => {
                        return Ok(Some(Message::Binary(bytes.to_vec())));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(tungstenite::Error::Capacity(error))) => {
                        return Err(HostError::TooLarge(format!(
                            "a message was over the limit: {error}"
                        )));
                    }
                    Some(Err(tungstenite::Error::WriteBufferFull(_))) => {
                        // The peer sends (pings, say) but does not read our answers.
                        self.socket = Socket::Closed;
                        return Err(HostError::Unavailable(format!(
                            "the peer does not read what the host sends it (over \
                             {MAX_UNSENT_BYTES} bytes unsent); the connection was closed"
                        )));
                    }
                    Some(Err(error)) => return Err(failed(error)),
                }
            }
        };
        tokio::time::timeout(limit, next)
            .await
            .map_err(|_| HostError::Unavailable(format!("no message arrived within {limit:?}")))?
    }

    pub async fn close(&mut self) -> Result<(), HostError> {
        let result = match &mut self.socket {
            Socket::Plain(socket) => socket.as_mut().close(None).await,
            Socket::Tls(socket) => socket.as_mut().close(None).await,
            Socket::Closed => Ok(()),
        };
        self.socket = Socket::Closed;
        result.or_else(|error| match error {
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
            error => Err(failed(error)),
        })
    }
}

/// What the WebSocket host functions may touch: the run's and the runtime's connection counts,
/// the limits, the TLS trust, the network policy, the deadline, and the resource table that
/// holds open connections.
pub(crate) struct View<'a> {
    pub connections: &'a Connections,
    /// The runtime's open connections, over all runs, and their cap.
    pub runtime_connections: (&'a Connections, usize),
    pub limits: &'a HostLimits,
    pub tls: &'a TlsRoots,
    pub network: &'a NetworkPolicy,
    pub deadline: Instant,
    pub table: &'a mut ResourceTable,
}

struct WebSocket;

impl HasData for WebSocket {
    type Data<'a> = View<'a>;
}

/// What the store data lends the websocket host functions: their view, and nothing else.
pub(crate) trait WebSocketView: Send + 'static {
    fn websocket(&mut self) -> View<'_>;
}

pub(crate) fn link<T: WebSocketView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/websocket" => websocket::add_to_linker::<T, WebSocket>(linker, T::websocket)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl websocket::Host for View<'_> {
    async fn connect(
        &mut self,
        url: String,
        headers: Vec<types::Header>,
    ) -> Result<Resource<Connection>, HostError> {
        let (runtime, runtime_cap) = self.runtime_connections;
        let slot = self
            .connections
            .take(self.limits.connections, runtime, runtime_cap)?;
        let connection = crate::caps::websocket::connect(
            self.tls,
            self.network,
            &url,
            &headers,
            self.deadline,
            slot,
        )
        .await?;
        self.table
            .push(connection)
            .map_err(|error| HostError::Unavailable(format!("too many open connections: {error}")))
    }
}

impl View<'_> {
    fn connection(
        &mut self,
        connection: &Resource<Connection>,
    ) -> Result<&mut Connection, HostError> {
        self.table
            .get_mut(connection)
            .map_err(|error| HostError::Invalid(format!("not an open connection: {error}")))
    }
}

impl websocket::HostConnection for View<'_> {
    async fn send(
        &mut self,
        connection: Resource<Connection>,
        message: websocket::Message,
    ) -> Result<(), HostError> {
        self.connection(&connection)?.send(message).await
    }

    async fn receive(
        &mut self,
        connection: Resource<Connection>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<websocket::Message>, HostError> {
        let deadline = self.deadline;
        let timeout = timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        self.connection(&connection)?
            .receive(timeout, deadline)
            .await
    }

    async fn close(&mut self, connection: Resource<Connection>) -> Result<(), HostError> {
        self.connection(&connection)?.close().await
    }

    fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_capped_per_run_and_per_runtime_and_given_back() {
        let runtime = Connections::default();
        let (a, b) = (Connections::default(), Connections::default());
        let first = a.take(2, &runtime, 3).unwrap();
        let second = a.take(2, &runtime, 3).unwrap();
        assert!(matches!(
            a.take(2, &runtime, 3),
            Err(HostError::QuotaExceeded(_))
        ));
        let third = b.take(2, &runtime, 3).unwrap();
        // Run b is under its own cap, but the runtime is full; b's count is given back.
        assert!(matches!(
            b.take(2, &runtime, 3),
            Err(HostError::Unavailable(_))
        ));
        assert_eq!((a.open(), b.open(), runtime.open()), (2, 1, 3));
        drop(first);
        assert_eq!((a.open(), runtime.open()), (1, 2));
        let fourth = b.take(2, &runtime, 3).unwrap();
        drop((second, third, fourth));
        assert_eq!((a.open(), b.open(), runtime.open()), (0, 0, 0));
    }
    use crate::output::log::RunLog;
    use crate::policy::allowlist::AllowedHosts;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// A node may not route its handshake elsewhere with `Host`, nor take over the headers the
    /// host and its WebSocket client set: the request is refused before any connection, with
    /// the same error HTTP gives.
    #[test]
    fn reserved_headers_are_refused_like_http() {
        let policy = NetworkPolicy::new(
            AllowedHosts::parse(&["127.0.0.1"]).unwrap(),
            RunLog::new(64 * 1024),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for name in ["Host", "host", "Connection", "upgrade", "Sec-WebSocket-Key"] {
            let headers = [header("x-fine", "1"), header(name, "internal.example")];
            let result = runtime.block_on(connect(
                &TlsRoots::default(),
                &policy,
                "ws://127.0.0.1:1/",
                &headers,
                deadline,
                Connections::default()
                    .take(1, &Connections::default(), 1)
                    .unwrap(),
            ));
            match result {
                Err(HostError::Invalid(message)) => {
                    assert!(message.contains(&format!("`{name}`")), "{message}")
                }
                Err(other) => panic!("{name}: expected invalid, got {other:?}"),
                Ok(_) => panic!("{name}: connected"),
            }
        }
        // HTTP refuses the same list with the same kind of error.
        let http = http::refuse_reserved(&[header("HOST", "internal.example")], "an HTTP request");
        assert!(matches!(http, Err(HostError::Invalid(message)) if message.contains("`HOST`")));
    }
}
