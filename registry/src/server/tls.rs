//! The registry's TLS: rustls (ring) offering HTTP/2 and HTTP/1.1. With no certificate given,
//! a self-signed one for `localhost`, `127.0.0.1` and `::1` is made once and kept in the data
//! directory, so development works with no setup and clients can trust it with `--ca-cert`.

use crate::durable::{self, DurableError};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_package::SecretFileError;

/// Why the server's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("give both --tls-cert and --tls-key, or neither")]
    CertWithoutKey,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate: {source}", path.display())]
    NotACertificate {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a PEM private key: {source}", path.display())]
    NotAKey {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{0}")]
    Rustls(#[source] rustls::Error),
    #[error("the certificate and key do not fit: {0}")]
    Mismatch(#[source] rustls::Error),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make a development certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry's storage failed: {0}")]
    Durable(#[from] DurableError),
}

/// Where the development certificate lives in a data directory.
pub fn dev_certificate_path(data: &Path) -> PathBuf {
    data.join("tls").join("cert.pem")
}

/// Loads `cert` and `key` (PEM), or the development pair in `data` (made on first use).
pub fn server_config(
    data: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        (None, None) => ensure_dev_certificate(data)?,
        _ => return Err(TlsError::CertWithoutKey),
    };
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&cert_path)?)
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::NotACertificate {
                path: cert_path.clone(),
                source,
            })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key =
        PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|source| TlsError::NotAKey {
            path: key_path.clone(),
            source,
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(TlsError::Mismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The development pair, made once. Each file is written under a temporary name and renamed
/// into place, the certificate last, so a kill during a first start leaves no torn file: a
/// missing certificate makes the next start generate the pair again.
fn ensure_dev_certificate(data: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dev_certificate_path(data);
    let key_path = data.join("tls").join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let dir = data.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
    let staged_key = dir.join("key.pem.partial");
    let _ = std::fs::remove_file(&staged_key);
    warden_package::write_secret_file(&staged_key, &generated.signing_key.serialize_pem())?;
    std::fs::rename(&staged_key, &key_path).map_err(|source| TlsError::Write {
        path: key_path.clone(),
        source,
    })?;
    durable::write_durably(
        &cert_path,
        &durable::partial_beside(&cert_path),
        generated.cert.pem().as_bytes(),
    )?;
    Ok((cert_path, key_path))
}
