//! The registry's server half (the `server` feature): `warden registry serve`.
//!
//! - the HTTPS API (`http`: axum on hyper, over rustls), its handlers and [`serve`];
//! - [`store`]: one redb database, every change one durable transaction;
//! - [`auth`]: permissions, roles and tokens; [`limits`]: quotas and rate limits; `slots`:
//!   transfers in flight, in total and per user; `names`: lookalike names;
//! - [`tls`]: the server's certificate, or a development one made on first use.
//!
//! What it signs and serves is [`crate::protocol`]'s; the connection handling (timeouts, caps)
//! is warden-server's.

pub mod auth;
mod http;
pub mod limits;
mod names;
mod slots;
pub mod store;
pub mod tls;

pub use http::{
    ApiLimits, AppState, DEFAULT_MAX_DOWNLOADS, DEFAULT_MAX_DOWNLOADS_PER_USER,
    DEFAULT_MAX_UPLOADS, DEFAULT_MAX_UPLOADS_PER_USER, api, router, router_with, serve, serve_with,
};
pub use warden_server::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP, FileLimit, ServerLimits,
    fit_file_limit,
};
