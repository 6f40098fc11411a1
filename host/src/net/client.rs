//! The HTTP plumbing shared by the http, websocket and models capabilities: resolve a
//! destination the allowlist passed, check every address it resolves to, connect only to a
//! checked address, and exchange one request with its headers and body capped.

use crate::bindings::wit::{Header, HostError, HttpResponse, Method};
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::policy::allowlist::{Denied, Destination};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use url::{Host, Url};

/// Headers accepted in a request or a response.
pub const MAX_HEADERS: usize = 100;
/// Bytes of all header names and values of a request or a response.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The longest one request may take (the run's own deadline may be sooner).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the host sets itself (they route the request or frame the connection); a node
/// cannot, over HTTP or WebSocket, and a request that tries is refused ([`refuse_reserved`]).
pub(crate) const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
];

/// Caps of one request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub request_body_bytes: usize,
    pub response_body_bytes: usize,
}

pub(crate) fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

pub(crate) fn deny(policy: &NetworkPolicy, denied: &Denied) -> HostError {
    policy.record_denial("http", format!("http request denied: {denied}"));
    HostError::Denied(denied.to_string())
}

pub(crate) fn check_headers(headers: &[Header], what: &str) -> Result<(), HostError> {
    let bytes: usize = headers
        .iter()
        .map(|header| header.name.len() + header.value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(HostError::TooLarge(format!(
            "the {what} has {} headers of {bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes",
            headers.len()
        )));
    }
    Ok(())
}

/// Refuses headers in [`RESERVED`] (any case): the host sets them from the URL and the
/// connection, and a node setting `Host` could reach another virtual host than the one the
/// allowlist checked.
pub(crate) fn refuse_reserved(headers: &[Header], what: &str) -> Result<(), HostError> {
    match headers
        .iter()
        .find(|header| is_reserved(&header.name, RESERVED))
    {
        Some(header) => Err(HostError::Invalid(format!(
            "{what} cannot set the `{}` header: the host sets it; remove it from the request \
             (the host owns {})",
            header.name,
            RESERVED.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Whether `name` is one of `list` (lower case), ignoring case and surrounding whitespace.
pub(crate) fn is_reserved(name: &str, list: &[&str]) -> bool {
    let name = name.trim();
    list.iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
}

/// Resolves the destination (checking every address), connects to a checked address, sends
/// one request and returns the response with its body still to be read.
pub(crate) async fn open(
    tls: &TlsRoots,
    policy: &NetworkPolicy,
    destination: &Destination,
    url: &str,
    method: Method,
    headers: &[Header],
    body: &[u8],
) -> Result<hyper::Response<hyper::body::Incoming>, HostError> {
    let addresses = resolve(policy, destination).await?;
    let stream = connect(&addresses).await?;
    let parsed = Url::parse(url).map_err(|error| HostError::Invalid(error.to_string()))?;
    let mut target = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        target = format!("{target}?{query}");
    }
    let authority = match (&destination.host, parsed.port()) {
        (Host::Ipv6(v6), Some(port)) => format!("[{v6}]:{port}"),
        (Host::Ipv6(v6), None) => format!("[{v6}]"),
        (host, Some(port)) => format!("{host}:{port}"),
        (host, None) => host.to_string(),
    };
    let mut builder = hyper::Request::builder().method(method_name(method));
    for header in headers {
        if is_reserved(&header.name, RESERVED) {
            continue;
        }
        builder = builder.header(header.name.as_str(), header.value.as_str());
    }
    let body = Full::new(Bytes::copy_from_slice(body));
    let failed = |error: &dyn std::fmt::Display| {
        HostError::Unavailable(format!("the request to {url} failed: {error}"))
    };
    let response = if destination.scheme == "https" {
        let name = match &destination.host {
            Host::Domain(name) => {
                ServerName::try_from(name.clone()).map_err(|error| failed(&error))?
            }
            Host::Ipv4(v4) => ServerName::IpAddress(std::net::IpAddr::V4(*v4).into()),
            Host::Ipv6(v6) => ServerName::IpAddress(std::net::IpAddr::V6(*v6).into()),
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config()?);
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|error| failed(&error))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            let uri = format!("https://{authority}{target}");
            let request = builder
                .uri(uri)
                .body(body)
                .map_err(|error| HostError::Invalid(error.to_string()))?;
            let (mut sender, connection) =
                http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|error| failed(&error))?;
            tokio::spawn(connection);
            sender
                .send_request(request)
                .await
                .map_err(|error| failed(&error))?
        } else {
            send_http1(stream, builder, &target, &authority, body, url).await?
        }
    } else {
        send_http1(stream, builder, &target, &authority, body, url).await?
    };
    Ok(response)
}

/// Sends one HTTP/1.1 request over `stream` (plain or TLS).
async fn send_http1<S>(
    stream: S,
    builder: hyper::http::request::Builder,
    target: &str,
    authority: &str,
    body: Full<Bytes>,
    url: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, HostError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let failed = |error: &dyn std::fmt::Display| {
        HostError::Unavailable(format!("the request to {url} failed: {error}"))
    };
    let request = builder
        .uri(target)
        .header("host", authority)
        .body(body)
        .map_err(|error| HostError::Invalid(error.to_string()))?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| failed(&error))?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|error| failed(&error))
}

