//! Building a linker that holds exactly the granted interfaces.
//!
//! The preflight already refused nodes that import more than the grant; linking only granted
//! interfaces means a mistake in the preflight still cannot hand a node a function. Both read
//! the same lists: the baseline and the ambient interfaces of `policy::preflight` (always
//! linked; the ambient ones are served denied by the run's WASI context unless granted), and
//! the interfaces of each granted warden row of the capability table.

use crate::caps;
use crate::policy::capability::{Capabilities, Provider};
use crate::policy::preflight::{BASELINE, FILESYSTEM, HTTP, SOCKETS};
use crate::runtime::store::StoreData;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The interfaces a run with `granted` gets, without versions, each once: the baseline, the
/// ambient WASI (filesystem, sockets and http, whatever the grant: the run's WASI context and
/// wasi:http hooks decide what they can do) and the warden interfaces of the granted
/// capabilities.
pub(crate) fn interfaces(granted: Capabilities) -> Vec<&'static str> {
    let mut interfaces = BASELINE.to_vec();
    interfaces.extend(FILESYSTEM);
    interfaces.extend(SOCKETS);
    interfaces.extend(HTTP);
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
pub(crate) fn build(engine: &Engine, granted: Capabilities) -> wasmtime::Result<Linker<StoreData>> {
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
    for interface in interfaces(granted) {
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
        let linker = build(&engine, Capabilities::STORAGE_READ).unwrap();
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
        build(&engine, Capabilities::all()).unwrap();
        build(&engine, Capabilities::empty()).unwrap();
        for info in CAPABILITIES {
            build(&engine, info.bit).unwrap();
        }
    }

    #[test]
    fn ambient_wasi_is_linked_whatever_the_grant_and_warden_rows_only_when_granted() {
        let none = interfaces(Capabilities::empty());
        for ambient in [
            "wasi:sockets/tcp",
            "wasi:sockets/udp",
            "wasi:filesystem/types",
            "wasi:http/types",
            "wasi:http/outgoing-handler",
        ] {
            assert!(none.contains(&ambient), "{ambient}");
        }
        assert!(!none.contains(&"warden:node/http-get"));
        let http = interfaces(Capabilities::HTTP_GET);
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
