//! The daemon's state and life: start (load, verify, prepare), reload (a new generation
//! swapped in whole, or nothing), sync (nodes blocked by their registry stopped at once), and
//! shutdown (stop accepting, let runs finish up to a grace, then stop them).

use crate::admission::Admission;
use crate::audit::{AuditError, AuditLog};
use crate::auth::verifiers::Verifiers;
use crate::generation::{self, Generation, LiveNode};
use crate::loader;
use crate::manifest::{ApiKey, Manifest, ManifestError};
use crate::records::RunRecords;
use crate::telemetry;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use warden_host::{CodeCache, Runtime, RuntimeConfig, Storage};
use warden_registry::client::install::InstallState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{} node problem{} (nothing was started):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|problem| format!("  {problem}")).collect::<Vec<_>>().join("\n"))]
    Nodes(Vec<String>),
    #[error(
        "no API key is configured: the daemon does not serve without one. Set WARDEN_API_KEY (or --api-key-file), or add [[api.keys]] with the key's SHA-256 to the manifest"
    )]
    NoApiKey,
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the node storage: {0}")]
    Storage(String),
    #[error(
        "[cluster] is set, but the environment variable {0} that holds the database URL is not; set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    NoDatabaseUrl(String),
    #[error("joining the cluster: {0}")]
    Cluster(#[from] warden_cluster::ClusterError),
    #[error("joining the cluster: {0}")]
    Blobs(#[from] warden_cluster::BlobError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Why a reload was refused; the serving generation is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{} node problem{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|problem| format!("  {problem}")).collect::<Vec<_>>().join("\n"))]
    Nodes(Vec<String>),
    #[error(
        "the manifest has no [[api.keys]] and no key was given on the command line: no caller could reach the daemon after this reload"
    )]
    NoApiKey,
}

impl ReloadError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Manifest(ManifestError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            ReloadError::Manifest(error) => vec![error.to_string()],
            ReloadError::Nodes(problems) => problems.clone(),
            ReloadError::NoApiKey => vec![self.to_string()],
        }
    }
}

/// What the daemon is started with beside its manifest.
#[derive(Clone, Default)]
pub struct Options {
    /// API keys given outside the manifest (the command line, `WARDEN_API_KEY`).
    pub api_keys: Vec<ApiKey>,
}

pub struct Daemon {
    pub manifest_path: PathBuf,
    /// The manifest the daemon started with: its listeners, data directory and host bounds
    /// hold until a restart.
    pub started_with: Manifest,
    runtime: Runtime,
    current: RwLock<Arc<Generation>>,
    keys: RwLock<Vec<ApiKey>>,
    /// How executor and OpenID Connect tokens are checked, as the serving manifest says.
    verifiers: RwLock<Verifiers>,
    /// Users, roles and their credentials (`data_dir/auth.redb`, or the cluster's).
    pub auth: Option<crate::auth::store::AuthStore>,
    options: Options,
    pub records: RunRecords,
    pub audit: AuditLog,
    pub admission: Admission,
    reloading: tokio::sync::Mutex<()>,
    next_generation: AtomicU64,
    shutting_down: AtomicBool,
    /// Set when runs still in flight must stop (the shutdown grace is over).
    hard_stop: watch::Sender<bool>,
    pub code_cache: Option<Arc<CodeCache>>,
    /// The shared database, when this daemon is one of a cluster.
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Failed authentications, by address, for the audit log.
    pub auth_failures: AuthFailures,
    /// Failed authentications, by source, for holding back a source that keeps failing.
    pub throttle: crate::auth::throttle::FailureThrottle,
    /// PATs people issue themselves, by user.
    pub self_service: crate::auth::throttle::RateLimit<String>,
    /// Request bodies read and typed at once.
    pub reading: Admission,
    /// Bytes of answers made and not yet taken by their callers; past
    /// [`MAX_UNDELIVERED_BYTES`], no new run is admitted.
    pub undelivered: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns for looking credentials up in the user store (`identity::STORE_LOOKUPS`).
    pub store_lookups: tokio::sync::Semaphore,
}

