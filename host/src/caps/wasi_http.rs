//! wasi:http (`types` and `outgoing-handler`): ambient, because some toolchains import it by
//! default (StarlingMonkey, the engine of componentize-js, links `fetch` to it whether or not
//! the node fetches anything).
//!
//! Always linked, so that such builds link with any grant; a request is refused
//! (`HTTP-request-denied`, and a denial in the run's log) unless `http-get` or `http-write` is
//! granted, and then only the methods that capability covers. An allowed request goes through
//! warden's own client ([`crate::caps::http::send`]): the same allowlist checked on every
//! address, the same body, header and time limits inside the run's deadline, the same reserved
//! headers. One hop: wasi:http hands a redirect back to the node, whose next request is checked
//! again. wasmtime-wasi-http's own client is not compiled in.
//!
//! What a node can park in host memory through it is bounded: [`MAX_IN_FLIGHT`] requests and
//! responses at a time, each within the http limits; a `fields` within [`FIELD_SIZE_LIMIT`];
//! an unsent body within two small chunks; and every resource within the run's resource limit.

use crate::bindings::wit::{Header, HostError, HttpRequest, Method};
use crate::caps::http::send;
use crate::net::client::{HttpLimits, RESERVED, check_headers, is_reserved, method_name};
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::output::log::{Level, RunLog, Source};
use crate::policy::capability::Capabilities;
use crate::policy::limits::HostLimits;
use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::{LinkOptions, http};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttp,
    WasiHttpHooks, WasiHttpView,
};

/// Bytes of the in-memory form of one `fields` resource (wasmtime-wasi-http counts more than
/// the wire size). The host sends at most [`crate::net::client::MAX_HEADER_BYTES`] of headers;
/// this keeps a node from parking 128 KiB (the crate's default) in each of its resources.
const FIELD_SIZE_LIMIT: usize = 128 * 1024 / 2;

/// Requests of one run in flight at once, their responses included until the node drops them:
/// each holds up to the response limit in host memory, so this bounds what a run can park
/// there (warden's own http interface has one in flight). One more is refused.
pub const MAX_IN_FLIGHT: usize = 2;

/// Bytes of one write to an outgoing body, which buffers one write before the request is sent
/// (two while it is being sent). A body of a request never sent stays buffered for as long as
/// the request lives, so this bounds the buffered bytes by the resource limit: 16 KiB a request
/// under an http grant, 1 KiB without one (nothing is sent then anyway).
const BODY_CHUNK_BYTES: usize = 8 * 1024;
const BODY_CHUNK_BYTES_UNGRANTED: usize = 512;

