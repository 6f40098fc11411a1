//! The warden node registry and the host side that installs from it.
//!
//! - [`server`] and [`store`]: `warden registry serve`, an HTTPS API over a redb database.
//! - [`protocol`]: the signed index, the hash-chained log and key statements.
//! - [`auth`]: permissions, roles and tokens; [`limits`]: quotas and rate limits;
//!   [`slots`]: transfers in flight, in total and per user.
//! - [`client`] and [`install`]: how a host talks to a registry and verifies what it installs.

pub mod auth;
pub mod client;
pub mod fuzz_targets;
pub mod install;
pub mod limits;
pub mod names;
pub mod protocol;
pub mod server;
pub mod slots;
pub mod store;
pub mod tls;
