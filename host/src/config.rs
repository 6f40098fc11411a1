//! `WasmSecurityConfig`: everything that decides what a node may do.

use crate::capability::Capabilities;
use crate::limits::Limits;

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
    /// Hosts outbound connections may reach (enforced by the network capabilities).
    pub allowed_hosts: Vec<String>,
}

impl Default for WasmSecurityConfig {
    /// The standard grant, default limits, no WASI filesystem or network, no hosts.
    fn default() -> Self {
        WasmSecurityConfig {
            limits: Limits::default(),
            capabilities: Capabilities::STANDARD,
            allow_wasi: false,
            allow_wasi_network: false,
            allowed_hosts: Vec::new(),
        }
    }
}
