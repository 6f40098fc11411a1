//! Serving: the API and metrics listeners on the hardened HTTPS server, and the daemon's
//! background work: reloads on SIGHUP and on manifest changes, registry syncs on a schedule,
//! and a graceful shutdown on SIGTERM or SIGINT.

use crate::daemon::{Daemon, Options, StartError};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_server::ServerLimits;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a started daemon tells its operator.
#[derive(Clone, Debug)]
pub struct Ready {
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// The development certificate, when no certificate was configured.
    pub dev_certificate: Option<PathBuf>,
    pub generation: u64,
    /// `package@version` of each node loaded.
    pub nodes: Vec<String>,
    pub audit_log: String,
}

/// How long a stopping daemon waits for its last audit records to reach the cluster's database.
pub(crate) const AUDIT_FLUSH: Duration = Duration::from_secs(5);

/// How often the manifest file is checked for changes when `host.watch` is on.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How long the watcher waits before trying a refused manifest again, unchanged.
const RETRY_REFUSED: Duration = Duration::from_secs(60);

/// Starts the daemon of the manifest at `manifest_path` and serves until `shutdown`
/// completes or the process gets SIGTERM or SIGINT; then shuts down gracefully. `ready` is
/// called once the listeners are bound.
pub async fn serve(
    manifest_path: &Path,
    options: Options,
    ready: impl FnOnce(&Ready),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    crate::telemetry::handle();
    // The SIGHUP handler is in place before the (possibly long) start: a SIGHUP meanwhile is
    // kept and reloads once the daemon serves, rather than ending the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangup: Option<()> = None;
    let daemon = Daemon::start(manifest_path, options).await?;
    let manifest = daemon.started_with.clone();
    let listening = async {
        let tls = warden_registry::server::tls::server_config(
            &manifest.data_dir,
            manifest.api.tls_cert.as_deref(),
            manifest.api.tls_key.as_deref(),
        )
        .map_err(|error| ServeError::Tls(error.to_string()))?;
        let bind = |address: String| async move {
            tokio::net::TcpListener::bind(&address)
                .await
                .map_err(|source| ServeError::Listen { address, source })
        };
        let api_listener = bind(manifest.api.listen.clone()).await?;
        let metrics_listener = match &manifest.metrics {
            Some(metrics) => Some(bind(metrics.listen.clone()).await?),
            None => None,
        };
        Ok((tls, api_listener, metrics_listener))
    };
    let (tls, api_listener, metrics_listener) = match listening.await {
        Ok(listening) => listening,
        Err(error) => {
            // The start's records reach the cluster's database before the process ends.
            daemon.audit.flush(AUDIT_FLUSH).await;
            return Err(error);
        }
    };
    let generation = daemon.current();
    ready(&Ready {
        api: api_listener
            .local_addr()
            .map_err(|source| ServeError::Listen {
                address: manifest.api.listen.clone(),
                source,
            })?,
        metrics: metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok()),
        dev_certificate: manifest
            .api
            .tls_cert
            .is_none()
            .then(|| warden_registry::server::tls::dev_certificate_path(&manifest.data_dir)),
        generation: generation.number,
        nodes: generation
            .nodes
            .iter()
            .map(|live| format!("{}@{}", live.name(), live.verified.version))
            .collect(),
        audit_log: daemon.audit.location(),
    });
    let limits = ServerLimits {
        max_connections: manifest.api.max_connections,
        max_connections_per_ip: manifest.api.max_connections_per_ip,
        // Answers of runs that finish within the runs' grace still get out.
        shutdown_grace: manifest
            .host
            .shutdown_grace
            .saturating_add(Duration::from_secs(5)),
        ..ServerLimits::default()
    };
    let (stop_accepting, accepting) = tokio::sync::watch::channel(false);
    let until_stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let api = tokio::spawn(warden_server::serve_with_shutdown(
        api_listener,
        tls.clone(),
        crate::api::router(daemon.clone()),
        limits.clone(),
        until_stopped(accepting.clone()),
    ));
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(warden_server::serve_with_shutdown(
            listener,
            tls,
            crate::api::metrics_router(daemon.clone()),
            ServerLimits {
                max_connections: 64,
                shutdown_grace: Duration::from_secs(1),
                ..ServerLimits::default()
            },
            until_stopped(accepting.clone()),
        ))
    });
    let background = tokio::spawn(background(daemon.clone(), hangup));
    // In a cluster, queued runs are taken from the shared queue.
    let workers = crate::worker::Workers::start(&daemon);
    tokio::select! {
        () = shutdown => {}
        () = terminated() => {}
    }
    tracing::info!(
        "shutting down: no new connections; runs in flight get {:?}",
        manifest.host.shutdown_grace
    );
    let _ = stop_accepting.send(true);
    background.abort();
    daemon.shut_down(manifest.host.shutdown_grace).await;
    if let Some(workers) = workers {
        // Queued runs stopped by the shutdown go back to the queue for another daemon.
        workers.drain().await;
    }
    let _ = api.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    // In a cluster, records still waiting for the database (`shutdown` among them).
    daemon.audit.flush(AUDIT_FLUSH).await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads on SIGHUP and (with `host.watch`) when the manifest changes; syncs registries on
/// `host.sync_interval`.
#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

async fn background(daemon: Arc<Daemon>, mut hangup: Hangup) {
    let host = daemon.started_with.host.clone();
    let mut sync = tokio::time::interval(
        host.sync_interval
            .unwrap_or(Duration::from_secs(86400 * 365)),
    );
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sync.tick().await;
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The manifest as last read by a reload that was refused: not tried again until it
    // changes.
    let mut last_refused = (String::new(), std::time::Instant::now());
    // A change is applied once the file has read the same on two ticks in a row: an editor
    // writing it in place is not caught halfway.
    let mut settling = String::new();
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = {
            let _ = &mut hangup;
            std::future::pending::<Option<()>>()
        };
        tokio::select! {
            _ = hangup_received => {
                let _ = daemon.reload("sighup").await;
            }
            _ = sync.tick(), if host.sync_interval.is_some() => {
                daemon.sync().await;
            }
            _ = watch.tick(), if host.watch => {
                let Ok(bytes) = std::fs::read(&daemon.manifest_path) else { continue };
                let sha = warden_package::hex(&sha2::Digest::finalize(
                    <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes),
                ));
                // Compared with what serves now, whoever reloaded it (a SIGHUP, the API).
                // A manifest refused is tried again when it changes, or after a while (what
                // refused it may have passed: a registry unreachable, memory short).
                let retry = sha != last_refused.0 || last_refused.1.elapsed() >= RETRY_REFUSED;
                let settled = sha == settling;
                settling = sha.clone();
                if sha != daemon.current().manifest_sha256
                    && settled
                    && retry
                    && daemon.reload("watch").await.is_err()
                {
                    last_refused = (sha, std::time::Instant::now());
                }
            }
        }
    }
}
