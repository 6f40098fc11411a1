//! `WasmSecurityConfig`: everything that decides what a node may do.

use crate::policy::allowlist::AllowedHosts;
use crate::policy::capability::Capabilities;
use crate::policy::limits::Limits;

/// The sandbox settings for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmSecurityConfig {
    pub limits: Limits,
    /// The granted capabilities. Only their interfaces are linked.
    pub capabilities: Capabilities,
    /// Link wasi:filesystem (with no directory preopened). Off by default.
    pub allow_wasi: bool,
    /// Link the wasi:sockets interfaces of granted tcp/udp/dns capabilities. Off by default.
    pub allow_wasi_network: bool,
    /// Hosts outbound connections may reach; parsed (and malformed patterns refused) when
    /// built with [`AllowedHosts::parse`]. Empty: no outbound connection at all.
    pub allowed_hosts: AllowedHosts,
}

impl Default for WasmSecurityConfig {
    /// The standard grant, default limits, no WASI filesystem or network, no hosts.
    fn default() -> Self {
        WasmSecurityConfig {
            limits: Limits::default(),
            capabilities: Capabilities::STANDARD,
            allow_wasi: false,
            allow_wasi_network: false,
            allowed_hosts: AllowedHosts::default(),
        }
    }
}
