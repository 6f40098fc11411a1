//! The daemon's side of a cluster: joining the shared database (the storage scopes live there),
//! and knowing whether it answers, for `/readyz` and the metrics.

use crate::daemon::StartError;
use crate::manifest::{Cluster, DEFAULT_DATABASE_URL_ENV, Manifest};
use crate::telemetry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warden_cluster::{Database, DatabaseOptions, PgStorage};
use warden_host::Storage;

/// How often the daemon asks the database whether it answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a probe waits for the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster this daemon joins: `[cluster]` in the manifest, or, without it, the default
/// settings when `WARDEN_DATABASE_URL` is set (a container configured by its environment).
pub fn configured(manifest: &Manifest) -> Option<Cluster> {
    manifest.cluster.clone().or_else(|| {
        std::env::var_os(DEFAULT_DATABASE_URL_ENV)
            .filter(|url| !url.is_empty())
            .map(|_| Cluster::default())
    })
}

/// This daemon's link to the cluster's database.
pub struct ClusterLink {
    database: Database,
    /// The last probe's answer. A `/readyz` reads it rather than asking the database, so that
    /// unauthenticated probes cannot load the database.
    reachable: AtomicBool,
}

impl ClusterLink {
    /// Connects (waiting for the database up to the connect timeout), migrates the schema and
    /// starts probing the database in the background.
    pub async fn join(cluster: &Cluster) -> Result<Arc<ClusterLink>, StartError> {
        let url = std::env::var(&cluster.database_url_env)
            .ok()
            .filter(|url| !url.is_empty())
            .ok_or_else(|| StartError::NoDatabaseUrl(cluster.database_url_env.clone()))?;
        let options = DatabaseOptions {
            max_connections: cluster.max_connections,
            connect_timeout: cluster.connect_timeout,
            ..DatabaseOptions::default()
        };
        let database = Database::connect(&url, &options).await?;
        tracing::info!("storage scopes are in the cluster's PostgreSQL database");
        metrics::gauge!(telemetry::CLUSTER_DATABASE_UP).set(1.0);
        let link = Arc::new(ClusterLink {
            database,
            reachable: AtomicBool::new(true),
        });
        link.spawn_probe();
        Ok(link)
    }

    /// The storage scopes, in the shared database.
    pub fn storage(&self) -> Storage {
        Storage::new(Arc::new(PgStorage::new(&self.database)))
    }

    /// Whether the database answered the last probe.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Probes the database every `PROBE_INTERVAL` for as long as the link lives, logging each
    /// change (and only changes, so a database that is down does not flood the log).
    fn spawn_probe(self: &Arc<Self>) {
        let link = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(link) = link.upgrade() else { return };
                let answered = link.database.ping(PROBE_TIMEOUT).await;
                let was = link.reachable.swap(answered.is_ok(), Ordering::Relaxed);
                metrics::gauge!(telemetry::CLUSTER_DATABASE_UP).set(match answered {
                    Ok(()) => 1.0,
                    Err(_) => 0.0,
                });
                match answered {
                    Err(error) if was => {
                        tracing::warn!("the cluster's database stopped answering: {error}")
                    }
                    Ok(()) if !was => tracing::info!("the cluster's database answers again"),
                    _ => {}
                }
            }
        });
    }
}
