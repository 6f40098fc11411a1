//! The preflight: before anything is instantiated, map each import of a component to the
//! capability that provides it and refuse the node unless every one is granted.

use crate::node::component::{self, WIT_VERSION, split_version};
use crate::policy::capability::{self, Capabilities};
use crate::policy::config::WasmSecurityConfig;
use std::fmt;

/// Interfaces every node may import: the `base` world and the WASI a `wasm32-wasip2` build
/// pulls in through Rust's standard library (no filesystem, no sockets).
pub const BASELINE: &[&str] = &[
    "warden:node/types",
    "warden:node/log",
    "warden:node/context",
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// wasi:filesystem: ambient. Always linked; the node's private directory is preopened only
/// with `allow_wasi`, and without it there is no directory to open at all.
pub const FILESYSTEM: &[&str] = &["wasi:filesystem/types", "wasi:filesystem/preopens"];

/// wasi:sockets: ambient. Always linked; every operation is denied unless `tcp`, `udp` or
/// `dns` is granted together with `allow_wasi_network`, and then confined to the allowlist.
pub const SOCKETS: &[&str] = &[
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// wasi:http: ambient. Always linked (StarlingMonkey's default builds import it); every
/// request is refused unless `http-get` or `http-write` is granted, and then it goes through
/// warden's own client, allowlist and limits (`caps::wasi_http`).
pub const HTTP: &[&str] = &["wasi:http/types", "wasi:http/outgoing-handler"];

/// What an import needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Always linked, and grants nothing that is not everyone's (clocks, random, stdio to the
    /// log, an empty environment).
    Baseline,
    /// Always linked, so that standard toolchains' default builds link, but served denied:
    /// it does something only when what is in it is granted.
    Ambient(Ambient),
    /// A capability's own interface: linked only when one of these capabilities is granted.
    Capability(Capabilities),
    /// Nothing in this host provides it.
    Unknown,
}

/// An ambient interface, and what makes it do something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ambient {
    /// wasi:filesystem: `allow_wasi` preopens the node's private directory.
    Filesystem,
    /// wasi:sockets: these capabilities, with `allow_wasi_network`.
    Sockets(Capabilities),
    /// wasi:http: `http-get` or `http-write`, for the methods each covers.
    Http,
}