/// Links `wasi:http/types` or `wasi:http/outgoing-handler`; false for anything else.
pub(crate) fn link<T: WasiHttpView + 'static>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "wasi:http/types" => {
            http::types::add_to_linker::<T, WasiHttp>(
                linker,
                &LinkOptions::default().into(),
                T::http,
            )?;
            cap_request_strings(linker)?;
        }
        "wasi:http/outgoing-handler" => {
            http::outgoing_handler::add_to_linker::<T, WasiHttp>(linker, T::http)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Bytes of a method (`other(...)`) and of an authority a node may set on a request.
/// wasmtime-wasi-http stores both with no limit of its own (a path is capped by the `http`
/// crate, a scheme at 64 bytes), so without these a node with no grant could park megabytes in
/// each of its requests.
pub const MAX_METHOD_BYTES: usize = 64;
pub const MAX_AUTHORITY_BYTES: usize = 1024;

/// Replaces `outgoing-request.set-method` and `set-authority` with versions that refuse an
/// over-long string (the interface's own `err`) and otherwise do what wasmtime-wasi-http does.
fn cap_request_strings<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use http::types::{HostOutgoingRequest, Method as WasiMethod};
    use wasmtime::StoreContextMut;
    use wasmtime::component::Resource;
    use wasmtime_wasi_http::p2::types::HostOutgoingRequest as Request;
    linker.allow_shadowing(true);
    let mut types = linker.instance(&format!("wasi:http/types@{WASI_HTTP_VERSION}"))?;
    types.func_wrap(
        "[method]outgoing-request.set-method",
        |mut store: StoreContextMut<'_, T>, (request, method): (Resource<Request>, WasiMethod)| {
            let length = match &method {
                WasiMethod::Other(name) => name.len(),
                _ => 0,
            };
            refuse_long(length, MAX_METHOD_BYTES, || {
                HostOutgoingRequest::set_method(&mut store.data_mut().http(), request, method)
            })
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-authority",
        |mut store: StoreContextMut<'_, T>,
         (request, authority): (Resource<Request>, Option<String>)| {
            let length = authority.as_ref().map_or(0, String::len);
            refuse_long(length, MAX_AUTHORITY_BYTES, || {
                HostOutgoingRequest::set_authority(&mut store.data_mut().http(), request, authority)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The interface's `err` when a string of `length` bytes is over `limit`, else what `set` does.
fn refuse_long(
    length: usize,
    limit: usize,
    set: impl FnOnce() -> wasmtime::Result<Result<(), ()>>,
) -> wasmtime::Result<(Result<(), ()>,)> {
    match length > limit {
        true => Ok((Err(()),)),
        false => Ok((set()?,)),
    }
}

/// The wasi:http version wasmtime-wasi-http 48 serves (imports of any 0.2.x match it).
const WASI_HTTP_VERSION: &str = "0.2.12";

/// The run's wasi:http context: the field limit, and what the hooks need to send.
pub(crate) fn context() -> wasmtime_wasi_http::WasiHttpCtx {
    let mut ctx = wasmtime_wasi_http::WasiHttpCtx::new();
    ctx.set_field_size_limit(FIELD_SIZE_LIMIT);
    ctx
}

/// How one run's wasi:http sends: with the methods its grant covers, or none.
pub(crate) struct Hooks {
    /// The methods `http-get` and `http-write`, as granted, cover.
    methods: Vec<Method>,
    tls: TlsRoots,
    network: Arc<NetworkPolicy>,
    log: RunLog,
    deadline: Instant,
    limits: HttpLimits,
    /// [`MAX_IN_FLIGHT`] permits, one held by each request until its response is dropped.
    in_flight: Arc<Semaphore>,
}

impl Hooks {
    pub(crate) fn new(
        granted: Capabilities,
        tls: TlsRoots,
        network: Arc<NetworkPolicy>,
        log: RunLog,
        deadline: Instant,
        limits: &HostLimits,
    ) -> Self {
        let mut methods = Vec::new();
        if granted.contains(Capabilities::HTTP_GET) {
            methods.extend([Method::Get, Method::Head]);
        }
        if granted.contains(Capabilities::HTTP_WRITE) {
            methods.extend([Method::Post, Method::Put, Method::Patch, Method::Delete]);
        }
        Hooks {
            methods,
            tls,
            network,
            log,
            deadline,
            limits: HttpLimits {
                request_body_bytes: limits.http_request_bytes,
                response_body_bytes: limits.http_response_bytes,
            },
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// The capability that covers `method`, for messages.
    fn capability_for(method: Method) -> &'static str {
        match method {
            Method::Get | Method::Head => "http-get",
            _ => "http-write",
        }
    }
}

/// A URL for the log: without userinfo (`user:token@` is a credential).
fn shown(uri: &::http::Uri) -> String {
    match uri.authority() {
        Some(authority) if authority.as_str().contains('@') => {
            let host = authority
                .as_str()
                .rsplit_once('@')
                .map(|(_, host)| host)
                .unwrap_or_default();
            let scheme = uri.scheme_str().unwrap_or("https");
            let path = uri.path_and_query().map(|path| path.as_str()).unwrap_or("");
            format!("{scheme}://{host}{path}")
        }
        _ => uri.to_string(),
    }
}

/// Bytes of one frame of a response body handed to the node.
const FRAME_BYTES: usize = 16 * 1024;

/// A response body that holds its request's place among the run's [`MAX_IN_FLIGHT`] until
/// the node drops it, and hands the body out in frames copied out of it: a frame sharing the
/// whole buffer would keep it alive after the slot is given back (a node can splice a byte of
/// it into a request it never sends).
struct HeldBody {
    body: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl hyper::body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.body.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.body.len().min(FRAME_BYTES);
        let frame = Bytes::copy_from_slice(&self.body[..take]);
        let rest = self.body.slice(take..);
        self.body = rest;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.body.len() as u64)
    }
}

/// What a request refused before it is sent says to the node: denied, and why in the log.
fn refuse(network: &NetworkPolicy, message: String) -> Error {
    network.record_denial("http", message);
    Error::HttpRequestDenied
}

fn method_of(method: &::http::Method) -> Option<Method> {
    Some(match *method {
        ::http::Method::GET => Method::Get,
        ::http::Method::HEAD => Method::Head,
        ::http::Method::POST => Method::Post,
        ::http::Method::PUT => Method::Put,
        ::http::Method::PATCH => Method::Patch,
        ::http::Method::DELETE => Method::Delete,
        _ => return None,
    })
}

/// The wasi:http error a failure of warden's client becomes (the node's log gets the text).
fn error_code(error: &HostError) -> Error {
    match error {
        HostError::Denied(_) => Error::HttpRequestDenied,
        HostError::Invalid(_) => Error::HttpRequestUriInvalid,
        // Request-side sizes are checked before sending: what is left is the response's.
        HostError::TooLarge(_) => Error::HttpResponseBodySize(None),
        HostError::QuotaExceeded(_) => Error::ConnectionLimitReached,
        HostError::Unavailable(_) => Error::DestinationUnavailable,
    }
}

impl WasiHttpHooks for Hooks {
    /// wasmtime-wasi-http's own list, and every header warden's client sets itself but
    /// `content-length` (which wasi:http checks against the body; the client sets its own):
    /// a node setting one learns at once, when it builds the headers.
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(|name| {
            DEFAULT_FORBIDDEN_HEADERS.contains(name)
                || (*name != ::http::header::CONTENT_LENGTH && is_reserved(name.as_str(), RESERVED))
        })
    }

    /// The client sets `Host` from the URL the allowlist checked.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        match self.methods.is_empty() {
            true => BODY_CHUNK_BYTES_UNGRANTED,
            false => BODY_CHUNK_BYTES,
        }
    }

    fn send_request(
        &mut self,
        request: ::http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        ::http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let methods = self.methods.clone();
        let tls = self.tls.clone();
        let network = self.network.clone();
        let log = self.log.clone();
        let deadline = self.deadline;
        let limits = self.limits;
        let in_flight = self.in_flight.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let url = shown(&parts.uri);
            if methods.is_empty() {
                return Err(refuse(
                    &network,
                    format!(
                        "wasi:http request to {url} denied: grant http-get (GET, HEAD) or \
                         http-write (POST, PUT, PATCH, DELETE) and allow its host"
                    ),
                ));
            }
            let Some(method) = method_of(&parts.method) else {
                return Err(refuse(
                    &network,
                    format!(
                        "wasi:http {} request to {url} denied: the host sends only GET, HEAD, \
                         POST, PUT, PATCH and DELETE",
                        parts.method
                    ),
                ));
            };
            if !methods.contains(&method) {
                let capability = Hooks::capability_for(method);
                return Err(refuse(
                    &network,
                    format!(
                        "wasi:http {} request to {url} denied: it needs the {capability} capability",
                        method_name(method)
                    ),
                ));
            }
            let Ok(permit) = in_flight.try_acquire_owned() else {
                log.push(
                    Level::Warn,
                    Source::Host,
                    &format!(
                        "wasi:http request to {url} refused: the run already has {MAX_IN_FLIGHT} \
                         requests in flight (a response counts until the node drops it)"
                    ),
                );
                return Err(Error::ConnectionLimitReached);
            };
            let mut headers = Vec::with_capacity(parts.headers.len());
            for (name, value) in &parts.headers {
                if *name == ::http::header::CONTENT_LENGTH {
                    continue;
                }
                let Ok(value) = value.to_str() else {
                    log.push(
                        Level::Warn,
                        Source::Host,
                        &format!("wasi:http request to {url}: header `{name}` is not text"),
                    );
                    return Err(Error::HttpRequestHeaderSize {
                        field_name: Some(name.to_string()),
                        field_size: None,
                    });
                };
                headers.push(Header {
                    name: name.to_string(),
                    value: value.to_string(),
                });
            }
            if let Err(error) = check_headers(&headers, "request") {
                log.push(
                    Level::Warn,
                    Source::Host,
                    &format!("wasi:http request to {url}: {error}"),
                );
                return Err(Error::HttpRequestHeaderSectionSize(None));
            }
            let body = match Limited::new(body, limits.request_body_bytes)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes().to_vec(),
                Err(_) => {
                    log.push(
                        Level::Warn,
                        Source::Host,
                        &format!(
                            "wasi:http request to {url}: the body is over the host's {} bytes, \
                             or could not be read",
                            limits.request_body_bytes
                        ),
                    );
                    return Err(Error::HttpRequestBodySize(None));
                }
            };
            // Without userinfo (warden's client sends none): no layer below, nor any message
            // it writes, sees a credential in the URL.
            let request = HttpRequest {
                method,
                url: url.clone(),
                headers,
                body,
            };
            let capability = Hooks::capability_for(method);
            let response = send(
                &tls, &network, request, &methods, capability, deadline, limits, false,
            )
            .await
            .map_err(|error| {
                if !matches!(error, HostError::Denied(_)) {
                    log.push(
                        Level::Warn,
                        Source::Host,
                        &format!("wasi:http request to {url} failed: {error}"),
                    );
                }
                error_code(&error)
            })?;
            let mut builder = ::http::Response::builder().status(response.status);
            for header in &response.headers {
                builder = builder.header(header.name.as_str(), header.value.as_str());
            }
            let body = HeldBody {
                body: Bytes::from(response.body),
                _permit: permit,
            }
            .map_err(|never| match never {})
            .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|error| Error::InternalError(Some(error.to_string())))?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allowlist::AllowedHosts;

    fn hooks(granted: Capabilities, log: &RunLog) -> Hooks {
        let network = NetworkPolicy::new(AllowedHosts::parse(&["127.0.0.1"]).unwrap(), log.clone());
        Hooks::new(
            granted,
            TlsRoots::default(),
            network,
            log.clone(),
            Instant::now() + std::time::Duration::from_secs(5),
            &crate::policy::limits::Limits::default().host,
        )
    }

    fn request(method: &str, url: &str) -> ::http::Request<WasiBody> {
        ::http::Request::builder()
            .method(method)
            .uri(url)
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap()
    }

    fn outcome(hooks: &mut Hooks, request: ::http::Request<WasiBody>) -> Result<u16, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let future = hooks.send_request(request, None, Box::new(async { Ok(()) }));
        runtime
            .block_on(Box::into_pin(future))
            .map(|(response, _)| response.status().as_u16())
    }

    #[test]
    fn without_a_grant_every_request_is_denied_and_logged() {
        let log = RunLog::new(64 * 1024);
        let mut hooks = hooks(Capabilities::empty(), &log);
        let result = outcome(&mut hooks, request("GET", "http://127.0.0.1:1/"));
        assert!(
            matches!(result, Err(Error::HttpRequestDenied)),
            "{result:?}"
        );
        let (denials, count) = log.denials();
        assert_eq!(count, 1);
        assert!(denials[0].message.contains("grant http-get"), "{denials:?}");
    }

    #[test]
    fn a_method_outside_the_grant_is_denied() {
        let log = RunLog::new(64 * 1024);
        let mut hooks = hooks(Capabilities::HTTP_GET, &log);
        for method in ["POST", "DELETE", "OPTIONS", "CONNECT"] {
            let result = outcome(&mut hooks, request(method, "http://127.0.0.1:1/"));
            assert!(
                matches!(result, Err(Error::HttpRequestDenied)),
                "{method}: {result:?}"
            );
        }
        let (denials, _) = log.denials();
        assert!(
            denials[0].message.contains("needs the http-write"),
            "{denials:?}"
        );
    }

    #[test]
    fn a_host_off_the_allowlist_is_denied_before_connecting() {
        let log = RunLog::new(64 * 1024);
        let mut hooks = hooks(Capabilities::HTTP_GET, &log);
        let result = outcome(&mut hooks, request("GET", "http://example.com/"));
        assert!(
            matches!(result, Err(Error::HttpRequestDenied)),
            "{result:?}"
        );
        let (denials, _) = log.denials();
        assert!(denials[0].message.contains("example.com"), "{denials:?}");
    }

    fn messages(log: &RunLog) -> Vec<String> {
        log.records()
            .into_iter()
            .map(|record| record.message)
            .collect()
    }

    /// A plain HTTP/1.1 server answering `200 ok`, on a thread of its own.
    fn server() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer) {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                });
            }
        });
        address
    }

    #[test]
    fn at_most_two_requests_are_in_flight_until_their_responses_are_dropped() {
        let address = server();
        let log = RunLog::new(64 * 1024);
        let network = NetworkPolicy::new(
            AllowedHosts::parse(&[address.as_str()]).unwrap(),
            log.clone(),
        );
        let mut hooks = Hooks::new(
            Capabilities::HTTP_GET,
            TlsRoots::default(),
            network,
            log.clone(),
            Instant::now() + std::time::Duration::from_secs(10),
            &crate::policy::limits::Limits::default().host,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://{address}/");
        let send = |hooks: &mut Hooks| {
            let future = hooks.send_request(request("GET", &url), None, Box::new(async { Ok(()) }));
            runtime.block_on(Box::into_pin(future))
        };
        let first = send(&mut hooks).unwrap();
        let second = send(&mut hooks).unwrap();
        assert_eq!(first.0.status(), 200);
        let third = send(&mut hooks);
        assert!(
            matches!(third, Err(Error::ConnectionLimitReached)),
            "{:?}",
            third.err()
        );
        drop(first);
        assert_eq!(send(&mut hooks).unwrap().0.status(), 200);
        drop(second);
        let said = messages(&log);
        assert!(
            said.iter()
                .any(|line| line.contains("2 requests in flight")),
            "{said:?}"
        );
    }

    #[test]
    fn userinfo_never_reaches_the_log() {
        let log = RunLog::new(64 * 1024);
        let mut hooks = hooks(Capabilities::empty(), &log);
        let result = outcome(
            &mut hooks,
            request("GET", "http://user:secret@127.0.0.1:1/x?y"),
        );
        assert!(
            matches!(result, Err(Error::HttpRequestDenied)),
            "{result:?}"
        );
        let (denials, _) = log.denials();
        assert!(
            !denials[0].message.contains("secret")
                && denials[0].message.contains("http://127.0.0.1:1/x?y"),
            "{denials:?}"
        );
    }

    /// With a grant, the URL reaches warden's client without userinfo, so neither its
    /// allowlist's messages nor its errors can log the credential.
    #[test]
    fn userinfo_never_reaches_the_client() {
        let log = RunLog::new(64 * 1024);
        let mut hooks = hooks(Capabilities::HTTP_GET, &log);
        let result = outcome(
            &mut hooks,
            request("GET", "http://user:secret@127.0.0.1:99999/x"),
        );
        assert!(result.is_err());
        let said = messages(&log);
        assert!(
            !said.is_empty() && said.iter().all(|line| !line.contains("secret")),
            "{said:?}"
        );
    }

    #[test]
    fn response_frames_are_small_copies() {
        let body: Vec<u8> = (0..100_000u32).map(|index| index as u8).collect();
        let semaphore = Arc::new(Semaphore::new(1));
        let held = HeldBody {
            body: Bytes::from(body.clone()),
            _permit: semaphore.clone().try_acquire_owned().unwrap(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut frames = Vec::new();
        let mut held = std::pin::pin!(held);
        while let Some(frame) = runtime.block_on(std::future::poll_fn(|context| {
            hyper::body::Body::poll_frame(held.as_mut(), context)
        })) {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= FRAME_BYTES);
            frames.extend_from_slice(&data);
        }
        assert_eq!(frames, body);
        assert_eq!(
            semaphore.available_permits(),
            0,
            "the slot is held until the body goes"
        );
    }

    #[test]
    fn the_hosts_own_headers_are_forbidden_to_the_node() {
        let log = RunLog::new(64 * 1024);
        let filter = hooks(Capabilities::HTTP_GET, &log).forbidden_header_filter();
        for name in ["host", "te", "transfer-encoding", "upgrade", "keep-alive"] {
            assert!(filter(&::http::HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-length", "accept", "authorization"] {
            assert!(!filter(&::http::HeaderName::from_static(name)), "{name}");
        }
    }
}
