//! How joining or using the cluster's database fails.

/// A failure to reach, prepare or use the cluster's PostgreSQL database.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "the cluster's database URL is not valid: {0}; write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    Url(String),
    #[error(
        "cannot reach the cluster's PostgreSQL database: {0}; check that it runs and that the URL's host, port, user and password are right"
    )]
    Connect(String),
    #[error(
        "the cluster's database uses the {0} encoding; warden needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
    )]
    Encoding(String),
    #[error(
        "the cluster's database has schema version {found}, newer than this warden knows ({known}); upgrade this daemon to the version the others run"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("preparing the cluster's database schema failed: {0}")]
    Schema(String),
    #[error("the cluster's database failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    Blocking(String),
}
