//! The `http-get` and `http-write` capabilities: HTTP/1.1 and HTTP/2 over hyper and rustls,
//! to allowlisted hosts only.
//!
//! Every hop (redirects included) is checked against `allowed_hosts`; a name is resolved by the
//! host, each address it resolves to is checked (special ranges need an explicit pattern), and
//! the connection goes to an address that was checked, so DNS rebinding between the check and
//! the connect cannot redirect it. Request and response bodies, header count and size, and the
//! time of a request (inside the run's own deadline) are capped.

use crate::bindings::wit::{Header, HostError, HttpRequest, HttpResponse, Method};
use crate::net::policy::NetworkPolicy;
use crate::policy::allowlist::{Denied, Destination};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use url::{Host, Url};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;
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

/// The TLS trust of a runtime: Mozilla's roots (webpki-roots) plus any the embedder adds.
/// Built on first use and shared by every run of the runtime.
#[derive(Clone, Default)]
pub struct TlsRoots {
    extra: Arc<Vec<Vec<u8>>>,
    config: Arc<OnceLock<Result<Arc<rustls::ClientConfig>, String>>>,
    websocket: Arc<OnceLock<Result<Arc<rustls::ClientConfig>, String>>>,
}

impl TlsRoots {
    /// Trusts Mozilla's roots and the `extra` DER certificates.
    pub fn new(extra: Vec<Vec<u8>>) -> Self {
        TlsRoots {
            extra: Arc::new(extra),
            config: Arc::default(),
            websocket: Arc::default(),
        }
    }

    fn config(&self) -> Result<Arc<rustls::ClientConfig>, HostError> {
        self.config
            .get_or_init(|| build_tls(&self.extra, &[b"h2", b"http/1.1"]))
            .clone()
            .map_err(|error| {
                HostError::Unavailable(format!("the host's TLS settings are unusable: {error}"))
            })
    }
}

impl TlsRoots {
    /// The same trust, offering only HTTP/1.1 (a WebSocket upgrade needs it).
    pub(crate) fn websocket_config(&self) -> Result<Arc<rustls::ClientConfig>, HostError> {
        self.websocket
            .get_or_init(|| build_tls(&self.extra, &[b"http/1.1"]))
            .clone()
            .map_err(|error| {
                HostError::Unavailable(format!("the host's TLS settings are unusable: {error}"))
            })
    }
}

fn build_tls(extra: &[Vec<u8>], alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|error| format!("a root certificate cannot be used: {error}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Caps of one request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub request_body_bytes: usize,
    pub response_body_bytes: usize,
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

/// Sends `request`, following redirects, every hop checked. `allowed` are the methods the
/// calling capability covers.
pub(crate) async fn send(
    tls: &TlsRoots,
    policy: &NetworkPolicy,
    request: HttpRequest,
    allowed: &[Method],
    capability: &str,
    deadline: Instant,
    limits: HttpLimits,
) -> Result<HttpResponse, HostError> {
    if !allowed.contains(&request.method) {
        let other = if capability == "http-get" {
            "http-write"
        } else {
            "http-get"
        };
        return Err(HostError::Denied(format!(
            "{} is not covered by {capability}; it needs the {other} capability",
            method_name(request.method)
        )));
    }
    if request.body.len() > limits.request_body_bytes {
        return Err(HostError::TooLarge(format!(
            "the request body is {} bytes; the host sends at most {}",
            request.body.len(),
            limits.request_body_bytes
        )));
    }
    check_headers(&request.headers, "request")?;
    refuse_reserved(&request.headers, "an HTTP request")?;
    let mut method = request.method;
    let mut url = request.url;
    // http-get reads: GET and HEAD carry no body.
    let mut body = if matches!(method, Method::Get | Method::Head) {
        Vec::new()
    } else {
        request.body
    };
    let mut headers = request.headers;
    let mut origin: Option<(String, String, u16)> = None;
    for _hop in 0..=MAX_REDIRECTS {
        let destination = policy
            .check_http_url(&url)
            .map_err(|denied| deny(policy, &denied))?;
        // Credentials do not follow a redirect to another origin.
        let this_origin = (
            destination.scheme.clone(),
            destination.host.to_string(),
            destination.port,
        );
        if origin.as_ref().is_some_and(|first| *first != this_origin) {
            headers.retain(|header| {
                !header.name.eq_ignore_ascii_case("authorization")
                    && !header.name.eq_ignore_ascii_case("cookie")
            });
        }
        origin.get_or_insert(this_origin);
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .min(REQUEST_TIMEOUT);
        let response = tokio::time::timeout(
            remaining,
            exchange(
                tls,
                policy,
                &destination,
                &url,
                method,
                &headers,
                &body,
                limits,
            ),
        )
        .await
        .map_err(|_| {
            HostError::Unavailable(format!(
                "the request to {url} timed out after {remaining:?}"
            ))
        })??;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        let location = response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("location"));
        match (redirect, location) {
            (true, Some(location)) => {
                let base =
                    Url::parse(&url).map_err(|error| HostError::Invalid(error.to_string()))?;
                url = base
                    .join(&location.value)
                    .map_err(|error| {
                        HostError::Unavailable(format!(
                            "a redirect to `{}` is not a URL: {error}",
                            location.value
                        ))
                    })?
                    .to_string();
                if response.status == 303
                    || (matches!(response.status, 301 | 302) && method == Method::Post)
                {
                    method = Method::Get;
                    body.clear();
                }
            }
            _ => return Ok(response),
        }
    }
    Err(HostError::Denied(format!(
        "more than {MAX_REDIRECTS} redirects; the last went to {url}"
    )))
}

pub(crate) fn deny(policy: &NetworkPolicy, denied: &Denied) -> HostError {
    policy.warn(format!("http request denied: {denied}"));
    HostError::Denied(denied.to_string())
}

fn check_headers(headers: &[Header], what: &str) -> Result<(), HostError> {
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
async fn exchange(
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

/// Reads certificates from PEM (one or more `CERTIFICATE` blocks) or a single DER certificate.
pub fn certificates_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let certificates: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bytes)
        .map(|certificate| certificate.map(|der| der.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("not a PEM certificate file: {error}"))?;
    if certificates.is_empty() {
        return Err("the PEM file holds no CERTIFICATE block".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allowlist::AllowedHosts;
    use crate::runtime::log::RunLog;

    /// A `Host` (or any reserved header) from the node is refused before anything is sent: it
    /// would let the node pick a virtual host the allowlist never saw.
    #[test]
    fn reserved_headers_are_refused_before_sending() {
        let policy = NetworkPolicy::new(
            AllowedHosts::parse(&["127.0.0.1"]).unwrap(),
            RunLog::new(64 * 1024),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limits = HttpLimits {
            request_body_bytes: 1024,
            response_body_bytes: 1024,
        };
        for name in ["Host", "transfer-encoding", "Proxy-Connection"] {
            let request = HttpRequest {
                method: Method::Get,
                url: "http://127.0.0.1:1/".into(),
                headers: vec![Header {
                    name: name.into(),
                    value: "internal.example".into(),
                }],
                body: Vec::new(),
            };
            let result = runtime.block_on(send(
                &TlsRoots::default(),
                &policy,
                request,
                &[Method::Get],
                "http-get",
                Instant::now() + Duration::from_secs(5),
                limits,
            ));
            match result {
                Err(HostError::Invalid(message)) => {
                    assert!(message.contains(&format!("`{name}`")), "{message}")
                }
                other => panic!("{name}: expected invalid, got {other:?}"),
            }
        }
    }
}
