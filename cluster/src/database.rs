//! The pool of connections to the cluster's PostgreSQL database, opened with the schema checked
//! and brought up to date.

use crate::error::ClusterError;
use crate::schema;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use std::str::FromStr;
use std::time::Duration;

/// The start of a short transaction (the queue's, the audit log's): READ COMMITTED, and no
/// statement or lock waited on for long (`SET LOCAL`, which PgBouncer keeps, unlike connection
/// options).
pub(crate) const BEGIN_SHORT: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
    SET LOCAL lock_timeout = '5s'; \
    SET LOCAL statement_timeout = '30s'; \
    SET LOCAL idle_in_transaction_session_timeout = '30s'";

/// The URL parameters sqlx understands. Others are refused here, by name: sqlx would log an
/// unknown parameter with its value, and a misspelt `password` would reach the log.
const URL_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Checks the URL's scheme and parameters. The URL may carry a password: errors name what is
/// wrong, never the URL or a value.
fn check_url(text: &str) -> Result<url::Url, ClusterError> {
    let url = url::Url::parse(text)
        .map_err(|error| ClusterError::Url(format!("it is not a URL ({error})")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(ClusterError::Url(
            "it does not start with postgres:// or postgresql://".into(),
        ));
    }
    for (key, _) in url.query_pairs() {
        if !URL_PARAMETERS.contains(&&*key) {
            // Named only when it looks like a name: a password with a `?` in it, written
            // without percent-encoding, turns into a "parameter".
            let named = (1..=32).contains(&key.len())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
            let shown = if named {
                format!("a parameter `{key}`")
            } else {
                "a parameter (not shown: it may be part of a password; percent-encode `?`, `@` and `/` in passwords)".to_string()
            };
            return Err(ClusterError::Url(format!(
                "it has {shown} that warden does not know (known: {})",
                URL_PARAMETERS.join(", ")
            )));
        }
    }
    Ok(url)
}

/// Where the URL says the server is: a host name, an address, or a socket directory.
fn server_host(url: &url::Url) -> String {
    let parameter = url
        .query_pairs()
        .find(|(key, _)| key == "host" || key == "hostaddr")
        .map(|(_, value)| value.into_owned());
    parameter
        .or_else(|| match url.host() {
            Some(url::Host::Ipv6(address)) => Some(address.to_string()),
            Some(host) => Some(host.to_string()),
            None => None,
        })
        .or_else(|| std::env::var("PGHOST").ok())
        .unwrap_or_default()
}

/// A server on this machine: a Unix socket, `localhost`, or a loopback address.
fn is_local(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// How TLS is chosen: what the URL (or `PGSSLMODE`) says; otherwise verified TLS
/// (`verify-full`, Mozilla's roots or `sslrootcert`) to a server on another machine, where
/// PostgreSQL's own default (`prefer`) would fall back to plain text, or accept any certificate.
fn tls_mode(url: &url::Url) -> Option<PgSslMode> {
    let explicit = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode" || key == "ssl-mode")
        .map(|(_, value)| value.into_owned())
        .or_else(|| std::env::var("PGSSLMODE").ok());
    let host = server_host(url);
    match explicit {
        Some(mode) => {
            let unverified = matches!(mode.as_str(), "disable" | "allow" | "prefer" | "require");
            if unverified && !is_local(&host) {
                tracing::warn!(
                    sslmode = %mode,
                    "the cluster's database is reached without a verified certificate; use sslmode=verify-full outside a private network"
                );
            }
            None
        }
        None if is_local(&host) => None,
        None => Some(PgSslMode::VerifyFull),
    }
}

/// Errors that retrying cannot fix: a wrong password or user, a missing database, a refused
/// TLS setting.
fn refused_for_good(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 28: invalid authorization; 3D000: no such database.
            code.starts_with("28") || code == "3D000"
        }),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// How a daemon uses the database.
#[derive(Clone, Debug)]
pub struct DatabaseOptions {
    /// Connections this daemon opens at most. Every daemon of the cluster opens its own, so the
    /// server's `max_connections` must cover the sum.
    pub max_connections: u32,
    /// How long a query waits for a free connection before the caller sees the store as
    /// unavailable.
    pub acquire_timeout: Duration,
    /// How long the first connection may take, with retries, before the daemon gives up: a
    /// daemon started with its database (in a Compose file, a Kubernetes pod) waits for it.
    pub connect_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// The cluster's database: a connection pool whose schema is this build's.
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
    /// How to connect again: the readiness probe has a connection of its own.
    connect: PgConnectOptions,
}

impl Database {
    /// Connects to `url`, waits for the server up to the connect timeout, and migrates the
    /// schema (daemons starting together take turns on an advisory lock).
    pub async fn connect(url: &str, options: &DatabaseOptions) -> Result<Self, ClusterError> {
        let parsed = check_url(url)?;
        // sqlx's own message may quote a value (say, a password mistaken for `sslmode`).
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|_| {
                ClusterError::Url(
                    "a value in it is not valid (check the port, sslmode and statement-cache-capacity)"
                        .into(),
                )
            })?
            .application_name("warden");
        if let Some(mode) = tls_mode(&parsed) {
            connect = connect.ssl_mode(mode);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let error = match tokio::time::timeout(left, pool.acquire()).await {
                Ok(Ok(_)) => break,
                Ok(Err(error)) if refused_for_good(&error) => {
                    return Err(ClusterError::Connect(error.to_string()));
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!(
                    "no answer within the connect timeout ({:?})",
                    options.connect_timeout
                ),
            };
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(ClusterError::Connect(error));
            }
            tracing::info!(%error, "the cluster's database is not reachable yet; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        let encoding: String = sqlx::query_scalar("SHOW server_encoding")
            .fetch_one(&pool)
            .await?;
        if encoding != "UTF8" {
            return Err(ClusterError::Encoding(encoding));
        }
        schema::migrate(&pool).await?;
        Ok(Database { pool, connect })
    }

    /// The same database through a pool of one connection of its own: a probe of whether the
    /// database answers must not wait behind the storage calls that fill the main pool, and a
    /// listener for notifications holds its connection for good.
    pub fn probe(&self, within: Duration) -> Database {
        self.side_pool(1, within)
    }

    /// The same database through a pool of `connections` of its own, each waited for at most
    /// `within`, connected when first used: for calls that must not wait behind the main pool.
    pub fn side_pool(&self, connections: u32, within: Duration) -> Database {
        Database {
            pool: PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(within)
                .connect_lazy_with(self.connect.clone()),
            connect: self.connect.clone(),
        }
    }

    /// Whether the database answers now: one `SELECT 1`, waiting at most `within`.
    pub async fn ping(&self, within: Duration) -> Result<(), ClusterError> {
        match tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(answered) => answered.map(drop).map_err(ClusterError::from),
            Err(_) => Err(ClusterError::Connect(format!("no answer in {within:?}"))),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i32, ClusterError> {
        schema::version(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_echoing_their_values() {
        assert!(check_url("postgres://u:p@db:5432/warden?sslmode=verify-full").is_ok());
        assert!(check_url("postgresql:///warden?host=/run/postgresql&port=5433").is_ok());
        let refused = check_url("postgres://u@db/warden?pasword=hunter2").unwrap_err();
        assert!(refused.to_string().contains("`pasword`"), "{refused}");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        // A password with an unencoded `?` becomes a "parameter": it is not shown.
        let refused = check_url("postgres://u:12?Secret@db/warden").unwrap_err();
        assert!(!refused.to_string().contains("Secret"), "{refused}");
        assert!(check_url("mysql://db/warden").is_err());
        assert!(check_url("not a url").is_err());
    }

    fn mode(url: &str) -> Option<PgSslMode> {
        tls_mode(&check_url(url).unwrap())
    }

    #[test]
    fn a_server_on_another_machine_gets_verified_tls_unless_the_url_says_otherwise() {
        assert!(matches!(
            mode("postgres://u:p@db.internal/warden"),
            Some(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            mode("postgres://u:p@10.0.0.5:5432/warden"),
            Some(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            mode("postgres://u@x/warden?host=db.internal"),
            Some(PgSslMode::VerifyFull)
        ));
        // This machine: TLS protects nothing there, and local servers seldom have it.
        for local in [
            "postgres://u@localhost/warden",
            "postgres://u@127.0.0.1:5432/warden",
            "postgres://u@[::1]/warden",
            "postgres:///warden?host=/run/postgresql",
        ] {
            assert!(mode(local).is_none(), "{local}");
        }
        // Said in the URL: kept (a private network without TLS says sslmode=disable).
        assert!(mode("postgres://u@db/warden?sslmode=disable").is_none());
        assert!(mode("postgres://u@db/warden?sslmode=verify-ca").is_none());
    }
}