/// Bytes of answers waiting for slow callers, in all, before new runs are turned away.
pub const MAX_UNDELIVERED_BYTES: usize = 256 * 1024 * 1024;

/// Failed authentications per address (an IPv6 address counts by its /64): the audit log
/// gets one record per address every [`AuthFailures::INTERVAL`], carrying how many failures
/// it stands for, and at most [`AuthFailures::MAX_RECORDS`] records in all per interval; the
/// next record after a full interval says how many went unrecorded.
#[derive(Default)]
pub struct AuthFailures {
    state: std::sync::Mutex<AuthFailureState>,
}

#[derive(Default)]
struct AuthFailureState {
    seen: std::collections::HashMap<Option<std::net::IpAddr>, (std::time::Instant, u64)>,
    window: Option<std::time::Instant>,
    recorded: u64,
    unrecorded: u64,
}

/// What an audit record of failed authentications carries.
pub struct AuthFailureNote {
    /// Failures from this address since its last record.
    pub since_last: u64,
    /// Failures from anywhere that went unrecorded in the last full interval.
    pub unrecorded_elsewhere: u64,
}

impl AuthFailures {
    pub const INTERVAL: Duration = Duration::from_secs(10);
    pub const MAX_RECORDS: u64 = 100;
    /// Addresses remembered; past it the table starts again.
    const MAX_ADDRESSES: usize = 4096;

    /// Counts a failure from `peer`; what to record when a record is due.
    pub fn note(&self, peer: Option<std::net::IpAddr>) -> Option<AuthFailureNote> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = std::time::Instant::now();
        let key = crate::auth::throttle::source(peer);
        if state
            .window
            .is_none_or(|start| now.duration_since(start) >= Self::INTERVAL)
        {
            state.window = Some(now);
            state.recorded = 0;
        }
        if state.seen.len() >= Self::MAX_ADDRESSES && !state.seen.contains_key(&key) {
            state.seen.clear();
        }
        let due = match state.seen.get_mut(&key) {
            Some((last, count)) if now.duration_since(*last) < Self::INTERVAL => {
                *count += 1;
                None
            }
            Some((last, count)) => {
                let since_last = *count;
                *last = now;
                *count = 0;
                Some(since_last)
            }
            None => {
                state.seen.insert(key, (now, 0));
                Some(0)
            }
        };
        let since_last = due?;
        if state.recorded >= Self::MAX_RECORDS {
            state.unrecorded += 1 + since_last;
            return None;
        }
        state.recorded += 1;
        Some(AuthFailureNote {
            since_last,
            unrecorded_elsewhere: std::mem::take(&mut state.unrecorded),
        })
    }
}

