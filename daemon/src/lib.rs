//! The warden host daemon (`warden serve`): nodes loaded by manifest, verified, compiled and
//! linked for their grants, and run for callers over an authenticated HTTPS API, with
//! admission control, reloads, Prometheus metrics, JSON logs and a hash-chained audit log.
//!
//! docs/daemon.md describes the manifest field by field and the API route by route.

pub mod admin;
pub mod admission;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod daemon;
pub mod generation;
pub mod loader;
pub mod manifest;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod records;
mod serve;
pub mod shared_packages;
pub mod telemetry;
mod worker;

pub use daemon::{Daemon, Options, ReloadError, StartError};
pub use manifest::{ApiKey, Manifest, ManifestError};
pub use serve::{Ready, ServeError, serve};
