//! The `http-get` and `http-write` capabilities: HTTP/1.1 and HTTP/2 over hyper and rustls,
//! to allowlisted hosts only.
//!
//! Every hop (redirects included) is checked against `allowed_hosts`; the connection itself is
//! made by `net::client`, which resolves names, checks every address and connects only to an
//! address that was checked, so DNS rebinding between the check and the connect cannot
//! redirect it. Request and response bodies, header count and size, and the time of a request
//! (inside the run's own deadline) are capped.

use crate::bindings::warden::node::{http_get, http_write};
use crate::bindings::wit::{HostError, HttpRequest, HttpResponse, Method};
use crate::net::client::{
    HttpLimits, REQUEST_TIMEOUT, check_headers, deny, exchange, method_name, refuse_reserved,
};
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::policy::limits::HostLimits;
use std::time::Instant;
use url::Url;
use wasmtime::component::{HasData, Linker};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Sends `request`, following redirects when `follow` (every hop checked), else returning a
/// redirect as it came. `allowed` are the methods the calling capability covers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    tls: &TlsRoots,
    policy: &NetworkPolicy,
    request: HttpRequest,
    allowed: &[Method],
    capability: &str,
    deadline: Instant,
    limits: HttpLimits,
    follow: bool,
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
        let redirect = follow && matches!(response.status, 301 | 302 | 303 | 307 | 308);
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

/// What the HTTP host functions may touch: the TLS trust, the network policy, the run's
/// deadline and the limits.
pub(crate) struct View<'a> {
    pub tls: &'a TlsRoots,
    pub network: &'a NetworkPolicy,
    pub deadline: Instant,
    pub limits: &'a HostLimits,
}

struct Http;

impl HasData for Http {
    type Data<'a> = View<'a>;
}

/// What the store data lends the http host functions: their view, and nothing else.
pub(crate) trait HttpView: Send + 'static {
    fn http(&mut self) -> View<'_>;
}

pub(crate) fn link<T: HttpView>(linker: &mut Linker<T>, interface: &str) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/http-get" => http_get::add_to_linker::<T, Http>(linker, T::http)?,
        "warden:node/http-write" => http_write::add_to_linker::<T, Http>(linker, T::http)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl View<'_> {
    fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            request_body_bytes: self.limits.http_request_bytes,
            response_body_bytes: self.limits.http_response_bytes,
        }
    }
}

impl http_get::Host for View<'_> {
    async fn fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let limits = self.http_limits();
        send(
            self.tls,
            self.network,
            request,
            &[Method::Get, Method::Head],
            "http-get",
            self.deadline,
            limits,
            true,
        )
        .await
    }
}

impl http_write::Host for View<'_> {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let limits = self.http_limits();
        let methods = [Method::Post, Method::Put, Method::Patch, Method::Delete];
        send(
            self.tls,
            self.network,
            request,
            &methods,
            "http-write",
            self.deadline,
            limits,
            true,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wit::Header;
    use crate::output::log::RunLog;
    use crate::policy::allowlist::AllowedHosts;
    use std::time::Duration;

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
                true,
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
