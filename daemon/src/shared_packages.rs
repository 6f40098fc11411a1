//! The cluster's object storage as the daemons' shared store of packages: a daemon installing
//! from a registry looks there first, and stores there what it downloaded, so that a package is
//! downloaded once for the whole cluster. What it finds is verified against the registry's
//! signed index exactly as a download is (in the install); a store that fails or holds bad bytes
//! costs a download, never a node.
//!
//! A store that does not answer is left alone for a while (`PAUSE`): nodes load one after
//! another, and each waiting out the timeout would hold a start or a reload for minutes. Stores
//! happen in the background, a few at a time, so that no install waits for one.

use crate::telemetry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_cluster::{BlobError, BlobStore, Stored};
use warden_registry::client::install::{BlobFuture, PackageBlobs};

/// How long the daemon goes without the store after it failed to answer.
const PAUSE: Duration = Duration::from_secs(60);
/// Packages being stored in the background at once, at most: past that, a download is not
/// stored (another daemon, or the next download, will).
const STORES_IN_FLIGHT: usize = 2;
/// The longest part of a store's error message that is logged.
const MESSAGE_LIMIT: usize = 1000;

/// The packages shared through object storage.
pub struct SharedPackages {
    store: BlobStore,
    /// Until when the store is left alone, after it did not answer.
    paused_until: Arc<Mutex<Option<Instant>>>,
    stores: Arc<tokio::sync::Semaphore>,
}

impl SharedPackages {
    pub fn new(store: BlobStore) -> SharedPackages {
        SharedPackages {
            store,
            paused_until: Arc::new(Mutex::new(None)),
            stores: Arc::new(tokio::sync::Semaphore::new(STORES_IN_FLIGHT)),
        }
    }

    /// Where the blobs are, for the start-up message.
    pub fn described(&self) -> &str {
        self.store.described()
    }

    fn paused(&self) -> bool {
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *until {
            Some(instant) if Instant::now() < instant => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }
}

/// Counts and logs a failure of the store; one that says it is away pauses it.
fn failed(operation: &'static str, error: &BlobError, paused_until: &Mutex<Option<Instant>>) {
    let kind = match error {
        BlobError::Corrupt { .. } => "corrupt",
        _ => "unavailable",
    };
    metrics::counter!(telemetry::CLUSTER_BLOB_FAILURES, "operation" => operation, "kind" => kind)
        .increment(1);
    if kind == "unavailable" {
        *paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now() + PAUSE);
    }
    // The message may carry what the store's server said: one line, bounded.
    let message: String = error
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_LIMIT)
        .collect();
    match (operation, kind) {
        ("get", "corrupt") => tracing::warn!(
            "the cluster's package store: {message}; the package is downloaded from its registry instead"
        ),
        ("get", _) => tracing::warn!(
            "the cluster's package store: {message}; packages are downloaded from their registries for the next {}s",
            PAUSE.as_secs()
        ),
        _ => tracing::warn!(
            "the cluster's package store: {message}; the other daemons download the package from its registry"
        ),
    }
}

impl PackageBlobs for SharedPackages {
    fn find<'a>(&'a self, sha256: &'a str, size: u64) -> BlobFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            if self.paused() {
                return None;
            }
            match self.store.get(sha256, size).await {
                Ok(Some(bytes)) => {
                    metrics::counter!(telemetry::CLUSTER_PACKAGES, "from" => "blobs").increment(1);
                    Some(bytes)
                }
                Ok(None) => None,
                Err(error) => {
                    failed("get", &error, &self.paused_until);
                    None
                }
            }
        })
    }

    fn keep<'a>(&'a self, sha256: &'a str, bytes: &'a [u8]) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            metrics::counter!(telemetry::CLUSTER_PACKAGES, "from" => "registry").increment(1);
            if self.paused() {
                return;
            }
            let Ok(permit) = self.stores.clone().try_acquire_owned() else {
                return;
            };
            let (store, paused_until) = (self.store.clone(), self.paused_until.clone());
            let (sha256, bytes) = (sha256.to_string(), bytes.to_vec());
            tokio::spawn(async move {
                let _permit = permit;
                match store.put(&sha256, &bytes).await {
                    Ok(Stored::Created) => tracing::info!(
                        package_sha256 = sha256,
                        "package stored in the cluster's object storage"
                    ),
                    Ok(Stored::AlreadyThere) => {}
                    Err(error) => failed("put", &error, &paused_until),
                }
            });
        })
    }
}