impl Daemon {
    /// Reads the manifest, loads and prepares every node, and opens the audit log. Any problem
    /// refuses the start, every problem listed.
    pub async fn start(manifest_path: &Path, options: Options) -> Result<Arc<Daemon>, StartError> {
        let manifest = Manifest::load(manifest_path)?;
        let keys = all_keys(&manifest, &options);
        let data = &manifest.data_dir;
        std::fs::create_dir_all(data).map_err(|source| StartError::DataDir {
            path: data.clone(),
            source,
        })?;
        let (storage, cluster) = match crate::cluster::configured(&manifest) {
            Some(settings) => {
                let link = crate::cluster::ClusterLink::join(&settings).await?;
                (link.storage(), Some(link))
            }
            None => {
                if std::env::var_os(crate::manifest::BLOBS_URL_ENV).is_some() {
                    tracing::warn!(
                        "{} is set, but this daemon is not in a cluster ([cluster], or {}): packages are kept in its data directory only",
                        crate::manifest::BLOBS_URL_ENV,
                        crate::manifest::DEFAULT_DATABASE_URL_ENV
                    );
                }
                (
                    Storage::open(&data.join("storage.redb"))
                        .map_err(|error| StartError::Storage(error.to_string()))?,
                    None,
                )
            }
        };
        // Users, roles and credentials: the cluster's, or this daemon's own file.
        let auth = match &cluster {
            Some(link) => {
                if data.join("auth.redb").exists() {
                    tracing::warn!(
                        "{} is not used in a cluster: its users and keys open no daemon; create them again with `warden serve admin` (the cluster's database URL set), then remove the file",
                        data.join("auth.redb").display()
                    );
                }
                link.auth_store()
            }
            None => crate::auth::store::AuthStore::open(&data.join("auth.redb"))
                .map_err(|error| StartError::Storage(error.to_string()))?,
        };
        // Never unauthenticated: some credential must exist, an operator key or one in the
        // store (`--create-owner`).
        let stored = auth
            .has_live_credential()
            .map_err(|error| StartError::Storage(error.to_string()))?;
        if keys.is_empty() && !stored {
            return Err(StartError::NoApiKey);
        }
        // The cluster's one chain of every daemon's records, or this daemon's own file.
        let audit = match &cluster {
            Some(link) => AuditLog::cluster(link.audit(), crate::cluster::owner()).await?,
            None => AuditLog::open(&data.join("audit.jsonl"))?,
        };
        let code_cache = match manifest.host.code_cache {
            true => match CodeCache::open(&data.join("code")) {
                Ok(cache) => Some(Arc::new(cache)),
                Err(error) => {
                    tracing::warn!("compiled code is not cached: {error}");
                    None
                }
            },
            false => None,
        };
        // Describing a component takes a runtime slot too: keep two beside the runs, so a
        // reload under full load can still prepare its nodes.
        let runtime = Runtime::from_config(RuntimeConfig {
            concurrency: manifest.host.concurrency + 2,
            files_dir: Some(data.join("files")),
            code_cache: code_cache.clone(),
            ..RuntimeConfig::new(storage)
        });
        let (hard_stop, _) = watch::channel(false);
        let daemon = Arc::new(Daemon {
            manifest_path: manifest.path.clone(),
            admission: Admission::new(manifest.host.concurrency, manifest.host.queue),
            records: RunRecords::new(manifest.host.run_records, manifest.host.run_record_ttl),
            started_with: manifest.clone(),
            runtime,
            current: RwLock::new(Arc::new(Generation::empty())),
            keys: RwLock::new(keys),
            verifiers: RwLock::new(Verifiers::default()),
            auth: Some(auth),
            options,
            audit,
            reloading: tokio::sync::Mutex::new(()),
            next_generation: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            hard_stop,
            code_cache,
            auth_failures: AuthFailures::default(),
            throttle: crate::auth::throttle::FailureThrottle::new(
                manifest.api.auth_failures_per_minute,
            ),
            self_service: crate::auth::throttle::RateLimit::per(
                crate::api::SELF_ISSUED_PER_HOUR,
                Duration::from_secs(3600),
            ),
            reading: Admission::new(manifest.host.concurrency.max(4), manifest.host.queue),
            undelivered: Arc::default(),
            store_lookups: tokio::sync::Semaphore::new(crate::api::STORE_LOOKUPS),
            cluster,
        });
        daemon.audit.record(
            "daemon_start",
            json!({ "manifest": manifest.path, "manifest_sha256": manifest.sha256 }),
        );
        let refused = match daemon.apply(manifest, "start").await {
            Ok(_) => return Ok(daemon),
            Err(ReloadError::Manifest(error)) => StartError::Manifest(error),
            Err(ReloadError::Nodes(problems)) => StartError::Nodes(problems),
            Err(ReloadError::NoApiKey) => StartError::NoApiKey,
        };
        // The records of a refused start (its problems) reach the cluster's database before
        // the process ends.
        daemon.audit.flush(crate::serve::AUDIT_FLUSH).await;
        Err(refused)
    }

