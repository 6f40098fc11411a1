//! The capability table: the one place that says which bit grants which WIT world and interfaces.
//!
//! The preflight, the linker, the CLI, the manifest and the docs all read [`CAPABILITIES`], so adding
//! a capability means adding a row here (and its host implementation).

use std::fmt;
use std::str::FromStr;

bitflags::bitflags! {
    /// A set of capabilities, as granted to a node or required by one.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct Capabilities: u32 {
        const STORAGE_READ = 0x1;
        const STORAGE_WRITE = 0x2;
        const STORAGE_DELETE = 0x4;
        const HTTP_GET = 0x8;
        const HTTP_WRITE = 0x10;
        const VARIABLES_READ = 0x20;
        const VARIABLES_WRITE = 0x40;
        const CACHE_READ = 0x80;
        const CACHE_WRITE = 0x100;
        const OAUTH = 0x200;
        const TOKEN = 0x400;
        const STREAMING = 0x800;
        const A2UI = 0x1000;
        const MODELS = 0x2000;
        const FUNCTIONS = 0x4000;
        const WEBSOCKET = 0x8000;
        const TCP = 0x10000;
        const UDP = 0x20000;
        const DNS = 0x40000;
    }
}

/// How the host provides a capability's interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// warden's own host functions, from the `warden:node` WIT package.
    Warden,
    /// wasmtime-wasi's wasi:sockets; linked only when `allow_wasi_network` is on as well.
    WasiSockets,
}

impl Provider {
    /// The prefix of every interface this provider serves: a row names no other.
    pub fn namespace(self) -> &'static str {
        match self {
            Provider::Warden => "warden:node/",
            Provider::WasiSockets => "wasi:sockets/",
        }
    }
}

/// One row of the capability table.
#[derive(Debug)]
pub struct CapabilityInfo {
    pub bit: Capabilities,
    /// The name used on the command line and in manifests.
    pub name: &'static str,
    /// The WIT world a node includes to ask for it.
    pub world: &'static str,
    /// The interfaces that world imports (without the `@version`).
    pub interfaces: &'static [&'static str],
    pub provider: Provider,
    pub summary: &'static str,
}

const fn row(
    bit: Capabilities,
    name: &'static str,
    world: &'static str,
    interfaces: &'static [&'static str],
    summary: &'static str,
) -> CapabilityInfo {
    CapabilityInfo {
        bit,
        name,
        world,
        interfaces,
        provider: Provider::Warden,
        summary,
    }
}

/// A capability served by wasmtime-wasi's wasi:sockets, confined by `allowed_hosts`.
const fn sockets(
    bit: Capabilities,
    name: &'static str,
    world: &'static str,
    interfaces: &'static [&'static str],
    summary: &'static str,
) -> CapabilityInfo {
    CapabilityInfo {
        provider: Provider::WasiSockets,
        ..row(bit, name, world, interfaces, summary)
    }
}

