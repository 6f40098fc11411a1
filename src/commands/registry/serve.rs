//! `warden registry serve`: run the registry, HTTPS (HTTP/2) over rustls, storage in
//! DATA/registry.redb. Every bound on what clients may hold (connections, uploads, downloads,
//! time, rates and quotas) is a flag here, its default the library's.

use crate::async_runtime::tokio_multi_thread;
use crate::failure::with_causes;
use crate::failure::{Failure, store_failure};
use crate::output::{out, print_warning};
use std::path::PathBuf;
use std::sync::Arc;
use warden_host::units::{parse_duration, parse_size};
use warden_registry::protocol::DEFAULT_MAX_PACKAGE_BYTES;
use warden_registry::server;
use warden_registry::server::limits::{DEFAULT_QUOTAS, Quotas, Rate};
use warden_registry::server::store::Store;
use warden_registry::server::tls;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Where the database, the registry's signing key and the development certificate live.
    #[arg(long, default_value = "warden-registry", value_name = "DIR")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDRESS:PORT")]
    listen: String,
    /// The TLS certificate chain (PEM); a self-signed development one by default.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a signed index stays valid; hosts refuse it after that.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    index_ttl: String,
    /// The largest package accepted.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    max_package: String,
    /// Connections open at once; past it new ones are closed before the TLS handshake. Keep it
    /// well below the process's file limit (`ulimit -n`).
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    max_connections: usize,
    /// Connections open at once from one IPv4 address (or one IPv6 /64).
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_CONNECTIONS_PER_IP, value_name = "N")]
    max_connections_per_ip: usize,
    /// How long a client may take for its TLS handshake (default 10s).
    #[arg(long, value_name = "DURATION")]
    handshake_timeout: Option<String>,
    /// How long a client may stay silent after its TLS handshake (default 10s).
    #[arg(long, value_name = "DURATION")]
    first_byte_timeout: Option<String>,
    /// How long a request's headers may take to arrive; also the wait for the next request on
    /// a kept-alive HTTP/1.1 connection (default 10s).
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// How long a request body may pause before the request gets 408 (default 15s).
    #[arg(long, value_name = "DURATION")]
    body_read_timeout: Option<String>,
    /// How long a client may leave a response untaken before its connection is closed
    /// (default 30s).
    #[arg(long, value_name = "DURATION")]
    send_timeout: Option<String>,
    /// How long a connection may stay open with no request in flight (default 60s).
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// The slowest a request or response body may average, per second, once it has run for
    /// 10 seconds (default 16KiB); lower it for clients on slow links.
    #[arg(long, value_name = "SIZE")]
    min_transfer_rate: Option<String>,
    /// Package uploads received at once; more get 503. Each may hold a package in memory while
    /// it is verified.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_UPLOADS, value_name = "N")]
    max_uploads: usize,
    /// Package downloads served at once; more get 503. Each holds its package in memory.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_DOWNLOADS, value_name = "N")]
    max_downloads: usize,
    /// Package uploads one user may have in flight; more get 429.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_UPLOADS_PER_USER, value_name = "N")]
    max_uploads_per_user: usize,
    /// Package downloads one user may have in flight; more get 429. Hosts that share a token
    /// share its downloads.
    #[arg(long, default_value_t = warden_registry::server::DEFAULT_MAX_DOWNLOADS_PER_USER, value_name = "N")]
    max_downloads_per_user: usize,
    /// Live tokens one user may hold.
    #[arg(long, default_value_t = DEFAULT_QUOTAS.tokens_per_user, value_name = "N")]
    max_tokens_per_user: usize,
    /// Versions one publisher may publish, ever (the log keeps every one).
    #[arg(long, default_value_t = DEFAULT_QUOTAS.versions_per_publisher, value_name = "N")]
    max_versions_per_publisher: u64,
    /// Key additions and revocations one publisher's history may hold (admins are exempt).
    #[arg(long, default_value_t = DEFAULT_QUOTAS.key_events_per_publisher, value_name = "N")]
    max_key_events_per_publisher: u64,
    /// Tokens one user may issue: N at once, refilled evenly over DURATION.
    #[arg(long, default_value = "20/10m", value_name = "N/DURATION")]
    token_rate: String,
    /// Publishes one user may make: N at once, refilled evenly over DURATION.
    #[arg(long, default_value = "30/30m", value_name = "N/DURATION")]
    publish_rate: String,
    /// Failed authentications one address (an IPv6 /64) may make: N at once, refilled evenly
    /// over DURATION; past that its requests are refused with 429 until it refills.
    #[arg(long, default_value = "30/1m", value_name = "N/DURATION")]
    auth_failure_rate: String,
}

