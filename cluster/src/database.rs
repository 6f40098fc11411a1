//! The pool of connections to the cluster's PostgreSQL database, opened with the schema checked
//! and brought up to date.

use crate::error::ClusterError;
use crate::schema;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

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
}

impl Database {
    /// Connects to `url`, waits for the server up to the connect timeout, and migrates the
    /// schema (daemons starting together take turns on an advisory lock).
    pub async fn connect(url: &str, options: &DatabaseOptions) -> Result<Self, ClusterError> {
        // The URL may carry a password: errors name what is wrong, never the URL itself.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ClusterError::Url(
                "it does not start with postgres:// or postgresql://".into(),
            ));
        }
        let connect = PgConnectOptions::from_str(url)
            .map_err(|error| ClusterError::Url(error.to_string()))?
            .application_name("warden");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            match pool.acquire().await {
                Ok(_) => break,
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::info!(%error, "the cluster's database is not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Err(ClusterError::Connect(error.to_string())),
            }
        }
        let encoding: String = sqlx::query_scalar("SHOW server_encoding")
            .fetch_one(&pool)
            .await?;
        if encoding != "UTF8" {
            return Err(ClusterError::Encoding(encoding));
        }
        schema::migrate(&pool).await?;
        Ok(Database { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i32, ClusterError> {
        schema::version(&self.pool).await
    }
}