/// Every capability, in bit order.
pub const CAPABILITIES: &[CapabilityInfo] = &[
    row(
        Capabilities::STORAGE_READ,
        "storage-read",
        "cap-storage-read",
        &["warden:node/storage-read"],
        "read keys in the run's storage scopes",
    ),
    row(
        Capabilities::STORAGE_WRITE,
        "storage-write",
        "cap-storage-write",
        &["warden:node/storage-write"],
        "write keys in the run's storage scopes (not upload)",
    ),
    row(
        Capabilities::STORAGE_DELETE,
        "storage-delete",
        "cap-storage-delete",
        &["warden:node/storage-delete"],
        "delete keys in the run's storage scopes (not upload)",
    ),
    row(
        Capabilities::HTTP_GET,
        "http-get",
        "cap-http-get",
        &["warden:node/http-get"],
        "GET and HEAD requests to allowlisted hosts",
    ),
    row(
        Capabilities::HTTP_WRITE,
        "http-write",
        "cap-http-write",
        &["warden:node/http-write"],
        "POST, PUT, PATCH and DELETE requests to allowlisted hosts",
    ),
    row(
        Capabilities::VARIABLES_READ,
        "variables-read",
        "cap-variables-read",
        &["warden:node/variables-read"],
        "read the run's variables",
    ),
    row(
        Capabilities::VARIABLES_WRITE,
        "variables-write",
        "cap-variables-write",
        &["warden:node/variables-write"],
        "set the run's variables",
    ),
    row(
        Capabilities::CACHE_READ,
        "cache-read",
        "cap-cache-read",
        &["warden:node/cache-read"],
        "read the execution cache",
    ),
    row(
        Capabilities::CACHE_WRITE,
        "cache-write",
        "cap-cache-write",
        &["warden:node/cache-write"],
        "write the execution cache, with expiry",
    ),
    row(
        Capabilities::OAUTH,
        "oauth",
        "cap-oauth",
        &["warden:node/oauth"],
        "OAuth access tokens the embedder holds",
    ),
    row(
        Capabilities::TOKEN,
        "token",
        "cap-token",
        &["warden:node/token"],
        "API tokens the embedder holds",
    ),
    row(
        Capabilities::STREAMING,
        "streaming",
        "cap-streaming",
        &["warden:node/streaming"],
        "stream incremental output to the embedder",
    ),
    row(
        Capabilities::A2UI,
        "a2ui",
        "cap-a2ui",
        &["warden:node/a2ui"],
        "emit UI documents",
    ),
    row(
        Capabilities::MODELS,
        "models",
        "cap-models",
        &["warden:node/models"],
        "model inference through host providers",
    ),
    row(
        Capabilities::FUNCTIONS,
        "functions",
        "cap-functions",
        &["warden:node/functions"],
        "call host functions the embedder registered",
    ),
    row(
        Capabilities::WEBSOCKET,
        "websocket",
        "cap-websocket",
        &["warden:node/websocket"],
        "WebSocket connections to allowlisted hosts",
    ),
    sockets(
        Capabilities::TCP,
        "tcp",
        "cap-tcp",
        &[
            "wasi:sockets/network",
            "wasi:sockets/instance-network",
            "wasi:sockets/tcp",
            "wasi:sockets/tcp-create-socket",
        ],
        "TCP sockets to allowlisted addresses",
    ),
    sockets(
        Capabilities::UDP,
        "udp",
        "cap-udp",
        &[
            "wasi:sockets/network",
            "wasi:sockets/instance-network",
            "wasi:sockets/udp",
            "wasi:sockets/udp-create-socket",
        ],
        "UDP sockets to allowlisted addresses",
    ),
    sockets(
        Capabilities::DNS,
        "dns",
        "cap-dns",
        &[
            "wasi:sockets/network",
            "wasi:sockets/instance-network",
            "wasi:sockets/ip-name-lookup",
        ],
        "DNS lookups of allowlisted names",
    ),
];

/// Named sets of capabilities, accepted wherever a capability name is.
pub const COMPOUNDS: &[(&str, Capabilities)] = &[
    ("none", Capabilities::empty()),
    ("standard", Capabilities::STANDARD),
    ("storage-all", Capabilities::STORAGE_ALL),
    ("cache-all", Capabilities::CACHE_ALL),
    ("network-all", Capabilities::NETWORK_ALL),
    ("auth-all", Capabilities::AUTH_ALL),
    ("all", Capabilities::all()),
];

impl Capabilities {
    /// The grant when none is given: read storage, GET, read variables, use the cache.
    pub const STANDARD: Self = Self::STORAGE_READ
        .union(Self::HTTP_GET)
        .union(Self::VARIABLES_READ)
        .union(Self::CACHE_READ)
        .union(Self::CACHE_WRITE);
    pub const STORAGE_ALL: Self = Self::STORAGE_READ
        .union(Self::STORAGE_WRITE)
        .union(Self::STORAGE_DELETE);
    pub const CACHE_ALL: Self = Self::CACHE_READ.union(Self::CACHE_WRITE);
    pub const NETWORK_ALL: Self = Self::HTTP_GET
        .union(Self::HTTP_WRITE)
        .union(Self::WEBSOCKET)
        .union(Self::TCP)
        .union(Self::UDP)
        .union(Self::DNS);
    pub const AUTH_ALL: Self = Self::OAUTH.union(Self::TOKEN);

    /// The table rows of the capabilities in this set, in bit order.
    pub fn infos(self) -> impl Iterator<Item = &'static CapabilityInfo> {
        CAPABILITIES
            .iter()
            .filter(move |info| self.contains(info.bit))
    }

    /// The names of the single capabilities in this set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        self.infos().map(|info| info.name).collect()
    }
}