/// The connection limits `serve` was given; the library's defaults for the rest.
fn server_limits(args: &ServeArgs) -> Result<server::ServerLimits, Failure> {
    let mut limits = server::ServerLimits {
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        ..server::ServerLimits::default()
    };
    let timeouts = [
        (
            "handshake-timeout",
            &args.handshake_timeout,
            &mut limits.handshake_timeout,
        ),
        (
            "first-byte-timeout",
            &args.first_byte_timeout,
            &mut limits.first_byte_timeout,
        ),
        (
            "header-timeout",
            &args.header_timeout,
            &mut limits.header_timeout,
        ),
        (
            "body-read-timeout",
            &args.body_read_timeout,
            &mut limits.body_read_timeout,
        ),
        ("send-timeout", &args.send_timeout, &mut limits.send_timeout),
        ("idle-timeout", &args.idle_timeout, &mut limits.idle_timeout),
    ];
    for (flag, text, field) in timeouts {
        let Some(text) = text else { continue };
        let duration =
            parse_duration(text).map_err(|error| Failure::usage(format!("--{flag}: {error}")))?;
        if duration.is_zero() {
            return Err(Failure::usage(format!(
                "--{flag}: a timeout must be longer than 0"
            )));
        }
        *field = duration;
    }
    if let Some(text) = &args.min_transfer_rate {
        let rate = parse_size(text)
            .map_err(|error| Failure::usage(format!("--min-transfer-rate: {error}")))?;
        limits.min_body_rate = rate;
        limits.min_send_rate = rate;
    }
    Ok(limits)
}

/// A rate given as `N/DURATION`: a burst of N, refilled one every DURATION / N.
fn rate(flag: &str, text: &str) -> Result<Rate, Failure> {
    let bad =
        |why: String| Failure::usage(format!("--{flag}: {why} (give N/DURATION, such as 30/1m)"));
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| bad(format!("`{text}` has no `/`")))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| bad(format!("`{count}` is not a positive count")))?;
    let period = parse_duration(period.trim()).map_err(|error| bad(error.to_string()))?;
    if period.is_zero() {
        return Err(bad("the duration is zero".into()));
    }
    Ok(Rate::new(count, period / count))
}

/// Sends the server's own messages to stderr, at the level `$WARDEN_LOG` names (`error`,
/// `warn`, `info`, `debug` or `trace`; `info` by default).
fn log_to_stderr() -> Result<(), Failure> {
    let level = log_level()?;
    // A second call (tests run commands in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level)
        .with_target(false)
        .try_init();
    Ok(())
}

/// The level `$WARDEN_LOG` names (`error`, `warn`, `info`, `debug` or `trace`; `info` by
/// default).
pub(crate) fn log_level() -> Result<tracing::Level, Failure> {
    let level = match std::env::var("WARDEN_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            text.trim().parse::<tracing::Level>().map_err(|_| {
                Failure::usage(format!(
                    "WARDEN_LOG=`{text}`: give error, warn, info, debug or trace"
                ))
            })?
        }
        _ => tracing::Level::INFO,
    };
    Ok(level)
}

pub(crate) fn execute(args: ServeArgs) -> Result<(), Failure> {
    log_to_stderr()?;
    let ttl = parse_duration(&args.index_ttl)
        .map_err(|error| Failure::usage(format!("--index-ttl: {error}")))?
        .as_secs();
    let max_package = parse_size(&args.max_package)
        .map_err(|error| Failure::usage(format!("--max-package: {error}")))?
        .min(DEFAULT_MAX_PACKAGE_BYTES as u64 * 4) as usize;
    let (store, bootstrap) = Store::open(&args.data, ttl).map_err(store_failure)?;
    let store = store.with_quotas(Quotas {
        tokens_per_user: args.max_tokens_per_user,
        versions_per_publisher: args.max_versions_per_publisher,
        key_events_per_publisher: args.max_key_events_per_publisher,
        token_issuing: rate("token-rate", &args.token_rate)?,
        publishing: rate("publish-rate", &args.publish_rate)?,
        failed_authentications: rate("auth-failure-rate", &args.auth_failure_rate)?,
    });
    store.record_index_ttl().map_err(store_failure)?;
    let tls = tls::server_config(
        &args.data,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )
    .map_err(|error| Failure::usage(with_causes(&error)))?;
    let mut limits = server_limits(&args)?;
    // Descriptors the registry keeps for itself: the database, a spool file per upload in
    // flight, the runtime's own and the standard streams.
    let reserve = 32u64.saturating_add(args.max_uploads as u64);
    let files = server::fit_file_limit(&mut limits, reserve);
    if let (Some(given), Some(open_files)) = (files.lowered_from, files.open_files) {
        print_warning(&format!(
            "--max-connections lowered from {given} to {}: this process may open only \
             {open_files} files and keeps {reserve} for its own; raise `ulimit -n` for more",
            limits.max_connections
        ));
    }
    let runtime = tokio_multi_thread()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|error| {
                Failure::usage(format!("cannot listen on {}: {error}", args.listen))
            })?;
        let address = listener
            .local_addr()
            .map_err(|error| Failure::usage(error.to_string()))?;
        // "listening on" comes last: scripts may wait for it.
        let mut banner = format!("registry key: {}\n", store.public_key());
        if let Some(token) = bootstrap {
            banner += &format!("owner token (shown once, keep it safe): {token}\n");
        }
        if args.tls_cert.is_none() {
            banner += &format!(
                "development certificate: {} (clients trust it with --ca-cert)\n",
                tls::dev_certificate_path(&args.data).display()
            );
        }
        banner += &format!("listening on https://{address}\n");
        out(&banner);
        let router = server::api(
            Arc::new(store),
            server::ApiLimits {
                max_package_bytes: max_package,
                max_downloads: args.max_downloads,
                max_uploads: args.max_uploads,
                max_downloads_per_user: args.max_downloads_per_user,
                max_uploads_per_user: args.max_uploads_per_user,
                // Uploads are spooled on the registry's own disk.
                spool: args.data.clone(),
            },
        );
        let interrupted = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::serve_with(listener, tls, router, limits, interrupted).await;
        Ok(())
    })
}
