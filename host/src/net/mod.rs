//! Outbound network: the per-run policy that confines every connection and lookup to the
//! allowlist.

pub(crate) mod policy;
