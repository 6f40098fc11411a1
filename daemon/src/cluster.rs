//! The daemon's side of a cluster: joining the shared database (the storage scopes live there),
//! and knowing whether it answers, for `/readyz` and the metrics.

use crate::auth::store::AuthStore;
use crate::daemon::StartError;
use crate::manifest::{BLOBS_URL_ENV, Cluster, DEFAULT_DATABASE_URL_ENV, Manifest};
use crate::shared_packages::SharedPackages;
use crate::telemetry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use warden_cluster::{
    BlobSettings, BlobStore, Database, DatabaseOptions, PgAudit, PgPrincipals, PgStorage, RunQueue,
    Wakeup,
};
use warden_host::Storage;

/// How often the daemon asks the database whether it answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a probe waits for the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the listener for the queue's notifications waits for its connection.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes failed in a row before the daemon says it is not ready: one slow answer is not an
/// outage, and a load balancer should not drain every daemon for it.
const FAILURES_TO_UNREADY: u32 = 3;

/// The cluster this daemon joins: `[cluster]` in the manifest, or, without it, the default
/// settings when `WARDEN_DATABASE_URL` is set (a container configured by its environment).
pub fn configured(manifest: &Manifest) -> Option<Cluster> {
    // Set but empty still joins, and then refuses to start: an empty variable is a
    // configuration gone wrong (an unset `${DATABASE_URL}` in a Compose file), and falling
    // back to local storage would split the cluster's data silently.
    let mut cluster = manifest
        .cluster
        .clone()
        .or_else(|| std::env::var_os(DEFAULT_DATABASE_URL_ENV).map(|_| Cluster::default()))?;
    if cluster.blobs.is_none() {
        cluster.blobs = std::env::var(BLOBS_URL_ENV)
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| BlobSettings {
                url,
                ..BlobSettings::default()
            });
    }
    Some(cluster)
}

/// This daemon's link to the cluster's database.
pub struct ClusterLink {
    database: Database,
    /// The queue of runs every daemon of the cluster takes from.
    pub queue: RunQueue,
    /// The `[cluster]` settings it joined with (fixed until a restart).
    pub settings: Cluster,
    /// Runs queued or finished anywhere in the cluster, as the database announces them.
    wakeups: broadcast::Sender<Wakeup>,
    /// Probes failed in a row. A `/readyz` reads this rather than asking the database, so that
    /// unauthenticated probes cannot load the database.
    failures: AtomicU32,
    /// Writes of records of runs answered at once, in flight.
    record_writes: Arc<tokio::sync::Semaphore>,
    /// The packages the daemons share through object storage, when `blobs` names a store.
    packages: Option<SharedPackages>,
}

/// Records of runs answered at once being written to the database at a time, at most: past
/// that, a record stays this daemon's only, rather than piling up behind a slow database.
const MAX_RECORD_WRITES: usize = 64;
/// How long writing one record may take.
const RECORD_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the cluster's database (waiting for it up to the connect timeout) and brings its
/// schema up to date.
pub async fn connect(cluster: &Cluster) -> Result<Database, StartError> {
    let url = std::env::var(&cluster.database_url_env)
        .ok()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| StartError::NoDatabaseUrl(cluster.database_url_env.clone()))?;
    let options = DatabaseOptions {
        max_connections: cluster.max_connections,
        connect_timeout: cluster.connect_timeout,
        ..DatabaseOptions::default()
    };
    Ok(Database::connect(&url, &options).await?)
}

/// The auth store of the host `manifest` describes: in a cluster, the cluster's database,
/// connected on `runtime` (a multi-threaded one, entered while the store is used); otherwise
/// `data_dir/auth.redb`. For command-line tools that run outside the daemon.
pub fn auth_store(
    manifest: &Manifest,
    runtime: &tokio::runtime::Runtime,
) -> Result<AuthStore, StartError> {
    match configured(manifest) {
        Some(cluster) => {
            let database = runtime.block_on(connect(&cluster))?;
            Ok(AuthStore::cluster(PgPrincipals::new(&database)))
        }
        None => AuthStore::open(&manifest.data_dir.join("auth.redb")).map_err(|error| {
            StartError::Storage(format!(
                "{error} (is the daemon running? it holds this file while it runs: stop it first, or use /v1/admin/... with `warden call`)"
            ))
        }),
    }
}

impl ClusterLink {
    /// Where the daemons share the packages they install, if anywhere.
    pub fn packages(&self) -> Option<&dyn warden_registry::client::install::PackageBlobs> {
        self.packages
            .as_ref()
            .map(|packages| packages as &dyn warden_registry::client::install::PackageBlobs)
    }

