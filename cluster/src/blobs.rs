//! Packages as content-addressed blobs in object storage, shared by every daemon of a cluster.
//!
//! A blob's name is its SHA-256 (`packages/sha256/<hex>`), so a blob is never replaced: it is
//! created only if absent, and two daemons storing the same package at once both succeed with
//! one object. Nothing read back is trusted: a blob must hash to its name to be returned, and the
//! caller still verifies the package against the registry's signed index.
//!
//! The store is S3-compatible storage (`s3://bucket[/prefix]`, credentials from the standard AWS
//! environment, workload identity included) or a local directory (`file:///path`). The HTTP
//! client is warden's own: hyper with rustls on ring, never the `aws-lc` stack `object_store`'s
//! `aws` feature would bring.

use futures_util::StreamExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientConfigKey, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

/// Where the blobs are: `[cluster] blobs` in the host manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobSettings {
    /// `s3://bucket[/prefix]` or `file:///absolute/path`.
    pub url: String,
    /// An S3-compatible endpoint other than AWS (MinIO, Ceph, R2...): `https://...`, or
    /// `http://...` for one on a trusted network.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// PEM (or DER) files of certificate authorities trusted beside the Web PKI's roots, for a
    /// store whose certificate a private CA issued.
    pub ca_certs: Vec<std::path::PathBuf>,
}

/// Why the blob store cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "the blob store `{url}` is not valid: {why}; write s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH"
    )]
    Url { url: String, why: String },
    #[error("the blob store `{store}`: {source}")]
    Store {
        store: String,
        #[source]
        source: object_store::Error,
    },
    #[error("`{0}` is not a SHA-256 in hexadecimal: blobs are named by the hash of their bytes")]
    BadName(String),
    #[error("the bytes given for blob {0} do not hash to it")]
    NotItsBytes(String),
    #[error(
        "the blob store `{store}` held an object under {name} that {why} (damaged or tampered with): it was refused and removed, and the package will be stored again"
    )]
    Corrupt {
        store: String,
        name: String,
        why: String,
    },
    #[error(
        "the blob store's directory {path}: {why}; give the daemon a directory of its own to create and write"
    )]
    Directory { path: String, why: String },
    #[error("the blob store's CA certificate {path}: {why}")]
    CaCert { path: String, why: String },
    #[error("the blob store `{0}` did not answer within {1:?}")]
    TimedOut(String, Duration),
}

/// Whether `put` created the blob or found it there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Created,
    AlreadyThere,
}

/// A content-addressed blob store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The URL it was opened from, for messages.
    described: String,
    /// A `file://` store's directory, whose layout is checked before each use.
    local_root: Option<std::path::PathBuf>,
    /// How long one `get` or `put` may take in all, retries included.
    timeout: Duration,
}

/// How long a `get` or a `put` may take by default, retries and the body included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request may wait for the answer's headers (object_store retries a request that
/// failed or timed out within `RETRY_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// The most of a failed answer's body that is read (it becomes part of an error message).
const ERROR_BODY_LIMIT: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request, and how long they may go on: a store that is away costs an
/// install seconds, not object_store's default three minutes (the registry serves meanwhile).
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);

