//! Outbound network for the `tcp`, `udp` and `dns` capabilities: wasi:sockets, confined to
//! `allowed_hosts`.
//!
//! - Every connect and datagram goes through a check of its address: a literal address must be
//!   allowed by a pattern, and special ranges (loopback, private, metadata, …) must be listed.
//! - A name may be resolved only if a pattern allows it; the addresses it resolves to are
//!   filtered (special ranges need an explicit pattern) and remembered, and only those
//!   remembered addresses may then be connected to under that name. So the address that was
//!   checked is the address connected to; rebinding the name afterwards changes nothing.
//! - Nodes may bind only ephemeral ports: they connect out, they do not listen.

use crate::allowlist::{AllowedHosts, canonical_ip};
use crate::log::{Level, RunLog, Source};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};

/// The network rules of one run.
pub(crate) struct NetworkPolicy {
    allowed: AllowedHosts,
    /// Addresses allowed names resolved to in this run.
    resolved: Mutex<HashSet<IpAddr>>,
    /// The name each open resolve stream is resolving.
    lookups: Mutex<HashMap<u32, String>>,
    log: RunLog,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NetworkPolicy {
    pub fn new(allowed: AllowedHosts, log: RunLog) -> Arc<Self> {
        Arc::new(NetworkPolicy {
            allowed,
            resolved: Mutex::default(),
            lookups: Mutex::default(),
            log,
        })
    }

    /// The allowlist this policy enforces.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.allowed
    }

    fn deny(&self, message: String) -> bool {
        self.warn(message);
        false
    }

    /// Tells the operator, in the run's log, what was denied and how to allow it.
    pub fn warn(&self, message: String) {
        self.log.push(Level::Warn, Source::Host, &message);
    }

    /// Checks any URL against the allowlist.
    pub fn check_url(
        &self,
        url: &str,
    ) -> Result<crate::allowlist::Destination, crate::allowlist::Denied> {
        self.allowed.check_url(url)
    }

    /// Checks an http or https URL against the allowlist.
    pub fn check_http_url(
        &self,
        url: &str,
    ) -> Result<crate::allowlist::Destination, crate::allowlist::Denied> {
        let destination = self.allowed.check_url(url)?;
        if destination.scheme != "http" && destination.scheme != "https" {
            return Err(crate::allowlist::Denied {
                destination: url.to_string(),
                reason: format!(
                    "HTTP requests use http or https, not {}",
                    destination.scheme
                ),
                hint: "use an http:// or https:// URL".into(),
            });
        }
        Ok(destination)
    }

    /// Checks an address a name resolved to for a destination.
    pub fn check_resolved(
        &self,
        destination: &crate::allowlist::Destination,
        address: IpAddr,
    ) -> Result<(), crate::allowlist::Denied> {
        self.allowed.check_resolved(destination, address)
    }

    /// The wasi:sockets address check.
    pub fn allows_socket(&self, address: SocketAddr, use_: SocketAddrUse) -> bool {
        let scheme = match use_ {
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                if address.port() == 0 {
                    return true;
                }
                return self.deny(format!(
                    "binding port {} denied: nodes may only connect out",
                    address.port()
                ));
            }
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
                return self
                    .deny("listening for connections denied: nodes may only connect out".into());
            }
            SocketAddrUse::TcpConnect => "tcp",
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => "udp",
        };
        let ip = canonical_ip(address.ip());
        if lock(&self.resolved).contains(&ip) {
            return true;
        }
        match self
            .allowed
            .check_socket(scheme, SocketAddr::new(ip, address.port()))
        {
            Ok(()) => true,
            Err(denied) => self.deny(format!("{scheme} connection denied: {denied}")),
        }
    }

    fn allows_name(&self, name: &str) -> bool {
        match self.allowed.check_name(name) {
            Ok(()) => true,
            Err(denied) => self.deny(format!("name lookup denied: {denied}")),
        }
    }

    /// Whether an address `name` resolved to may be used; remembers it if so.
    fn accept_resolved(&self, name: &str, address: IpAddr) -> bool {
        let address = canonical_ip(address);
        if let Err(denied) = self.allowed.check_resolved_any(address) {
            return self.deny(format!("{name} resolved to {address}, dropped: {denied}"));
        }
        lock(&self.resolved).insert(address);
        true
    }
}

/// wasi:sockets/ip-name-lookup with the allowlist in front of wasmtime-wasi's resolver.
pub(crate) struct GuardedLookup<'a> {
    pub sockets: WasiSocketsCtxView<'a>,
    pub policy: &'a NetworkPolicy,
}

pub(crate) struct Guarded;

impl HasData for Guarded {
    type Data<'a> = GuardedLookup<'a>;
}

impl ip_name_lookup::Host for GuardedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.policy.allows_name(&name) {
            return Err(ErrorCode::PermanentResolverFailure.into());
        }
        let stream =
            ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name.clone())?;
        lock(&self.policy.lookups).insert(stream.rep(), name);
        Ok(stream)
    }
}

impl HostResolveAddressStream for GuardedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let name = lock(&self.policy.lookups)
            .get(&stream.rep())
            .cloned()
            .unwrap_or_default();
        loop {
            let next = self
                .sockets
                .resolve_next_address(Resource::new_borrow(stream.rep()))?;
            let Some(address) = next else { return Ok(None) };
            let ip = match address {
                IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
                IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
            };
            if self.policy.accept_resolved(&name, ip) {
                return Ok(Some(address));
            }
        }
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.sockets.subscribe(stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        lock(&self.policy.lookups).remove(&stream.rep());
        HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

/// ip-name-lookup's errors are wasi:sockets/network's: delegated unchanged.
impl network::Host for GuardedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, error)
    }
}

impl network::HostNetwork for GuardedLookup<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}