    /// Connects (waiting for the database up to the connect timeout), migrates the schema and
    /// starts probing the database in the background.
    pub async fn join(cluster: &Cluster) -> Result<Arc<ClusterLink>, StartError> {
        let packages = match &cluster.blobs {
            Some(settings) => Some(SharedPackages::new(BlobStore::open(settings)?)),
            None => None,
        };
        let database = connect(cluster).await?;
        tracing::info!("storage scopes are in the cluster's PostgreSQL database");
        if let Some(packages) = &packages {
            tracing::info!(
                "packages are shared through the object storage at {}",
                packages.described()
            );
        }
        metrics::gauge!(telemetry::CLUSTER_DATABASE_UP).set(1.0);
        let queue = RunQueue::new(&database, &owner());
        let (wakeups, _) = broadcast::channel(1024);
        RunQueue::listen(&database.probe(LISTEN_TIMEOUT), &wakeups).await?;
        let link = Arc::new(ClusterLink {
            database,
            queue,
            settings: cluster.clone(),
            wakeups,
            failures: AtomicU32::new(0),
            record_writes: Arc::new(tokio::sync::Semaphore::new(MAX_RECORD_WRITES)),
            packages,
        });
        link.spawn_probe();
        Ok(link)
    }

    /// Shares the record of run `id`, answered at once without an idempotency key, so that
    /// `GET /v1/runs/{id}` finds it on every daemon. In the background: the answer does not
    /// wait for the database.
    pub fn share_record(&self, id: &str, caller: &str, status: u16, record: &serde_json::Value) {
        let Ok(permit) = self.record_writes.clone().try_acquire_owned() else {
            metrics::counter!(telemetry::CLUSTER_RECORDS_UNSHARED).increment(1);
            return;
        };
        let queue = self.queue.clone();
        let (id, caller, record) = (id.to_string(), caller.to_string(), record.to_string());
        tokio::spawn(async move {
            let written = tokio::time::timeout(
                RECORD_WRITE_TIMEOUT,
                queue.record_sync(&id, &caller, status, &record),
            )
            .await;
            if !matches!(written, Ok(Ok(()))) {
                metrics::counter!(telemetry::CLUSTER_RECORDS_UNSHARED).increment(1);
                tracing::debug!(run_id = %id, "a run's record was not shared with the cluster");
            }
            drop(permit);
        });
    }

    /// The cluster's users, roles and credentials.
    pub fn auth_store(&self) -> AuthStore {
        AuthStore::cluster(PgPrincipals::new(&self.database))
    }

    /// The cluster's audit log.
    pub fn audit(&self) -> PgAudit {
        PgAudit::new(&self.database)
    }

    /// Runs queued or finished from now on, anywhere in the cluster.
    pub fn wakeups(&self) -> broadcast::Receiver<Wakeup> {
        self.wakeups.subscribe()
    }

    /// The storage scopes, in the shared database.
    pub fn storage(&self) -> Storage {
        Storage::new(Arc::new(PgStorage::new(&self.database)))
    }

    /// Whether the database answers: false after `FAILURES_TO_UNREADY` probes failed in a row.
    pub fn reachable(&self) -> bool {
        self.failures.load(Ordering::Relaxed) < FAILURES_TO_UNREADY
    }

    /// Probes the database every `PROBE_INTERVAL` for as long as the link lives, through a
    /// connection of its own (a busy pool is not a database that is down), logging each change
    /// (and only changes, so a database that is down does not flood the log).
    fn spawn_probe(self: &Arc<Self>) {
        let link = Arc::downgrade(self);
        let probe = self.database.probe(PROBE_TIMEOUT);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let answered = probe.ping(PROBE_TIMEOUT).await;
                let Some(link) = link.upgrade() else { return };
                let was = link.reachable();
                match &answered {
                    Ok(()) => link.failures.store(0, Ordering::Relaxed),
                    Err(_) => {
                        link.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let now = link.reachable();
                if let Ok(Ok(depth)) = tokio::time::timeout(PROBE_TIMEOUT, link.queue.depth()).await
                {
                    metrics::gauge!(telemetry::CLUSTER_QUEUE_DEPTH).set(depth as f64);
                }
                metrics::gauge!(telemetry::CLUSTER_DATABASE_UP).set(if now { 1.0 } else { 0.0 });
                match answered {
                    Err(error) if was && !now => tracing::warn!(
                        "the cluster's database stopped answering ({FAILURES_TO_UNREADY} probes in a row): {error}"
                    ),
                    Ok(()) if !was => tracing::info!("the cluster's database answers again"),
                    _ => {}
                }
            }
        });
    }
}

/// This daemon as the leases it holds name it: the host's name (a pod's name in Kubernetes)
/// and the process id, for an operator reading `warden_runs`.
pub(crate) fn owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().chars().take(64).collect::<String>())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "warden".to_string());
    format!("{host}:{}", std::process::id())
}
