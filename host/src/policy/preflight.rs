//! The preflight: before anything is instantiated, map each import of a component to the
//! capability that provides it and refuse the node unless every one is granted.

use crate::node::component::{self, WIT_VERSION, split_version};
use crate::policy::capability::{self, Capabilities, Provider};
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

/// wasi:filesystem: linked only with `allow_wasi`, and then with the node's private directory only.
pub const FILESYSTEM: &[&str] = &["wasi:filesystem/types", "wasi:filesystem/preopens"];

/// What an import needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Always linked.
    Baseline,
    /// Linked when one of these capabilities is granted.
    Capability(Capabilities),
    /// Linked only with `allow_wasi`.
    Filesystem,
    /// Nothing in this host provides it.
    Unknown,
}

/// What `import` (with its `@version`) needs.
pub fn need_of(import: &str) -> Need {
    let (name, version) = split_version(import);
    if name.starts_with("warden:node/") && !version.is_some_and(component::compatible_version) {
        return Need::Unknown;
    }
    if BASELINE.contains(&name) {
        return Need::Baseline;
    }
    if FILESYSTEM.contains(&name) {
        return Need::Filesystem;
    }
    let providers = capability::providers_of(name);
    if providers.is_empty() {
        Need::Unknown
    } else {
        Need::Capability(providers)
    }
}

/// The capabilities a component's imports require: for an interface several capabilities
/// provide (wasi:sockets/network), one already required or else the first.
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
    /// A wasi:sockets capability was granted but `allow_wasi_network` is off.
    WasiNetworkOff(Capabilities),
    /// wasi:filesystem without `allow_wasi`.
    WasiOff,
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
            DenyReason::WasiNetworkOff(bits) => {
                format!("{bits} is granted but needs allow_wasi_network too")
            }
            DenyReason::WasiOff => "wasi:filesystem needs allow_wasi, which is off".to_string(),
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
            Need::Baseline => continue,
            Need::Filesystem if config.allow_wasi => continue,
            Need::Filesystem => DenyReason::WasiOff,
            Need::Unknown => DenyReason::Unknown,
            Need::Capability(providers) => {
                let usable = providers & granted;
                let sockets = usable
                    .infos()
                    .all(|info| info.provider == Provider::WasiSockets);
                if usable.is_empty() {
                    DenyReason::NotGranted(providers)
                } else if sockets && !config.allow_wasi_network {
                    DenyReason::WasiNetworkOff(usable)
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
        assert_eq!(refusal.denied.len(), 4);
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
            text.contains(
                "needs allow_wasi, which is off (needed by import wasi:filesystem/types@0.2.6)"
            ),
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
    fn granted_capabilities_pass_and_filesystem_needs_allow_wasi() {
        let list = imports(&[
            "warden:node/storage-write@0.1.0",
            "wasi:filesystem/preopens@0.2.6",
        ]);
        let mut allowed = config(Capabilities::STORAGE_ALL);
        allowed.allow_wasi = true;
        assert_eq!(check(&list, &allowed), Ok(Capabilities::STORAGE_WRITE));
    }

    #[test]
    fn socket_capabilities_need_allow_wasi_network() {
        let tcp = imports(&["wasi:sockets/tcp@0.2.6", "wasi:sockets/network@0.2.6"]);
        assert_eq!(required_capabilities(&tcp), Capabilities::TCP);
        let refusal = check(&tcp, &config(Capabilities::TCP)).unwrap_err();
        assert_eq!(
            refusal.denied[0].reason,
            DenyReason::WasiNetworkOff(Capabilities::TCP)
        );
        let refusal = check(&tcp, &config(Capabilities::empty())).unwrap_err();
        assert!(
            refusal.to_string().contains("one of tcp, udp, dns"),
            "{refusal}"
        );
    }

    #[test]
    fn imports_with_the_same_reason_are_named_together() {
        let list = imports(&[
            "wasi:sockets/tcp@0.2.6",
            "wasi:sockets/tcp-create-socket@0.2.6",
        ]);
        let text = check(&list, &config(Capabilities::empty()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "capability refused: tcp (needed by imports wasi:sockets/tcp@0.2.6, wasi:sockets/tcp-create-socket@0.2.6); \
             grant it with --grant tcp (or list it in the node's manifest)"
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
