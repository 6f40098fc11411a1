//! Outbound network: the per-run policy that confines every connection and lookup to the
//! allowlist, the TLS trust, and the HTTP plumbing the http, websocket and models capabilities
//! share.

pub(crate) mod client;
pub(crate) mod policy;
pub mod tls;