/// The row of a single capability bit.
pub fn info(bit: Capabilities) -> Option<&'static CapabilityInfo> {
    CAPABILITIES.iter().find(|info| info.bit == bit)
}

/// The capabilities whose worlds import `interface` (given without its `@version`).
pub fn providers_of(interface: &str) -> Capabilities {
    CAPABILITIES
        .iter()
        .filter(|info| info.interfaces.contains(&interface))
        .fold(Capabilities::empty(), |set, info| set | info.bit)
}

/// A capability name that is neither in the table nor a compound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown capability `{name}`; known capabilities: {}, and the sets {}",
    known_single(),
    known_compound()
)]
pub struct UnknownCapability {
    pub name: String,
}

fn known_single() -> String {
    CAPABILITIES
        .iter()
        .map(|info| info.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_compound() -> String {
    COMPOUNDS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Capabilities {
    type Err = UnknownCapability;

    /// Parses a comma-separated list of capability and set names, such as `standard,storage-write`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = Capabilities::empty();
        for part in text.split(',') {
            let name = part.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(UnknownCapability {
                    name: part.to_string(),
                });
            }
            let found = CAPABILITIES
                .iter()
                .find(|info| info.name == name)
                .map(|info| info.bit)
                .or_else(|| {
                    COMPOUNDS
                        .iter()
                        .find(|(compound, _)| *compound == name)
                        .map(|(_, set)| *set)
                });
            match found {
                Some(bits) => set |= bits,
                None => return Err(UnknownCapability { name }),
            }
        }
        Ok(set)
    }
}

impl fmt::Display for Capabilities {
    /// Prints the single names joined by commas, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_bit_order_and_covers_every_bit() {
        let mut all = Capabilities::empty();
        for (index, info) in CAPABILITIES.iter().enumerate() {
            assert_eq!(info.bit.bits(), 1 << index, "{} is out of order", info.name);
            assert_eq!(info.world, format!("cap-{}", info.name));
            all |= info.bit;
        }
        assert_eq!(all, Capabilities::all());
    }

    #[test]
    fn names_round_trip() {
        for info in CAPABILITIES {
            let parsed: Capabilities = info.name.parse().unwrap();
            assert_eq!(parsed, info.bit);
            assert_eq!(parsed.to_string(), info.name);
        }
        let set: Capabilities = "storage-read, HTTP-GET,cache-all".parse().unwrap();
        assert_eq!(
            set,
            Capabilities::STORAGE_READ | Capabilities::HTTP_GET | Capabilities::CACHE_ALL
        );
        assert_eq!(
            set.to_string(),
            "storage-read,http-get,cache-read,cache-write"
        );
        assert_eq!(set.to_string().parse::<Capabilities>().unwrap(), set);
    }

    #[test]
    fn compounds_match_their_definitions() {
        assert_eq!(
            "none".parse::<Capabilities>().unwrap(),
            Capabilities::empty()
        );
        assert_eq!(Capabilities::empty().to_string(), "none");
        assert_eq!(
            "standard".parse::<Capabilities>().unwrap().bits(),
            0x1 | 0x8 | 0x20 | 0x80 | 0x100
        );
        assert_eq!("storage-all".parse::<Capabilities>().unwrap().bits(), 0x7);
        assert_eq!(
            "network-all".parse::<Capabilities>().unwrap().bits(),
            0x8 | 0x10 | 0x8000 | 0x10000 | 0x20000 | 0x40000
        );
        assert_eq!("auth-all".parse::<Capabilities>().unwrap().bits(), 0x600);
        assert_eq!("all".parse::<Capabilities>().unwrap(), Capabilities::all());
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let error = "storage-read,teleport".parse::<Capabilities>().unwrap_err();
        assert_eq!(error.name, "teleport");
        assert!(error.to_string().contains("storage-read, storage-write"));
        assert!(error.to_string().contains("network-all"));
        assert!("".parse::<Capabilities>().is_err());
        assert!("storage-read,".parse::<Capabilities>().is_err());
    }

    /// The preflight and the linker trust the rows: a warden row naming a WASI interface would
    /// hand it out without `allow_wasi`/`allow_wasi_network`.
    #[test]
    fn rows_name_only_their_providers_interfaces() {
        for info in CAPABILITIES {
            for interface in info.interfaces {
                assert!(
                    interface.starts_with(info.provider.namespace()),
                    "{}: {interface}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn socket_interfaces_have_several_providers() {
        assert_eq!(
            providers_of("wasi:sockets/network"),
            Capabilities::TCP | Capabilities::UDP | Capabilities::DNS
        );
        assert_eq!(
            providers_of("warden:node/storage-read"),
            Capabilities::STORAGE_READ
        );
        assert!(providers_of("wasi:filesystem/types").is_empty());
    }
}

/// The capability table against `wit/worlds.wit`, parsed as the toolchains parse it: the table
/// is hand-written, the WIT is what nodes build against, and neither may drift.
#[cfg(test)]
mod wit_tests {
    use super::*;
    use crate::policy::preflight::BASELINE;
    use std::collections::BTreeSet;
    use wit_parser::{Resolve, WorldItem};

    fn resolve() -> (Resolve, wit_parser::PackageId) {
        let mut resolve = Resolve::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let (package, _) = resolve.push_dir(&dir).expect("wit/ parses");
        (resolve, package)
    }

    /// The interfaces a world imports, without versions.
    fn imports(resolve: &Resolve, package: wit_parser::PackageId, world: &str) -> BTreeSet<String> {
        let id = resolve.packages[package].worlds[world];
        resolve.worlds[id]
            .imports
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => resolve.id_of(*id),
                _ => None,
            })
            .map(|name| crate::node::component::split_version(&name).0.to_string())
            .collect()
    }

    #[test]
    fn every_row_names_a_world_importing_exactly_its_interfaces() {
        let (resolve, package) = resolve();
        for info in CAPABILITIES {
            let expected: BTreeSet<String> = info
                .interfaces
                .iter()
                .map(|name| name.to_string())
                .collect();
            let mut found = imports(&resolve, package, info.world);
            // What the interfaces `use` comes in too: `types` for warden's, wasi:io and
            // wasi:clocks for wasi:sockets; all of it is in the baseline every node gets.
            found.retain(|interface| !BASELINE.contains(&interface.as_str()));
            assert_eq!(
                found, expected,
                "world {} against the row {}",
                info.world, info.name
            );
        }
    }

    #[test]
    fn every_capability_world_has_a_row() {
        let (resolve, package) = resolve();
        let worlds: BTreeSet<&str> = resolve.packages[package]
            .worlds
            .keys()
            .map(String::as_str)
            .filter(|name| name.starts_with("cap-"))
            .collect();
        let rows: BTreeSet<&str> = CAPABILITIES.iter().map(|info| info.world).collect();
        assert_eq!(worlds, rows);
    }

    /// The host's bindings world holds every interface warden provides itself, and the base
    /// world's imports are in the baseline every node gets.
    #[test]
    fn the_host_world_and_the_baseline_match_the_table() {
        let (resolve, package) = resolve();
        let host = imports(&resolve, package, "node-host");
        let base = imports(&resolve, package, "base");
        let mut expected: BTreeSet<String> = base.clone();
        for info in CAPABILITIES
            .iter()
            .filter(|info| info.provider == Provider::Warden)
        {
            expected.extend(info.interfaces.iter().map(|name| name.to_string()));
        }
        assert_eq!(host, expected);
        for interface in &base {
            assert!(
                BASELINE.contains(&interface.as_str()),
                "{interface} is not in the baseline"
            );
        }
        let warden_baseline: BTreeSet<String> = BASELINE
            .iter()
            .filter(|name| name.starts_with("warden:node/"))
            .map(|name| name.to_string())
            .collect();
        assert_eq!(warden_baseline, base);
    }
}

/// The SDK's Cargo features are the capabilities warden provides itself (the SDK's own test
/// checks its capability list against those features).
#[cfg(test)]
#[test]
fn the_sdk_offers_a_feature_per_warden_capability() {
    let manifest = include_str!("../../../guest-sdk/Cargo.toml");
    let section = manifest.split("[features]").nth(1).unwrap_or_default();
    let features: Vec<&str> = section
        .lines()
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && *name != "default")
        .collect();
    let warden: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|info| info.provider == Provider::Warden)
        .map(|info| info.name)
        .collect();
    assert_eq!(features, warden);
}