impl BlobStore {
    /// Opens the store `settings` names. For S3, credentials come from the environment as AWS
    /// tools read them: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or a web identity token
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`, as Kubernetes service accounts get),
    /// or the container's or instance's metadata.
    pub fn open(settings: &BlobSettings) -> Result<BlobStore, BlobError> {
        Self::open_with(settings, object_store::aws::AmazonS3Builder::from_env())
    }

    /// `open`, with fixed credentials rather than the environment's (tests against a local S3).
    #[cfg(feature = "test-services")]
    pub fn open_with_keys(
        settings: &BlobSettings,
        key_id: &str,
        secret: &str,
    ) -> Result<BlobStore, BlobError> {
        let builder = object_store::aws::AmazonS3Builder::new()
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
        Self::open_with(settings, builder)
    }

    fn open_with(
        settings: &BlobSettings,
        builder: object_store::aws::AmazonS3Builder,
    ) -> Result<BlobStore, BlobError> {
        let bad = |why: &str| BlobError::Url {
            url: settings.url.clone(),
            why: why.to_string(),
        };
        let url = url::Url::parse(&settings.url).map_err(|error| bad(&error.to_string()))?;
        let described = settings.url.clone();
        let store_error = |source| BlobError::Store {
            store: described.clone(),
            source,
        };
        match url.scheme() {
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|bucket| !bucket.is_empty())
                    .ok_or_else(|| bad("it names no bucket"))?;
                let prefix = ObjectPath::parse(url.path().trim_matches('/'))
                    .map_err(|error| bad(&error.to_string()))?;
                let retry = object_store::RetryConfig {
                    max_retries: RETRIES,
                    retry_timeout: RETRY_TIMEOUT,
                    ..object_store::RetryConfig::default()
                };
                let mut builder = builder
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_http_connector(RustlsConnector {
                        roots: roots(&settings.ca_certs)?,
                    });
                if let Some(endpoint) = &settings.endpoint {
                    // A plain-HTTP endpoint is the operator's explicit choice (a store on a
                    // trusted network); every other request, credentials included, is HTTPS.
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &settings.region {
                    builder = builder.with_region(region);
                }
                let store = builder.build().map_err(store_error)?;
                Ok(BlobStore {
                    store: Arc::new(store),
                    prefix,
                    described,
                    local_root: None,
                    timeout: OPERATION_TIMEOUT,
                })
            }
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("it is not an absolute local path"))?;
                std::fs::create_dir_all(&path).map_err(|error| BlobError::Directory {
                    path: path.display().to_string(),
                    why: error.to_string(),
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                    .map_err(store_error)?;
                Ok(BlobStore {
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                    described,
                    local_root: Some(path),
                    timeout: OPERATION_TIMEOUT,
                })
            }
            other => Err(bad(&format!(
                "`{other}:` is not a kind of store warden knows"
            ))),
        }
    }

    /// The URL the store was opened from.
    pub fn described(&self) -> &str {
        &self.described
    }

    /// The store with another bound on each `get` and `put`.
    pub fn with_timeout(mut self, timeout: Duration) -> BlobStore {
        self.timeout = timeout;
        self
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(BlobError::TimedOut(self.described.clone(), self.timeout)))
    }

    /// In a `file://` store, what a writer of the directory could plant: the blob's directories
    /// must be directories (not symlinks, which would send creates and deletes elsewhere), and
    /// the blob a regular file (a FIFO would hold a reading thread forever). A blob that is not
    /// one is removed; a directory that is not one is an error.
    fn check_local(&self, sha256: &str) -> Result<(), BlobError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let packages = root.join("packages");
        for directory in [packages.clone(), packages.join("sha256")] {
            match std::fs::symlink_metadata(&directory) {
                Ok(metadata) if !metadata.file_type().is_dir() => {
                    return Err(BlobError::Directory {
                        path: directory.display().to_string(),
                        why: "it is not a directory (a symlink is not followed)".into(),
                    });
                }
                _ => {}
            }
        }
        let file = packages.join("sha256").join(sha256);
        match std::fs::symlink_metadata(&file) {
            Ok(metadata) if !metadata.file_type().is_file() => {
                if !metadata.file_type().is_dir() {
                    let _ = std::fs::remove_file(&file);
                }
                Err(BlobError::Corrupt {
                    store: self.described.clone(),
                    name: sha256.to_string(),
                    why: "is not a regular file".into(),
                })
            }
            _ => Ok(()),
        }
    }

    fn path(&self, sha256: &str) -> Result<ObjectPath, BlobError> {
        let valid = sha256.len() == 64
            && sha256
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !valid {
            return Err(BlobError::BadName(sha256.to_string()));
        }
        Ok(self
            .prefix
            .clone()
            .join("packages")
            .join("sha256")
            .join(sha256))
    }

    fn error(&self, source: object_store::Error) -> BlobError {
        BlobError::Store {
            store: self.described.clone(),
            source,
        }
    }

    /// Stores `bytes` as blob `sha256` unless it is there already. The bytes must hash to the
    /// name.
    pub async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<Stored, BlobError> {
        self.bounded(self.put_unbounded(sha256, bytes)).await
    }

    async fn put_unbounded(&self, sha256: &str, bytes: &[u8]) -> Result<Stored, BlobError> {
        let path = self.path(sha256)?;
        if hex(&sha2::Sha256::digest(bytes)) != sha256 {
            return Err(BlobError::NotItsBytes(sha256.to_string()));
        }
        self.check_local(sha256)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self.store.put_opts(&path, payload, options).await {
            Ok(_) => Ok(Stored::Created),
            // Created meanwhile by another daemon: the same name is the same bytes (and a
            // reader checks them anyway).
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Stored::AlreadyThere),
            // Some stores answer a lost race for a create as a failed precondition.
            Err(object_store::Error::Precondition { .. }) => Ok(Stored::AlreadyThere),
            Err(source) => Err(self.error(source)),
        }
    }

    /// The blob `sha256`, if the store has it. `size` is the size of the bytes that hash to
    /// the name (as a signed index lists it): an object of another size, or whose bytes do not
    /// hash to its name, is refused (`Corrupt`) and removed, never returned. Memory is bounded by
    /// `size`, whatever the store says.
    pub async fn get(&self, sha256: &str, size: u64) -> Result<Option<Vec<u8>>, BlobError> {
        self.bounded(self.get_unbounded(sha256, size)).await
    }

    async fn get_unbounded(&self, sha256: &str, size: u64) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(sha256)?;
        self.check_local(sha256)?;
        let result = match self.store.get_opts(&path, Default::default()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.error(source)),
        };
        let wrong_size = result.meta.size != size;
        let mut bytes = Vec::with_capacity(size.min(result.meta.size) as usize);
        let mut over = false;
        if !wrong_size {
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| self.error(source))?;
                if (bytes.len() + chunk.len()) as u64 > size {
                    over = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
        }
        let why = if wrong_size || over || bytes.len() as u64 != size {
            format!("is not the {size} bytes its name's package has")
        } else if hex(&sha2::Sha256::digest(&bytes)) != sha256 {
            "does not hash to its name".to_string()
        } else {
            return Ok(Some(bytes));
        };
        // Damage or tampering: removed, so that the next download stores the package again
        // (creating only if absent, it could not replace the object). Best effort: the error
        // says what was found either way. (A daemon that read the same bad object late may
        // remove a good one another daemon just restored: that costs one more download.)
        let _ = self.store.delete(&path).await;
        Err(BlobError::Corrupt {
            store: self.described.clone(),
            name: sha256.to_string(),
            why,
        })
    }

    /// Writes `bytes` under `sha256` whatever is there, bypassing the checks: for tests that
    /// tamper with the store.
    #[cfg(feature = "test-services")]
    pub async fn overwrite_unchecked(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(sha256)?;
        self.store
            .put_opts(
                &path,
                PutPayload::from(bytes.to_vec()),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|source| self.error(source))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The Web PKI's roots, and the certificates of `ca_certs`.
pub(crate) fn roots(
    ca_certs: &[std::path::PathBuf],
) -> Result<Arc<rustls::RootCertStore>, BlobError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in ca_certs {
        let bad = |why: String| BlobError::CaCert {
            path: path.display().to_string(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|error| bad(error.to_string()))?;
        let certificates = warden_host::tls::certificates_from_pem_or_der(&bytes)
            .map_err(|error| bad(error.to_string()))?;
        for der in certificates {
            roots
                .add(rustls::pki_types::CertificateDer::from(der))
                .map_err(|error| bad(error.to_string()))?;
        }
    }
    Ok(Arc::new(roots))
}

/// object_store's HTTP client for S3: hyper, with rustls on ring, trusting `roots`.
#[derive(Debug)]
pub(crate) struct RustlsConnector {
    pub(crate) roots: Arc<rustls::RootCertStore>,
}

impl HttpConnector for RustlsConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| object_store::Error::Generic {
                store: "S3",
                source: Box::new(error),
            })?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = match allow_http {
            true => builder.https_or_http(),
            false => builder.https_only(),
        }
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector);
        Ok(HttpClient::new(HyperService { client }))
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

