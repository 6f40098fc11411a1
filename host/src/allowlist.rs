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

    /// Checks a name about to be resolved: some pattern must allow it (by name or `*`),
    /// whatever its scheme and port.
    pub fn check_name(&self, name: &str) -> Result<(), Denied> {
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
            Ok(())
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
            reason: format!(
                "{address} is a {range} address, which a host name or `*` never allows"
            ),
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
            reason: format!(
                "{address} is a {range} address, which a host name or `*` never allows"
            ),
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

/// IPv4-mapped IPv6 addresses are their IPv4 address.
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

/// The special range an address is in, if any.
pub fn special_range(address: IpAddr) -> Option<&'static str> {
    match canonical_ip(address) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
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
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (first & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first == 0x64
                || first == 0x2002
                || (first == 0x2001 && v6.segments()[1] == 0xdb8)
            {
                Some("translated or documentation")
            } else {
                None
            }
        }
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
        return Ok(HostMatch::Net(net));
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
