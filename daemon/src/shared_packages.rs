//! The cluster's object storage as the daemons' shared store of packages: a daemon installing
//! from a registry looks there first, and stores there what it downloaded, so that a package is
//! downloaded once for the whole cluster. What it finds is verified against the registry's
//! signed index exactly as a download is (in the install); a store that fails or holds bad bytes
//! costs a download, never a node.

use crate::telemetry;
use std::time::Duration;
use warden_cluster::{BlobError, BlobStore, Stored};
use warden_registry::client::install::{BlobFuture, PackageBlobs};

/// How long a look-up or a store may take before the daemon goes on without it.
const BLOB_TIMEOUT: Duration = Duration::from_secs(20);

/// The packages shared through object storage.
pub struct SharedPackages {
    store: BlobStore,
}

impl SharedPackages {
    pub fn new(store: BlobStore) -> SharedPackages {
        SharedPackages { store }
    }

    /// Where the blobs are, for the start-up message.
    pub fn described(&self) -> &str {
        self.store.described()
    }
}

fn failed(operation: &'static str, error: &BlobError) {
    let kind = match error {
        BlobError::Corrupt { .. } => "corrupt",
        BlobError::TooLarge { .. } => "too_large",
        _ => "unavailable",
    };
    metrics::counter!(telemetry::CLUSTER_BLOB_FAILURES, "operation" => operation, "kind" => kind)
        .increment(1);
    match operation {
        "get" => tracing::warn!(
            "the cluster's package store: {error}; the package is downloaded from its registry instead"
        ),
        _ => tracing::warn!(
            "the cluster's package store: {error}; the other daemons download the package from its registry"
        ),
    }
}

impl PackageBlobs for SharedPackages {
    fn find<'a>(&'a self, sha256: &'a str, limit: usize) -> BlobFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let found = tokio::time::timeout(BLOB_TIMEOUT, self.store.get(sha256, limit as u64))
                .await
                .unwrap_or_else(|_| {
                    Err(BlobError::TimedOut(
                        self.store.described().to_string(),
                        BLOB_TIMEOUT,
                    ))
                });
            match found {
                Ok(Some(bytes)) => {
                    metrics::counter!(telemetry::CLUSTER_PACKAGES, "from" => "blobs").increment(1);
                    Some(bytes)
                }
                Ok(None) => None,
                Err(error) => {
                    failed("get", &error);
                    None
                }
            }
        })
    }

    fn keep<'a>(&'a self, sha256: &'a str, bytes: &'a [u8]) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            metrics::counter!(telemetry::CLUSTER_PACKAGES, "from" => "registry").increment(1);
            let stored = tokio::time::timeout(BLOB_TIMEOUT, self.store.put(sha256, bytes))
                .await
                .unwrap_or_else(|_| {
                    Err(BlobError::TimedOut(
                        self.store.described().to_string(),
                        BLOB_TIMEOUT,
                    ))
                });
            match stored {
                Ok(Stored::Created) => tracing::info!(
                    package_sha256 = sha256,
                    "package stored in the cluster's object storage"
                ),
                Ok(Stored::AlreadyThere) => {}
                Err(error) => failed("put", &error),
            }
        })
    }
}