/// Whether a WASI import's version is one this host serves: on the 0.2 track (any patch,
/// matched semver-compatibly by the linker), not a prerelease.
pub fn wasi_version_served(version: Option<&str>) -> bool {
    let Some(version) = version else {
        return false;
    };
    let mut parts = version.split('.');
    let (Some("0"), Some("2"), Some(patch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !patch.is_empty() && patch.bytes().all(|byte| byte.is_ascii_digit())
}

/// What `import` (with its `@version`) needs.
pub fn need_of(import: &str) -> Need {
    let (name, version) = split_version(import);
    if name.starts_with("warden:node/") && !version.is_some_and(component::compatible_version) {
        return Need::Unknown;
    }
    if name.starts_with("wasi:") && !wasi_version_served(version) {
        return Need::Unknown;
    }
    if BASELINE.contains(&name) {
        return Need::Baseline;
    }
    if FILESYSTEM.contains(&name) {
        return Need::Ambient(Ambient::Filesystem);
    }
    if SOCKETS.contains(&name) {
        return Need::Ambient(Ambient::Sockets(capability::providers_of(name)));
    }
    if HTTP.contains(&name) {
        return Need::Ambient(Ambient::Http);
    }
    let providers = capability::providers_of(name);
    if providers.is_empty() {
        Need::Unknown
    } else {
        Need::Capability(providers)
    }
}

/// The capabilities a component's imports require: those whose own interfaces it imports.
/// Ambient imports require nothing (a default Python build imports wasi:sockets without
/// using it); a node that means to use them asks for them in its manifest
/// ([`ambient_capabilities`] says which it may ask for).
pub fn required_capabilities(imports: &[String]) -> Capabilities {
    let mut required = Capabilities::empty();
    let mut shared = Vec::new();
    for import in imports {
        if let Need::Capability(providers) = need_of(import) {
            if providers.bits().count_ones() == 1 {
                required |= providers;
            } else {
                shared.push(providers);
            }
        }
    }
    for providers in shared {
        if !required.intersects(providers) {
            required |= providers.iter().next().unwrap_or(providers);
        }
    }
    required
}

/// The capabilities a component's ambient imports could make real: the network capability
/// whose own wasi:sockets interface it imports (`tcp`/`tcp-create-socket` for tcp,
/// `udp`/`udp-create-socket` for udp, `ip-name-lookup` for dns; `network`, shared by all
/// three, makes none of them), and `http-get` and `http-write` for
/// `wasi:http/outgoing-handler` (`wasi:http/types` alone sends nothing). A package may ask
/// for these beyond what it requires.
pub fn ambient_capabilities(imports: &[String]) -> Capabilities {
    imports
        .iter()
        .filter_map(|import| match need_of(import) {
            Need::Ambient(Ambient::Sockets(capabilities))
                if capabilities.bits().count_ones() == 1 =>
            {
                Some(capabilities)
            }
            Need::Ambient(Ambient::Http)
                if split_version(import).0 == "wasi:http/outgoing-handler" =>
            {
                Some(Capabilities::HTTP_GET | Capabilities::HTTP_WRITE)
            }
            _ => None,
        })
        .fold(Capabilities::empty(), |all, capabilities| {
            all | capabilities
        })
}

/// How `warden inspect` and the docs name what an import is.
pub fn describe_need(import: &str) -> &'static str {
    match need_of(import) {
        Need::Baseline => "baseline",
        Need::Ambient(Ambient::Filesystem) => {
            "ambient, served denied: no directory unless allow_wasi"
        }
        Need::Ambient(Ambient::Sockets(_)) => {
            "ambient, served denied: every operation refused unless tcp, udp or dns is granted with allow_wasi_network"
        }
        Need::Ambient(Ambient::Http) => {
            "ambient, served denied: every request refused unless http-get or http-write is granted; then the allowlist"
        }
        Need::Capability(_) => "capability",
        Need::Unknown => "unknown to this host",
    }
}

/// One import the grant does not cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedImport {
    pub import: String,
    pub reason: DenyReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// None of these capabilities was granted.
    NotGranted(Capabilities),
    /// No capability provides it (or a `warden:node` version this host does not implement).
    Unknown,
}

/// The refusal of a node: every import the grant does not cover, at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    pub denied: Vec<DeniedImport>,
}

impl Refusal {
    /// The capabilities that would have to be granted (leaving out what no grant can fix).
    pub fn missing(&self) -> Capabilities {
        self.denied
            .iter()
            .filter_map(|denied| match denied.reason {
                DenyReason::NotGranted(providers) => providers.iter().next(),
                _ => None,
            })
            .fold(Capabilities::empty(), |set, bit| set | bit)
    }
}

impl DenyReason {
    /// What is wrong, without the imports.
    fn describe(&self) -> String {
        match self {
            DenyReason::NotGranted(providers) if providers.bits().count_ones() > 1 => {
                format!("one of {}", providers.names().join(", "))
            }
            DenyReason::NotGranted(providers) => providers.to_string(),
            DenyReason::Unknown => "provided by no capability of this host".to_string(),
        }
    }
}

impl fmt::Display for Refusal {
    /// One line: each reason once, with every import it applies to, then how to grant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(&DenyReason, Vec<&str>)> = Vec::new();
        for denied in &self.denied {
            let reason = match &denied.reason {
                // A wrong warden:node version reads better on its own.
                DenyReason::Unknown if denied.import.starts_with("warden:node/") => {
                    groups.push((&denied.reason, vec![denied.import.as_str()]));
                    continue;
                }
                reason => reason,
            };
            match groups.iter_mut().find(|(existing, _)| *existing == reason) {
                Some((_, imports)) => imports.push(&denied.import),
                None => groups.push((reason, vec![&denied.import])),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(reason, imports)| {
                let noun = if imports.len() == 1 { "import" } else { "imports" };
                match reason {
                    DenyReason::Unknown if imports[0].starts_with("warden:node/") => format!(
                        "import {} targets a warden:node version this host does not implement ({WIT_VERSION})",
                        imports[0]
                    ),
                    DenyReason::Unknown => {
                        let verb = if imports.len() == 1 { "is" } else { "are" };
                        format!("{noun} {} {verb} {}", imports.join(", "), reason.describe())
                    }
                    _ => format!("{} (needed by {noun} {})", reason.describe(), imports.join(", ")),
                }
            })
            .collect();
        write!(f, "capability refused: {}", parts.join("; "))?;
        let missing = self.missing();
        if !missing.is_empty() {
            write!(
                f,
                "; grant it with --grant {missing} (or list it in the node's manifest)"
            )?;
        }
        Ok(())
    }
}

