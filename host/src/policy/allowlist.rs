//! `allowed_hosts`: the allowlist every outbound connection is checked against.
//!
//! Deny by default. Patterns are parsed once, when the config is built, and malformed ones are
//! refused with a message that says what is wrong. Hosts are compared in one canonical form,
//! the one a WHATWG URL parser produces (lower case, punycode, IPv4 in dotted decimal, no
//! trailing dot), so case, trailing dots, IDN spellings and decimal/octal/hex IPv4 cannot talk
//! around a pattern. Addresses in loopback, private, link-local (cloud metadata included) and
//! other special ranges are reachable only when a pattern lists them by address or range.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use url::{Host, Url};

/// Schemes a pattern may name.
const SCHEMES: &[&str] = &["http", "https", "ws", "wss", "tcp", "udp"];

/// A parsed `allowed_hosts` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    text: String,
    scheme: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    /// `*`: any host (but special address ranges still need an explicit pattern).
    Any,
    Exact(String),
    /// `*.example.com`: strict subdomains of the suffix.
    Subdomains(String),
    Net(IpNet),
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_hosts pattern `{pattern}` is malformed: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// A destination the allowlist does not cover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{destination} is not allowed: {reason}; {hint}")]
pub struct Denied {
    pub destination: String,
    pub reason: String,
    /// What an operator would add to allow it.
    pub hint: String,
}

/// Where a connection goes, in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub scheme: String,
    pub host: Host<String>,
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ipv6(address) => write!(f, "{}://[{address}]:{}", self.scheme, self.port),
            host => write!(f, "{}://{host}:{}", self.scheme, self.port),
        }
    }
}

