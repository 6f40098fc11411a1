//! What a node may do, decided before anything runs: the capability table, the preflight that
//! checks a component's imports against a grant, the security config, the limits and their
//! presets, and the outbound allowlist. Pure data and checks: nothing here touches Wasmtime.

pub mod allowlist;
pub mod capability;
pub mod config;
pub mod limits;
pub mod preflight;
pub mod units;
