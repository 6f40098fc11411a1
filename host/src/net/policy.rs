//! Outbound network for the `tcp`, `udp` and `dns` capabilities: wasi:sockets, confined to
//! `allowed_hosts`.
//!
//! - Every connect and datagram goes through a check of its address: a literal address must be
//!   allowed by a pattern, and special ranges (loopback, private, metadata, …) must be listed.
//! - A name may be resolved only if a pattern allows it; the addresses it resolves to are
//!   filtered (special ranges need an explicit pattern) and remembered with the name. A connect
//!   to a remembered address is then checked as a connect to that name: the pattern that allows
//!   the name must also allow the connect's scheme (`tcp` or `udp`) and port, so a lookup never
//!   widens a pattern. The address that was checked is the address connected to; rebinding the
//!   name afterwards changes nothing.
//! - Nodes may bind only ephemeral ports: they connect out, they do not listen.

use crate::output::log::RunLog;
use crate::policy::allowlist::{AllowedHosts, canonical_ip};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use url::Host;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Name-and-address pairs a run may remember from its lookups; past this, new ones are dropped
/// (connects to them are then checked as bare addresses), so lookups cannot grow the host.
pub(crate) const MAX_RESOLVED: usize = 4096;

/// The network rules of one run.
pub(crate) struct NetworkPolicy {
    allowed: AllowedHosts,
    /// Addresses allowed names resolved to in this run, each with the names (canonical) that
    /// resolved to it.
    resolved: Mutex<Resolved>,
    /// The name each open resolve stream is resolving, as the node gave it and canonical.
    lookups: Mutex<HashMap<u32, (String, Host<String>)>>,
    log: RunLog,
}

#[derive(Default)]
struct Resolved {
    names: HashMap<IpAddr, Vec<Host<String>>>,
    pairs: usize,
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

    fn deny(&self, capability: &'static str, message: String) -> bool {
        self.record_denial(capability, message);
        false
    }

    /// Tells the operator, in the run's log, what was denied and how to allow it, and counts
    /// it among the run's denials.
    pub fn record_denial(&self, capability: &'static str, message: String) {
        self.log.deny(capability, &message);
    }

    /// Checks any URL against the allowlist.
    pub fn check_url(
        &self,
        url: &str,
    ) -> Result<crate::policy::allowlist::Destination, crate::policy::allowlist::Denied> {
        self.allowed.check_url(url)
    }

    /// Checks an http or https URL against the allowlist.
    pub fn check_http_url(
        &self,
        url: &str,
    ) -> Result<crate::policy::allowlist::Destination, crate::policy::allowlist::Denied> {
        let destination = self.allowed.check_url(url)?;
        if destination.scheme != "http" && destination.scheme != "https" {
            return Err(crate::policy::allowlist::Denied {
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
        destination: &crate::policy::allowlist::Destination,
        address: IpAddr,
    ) -> Result<(), crate::policy::allowlist::Denied> {
        self.allowed.check_resolved(destination, address)
    }

    /// The wasi:sockets address check.
    pub fn allows_socket(&self, address: SocketAddr, use_: SocketAddrUse) -> bool {
        let scheme = match use_ {
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                if address.port() == 0 {
                    return true;
                }
                return self.deny(
                    "sockets",
                    format!(
                        "binding port {} denied: nodes may only connect out",
                        address.port()
                    ),
                );
            }
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
                return self.deny(
                    "sockets",
                    "listening for connections denied: nodes may only connect out".into(),
                );
            }
            SocketAddrUse::TcpConnect => "tcp",
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => "udp",
        };
        let address = SocketAddr::new(canonical_ip(address.ip()), address.port());
        let Err(mut denied) = self.allowed.check_socket(scheme, address) else {
            return true;
        };
        // An address a name resolved to is reachable as that name is, with the scheme and
        // port its pattern allows, not on every port.
        let names = lock(&self.resolved)
            .names
            .get(&address.ip())
            .cloned()
            .unwrap_or_default();
        for name in &names {
            match self.allowed.check_resolved_socket(scheme, name, address) {
                Ok(()) => return true,
                Err(by_name) => denied = by_name,
            }
        }
        self.deny(scheme, format!("{scheme} connection denied: {denied}"))
    }

    /// Remembers which name the resolve stream `stream` (its resource number) is resolving.
    pub(crate) fn start_lookup(&self, stream: u32, name: String, host: Host<String>) {
        lock(&self.lookups).insert(stream, (name, host));
    }

    /// The name the resolve stream `stream` is resolving, as given and canonical.
    pub(crate) fn lookup_of(&self, stream: u32) -> Option<(String, Host<String>)> {
        lock(&self.lookups).get(&stream).cloned()
    }

    pub(crate) fn end_lookup(&self, stream: u32) {
        lock(&self.lookups).remove(&stream);
    }

    /// Whether `name` may be looked up; its canonical form if so.
    pub(crate) fn allows_name(&self, name: &str) -> Option<Host<String>> {
        match self.allowed.check_name(name) {
            Ok(host) => Some(host),
            Err(denied) => {
                self.deny("dns", format!("name lookup denied: {denied}"));
                None
            }
        }
    }

    /// Whether an address `name` resolved to may be used; remembers it with the name if so.
    pub(crate) fn accept_resolved(&self, name: &str, host: &Host<String>, address: IpAddr) -> bool {
        let address = canonical_ip(address);
        if let Err(denied) = self.allowed.check_resolved_any(address) {
            return self.deny(
                "dns",
                format!("{name} resolved to {address}, dropped: {denied}"),
            );
        }
        if let Host::Domain(_) = host {
            let mut resolved = lock(&self.resolved);
            let known = resolved
                .names
                .get(&address)
                .is_some_and(|names| names.contains(host));
            if !known {
                if resolved.pairs >= MAX_RESOLVED {
                    drop(resolved);
                    return self.deny(
                        "dns",
                        format!(
                            "{name} resolved to {address}, dropped: this run already resolved \
                         {MAX_RESOLVED} name and address pairs"
                        ),
                    );
                }
                resolved.pairs += 1;
                resolved
                    .names
                    .entry(address)
                    .or_default()
                    .push(host.clone());
            }
        }
        true
    }
}