impl AllowedHosts {
    /// Parses every pattern; the first malformed one is refused.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowedHosts { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|pattern| pattern.text.as_str())
    }

    /// Parses `url` (http, https, ws or wss) and checks its destination.
    pub fn check_url(&self, url: &str) -> Result<Destination, Denied> {
        let parsed = Url::parse(url).map_err(|error| Denied {
            destination: url.to_string(),
            reason: format!("it is not a valid URL ({error})"),
            hint: "give an absolute URL such as https://api.example.com/path".into(),
        })?;
        let scheme = parsed.scheme().to_string();
        if !["http", "https", "ws", "wss"].contains(&scheme.as_str()) {
            return Err(Denied {
                destination: url.to_string(),
                reason: format!("the scheme `{scheme}` is not one nodes may use"),
                hint: "use http, https, ws or wss".into(),
            });
        }
        let host = match parsed.host() {
            Some(host) => canonical_host(host.to_owned()),
            None => {
                return Err(Denied {
                    destination: url.to_string(),
                    reason: "it has no host".into(),
                    hint: "give an absolute URL with a host".into(),
                });
            }
        };
        let port = parsed.port_or_known_default().unwrap_or(0);
        let destination = Destination { scheme, host, port };
        self.check(&destination)?;
        Ok(destination)
    }

    /// Checks a destination by name or literal address.
    pub fn check(&self, destination: &Destination) -> Result<(), Denied> {
        let allowed = self
            .patterns
            .iter()
            .any(|pattern| pattern.matches(destination));
        if !allowed {
            return Err(self.denied(destination, "it is not in allowed_hosts"));
        }
        if let Host::Ipv4(_) | Host::Ipv6(_) = destination.host {
            let address = host_ip(&destination.host).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            self.check_special(destination, address)?;
        }
        Ok(())
    }

    /// Checks an address a name resolved to, before connecting to it: special ranges
    /// (loopback, private, link-local, metadata, …) must be listed by address or range.
    pub fn check_resolved(&self, destination: &Destination, address: IpAddr) -> Result<(), Denied> {
        self.check_special(destination, canonical_ip(address))
    }

    /// Checks a socket address (tcp or udp), which has no name.
    pub fn check_socket(&self, scheme: &str, address: std::net::SocketAddr) -> Result<(), Denied> {
        let ip = canonical_ip(address.ip());
        let host = match ip {
            IpAddr::V4(v4) => Host::Ipv4(v4),
            IpAddr::V6(v6) => Host::Ipv6(v6),
        };
        self.check(&Destination {
            scheme: scheme.to_string(),
            host,
            port: address.port(),
        })
    }

    /// Checks a connection to `address` that the node names by `host`, a name that resolved to
    /// it in this run: the name must be allowed with this scheme and port, exactly as if the node
    /// had connected by name, and an address in a special range must be listed by a pattern that
    /// also allows this scheme and port. A lookup does not widen what the pattern allows.
    pub fn check_resolved_socket(
        &self,
        scheme: &str,
        host: &Host<String>,
        address: std::net::SocketAddr,
    ) -> Result<(), Denied> {
        let destination = Destination {
            scheme: scheme.to_string(),
            host: host.clone(),
            port: address.port(),
        };
        self.check(&destination)
            .and_then(|()| self.check_resolved(&destination, address.ip()))
            .map_err(|mut denied| {
                denied.destination = format!("{} (resolved to {})", denied.destination, address);
                denied
            })
    }

    /// Checks a name about to be resolved: some pattern must allow it (by name or `*`),
    /// whatever its scheme and port. Returns the name in canonical form; what it resolves to may
    /// then be used only as [`AllowedHosts::check_resolved_socket`] allows.
    pub fn check_name(&self, name: &str) -> Result<Host<String>, Denied> {
        let denied = |reason: String| Denied {
            destination: name.to_string(),
            reason,
            hint: format!("add `{name}` to allowed_hosts to allow it"),
        };
        let host = match Host::parse(name.strip_suffix('.').unwrap_or(name)) {
            Ok(host) => canonical_host(host),
            Err(error) => return Err(denied(format!("it is not a valid host name ({error})"))),
        };
        let allowed = self
            .patterns
            .iter()
            .any(|pattern| match (&pattern.host, &host) {
                (HostMatch::Any, _) => true,
                (HostMatch::Net(net), host) => host_ip(host).is_some_and(|ip| net.contains(&ip)),
                (matcher, Host::Domain(_)) => {
                    let probe = HostPattern {
                        scheme: None,
                        port: None,
                        host: matcher.clone(),
                        text: String::new(),
                    };
                    probe.matches(&Destination {
                        scheme: String::new(),
                        host: host.clone(),
                        port: 0,
                    })
                }
                _ => false,
            });
        if allowed {
            Ok(host)
        } else {
            Err(denied("it is not in allowed_hosts".into()))
        }
    }

    /// Checks an address a name resolved to, whatever the scheme and port: special ranges
    /// need an address or range pattern.
    pub fn check_resolved_any(&self, address: IpAddr) -> Result<(), Denied> {
        let address = canonical_ip(address);
        let Some(range) = special_range(address) else {
            return Ok(());
        };
        let listed = self
            .patterns
            .iter()
            .any(|pattern| matches!(&pattern.host, HostMatch::Net(net) if net.contains(&address)));
        if listed {
            return Ok(());
        }
        Err(Denied {
            destination: address.to_string(),
            reason: special_reason(address, range),
            hint: format!(
                "list the address itself (`{address}`) or its range in allowed_hosts to allow it"
            ),
        })
    }

    fn check_special(&self, destination: &Destination, address: IpAddr) -> Result<(), Denied> {
        let Some(range) = special_range(address) else {
            return Ok(());
        };
        let listed = self.patterns.iter().any(|pattern| match &pattern.host {
            HostMatch::Net(net) => {
                net.contains(&address) && pattern.scheme_and_port_match(destination)
            }
            _ => false,
        });
        if listed {
            return Ok(());
        }
        Err(Denied {
            destination: format!("{destination} ({address})"),
            reason: special_reason(address, range),
            hint: format!(
                "list the address itself (`{address}`) or its range in allowed_hosts to allow it"
            ),
        })
    }

    fn denied(&self, destination: &Destination, reason: &str) -> Denied {
        let name = match &destination.host {
            Host::Ipv6(address) => format!("[{address}]"),
            host => host.to_string(),
        };
        Denied {
            destination: destination.to_string(),
            reason: reason.to_string(),
            hint: format!("add `{name}` (or `{destination}`) to allowed_hosts to allow it"),
        }
    }
}

impl HostPattern {
    fn scheme_and_port_match(&self, destination: &Destination) -> bool {
        self.scheme
            .as_ref()
            .is_none_or(|scheme| *scheme == destination.scheme)
            && self.port.is_none_or(|port| port == destination.port)
    }

    fn matches(&self, destination: &Destination) -> bool {
        if !self.scheme_and_port_match(destination) {
            return false;
        }
        match (&self.host, &destination.host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(name), Host::Domain(host)) => name == host,
            (HostMatch::Subdomains(suffix), Host::Domain(host)) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            (HostMatch::Net(net), host) => host_ip(host).is_some_and(|ip| net.contains(&ip)),
            _ => false,
        }
    }
}