/// One request, its response body read under the cap.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    tls: &TlsRoots,
    policy: &NetworkPolicy,
    destination: &Destination,
    url: &str,
    method: Method,
    headers: &[Header],
    body: &[u8],
    limits: HttpLimits,
) -> Result<HttpResponse, HostError> {
    let failed = |error: &dyn std::fmt::Display| {
        HostError::Unavailable(format!("the request to {url} failed: {error}"))
    };
    let response = open(tls, policy, destination, url, method, headers, body).await?;
    let status = response.status().as_u16();
    let headers: Vec<Header> = response
        .headers()
        .iter()
        .map(|(name, value)| Header {
            name: name.to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    check_headers(&headers, "response")?;
    if method == Method::Head {
        // A HEAD response has no body, whatever its headers announce.
        return Ok(HttpResponse {
            status,
            headers,
            body: Vec::new(),
        });
    }
    let body = Limited::new(response.into_body(), limits.response_body_bytes)
        .collect()
        .await
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                HostError::TooLarge(format!(
                    "the response from {url} is over the {}-byte limit",
                    limits.response_body_bytes
                ))
            } else {
                failed(&error)
            }
        })?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The addresses to connect to: a checked literal, or what the name resolves to, each checked.
pub(crate) async fn resolve(
    policy: &NetworkPolicy,
    destination: &Destination,
) -> Result<Vec<SocketAddr>, HostError> {
    let name = match &destination.host {
        Host::Ipv4(v4) => return Ok(vec![SocketAddr::new((*v4).into(), destination.port)]),
        Host::Ipv6(v6) => return Ok(vec![SocketAddr::new((*v6).into(), destination.port)]),
        Host::Domain(name) => name.clone(),
    };
    let resolved = tokio::net::lookup_host((name.as_str(), destination.port))
        .await
        .map_err(|error| HostError::Unavailable(format!("cannot resolve {name}: {error}")))?;
    let mut checked = Vec::new();
    let mut refused = None;
    for address in resolved {
        match policy.check_resolved(destination, address.ip()) {
            Ok(()) => checked.push(address),
            Err(denied) => refused = Some(denied),
        }
    }
    match (checked.is_empty(), refused) {
        (true, Some(denied)) => Err(deny(policy, &denied)),
        (true, None) => Err(HostError::Unavailable(format!(
            "{name} resolved to no address"
        ))),
        (false, _) => Ok(checked),
    }
}

pub(crate) async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, HostError> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(format!("{address}: {error}")),
        }
    }
    Err(HostError::Unavailable(format!(
        "cannot connect: {}",
        last.unwrap_or_default()
    )))
}
