//! The `tcp`, `udp` and `dns` capabilities: wasmtime-wasi's wasi:sockets, confined by the run's
//! `NetworkPolicy` (see `net::policy` for the rules). Connects and datagrams are checked by the
//! WASI context's address check (`caps::wasi::context`); name lookups go through
//! [`GuardedLookup`], which asks the policy before resolving and filters what comes back.

use crate::net::policy::NetworkPolicy;
use std::net::IpAddr;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView, WasiSocketsView};

/// Links one wasi:sockets interface; false if `interface` is not one.
/// What the store data lends the sockets host functions: their view, and nothing else.
pub(crate) trait LookupView: Send + 'static {
    fn lookup(&mut self) -> GuardedLookup<'_>;
}

pub(crate) fn link<T: LookupView + WasiView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "wasi:sockets/network" => sockets::network::add_to_linker::<T, WasiSockets>(
            linker,
            &Default::default(),
            T::sockets,
        )?,
        "wasi:sockets/instance-network" => {
            sockets::instance_network::add_to_linker::<T, WasiSockets>(linker, T::sockets)?
        }
        "wasi:sockets/tcp" => sockets::tcp::add_to_linker::<T, WasiSockets>(linker, T::sockets)?,
        "wasi:sockets/tcp-create-socket" => {
            sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(linker, T::sockets)?
        }
        "wasi:sockets/udp" => sockets::udp::add_to_linker::<T, WasiSockets>(linker, T::sockets)?,
        "wasi:sockets/udp-create-socket" => {
            sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(linker, T::sockets)?
        }
        "wasi:sockets/ip-name-lookup" => {
            sockets::ip_name_lookup::add_to_linker::<T, Guarded>(linker, T::lookup)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// wasi:sockets/ip-name-lookup with the allowlist in front of wasmtime-wasi's resolver.
pub(crate) struct GuardedLookup<'a> {
    pub sockets: WasiSocketsCtxView<'a>,
    pub policy: &'a NetworkPolicy,
    /// Whether lookups are served at all (`dns` granted with `allow_wasi_network`): without
    /// it, a lookup is refused before the allowlist is asked, so the log does not advise
    /// adding the name to `allowed_hosts` when that would not help.
    pub allowed: bool,
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
        if !self.allowed {
            return Err(ErrorCode::PermanentResolverFailure.into());
        }
        let Some(host) = self.policy.allows_name(&name) else {
            return Err(ErrorCode::PermanentResolverFailure.into());
        };
        let stream =
            ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name.clone())?;
        self.policy.start_lookup(stream.rep(), name, host);
        Ok(stream)
    }
}

impl HostResolveAddressStream for GuardedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let Some((name, host)) = self.policy.lookup_of(stream.rep()) else {
            return Err(ErrorCode::InvalidState.into());
        };
        loop {
            let next = self
                .sockets
                .resolve_next_address(Resource::new_borrow(stream.rep()))?;
            let Some(address) = next else { return Ok(None) };
            let ip = match address {
                IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
                IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
            };
            if self.policy.accept_resolved(&name, &host, ip) {
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
        self.policy.end_lookup(stream.rep());
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
