//! The daemon's HTTPS client for identity providers: discovery and JWKS documents, and the
//! `/auth` proxy. HTTPS only (rustls on ring; Mozilla's roots plus the CAs configured),
//! HTTP/1.1, every exchange under a timeout and every answer read to a size cap.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use url::Url;

/// How long one exchange may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("`{0}` is not usable: {1}")]
    Url(String, String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("{0} answered {1}")]
    Status(String, StatusCode),
    #[error("the answer of {0} is unusable: {1}")]
    Malformed(String, String),
}

/// An answer: status, headers, and the body read to its cap.
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
}

/// A URL the client may use: `https`, with a host, no credentials in it.
pub fn https_url(text: &str) -> Result<Url, FetchError> {
    let unusable = |why: &str| FetchError::Url(text.to_string(), why.to_string());
    let url = Url::parse(text).map_err(|error| unusable(&error.to_string()))?;
    if url.scheme() != "https" {
        return Err(unusable("only https URLs are fetched"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(unusable("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(unusable("it holds credentials"));
    }
    Ok(url)
}

/// `scheme://host:port` of a URL: what "the same provider" is compared by.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Fetcher {
    /// A client trusting Mozilla's roots and the DER certificates in `extra_roots`.
    pub fn new(extra_roots: &[Vec<u8>]) -> Result<Fetcher, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|error| format!("a CA certificate cannot be used: {error}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Fetcher { tls: Arc::new(tls) })
    }

    /// Sends one request to `url` and reads at most `limit` bytes of the answer, whatever its
    /// status.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limit: usize,
    ) -> Result<Fetched, FetchError> {
        let shown = format!("{}{}", origin(url), url.path());
        let connect = |error: String| FetchError::Connect(shown.clone(), error);
        let host = url
            .host_str()
            .ok_or_else(|| FetchError::Url(shown.clone(), "no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let exchange = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|error| connect(error.to_string()))?;
            let name =
                ServerName::try_from(host.clone()).map_err(|error| connect(error.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|error| connect(format!("TLS failed: {error}")))?;
            let mut path = url.path().to_string();
            if let Some(query) = url.query() {
                path = format!("{path}?{query}");
            }
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(
                    "host",
                    url[url::Position::BeforeHost..url::Position::AfterPort].to_string(),
                )
                .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(body))
                .map_err(|error| connect(error.to_string()))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|error| connect(error.to_string()))?;
            tokio::spawn(connection);
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| connect(error.to_string()))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| {
                    FetchError::Malformed(
                        shown.clone(),
                        format!("over {limit} bytes or cut short: {error}"),
                    )
                })?
                .to_bytes();
            Ok(Fetched {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| connect(format!("no answer within {}s", TIMEOUT.as_secs())))?
    }

    /// GETs a JSON object of at most `limit` bytes; anything but 200 is an error.
    pub async fn get_json(&self, url: &Url, limit: usize) -> Result<serde_json::Value, FetchError> {
        let shown = format!("{}{}", origin(url), url.path());
        let answer = self
            .send(
                Method::GET,
                url,
                &[(
                    hyper::header::ACCEPT,
                    HeaderValue::from_static("application/json"),
                )],
                Bytes::new(),
                limit,
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(FetchError::Status(shown, answer.status));
        }
        match serde_json::from_slice(&answer.body) {
            Ok(json @ serde_json::Value::Object(_)) => Ok(json),
            Ok(_) => Err(FetchError::Malformed(shown, "not a JSON object".into())),
            Err(error) => Err(FetchError::Malformed(shown, error.to_string())),
        }
    }
}