    /// The generation serving now.
    pub fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn swap(&self, generation: Generation) -> Arc<Generation> {
        let generation = Arc::new(generation);
        metrics::gauge!(telemetry::GENERATION).set(generation.number as f64);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *current, generation)
    }

    /// How executor and OpenID Connect tokens are checked now.
    pub fn verifiers(&self) -> Verifiers {
        self.verifiers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The API keys accepted now.
    pub fn keys(&self) -> Vec<ApiKey> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Completes when runs in flight must stop.
    pub async fn until_hard_stop(&self) {
        let mut receiver = self.hard_stop.subscribe();
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Re-reads the manifest and swaps in a new generation, or refuses the reload whole and
    /// keeps serving the current one. `trigger` says what asked (`sighup`, `api`, `watch`).
    pub async fn reload(&self, trigger: &str) -> Result<u64, ReloadError> {
        // Read under the reload lock: a reload that waited for another reads the file as it
        // is when its turn comes.
        let reloading = self.reloading.lock().await;
        let result = match Manifest::load(&self.manifest_path) {
            Ok(manifest) => self.apply_locked(manifest, trigger, reloading).await,
            Err(error) => Err(ReloadError::Manifest(error)),
        };
        match &result {
            Ok(generation) => {
                metrics::counter!(telemetry::RELOADS, "result" => "applied").increment(1);
                tracing::info!(generation, trigger, "reload applied");
            }
            Err(error) => {
                metrics::counter!(telemetry::RELOADS, "result" => "refused").increment(1);
                tracing::warn!(trigger, "reload refused: {error}");
                self.audit.record(
                    "reload_refused",
                    json!({ "trigger": trigger, "problems": error.problems() }),
                );
            }
        }
        result
    }

    async fn apply(&self, manifest: Manifest, trigger: &str) -> Result<u64, ReloadError> {
        let reloading = self.reloading.lock().await;
        self.apply_locked(manifest, trigger, reloading).await
    }

    async fn apply_locked(
        &self,
        manifest: Manifest,
        trigger: &str,
        _reloading: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<u64, ReloadError> {
        let (manifest, changed) = manifest.keeping_fixed(&self.started_with);
        for field in changed {
            tracing::warn!("{field} changed in the manifest: it takes effect at the next restart");
        }
        // A store that does not answer now (in a cluster, its database is away) is taken to
        // hold credentials: it did at the start, and a blip must not refuse a reload.
        let stored = self.auth.as_ref().is_some_and(|store| {
            store
                .has_live_credential()
                .unwrap_or_else(|error| error.in_cluster())
        });
        if all_keys(&manifest, &self.options).is_empty() && !stored {
            return Err(ReloadError::NoApiKey);
        }
        // Key sets that are new are fetched once here; unchanged ones keep their cache.
        let verifiers = Verifiers::build(&self.verifiers(), &manifest)
            .await
            .map_err(|error| ReloadError::Nodes(vec![error.to_string()]))?;
        // Reading packages and compiling are long and blocking: off the executor's threads,
        // so runs and the API go on meanwhile.
        let loaded = off_the_executor(async {
            // Nodes their registry now blocks stop first, whatever becomes of the reload.
            self.sync_registries(&manifest).await;
            let blobs = self.cluster.as_ref().and_then(|link| link.packages());
            loader::load(&manifest, blobs).await
        })
        .await;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        for (node, reason) in &loaded.skipped {
            tracing::warn!(node, "not loaded: {reason}");
            self.audit
                .record("node_skipped", json!({ "node": node, "reason": reason }));
        }
        if !loaded.problems.is_empty() {
            for problem in &loaded.problems {
                self.audit
                    .record("node_refused", json!({ "problem": problem }));
            }
            return Err(ReloadError::Nodes(loaded.problems));
        }
        let number = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let previous = self.current();
        let nodes = off_the_executor(generation::build(
            &self.runtime,
            loaded.verified,
            &previous,
            number,
        ))
        .await
        .map_err(|problems| {
            for problem in &problems {
                self.audit
                    .record("node_refused", json!({ "problem": problem }));
            }
            ReloadError::Nodes(problems)
        })?;
        for live in nodes.iter().filter(|live| live.generation == number) {
            let verified = &live.verified;
            self.audit.record(
                "node_loaded",
                json!({
                    "generation": number,
                    "node": verified.entry.name,
                    "version": verified.version,
                    "package_sha256": verified.package_sha256,
                    "publisher": verified.publisher,
                    "origin": verified.origin,
                    // The manifest's grant is the operator's approval.
                    "approved": {
                        "capabilities": live.config.capabilities.names(),
                        "allowed_hosts": verified.allowed_hosts,
                        "limits": {
                            "preset": verified.entry.preset.name(),
                            "memory_bytes": live.config.limits.memory_bytes,
                            "fuel": live.config.limits.fuel,
                            "timeout_ms": live.config.limits.timeout.as_millis() as u64,
                        },
                        "concurrency": verified.entry.concurrency,
                    },
                }),
            );
        }
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = all_keys(&manifest, &self.options);
        *self
            .verifiers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = verifiers;
        let old = self
            .swap(Generation::new(number, manifest.sha256.clone(), nodes).missing(loaded.skipped));
        let new = self.current();
        for live in &old.nodes {
            if new.nodes.iter().any(|kept| Arc::ptr_eq(kept, live)) {
                continue;
            }
            live.retire();
            let grace = self.started_with.host.stop_grace;
            let reason = match new.package(live.name()) {
                // Removed from the manifest: its runs get the stop grace, then stop.
                None => "the node was removed from the manifest",
                // Granted less than before: what it is no longer granted must not go on.
                Some(successor) if live.narrowed_by(successor) => {
                    "the manifest no longer grants what the node had when the run began"
                }
                // Replaced (another version, more grant, other limits): its runs finish on
                // their generation.
                Some(_) => continue,
            };
            self.audit.record(
                "node_stopping",
                json!({ "node": live.name(), "generation": number, "reason": reason, "stop_grace_ms": grace.as_millis() as u64 }),
            );
            let live = live.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                live.stop(reason);
            });
        }
        self.audit.record(
            "reload_applied",
            json!({
                "generation": number,
                "trigger": trigger,
                "manifest_sha256": manifest.sha256,
                "nodes": new.nodes.iter().map(|live| json!({"node": live.name(), "version": live.verified.version})).collect::<Vec<_>>(),
            }),
        );
        Ok(number)
    }

    /// Syncs the registries of the manifest as it is on disk now (as started, when it no
    /// longer reads), between reloads.
    pub async fn sync(&self) {
        // The data directory (and with it the install state) is the one the daemon started
        // with, whatever the file says now.
        let manifest = Manifest::load(&self.manifest_path)
            .map(|manifest| manifest.keeping_fixed(&self.started_with).0)
            .unwrap_or_else(|_| self.started_with.clone());
        let _reloading = self.reloading.lock().await;
        self.sync_registries(&manifest).await;
    }

    /// Syncs each registry the manifest uses and stops every serving node whose installed
    /// package is now blocked (a revoked signing key, a version the index no longer lists), at once.
    pub async fn sync_registries(&self, manifest: &Manifest) {
        let used: Vec<_> = manifest
            .registries
            .iter()
            .filter(|registry| {
                manifest
                    .nodes
                    .iter()
                    .any(|node| node.source == registry.name)
            })
            .collect();
        if used.is_empty() {
            return;
        }
        let state_dir = manifest.data_dir.join("state");
        let state = match InstallState::open(&state_dir) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!("cannot open the install state to sync: {error}");
                return;
            }
        };
        let mut warnings = Vec::new();
        for registry in used {
            match loader::client(registry) {
                Ok(client) => {
                    loader::sync_registry(registry, &client, &state, &mut warnings).await;
                }
                Err(problem) => warnings.push(problem),
            }
        }
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        // Blocked by this sync, or by an operator's `warden sync` on this state.
        let blocked: Vec<(String, String, String)> = state
            .all_installed()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|record| {
                record
                    .blocked
                    .clone()
                    .map(|reason| (record.name, record.package_sha256, reason))
            })
            .collect();
        drop(state);
        let current = self.current();
        let stopping: Vec<(Arc<LiveNode>, String)> = current
            .nodes
            .iter()
            .filter(|live| matches!(live.verified.origin, loader::Origin::Registry { .. }))
            .filter_map(|live| {
                blocked
                    .iter()
                    .find(|(name, sha, _)| {
                        *name == live.verified.entry.name && *sha == live.verified.package_sha256
                    })
                    .map(|(_, _, reason)| (live.clone(), reason.clone()))
            })
            .collect();
        if stopping.is_empty() {
            return;
        }
        let number = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let kept = current
            .nodes
            .iter()
            .filter(|live| {
                !stopping
                    .iter()
                    .any(|(stopped, _)| Arc::ptr_eq(stopped, live))
            })
            .cloned()
            .collect();
        // Still a manifest node, no longer serving: `/readyz` lists it, beside those missing
        // before.
        let mut missing = current.missing.clone();
        missing.extend(stopping.iter().map(|(live, reason)| {
            (
                live.name().to_string(),
                format!("the registry blocked it: {reason}"),
            )
        }));
        self.swap(Generation::new(number, current.manifest_sha256.clone(), kept).missing(missing));
        for (live, reason) in stopping {
            let reason = format!("the registry blocked it: {reason}");
            tracing::warn!(node = live.name(), "stopping: {reason}");
            self.audit.record(
                "node_blocked",
                json!({
                    "node": live.name(),
                    "version": live.verified.version,
                    "package_sha256": live.verified.package_sha256,
                    "reason": reason,
                    "runs_stopped": live.admission.in_use(),
                    "generation": number,
                }),
            );
            live.stop(&reason);
        }
    }

    /// Begins a graceful shutdown: new runs are refused; runs in flight get `grace`, then
    /// stop. Completes when no run holds a slot.
    pub async fn shut_down(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.audit.record("shutdown", json!({ "runs_in_flight": self.admission.in_use(), "grace_ms": grace.as_millis() as u64 }));
        let drained = async {
            while self.admission.in_use() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            let _ = self.hard_stop.send(true);
            while self.admission.in_use() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

/// Runs `work` where it may block: on a worker taken out of the executor's pool when the
/// runtime has several, as it is.
async fn off_the_executor<F: std::future::Future>(work: F) -> F::Output {
    let handle = tokio::runtime::Handle::current();
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(work))
        }
        _ => work.await,
    }
}

fn all_keys(manifest: &Manifest, options: &Options) -> Vec<ApiKey> {
    let mut keys = manifest.api.keys.clone();
    keys.extend(options.api_keys.iter().cloned());
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_are_recorded_once_per_address_and_capped_in_all() {
        let failures = AuthFailures::default();
        let ip = |text: &str| Some(text.parse::<std::net::IpAddr>().unwrap());
        assert!(failures.note(ip("192.0.2.1")).is_some());
        assert!(failures.note(ip("192.0.2.1")).is_none());
        assert!(
            failures.note(ip("::ffff:192.0.2.1")).is_none(),
            "mapped counts as IPv4"
        );
        assert!(failures.note(ip("2001:db8::1")).is_some());
        assert!(
            failures.note(ip("2001:db8::ffff:2")).is_none(),
            "the same /64"
        );
        let mut recorded = 2;
        for index in 0..500u32 {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + index);
            if failures.note(Some(address.into())).is_some() {
                recorded += 1;
            }
        }
        assert_eq!(recorded, AuthFailures::MAX_RECORDS);
    }
}
