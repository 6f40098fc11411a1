//! Many `warden serve` daemons behaving as one host.
//!
//! PostgreSQL is the system of record: the daemons keep no durable state of their own. This crate
//! holds the connection pool and schema ([`Database`]) and the PostgreSQL implementations of the
//! host's seams, starting with storage ([`PgStorage`]): the storage scopes, with per-scope quotas
//! enforced in a transaction so that writers on different daemons cannot overshoot; the queue of
//! runs ([`RunQueue`]); the audit log, one hash chain for every daemon ([`PgAudit`]); and the
//! daemons' users, roles and credentials ([`PgPrincipals`]). Packages are content-addressed blobs in
//! object storage ([`BlobStore`]).

mod audit;
mod blobs;
mod database;
mod error;
mod principals;
mod queue;
mod schema;
mod storage;
#[cfg(feature = "test-services")]
pub mod test_services;

pub use audit::{AUDIT_GENESIS, AuditRow, PgAudit, line_hash};
pub use blobs::{BlobError, BlobSettings, BlobStore, Stored};
pub use database::{Database, DatabaseOptions};
pub use error::ClusterError;
pub use principals::{CONNECTIONS as PRINCIPALS_CONNECTIONS, PgPrincipals, PrincipalsTx};
pub use queue::{
    Claimed, EVENTS_CHANNEL, Enqueued, FINISHED_CHANNEL, NewRun, QUEUED_CHANNEL, QueueBounds,
    QueuedRun, RunQueue, RunState, SyncBegun, Wakeup,
};
pub use storage::PgStorage;
