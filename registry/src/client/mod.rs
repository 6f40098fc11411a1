//! The host side of the registry: a small HTTPS client for the registry API (rustls with
//! Mozilla's roots plus any CA given, HTTP/2 when the server offers it, every response body
//! capped before it is read), and [`install`], which verifies what a host installs.

pub mod install;

use crate::protocol::TokenKind;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest JSON answer read unless a call says otherwise.
const MAX_JSON_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the registry URL `{0}` is unusable: {1}")]
    Url(String, String),
    #[error("cannot reach the registry at {0}: {1}")]
    Connect(String, String),
    #[error("the registry answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("the registry's answer is unusable: {0}")]
    Malformed(String),
}

/// How the client authenticates. `Debug` shows the kind, never the token.
#[derive(Clone)]
pub struct Credential {
    pub kind: TokenKind,
    pub token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// Tells the kind from the token's prefix (`wdn_key_` is an API key, anything else a PAT).
    pub fn from_token(token: &str) -> Credential {
        let token = token.trim().to_string();
        let kind = if token.starts_with(TokenKind::ApiKey.prefix()) {
            TokenKind::ApiKey
        } else {
            TokenKind::Pat
        };
        Credential { kind, token }
    }
}

#[derive(Clone)]
pub struct Client {
    base: Url,
    tls: Arc<rustls::ClientConfig>,
    credential: Option<Credential>,
}

impl Client {
    /// A client of the registry at `base` (an `https://` URL), trusting Mozilla's roots and the
    /// DER certificates in `extra_roots`.
    pub fn new(
        base: &str,
        extra_roots: &[Vec<u8>],
        credential: Option<Credential>,
    ) -> Result<Client, ClientError> {
        let url = |why: &str| ClientError::Url(base.to_string(), why.to_string());
        let mut parsed = Url::parse(base).map_err(|error| url(&error.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(url("the registry is reached over https only"));
        }
        if parsed.host_str().is_none() {
            return Err(url("it has no host"));
        }
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|error| url(&format!("a CA certificate cannot be used: {error}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| url(&error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Client {
            base: parsed,
            tls: Arc::new(tls),
            credential,
        })
    }

    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// Sends one request and reads at most `limit` bytes of the answer. Statuses other than
    /// 2xx become `ClientError::Status` with the server's message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        limit: usize,
    ) -> Result<Bytes, ClientError> {
        let connect = |error: String| ClientError::Connect(self.base.to_string(), error);
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|error| ClientError::Url(path.to_string(), error.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let exchange = async {
            let tcp = TcpStream::connect((bare_host.as_str(), port))
                .await
                .map_err(|error| connect(error.to_string()))?;
            let name = ServerName::try_from(bare_host.clone())
                .map_err(|error| connect(error.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|error| connect(format!("TLS failed: {error}")))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let mut request = Request::builder()
                .method(method)
                .uri(url.as_str())
                .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")));
            if !h2 {
                request = request.header("host", url.authority());
            }
            if let Some(credential) = &self.credential {
                request = match credential.kind {
                    TokenKind::ApiKey => request.header("x-api-key", &credential.token),
                    TokenKind::Pat => {
                        request.header("authorization", format!("PAT {}", credential.token))
                    }
                };
            }
            let body = match body {
                Some((content_type, bytes)) => {
                    request = request.header("content-type", content_type);
                    Full::new(Bytes::from(bytes))
                }
                None => Full::new(Bytes::new()),
            };
            let request = request
                .body(body)
                .map_err(|error| connect(error.to_string()))?;
            let io = TokioIo::new(tls);
            let response = if h2 {
                let (mut sender, connection) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|error| connect(error.to_string()))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            } else {
                let (mut sender, connection) = http1::handshake(io)
                    .await
                    .map_err(|error| connect(error.to_string()))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            .map_err(|error| connect(error.to_string()))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| {
                    ClientError::Malformed(format!(
                        "the answer is over {limit} bytes or cut short: {error}"
                    ))
                })?
                .to_bytes();
            if status.is_success() {
                Ok(bytes)
            } else {
                let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|value| value.get("error")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                Err(ClientError::Status { status, message })
            }
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| connect(format!("no answer within {}s", TIMEOUT.as_secs())))?
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get_json_limited(path, MAX_JSON_BYTES).await
    }

    /// Like `get_json`, reading at most `limit` bytes.
    pub async fn get_json_limited<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<T, ClientError> {
        let bytes = self.send(Method::GET, path, None, limit).await?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Malformed(error.to_string()))
    }

    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body =
            serde_json::to_vec(body).map_err(|error| ClientError::Malformed(error.to_string()))?;
        let bytes = self
            .send(
                Method::POST,
                path,
                Some(("application/json", body)),
                MAX_JSON_BYTES,
            )
            .await?;
        if bytes.is_empty() {
            return serde_json::from_slice(b"null")
                .map_err(|error| ClientError::Malformed(error.to_string()));
        }
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Malformed(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_print_through_debug() {
        let credential = Credential::from_token("wdn_pat_secretvalue");
        let shown = format!("{credential:?} {credential:#?}");
        assert!(!shown.contains("secretvalue"), "{shown}");
        assert!(shown.contains("Pat"), "{shown}");
    }
}
