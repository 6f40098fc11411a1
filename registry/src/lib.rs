//! The warden node registry and the host side that installs from it.
//!
//! - [`protocol`]: what is signed and verified, shared by both halves: the signed index, the
//!   root of trust, the hash-chained log and its replay, key statements, paging.
//! - [`client`]: the host side. [`client::Client`] talks HTTPS to a registry;
//!   [`client::install`] verifies what a host installs and keeps its install state.
//! - [`server`] (the `server` feature, on by default): `warden registry serve`, an HTTPS API
//!   over a redb store, with permissions and tokens, quotas and rate limits. A crate that only
//!   installs turns the feature off and links no web server.
//! - `durable`: durable file writes, which both halves make ([`DurableError`]).

pub mod client;
mod durable;
pub mod fuzz_targets;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;

pub use durable::DurableError;