/// Checks every import against the grant. Returns the capabilities the imports use.
pub fn check(imports: &[String], config: &WasmSecurityConfig) -> Result<Capabilities, Refusal> {
    let granted = config.capabilities;
    let mut denied = Vec::new();
    let mut used = Capabilities::empty();
    for import in imports {
        let reason = match need_of(import) {
            Need::Baseline | Need::Ambient(Ambient::Filesystem) => continue,
            // Served denied unless granted with the network switch: never a reason to refuse.
            Need::Ambient(Ambient::Sockets(providers)) => {
                if config.allow_wasi_network {
                    used |= providers & granted;
                }
                continue;
            }
            Need::Ambient(Ambient::Http) => {
                if split_version(import).0 == "wasi:http/outgoing-handler" {
                    used |= granted & (Capabilities::HTTP_GET | Capabilities::HTTP_WRITE);
                }
                continue;
            }
            Need::Unknown => DenyReason::Unknown,
            Need::Capability(providers) => {
                let usable = providers & granted;
                if usable.is_empty() {
                    DenyReason::NotGranted(providers)
                } else {
                    used |= usable;
                    continue;
                }
            }
        };
        denied.push(DeniedImport {
            import: import.clone(),
            reason,
        });
    }
    if denied.is_empty() {
        Ok(used)
    } else {
        Err(Refusal { denied })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(grant: Capabilities) -> WasmSecurityConfig {
        WasmSecurityConfig {
            capabilities: grant,
            ..WasmSecurityConfig::default()
        }
    }

    fn imports(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn baseline_needs_nothing() {
        let list = imports(&[
            "warden:node/log@0.1.0",
            "wasi:io/poll@0.2.6",
            "wasi:cli/stdout@0.2.6",
        ]);
        assert_eq!(
            check(&list, &config(Capabilities::empty())),
            Ok(Capabilities::empty())
        );
        assert_eq!(required_capabilities(&list), Capabilities::empty());
    }

    #[test]
    fn every_missing_capability_is_listed_at_once() {
        let list = imports(&[
            "warden:node/storage-write@0.1.0",
            "warden:node/cache-read@0.1.0",
            "wasi:filesystem/types@0.2.6",
            "acme:evil/backdoor@1.0.0",
            "warden:node/log@0.1.0",
        ]);
        let refusal = check(&list, &config(Capabilities::STORAGE_READ)).unwrap_err();
        assert_eq!(
            refusal.denied.len(),
            3,
            "the ambient filesystem is no reason"
        );
        assert_eq!(
            refusal.missing(),
            Capabilities::STORAGE_WRITE | Capabilities::CACHE_READ
        );
        let text = refusal.to_string();
        assert!(
            text.contains("storage-write (needed by import warden:node/storage-write@0.1.0)"),
            "{text}"
        );
        assert!(
            text.contains("acme:evil/backdoor@1.0.0 is provided by no capability"),
            "{text}"
        );
        assert!(text.contains("--grant storage-write,cache-read"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn ambient_imports_link_whatever_the_grant_and_require_nothing() {
        // What a default componentize-py build imports beside its own interfaces.
        let python = imports(&[
            "wasi:cli/environment@0.2.9",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:sockets/tcp@0.2.9",
            "wasi:sockets/ip-name-lookup@0.2.9",
            "wasi:io/poll@0.2.12",
        ]);
        assert_eq!(
            check(&python, &config(Capabilities::empty())),
            Ok(Capabilities::empty())
        );
        assert_eq!(required_capabilities(&python), Capabilities::empty());
        assert_eq!(
            ambient_capabilities(&python),
            Capabilities::TCP | Capabilities::DNS
        );
        // Used only when granted with the network switch.
        let mut granted = config(Capabilities::TCP);
        assert_eq!(check(&python, &granted), Ok(Capabilities::empty()));
        granted.allow_wasi_network = true;
        assert_eq!(check(&python, &granted), Ok(Capabilities::TCP));
        assert!(describe_need("wasi:sockets/tcp@0.2.9").starts_with("ambient"));
        assert_eq!(describe_need("wasi:io/poll@0.2.6"), "baseline");
        assert_eq!(describe_need("warden:node/http-get@0.1.0"), "capability");
        // The interfaces all three share make none of them askable.
        let shared = imports(&[
            "wasi:sockets/network@0.2.9",
            "wasi:sockets/instance-network@0.2.9",
        ]);
        assert_eq!(ambient_capabilities(&shared), Capabilities::empty());
    }

    #[test]
    fn wasi_http_is_ambient_and_used_only_under_an_http_grant() {
        // What a default componentize-js (StarlingMonkey) build imports beside the baseline.
        let js = imports(&[
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.10",
            "wasi:io/streams@0.2.12",
        ]);
        assert_eq!(
            check(&js, &config(Capabilities::empty())),
            Ok(Capabilities::empty())
        );
        assert_eq!(required_capabilities(&js), Capabilities::empty());
        assert_eq!(
            ambient_capabilities(&js),
            Capabilities::HTTP_GET | Capabilities::HTTP_WRITE
        );
        assert_eq!(
            check(
                &js,
                &config(Capabilities::HTTP_GET | Capabilities::CACHE_READ)
            ),
            Ok(Capabilities::HTTP_GET)
        );
        // The types alone send nothing, so they make nothing askable or used.
        let types = imports(&["wasi:http/types@0.2.10"]);
        assert_eq!(ambient_capabilities(&types), Capabilities::empty());
        assert_eq!(
            check(&types, &config(Capabilities::HTTP_GET)),
            Ok(Capabilities::empty())
        );
        assert!(describe_need("wasi:http/outgoing-handler@0.2.0").contains("http-get"));
        assert_eq!(
            describe_need("wasi:http/types@0.3.0"),
            "unknown to this host"
        );
    }

    #[test]
    fn wasi_is_served_on_the_0_2_track_only() {
        for served in ["0.2.0", "0.2.6", "0.2.9", "0.2.12", "0.2.99"] {
            assert!(wasi_version_served(Some(served)), "{served}");
        }
        for refused in [
            None,
            Some("0.3.0"),
            Some("0.3.0-rc-2025-09-16"),
            Some("0.2.0-rc.1"),
            Some("1.0.0"),
            Some("0.2"),
            Some("0.2."),
        ] {
            assert!(!wasi_version_served(refused), "{refused:?}");
        }
        let list = imports(&["wasi:cli/environment@0.3.0", "wasi:sockets/tcp@0.3.0"]);
        let refusal = check(&list, &config(Capabilities::all())).unwrap_err();
        assert!(
            refusal
                .denied
                .iter()
                .all(|d| d.reason == DenyReason::Unknown)
        );
    }

    #[test]
    fn granted_capabilities_pass() {
        let list = imports(&[
            "warden:node/storage-write@0.1.0",
            "wasi:filesystem/preopens@0.2.6",
        ]);
        assert_eq!(
            check(&list, &config(Capabilities::STORAGE_ALL)),
            Ok(Capabilities::STORAGE_WRITE)
        );
    }

    #[test]
    fn imports_with_the_same_reason_are_named_together() {
        let list = imports(&["warden:node/http-get@0.1.0", "warden:node/http-write@0.1.0"]);
        let text = check(&list, &config(Capabilities::empty()))
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("capability refused: http-get (needed by import warden:node/http-get@0.1.0); http-write"),
            "{text}"
        );
        assert!(
            text.ends_with("(or list it in the node's manifest)"),
            "{text}"
        );
    }

    #[test]
    fn other_warden_versions_are_refused() {
        let list = imports(&["warden:node/storage-read@0.2.0"]);
        let refusal = check(&list, &config(Capabilities::all())).unwrap_err();
        assert_eq!(refusal.denied[0].reason, DenyReason::Unknown);
        assert!(refusal.to_string().contains("warden:node version"));
    }
}