fn host_ip(host: &Host<String>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(canonical_ip(IpAddr::V6(*v6))),
        Host::Domain(_) => None,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are their IPv4 address: a dual-stack socket
/// connecting to one connects to the IPv4 address. Other spellings that carry an IPv4 address
/// (see [`embedded_ipv4`]) stay IPv6 addresses, and [`special_range`] classifies them.
pub(crate) fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Lower case, punycode and without a trailing dot, or the address for an IPv4-mapped IPv6.
fn canonical_host(host: Host<String>) -> Host<String> {
    match host {
        Host::Domain(name) => {
            Host::Domain(name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase())
        }
        Host::Ipv6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Host::Ipv4(v4),
            None => Host::Ipv6(v6),
        },
        v4 => v4,
    }
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`, the IPv4 address itself on a dual-stack socket.
    Mapped,
    /// `::a.b.c.d` (deprecated, RFC 4291), except `::` and `::1`.
    Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT, RFC 2765).
    Translated,
    /// `64:ff9b::a.b.c.d`, the well-known NAT64 prefix (RFC 6052): a NAT64 gateway forwards it
    /// to the IPv4 address.
    Nat64,
    /// `64:ff9b:1::/48`, the local-use NAT64 prefix (RFC 8215): the IPv4 address sits in bits
    /// 48 to 88, around the `u` octet.
    Nat64Local,
    /// `2002:aabb:ccdd::/48`, 6to4 (RFC 3056): the IPv4 address is bits 16 to 48.
    SixToFour,
    /// `2001:0::/32`, Teredo (RFC 4380): the client's IPv4 address is the last 32 bits inverted.
    Teredo,
}

impl Embedding {
    fn name(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Translated => "IPv4-translated",
            Embedding::Nat64 => "NAT64",
            Embedding::Nat64Local => "local-use NAT64",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "Teredo",
        }
    }
}

/// The IPv4 address an IPv6 address carries, and how, for every spelling the host knows.
pub fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let segments = v6.segments();
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some((v4, Embedding::Mapped));
    }
    match segments {
        [0, 0, 0, 0, 0, 0, ..] if !v6.is_loopback() && !v6.is_unspecified() => {
            Some((last, Embedding::Compatible))
        }
        [0, 0, 0, 0, 0xffff, 0, ..] => Some((last, Embedding::Translated)),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some((last, Embedding::Nat64)),
        [0x64, 0xff9b, 1, ..] => Some((
            Ipv4Addr::new(o[6], o[7], o[9], o[10]),
            Embedding::Nat64Local,
        )),
        [0x2002, ..] => Some((Ipv4Addr::new(o[2], o[3], o[4], o[5]), Embedding::SixToFour)),
        [0x2001, 0, ..] => Some((!last, Embedding::Teredo)),
        _ => None,
    }
}

/// Why a special address is refused, naming the IPv4 address an IPv6 spelling carries.
fn special_reason(address: IpAddr, range: &str) -> String {
    let embedded = match address {
        IpAddr::V6(v6) => embedded_ipv4(v6)
            .map(|(v4, how)| format!(" ({} spelling of {v4})", how.name()))
            .unwrap_or_default(),
        IpAddr::V4(_) => String::new(),
    };
    let article = if range.starts_with(['a', 'e', 'i', 'o', 'u', 'I']) {
        "an"
    } else {
        "a"
    };
    format!(
        "{address} is {article} {range} address{embedded}, which a host name or `*` never allows"
    )
}

/// The special range an address is in, if any: every address that is not plain global unicast.
///
/// IPv6 is special unless it is global unicast (`2000::/3`) outside the blocks IANA reserves
/// there, and every IPv6 spelling that carries an IPv4 address is special too (IPv4-compatible,
/// IPv4-translated, local-use NAT64, 6to4, Teredo), whatever the address it carries: these are
/// ways around an IPv4 check, not destinations a node needs. The exception is the well-known
/// NAT64 prefix `64:ff9b::/96`, which DNS64 resolvers hand out on IPv6-only hosts: it is as
/// special as the IPv4 address it carries. IPv4-mapped addresses are their IPv4 address.
pub fn special_range(address: IpAddr) -> Option<&'static str> {
    match canonical_ip(address) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let first = segments[0];
            if v6.is_loopback() {
                return Some("loopback");
            }
            if v6.is_unspecified() {
                return Some("unspecified");
            }
            if let Some((v4, how)) = embedded_ipv4(v6) {
                return match how {
                    Embedding::Nat64 => special_v4(v4).map(|_| "NAT64-translated special"),
                    Embedding::Mapped => special_v4(v4),
                    Embedding::Compatible => Some("IPv4-compatible (deprecated)"),
                    Embedding::Translated => Some("IPv4-translated"),
                    Embedding::Nat64Local => Some("local-use NAT64"),
                    Embedding::SixToFour => Some("6to4 tunnel"),
                    Embedding::Teredo => Some("Teredo tunnel"),
                };
            }
            if (first & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (first == 0x2001 && segments[1] == 0xdb8) || (first & 0xfff0) == 0x3ff0 {
                Some("documentation")
            } else if first == 0x2001 && segments[1] < 0x200 {
                Some("reserved (IETF protocol assignments)")
            } else if (first & 0xe000) != 0x2000 {
                Some("reserved (not global unicast)")
            } else {
                None
            }
        }
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if v4.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0)
        || (a == 192 && b == 88 && c == 99)
    {
        Some("reserved")
    } else {
        None
    }
}

/// A range inside the IPv4-mapped block (`[::ffff:10.0.0.0]/104`) is the IPv4 range it maps
/// (`10.0.0.0/8`), as a single mapped address is its IPv4 address. Other IPv6 ranges never hold
/// an IPv4 address.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        net => net,
    }
}

fn parse_pattern(text: &str) -> Result<HostPattern, PatternError> {
    let error = |reason: &str| PatternError {
        pattern: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(error("it is empty"));
    }
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if !SCHEMES.contains(&scheme.as_str()) {
                return Err(error(&format!(
                    "unknown scheme `{scheme}`; use one of {}",
                    SCHEMES.join(", ")
                )));
            }
            (Some(scheme), rest)
        }
        None => (None, trimmed),
    };
    if rest.contains('@') {
        return Err(error("it contains `@`; give a host, not user information"));
    }
    if rest.contains(['?', '#']) {
        return Err(error("patterns name hosts, not queries or fragments"));
    }
    let (host, port) = split_port(rest).map_err(|reason| error(&reason))?;
    let host = parse_host(host).map_err(|reason| error(&reason))?;
    Ok(HostPattern {
        text: trimmed.to_string(),
        scheme,
        host,
        port,
    })
}

/// Splits `host[:port]`, where host may be `[v6]`, `[v6]/len`, a bare IPv6 (no port then),
/// or a CIDR range.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(close) = text.strip_prefix('[').and_then(|_| text.find(']')) {
        let after = &text[close + 1..];
        let (prefix, port) = match after.rsplit_once(':') {
            Some((prefix, port)) => (prefix, Some(port)),
            None => (after, None),
        };
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(format!("unexpected `{prefix}` after the IPv6 address"));
        }
        (&text[..close + 1 + prefix.len()], port)
    } else if text.matches(':').count() > 1 {
        (text, None)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| format!("`{port}` is not a port (1 to 65535)"))?,
        ),
    };
    Ok((host, port))
}

fn parse_host(text: &str) -> Result<HostMatch, String> {
    if text == "*" {
        return Ok(HostMatch::Any);
    }
    if text.is_empty() {
        return Err("it names no host".into());
    }
    // An address or a range: `10.1.2.0/24`, `[::1]`, `[fd00::]/8`, `fd00::/8`.
    let unbracketed = text.replacen('[', "", 1).replacen(']', "", 1);
    if let Ok(net) = unbracketed.parse::<IpNet>() {
        if net.network() != net.addr() {
            return Err(format!(
                "`{text}` has host bits set; the range starts at {}",
                net.network()
            ));
        }
        return Ok(HostMatch::Net(canonical_net(net)));
    }
    if let Ok(address) = unbracketed.parse::<IpAddr>() {
        return Ok(HostMatch::Net(IpNet::from(canonical_ip(address))));
    }
    if text.contains('%') {
        return Err("IPv6 zone ids are not allowed; name the address without `%zone`".into());
    }
    if text.contains('/') {
        return Err("patterns name hosts, not paths (a `/` is only for address ranges)".into());
    }
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, text),
    };
    if name.contains('*') {
        return Err("a wildcard is only allowed as a leading `*.` (or `*` alone)".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    match Host::parse(name) {
        Ok(Host::Domain(domain)) if !domain.is_empty() && !domain.split('.').any(str::is_empty) => {
            let domain = domain.to_ascii_lowercase();
            Ok(if wildcard {
                HostMatch::Subdomains(domain)
            } else {
                HostMatch::Exact(domain)
            })
        }
        // Decimal, octal or hex IPv4 spellings (`2130706433`, `0x7f.1`) are addresses.
        Ok(Host::Ipv4(v4)) if !wildcard => Ok(HostMatch::Net(IpNet::from(IpAddr::V4(v4)))),
        Ok(_) => Err(format!("`{name}` is not a domain name")),
        Err(error) => Err(format!("`{name}` is not a valid host name ({error})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(patterns).unwrap()
    }

    fn ok(list: &AllowedHosts, url: &str) {
        if let Err(denied) = list.check_url(url) {
            panic!("{url} should be allowed: {denied}");
        }
    }

    fn no(list: &AllowedHosts, url: &str) -> Denied {
        list.check_url(url).expect_err(url)
    }

    #[test]
    fn deny_by_default() {
        let none = AllowedHosts::default();
        assert!(
            no(&none, "https://example.com/")
                .hint
                .contains("add `example.com`")
        );
    }

    #[test]
    fn exact_hosts_wildcards_schemes_and_ports() {
        let list = allow(&[
            "api.example.com",
            "*.cdn.example.net",
            "https://secure.example.org:8443",
        ]);
        ok(&list, "https://api.example.com/v1");
        ok(&list, "http://api.example.com:8080/");
        no(&list, "https://example.com/");
        no(&list, "https://other.api.example.com/");
        ok(&list, "https://a.cdn.example.net/x");
        ok(&list, "https://a.b.cdn.example.net/x");
        no(&list, "https://cdn.example.net/");
        no(&list, "https://evilcdn.example.net/");
        ok(&list, "https://secure.example.org:8443/");
        no(&list, "https://secure.example.org/");
        no(&list, "http://secure.example.org:8443/");
        ok(&allow(&["*"]), "https://anything.example/");
    }

    #[test]
    fn the_usual_tricks_do_not_work() {
        let list = allow(&["allowed.com"]);
        // userinfo: the host is evil.com
        no(&list, "http://allowed.com@evil.com/");
        no(&list, "http://allowed.com:80@evil.com/");
        // the allowed name in the path, query or fragment
        no(&list, "http://evil.com/allowed.com");
        no(&list, "http://evil.com/?allowed.com");
        no(&list, "http://evil.com#@allowed.com");
        no(&list, "http://allowed.com.evil.com/");
        // case and a trailing dot are the same host
        ok(&list, "http://ALLOWED.com./");
        ok(&list, "http://Allowed.Com/");
        // IDN: the pattern and the URL meet in punycode
        let idn = allow(&["bücher.example"]);
        ok(&idn, "https://xn--bcher-kva.example/");
        ok(&idn, "https://BÜCHER.example/");
        no(&idn, "https://bucher.example/");
        assert_eq!(
            allow(&["xn--bcher-kva.example"]),
            allow(&["xn--bcher-kva.example"])
        );
    }

    #[test]
    fn numeric_ipv4_spellings_are_the_address() {
        let loopback = allow(&["127.0.0.1"]);
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            ok(&loopback, url);
            no(&allow(&["*"]), url);
            no(&allow(&["localhost"]), url);
        }
        let numeric_pattern = allow(&["2130706433"]);
        ok(&numeric_pattern, "http://127.0.0.1/");
    }

    #[test]
    fn ipv6_literals_ranges_and_zones() {
        let list = allow(&["[::1]", "[2001:db8::]/32", "10.1.2.0/24"]);
        ok(&list, "http://[::1]:8080/");
        ok(&list, "http://[2001:db8::5]/");
        ok(&list, "http://10.1.2.3/");
        no(&list, "http://10.1.3.3/");
        no(&list, "http://[::2]/");
        assert!(list.check_url("http://[fe80::1%25eth0]/").is_err());
        assert!(AllowedHosts::parse(&["fe80::1%eth0"]).is_err());
    }

    #[test]
    fn special_ranges_need_an_explicit_pattern() {
        let any = allow(&["*", "metadata.internal"]);
        for address in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "[::1]",
            "[fd00::1]",
            "[fe80::1]",
        ] {
            let denied = no(&any, &format!("http://{address}/"));
            assert!(denied.hint.contains("list the address"), "{denied}");
        }
        // A name that resolves into a special range: the name alone does not allow it.
        let destination = any.check_url("http://metadata.internal/").unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(any.check_resolved(&destination, metadata).is_err());
        assert!(
            any.check_resolved(&destination, "93.184.216.34".parse().unwrap())
                .is_ok()
        );
        let explicit = allow(&["metadata.internal", "169.254.169.254"]);
        let destination = explicit.check_url("http://metadata.internal/").unwrap();
        assert!(explicit.check_resolved(&destination, metadata).is_ok());
        let private = allow(&["10.0.0.0/8"]);
        ok(&private, "http://10.200.0.1/");
        assert!(
            private
                .check_socket("tcp", "10.1.1.1:9000".parse().unwrap())
                .is_ok()
        );
        assert!(
            private
                .check_socket("tcp", "127.0.0.1:9000".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn ipv6_spellings_of_special_ipv4_addresses_are_special() {
        let any = allow(&["*"]);
        for address in [
            // IPv4-compatible (deprecated): loopback, metadata, private
            "::127.0.0.1",
            "::7f00:1",
            "::169.254.169.254",
            "::10.0.0.1",
            // IPv4-mapped and IPv4-translated
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            // NAT64, well-known and local-use
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1:7f00:0:100::",
            // 6to4: 127.0.0.1 and 169.254.169.254 in bits 16 to 48
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            // Teredo: client 127.0.0.1 in the last 32 bits, inverted
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::5601:5601",
        ] {
            let ip: IpAddr = address.parse().unwrap();
            assert!(special_range(ip).is_some(), "{address} should be special");
            let denied = no(&any, &format!("http://[{address}]/"));
            assert!(denied.hint.contains("list the address"), "{denied}");
            assert!(any.check_resolved_any(ip).is_err(), "{address}");
        }
        let teredo: std::net::Ipv6Addr = "2001:0:4136:e378:8000:63bf:80ff:fffe".parse().unwrap();
        assert_eq!(
            embedded_ipv4(teredo),
            Some((Ipv4Addr::new(127, 0, 0, 1), Embedding::Teredo))
        );
        let local: std::net::Ipv6Addr = "64:ff9b:1:7f00:0:100::".parse().unwrap();
        assert_eq!(
            embedded_ipv4(local),
            Some((Ipv4Addr::new(127, 0, 0, 1), Embedding::Nat64Local))
        );
        let denied = no(&any, "http://[::127.0.0.1]/");
        assert!(denied.reason.contains("spelling of 127.0.0.1"), "{denied}");
        // A DNS64 answer for a public address stays reachable; public IPv6 too.
        for public in ["64:ff9b::5db8:d822", "2606:4700::1111", "2a00:1450::1"] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(special_range(ip), None, "{public}");
            ok(&any, &format!("https://[{public}]/"));
        }
        // Listing the IPv6 spelling itself allows it; listing the IPv4 address does not.
        ok(&allow(&["[::127.0.0.1]"]), "http://[::127.0.0.1]/");
        no(&allow(&["127.0.0.1"]), "http://[::127.0.0.1]/");
        no(&allow(&["127.0.0.1"]), "http://[64:ff9b::7f00:1]/");
    }

    #[test]
    fn a_resolved_address_keeps_the_scheme_and_port_of_the_name() {
        let list = allow(&["tcp://db.example:5432", "https://api.example"]);
        let db = list.check_name("DB.example.").unwrap();
        assert_eq!(db, Host::Domain("db.example".to_string()));
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let at = |port| std::net::SocketAddr::new(public, port);
        assert!(list.check_resolved_socket("tcp", &db, at(5432)).is_ok());
        let denied = list.check_resolved_socket("tcp", &db, at(22)).unwrap_err();
        assert!(
            denied.destination.contains("tcp://db.example:22"),
            "{denied}"
        );
        assert!(denied.destination.contains("resolved to"), "{denied}");
        assert!(list.check_resolved_socket("udp", &db, at(5432)).is_err());
        // A name allowed only for https resolves, but its addresses take no tcp connects.
        let api = list.check_name("api.example").unwrap();
        assert!(list.check_resolved_socket("tcp", &api, at(443)).is_err());
        // A special address needs a pattern that lists it with this scheme and port too.
        let local = allow(&["tcp://localhost:5000", "127.0.0.1:5000"]);
        let name = local.check_name("localhost").unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(local.check_resolved_any(loopback).is_ok());
        let to = |port| std::net::SocketAddr::new(loopback, port);
        assert!(local.check_resolved_socket("tcp", &name, to(5000)).is_ok());
        assert!(local.check_resolved_socket("tcp", &name, to(6000)).is_err());
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        for (pattern, reason) in [
            ("", "empty"),
            ("ftp://example.com", "unknown scheme"),
            ("example.com/path", "not paths"),
            ("user@example.com", "user information"),
            ("api.*.example.com", "leading `*.`"),
            ("*example.com", "leading `*.`"),
            ("example.com:99999", "not a port"),
            ("example.com:0", "not a port"),
            ("10.1.2.3/24", "host bits"),
            ("exa mple.com", "not a valid host name"),
            ("example.com?x", "not queries"),
        ] {
            let error = AllowedHosts::parse(&[pattern]).unwrap_err();
            assert!(error.to_string().contains(reason), "{pattern}: {error}");
        }
    }
}

/// The matcher against an independent reading of the same hosts: the `url` crate for URLs and
/// names, `ipnet` and the standard library for addresses, and the IANA special-purpose
/// registries written out as ranges.
#[cfg(test)]
mod properties {
    use super::*;
    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    /// IANA's IPv4 special-purpose blocks, plus 192.0.0.0/16 which the host reserves whole.
    const SPECIAL_V4: &[&str] = &[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/16",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    ];
    /// IPv6 blocks that are special whatever they carry (64:ff9b::/96 aside, see below).
    const SPECIAL_V6: &[&str] = &[
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b:1::/48",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ];
    const PUBLIC_V4: &[&str] = &["1.0.0.0/8", "8.8.8.0/24", "93.184.0.0/16", "0.0.0.0/0"];
    const PUBLIC_V6: &[&str] = &["2606:4700::/32", "2a00:1450::/32", "2000::/3", "::/0"];

    fn nets<T: std::str::FromStr>(list: &[&str]) -> Vec<T>
    where
        T::Err: std::fmt::Debug,
    {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    fn oracle_special(address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => nets::<Ipv4Net>(SPECIAL_V4)
                .iter()
                .any(|net| net.contains(&v4)),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return oracle_special(IpAddr::V4(v4));
                }
                let nat64: Ipv6Net = "64:ff9b::/96".parse().unwrap();
                if nat64.contains(&v6) {
                    let [.., a, b, c, d] = v6.octets();
                    return oracle_special(IpAddr::from([a, b, c, d]));
                }
                let global: Ipv6Net = "2000::/3".parse().unwrap();
                nets::<Ipv6Net>(SPECIAL_V6)
                    .iter()
                    .any(|net| net.contains(&v6))
                    || !global.contains(&v6)
            }
        }
    }

    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        let mut all = nets::<Ipv4Net>(SPECIAL_V4);
        all.extend(nets::<Ipv4Net>(PUBLIC_V4));
        (prop::sample::select(all), any::<u32>()).prop_map(|(net, bits)| {
            let host = !u32::from(net.netmask());
            Ipv4Addr::from(u32::from(net.network()) | (bits & host))
        })
    }

    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        let mut all = nets::<Ipv6Net>(SPECIAL_V6);
        all.extend(nets::<Ipv6Net>(PUBLIC_V6));
        all.push("64:ff9b::/96".parse().unwrap());
        let in_range = (prop::sample::select(all), any::<u128>()).prop_map(|(net, bits)| {
            let host = !u128::from(net.netmask());
            Ipv6Addr::from(u128::from(net.network()) | (bits & host))
        });
        // An IPv4 address spelled in every IPv6 form that carries one.
        let embedded = (v4(), 0..7u8, any::<u64>()).prop_map(|(v4, form, noise)| {
            let [a, b, c, d] = v4.octets();
            let n = noise.to_be_bytes();
            let octets: [u8; 16] = match form {
                0 => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d],
                1 => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
                2 => [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, a, b, c, d],
                3 => [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d],
                4 => [0, 0x64, 0xff, 0x9b, 0, 1, a, b, 0, c, d, 0, 0, 0, 0, 0],
                5 => [
                    0x20, 0x02, a, b, c, d, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], 1, 2,
                ],
                _ => {
                    let [w, x, y, z] = (!u32::from(v4)).to_be_bytes();
                    [
                        0x20, 1, 0, 0, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], w, x, y, z,
                    ]
                }
            };
            Ipv6Addr::from(octets)
        });
        prop_oneof![in_range, embedded]
    }

    /// A WHATWG spelling of an IPv4 address: dotted, one number, octal or hex parts, short
    /// forms, or IPv4-mapped IPv6.
    fn spell_v4() -> impl Strategy<Value = (Ipv4Addr, String)> {
        (v4(), 0..7u8).prop_map(|(v4, form)| {
            let [a, b, c, d] = v4.octets();
            let number = u32::from(v4);
            let text = match form {
                0 => format!("{a}.{b}.{c}.{d}"),
                1 => number.to_string(),
                2 => format!("0x{number:x}"),
                3 => format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
                4 => format!("0X{a:X}.0x{b:x}.{c}.0{d:o}"),
                5 => format!("{a}.{}", number & 0x00ff_ffff),
                _ => format!("[::ffff:{a}.{b}.{c}.{d}]"),
            };
            (v4, text)
        })
    }

    fn net_v4(v4: Ipv4Addr, len: u8) -> Ipv4Net {
        Ipv4Net::new(v4, len).unwrap().trunc()
    }

    fn label() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "api",
            "cdn",
            "a",
            "b1",
            "xn--bcher-kva",
            "bücher",
            "BÜCHER",
            "ex-ample",
            "www",
        ])
        .prop_map(str::to_string)
    }

    /// A name of one to three labels under `example` or `test`, in random case, maybe with a
    /// trailing dot.
    fn name() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(label(), 1..4),
            prop::sample::select(vec!["example", "test"]),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(labels, tld, case, dot)| {
                let name = format!("{}.{tld}", labels.join("."));
                let mut cased: String = name
                    .chars()
                    .enumerate()
                    .map(|(index, ch)| {
                        if case & (1 << (index % 16)) != 0 {
                            ch.to_ascii_uppercase()
                        } else {
                            ch
                        }
                    })
                    .collect();
                if dot {
                    cased.push('.');
                }
                cased
            })
    }

    /// The host the `url` crate reads from `http://{name}/`, without a trailing dot.
    fn url_host(name: &str) -> String {
        let url = Url::parse(&format!("http://{name}/")).unwrap();
        let host = url.host_str().unwrap();
        host.strip_suffix('.').unwrap_or(host).to_string()
    }

    const URL_SCHEMES: &[&str] = &["http", "https", "ws", "wss"];

    fn allow(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(patterns).unwrap()
    }

    proptest! {
        // A few hundred cases run in well under a second; failures are reported, not saved
        // into the source tree.
        #![proptest_config(ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn special_ranges_match_the_registries(v4 in v4(), v6 in v6()) {
            for address in [IpAddr::V4(v4), IpAddr::V6(v6)] {
                prop_assert_eq!(
                    special_range(address).is_some(),
                    oracle_special(address),
                    "{} is classified as {:?}", address, special_range(address)
                );
            }
        }

        #[test]
        fn ipv4_spellings_match_as_their_address(
            (address, spelling) in spell_v4(),
            listed in v4(),
            len in 8..=32u8,
            same in any::<bool>(),
            port in 1..=65535u16,
        ) {
            // The url crate reads the spelling as the address it was made from.
            let url = format!("http://{spelling}:{port}/");
            let parsed = Url::parse(&url).unwrap();
            let read = match parsed.host() {
                Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
                Some(Host::Ipv6(v6)) => canonical_ip(IpAddr::V6(v6)),
                other => panic!("{spelling} read as {other:?}"),
            };
            prop_assert_eq!(read, IpAddr::V4(address));
            let net = net_v4(if same { address } else { listed }, len);
            let list = allow(&[&net.to_string()]);
            prop_assert_eq!(list.check_url(&url).is_ok(), net.contains(&address), "{} against {}", url, net);
            let socket = std::net::SocketAddr::new(IpAddr::V4(address), port);
            prop_assert_eq!(list.check_socket("tcp", socket).is_ok(), net.contains(&address));
            let any = allow(&["*"]);
            prop_assert_eq!(any.check_url(&url).is_ok(), !oracle_special(IpAddr::V4(address)));
        }

        #[test]
        fn ipv6_literals_match_as_their_address(
            address in v6(),
            listed in v6(),
            len in 16..=128u8,
            same in any::<bool>(),
        ) {
            let url = format!("http://[{address}]/");
            let net = Ipv6Net::new(if same { address } else { listed }, len).unwrap().trunc();
            let list = allow(&[&format!("[{}]/{}", net.addr(), net.prefix_len())]);
            let ip = canonical_ip(IpAddr::V6(address));
            let expected = match ip {
                IpAddr::V6(v6) => net.contains(&v6),
                // An IPv4-mapped address is its IPv4 address, which an IPv6 range never holds
                // unless the range is itself IPv4-mapped.
                IpAddr::V4(_) => net.contains(&address) && net.prefix_len() >= 96
                    && net.addr().to_ipv4_mapped().is_some(),
            };
            prop_assert_eq!(list.check_url(&url).is_ok(), expected, "{} against {}", url, net);
            let any = allow(&["*"]);
            prop_assert_eq!(any.check_url(&url).is_ok(), !oracle_special(IpAddr::V6(address)));
            prop_assert_eq!(any.check_resolved_any(IpAddr::V6(address)).is_ok(), !oracle_special(IpAddr::V6(address)));
        }

        #[test]
        fn names_schemes_and_ports_match_as_the_url_crate_reads_them(
            host in name(),
            pattern_host in name(),
            wildcard in any::<bool>(),
            pattern_scheme in prop::option::of(prop::sample::select(URL_SCHEMES)),
            pattern_port in prop::option::of(prop::sample::select(vec![80u16, 443, 8080])),
            scheme in prop::sample::select(URL_SCHEMES),
            port in prop::option::of(prop::sample::select(vec![80u16, 443, 8080])),
            suffix_of_host in any::<bool>(),
        ) {
            // Half the time the pattern is a suffix of the host, so matches are common.
            let pattern_name = if suffix_of_host {
                let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
                labels[labels.len().saturating_sub(2)..].join(".")
            } else {
                pattern_host
            };
            let mut pattern = String::new();
            if let Some(scheme) = pattern_scheme {
                pattern.push_str(&format!("{scheme}://"));
            }
            if wildcard {
                pattern.push_str("*.");
            }
            pattern.push_str(&pattern_name);
            if let Some(port) = pattern_port {
                pattern.push_str(&format!(":{port}"));
            }
            let url = match port {
                Some(port) => format!("{scheme}://{host}:{port}/path"),
                None => format!("{scheme}://{host}/path"),
            };
            let parsed = Url::parse(&url).unwrap();
            let read = url_host(&host);
            let wanted = url_host(&pattern_name);
            let host_ok = if wildcard {
                read.ends_with(&format!(".{wanted}"))
            } else {
                read == wanted
            };
            let scheme_ok = pattern_scheme.is_none_or(|wanted| wanted == parsed.scheme());
            let port_ok = pattern_port.is_none_or(|wanted| Some(wanted) == parsed.port_or_known_default());
            let list = allow(&[&pattern]);
            prop_assert_eq!(
                list.check_url(&url).is_ok(),
                host_ok && scheme_ok && port_ok,
                "{} against {}", url, pattern
            );
            // A lookup of the name is allowed whatever the scheme and port.
            prop_assert_eq!(list.check_name(&host).is_ok(), host_ok, "lookup of {} against {}", host, pattern);
        }
    }
}
