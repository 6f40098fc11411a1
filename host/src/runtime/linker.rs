//! Building a linker that holds exactly the granted interfaces.
//!
//! The preflight already refused nodes that import more than the grant; linking only granted
//! interfaces means a mistake in the preflight still cannot hand a node a function. Both read
//! the same lists: the baseline and the ambient interfaces of `policy::preflight` (always
//! linked; the ambient ones are served denied by the run's WASI context unless granted), and
//! the interfaces of each granted warden row of the capability table.

use crate::caps;
use crate::policy::capability::{Capabilities, Provider};
use crate::policy::config::WasmSecurityConfig;
use crate::policy::preflight::{BASELINE, FILESYSTEM, SOCKETS};
use crate::runtime::store::StoreData;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The interfaces a run with `granted` gets, without versions, each once: the baseline, the
/// ambient WASI (filesystem and sockets, whatever the grant: the WASI context decides what
/// they can do) and the warden interfaces of the granted capabilities.
pub(crate) fn interfaces(_config: &WasmSecurityConfig, granted: Capabilities) -> Vec<&'static str> {
    let mut interfaces = BASELINE.to_vec();
    interfaces.extend(FILESYSTEM);
    interfaces.extend(SOCKETS);
    for info in granted.infos() {
        if info.provider == Provider::Warden {
            interfaces.extend(info.interfaces);
        }
    }
    interfaces.sort_unstable();
    interfaces.dedup();
    interfaces
}

/// A linker with the baseline and the interfaces of `granted`.
pub(crate) fn build(
    engine: &Engine,
    config: &WasmSecurityConfig,
    granted: Capabilities,
) -> wasmtime::Result<Linker<StoreData>> {
    // A row links only its own provider's interfaces: a warden row cannot bring in WASI (say
    // wasi:sockets without `allow_wasi_network`), whatever the table says.
    for info in granted.infos() {
        if let Some(foreign) = info
            .interfaces
            .iter()
            .find(|interface| !interface.starts_with(info.provider.namespace()))
        {
            wasmtime::bail!(
                "the capability table's row `{}` names `{foreign}`, which its provider does not serve",
                info.name
            );
        }
    }
    let mut linker = Linker::new(engine);
    for interface in interfaces(config, granted) {
        if !caps::link(&mut linker, interface)? {
            wasmtime::bail!(
                "the host has no functions for `{interface}`, which the capability table names"
            );
        }
    }
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::capability::CAPABILITIES;

    #[test]
    fn an_ungranted_interface_is_not_in_the_linker() {
        // Even if the preflight were skipped, a node importing storage-write cannot be linked
        // against a linker built for a grant without it.
        let engine = Engine::default();
        let wat = r#"(component (import "warden:node/storage-write@0.1.0" (instance (export "set" (func)))))"#;
        let component =
            wasmtime::component::Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let linker = build(
            &engine,
            &WasmSecurityConfig::default(),
            Capabilities::STORAGE_READ,
        )
        .unwrap();
        let error = linker
            .instantiate_pre(&component)
            .err()
            .expect("linking must fail");
        assert!(format!("{error:#}").contains("storage-write"), "{error:#}");
    }

    /// Every interface the table, the baseline and the filesystem name has host functions: a
    /// row without them would fail here rather than at a node's first run.
    #[test]
    fn every_grant_builds() {
        let engine = Engine::default();
        let config = WasmSecurityConfig {
            allow_wasi: true,
            allow_wasi_network: true,
            ..Default::default()
        };
        build(&engine, &config, Capabilities::all()).unwrap();
        build(&engine, &config, Capabilities::empty()).unwrap();
        for info in CAPABILITIES {
            build(&engine, &config, info.bit).unwrap();
        }
    }

    #[test]
    fn ambient_wasi_is_linked_whatever_the_grant_and_warden_rows_only_when_granted() {
        let none = interfaces(&WasmSecurityConfig::default(), Capabilities::empty());
        for ambient in [
            "wasi:sockets/tcp",
            "wasi:sockets/udp",
            "wasi:filesystem/types",
        ] {
            assert!(none.contains(&ambient), "{ambient}");
        }
        assert!(!none.contains(&"warden:node/http-get"));
        let http = interfaces(&WasmSecurityConfig::default(), Capabilities::HTTP_GET);
        assert!(http.contains(&"warden:node/http-get"));
    }

    #[test]
    fn an_unknown_interface_links_nothing() {
        let engine = Engine::default();
        let mut linker = Linker::<StoreData>::new(&engine);
        assert!(!caps::link(&mut linker, "warden:node/teleport").unwrap());
        assert!(!caps::link(&mut linker, "wasi:sockets/tcp@0.2.0").unwrap());
    }
}
