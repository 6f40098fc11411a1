//! The registry's TLS: rustls (ring) offering HTTP/2 and HTTP/1.1. With no certificate given,
//! a self-signed one for `localhost`, `127.0.0.1` and `::1` is made once and kept in the data
//! directory, so development works with no setup and clients can trust it with `--ca-cert`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the development certificate lives in a data directory.
pub fn dev_certificate_path(data: &Path) -> PathBuf {
    data.join("tls").join("cert.pem")
}

/// Loads `cert` and `key` (PEM), or the development pair in `data` (made on first use).
pub fn server_config(
    data: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        (None, None) => ensure_dev_certificate(data)?,
        _ => return Err("give both --tls-cert and --tls-key, or neither".into()),
    };
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
    };
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&cert_path)?)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("{}: not a PEM certificate: {error}", cert_path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|error| format!("{}: not a PEM private key: {error}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| format!("the certificate and key do not fit: {error}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The development pair, made once. Each file is written under a temporary name and renamed
/// into place, the certificate last, so a kill during a first start leaves no torn file: a
/// missing certificate makes the next start generate the pair again.
fn ensure_dev_certificate(data: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dev_certificate_path(data);
    let key_path = data.join("tls").join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let dir = data.join("tls");
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|error| format!("cannot make a development certificate: {error}"))?;
    let staged_key = dir.join("key.pem.partial");
    let _ = std::fs::remove_file(&staged_key);
    warden_host::package::write_secret_file(&staged_key, &generated.signing_key.serialize_pem())?;
    std::fs::rename(&staged_key, &key_path)
        .map_err(|error| format!("cannot write {}: {error}", key_path.display()))?;
    crate::store::write_durably(&cert_path, generated.cert.pem().as_bytes())
        .map_err(|error| error.to_string())?;
    Ok((cert_path, key_path))
}
