//! The TLS trust of a runtime's outbound connections: Mozilla's roots (webpki-roots) plus any
//! the embedder adds, with rustls on the ring provider.

use crate::bindings::wit::HostError;
use std::sync::{Arc, OnceLock};

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

    pub(crate) fn config(&self) -> Result<Arc<rustls::ClientConfig>, HostError> {
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

/// Certificates that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file starts as PEM but does not parse as PEM certificates.
    #[error("not a PEM certificate file: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("the PEM file holds no CERTIFICATE block")]
    Empty,
}

/// Reads certificates from PEM (one or more `CERTIFICATE` blocks) or a single DER certificate.
pub fn certificates_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertificateError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let certificates: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bytes)
        .map(|certificate| certificate.map(|der| der.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(CertificateError::Pem)?;
    if certificates.is_empty() {
        return Err(CertificateError::Empty);
    }
    Ok(certificates)
}