#[derive(Debug)]
struct HyperService {
    client: hyper_util::client::legacy::Client<Connector, HttpRequestBody>,
}

#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
struct NoAnswer(Duration);

/// An error and its causes, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Chain(String);

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl HttpService for HyperService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        use http_body_util::BodyExt;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, NoAnswer(REQUEST_TIMEOUT)))?
            .map_err(|error| {
                let kind = match error.is_connect() {
                    true => HttpErrorKind::Connect,
                    false => HttpErrorKind::Request,
                };
                // hyper-util says only "client error (Connect)": the causes below it (an
                // untrusted certificate, a refused connection, a name not found) are what an
                // operator needs.
                HttpError::new(kind, Chain(chain(&error)))
            })?;
        let (parts, body) = response.into_parts();
        let body = match parts.status.is_success() || parts.status.is_redirection() {
            true => HttpResponseBody::new(
                body.map_err(|error| HttpError::new(HttpErrorKind::Interrupted, error)),
            ),
            // A failed answer's body becomes part of an error message: read no more of it than
            // that needs, whatever the server sends.
            false => HttpResponseBody::new(
                http_body_util::Limited::new(body, ERROR_BODY_LIMIT).map_err(|error| {
                    HttpError::new(HttpErrorKind::Interrupted, Chain(chain(&*error)))
                }),
            ),
        };
        Ok(HttpResponse::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("blobs")).unwrap();
        let settings = BlobSettings {
            url: url.to_string(),
            ..BlobSettings::default()
        };
        (dir, BlobStore::open(&settings).unwrap())
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&sha2::Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn a_local_directory_keeps_blobs_by_their_hash_and_refuses_bytes_that_are_not() {
        let (_dir, store) = local();
        let name = sha(b"package");
        assert_eq!(store.get(&name, 7).await.unwrap(), None);
        assert_eq!(store.put(&name, b"package").await.unwrap(), Stored::Created);
        assert_eq!(
            store.put(&name, b"package").await.unwrap(),
            Stored::AlreadyThere
        );
        assert_eq!(
            store.get(&name, 7).await.unwrap().as_deref(),
            Some(&b"package"[..])
        );
        // Another size than the name's package has is refused, and removed.
        let refused = store.get(&name, 3).await.unwrap_err();
        assert!(refused.to_string().contains("not the 3 bytes"), "{refused}");
        assert_eq!(store.get(&name, 7).await.unwrap(), None);
        assert!(matches!(
            store.put(&name, b"other").await,
            Err(BlobError::NotItsBytes(_))
        ));
        for bad in ["../etc/passwd", "ABC", &name.to_uppercase(), ""] {
            assert!(matches!(
                store.get(bad, 100).await,
                Err(BlobError::BadName(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_local_store_refuses_what_a_writer_of_its_directory_could_plant() {
        let (dir, store) = local();
        let root = dir.path().join("blobs");
        let name = sha(b"package");
        assert_eq!(store.put(&name, b"package").await.unwrap(), Stored::Created);
        let file = root.join("packages/sha256").join(&name);
        // A FIFO where the blob was: refused at once (not read, which would block), removed.
        std::fs::remove_file(&file).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &file,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let refused = store.get(&name, 7).await.unwrap_err();
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );
        assert!(std::fs::symlink_metadata(&file).is_err());
        // A symlink where the blob was: the same.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"package").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(matches!(
            store.get(&name, 7).await,
            Err(BlobError::Corrupt { .. })
        ));
        assert!(std::fs::symlink_metadata(&file).is_err());
        assert!(elsewhere.exists());
        // A symlinked directory would send creates elsewhere: refused.
        std::fs::remove_dir_all(root.join("packages/sha256")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("packages/sha256")).unwrap();
        let refused = store.put(&name, b"package").await.unwrap_err();
        assert!(matches!(refused, BlobError::Directory { .. }), "{refused}");
    }

    #[test]
    fn a_directory_that_cannot_be_made_says_which() {
        let settings = BlobSettings {
            url: "file:///proc/warden-cannot-be-made".into(),
            ..BlobSettings::default()
        };
        let error = BlobStore::open(&settings).unwrap_err().to_string();
        assert!(error.contains("/proc/warden-cannot-be-made"), "{error}");
        assert!(!error.contains("s3://"), "{error}");
    }

    #[test]
    fn a_store_url_is_checked() {
        for url in ["ftp://x", "s3://", "not a url", "file://relative"] {
            let settings = BlobSettings {
                url: url.into(),
                ..BlobSettings::default()
            };
            let error = BlobStore::open(&settings).unwrap_err().to_string();
            assert!(error.contains("s3://BUCKET"), "{url}: {error}");
        }
    }
}
