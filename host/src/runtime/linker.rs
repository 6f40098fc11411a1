//! Building a linker that holds exactly the granted interfaces.
//!
//! The preflight already refused nodes that import more than the grant; linking only granted
//! interfaces means a mistake in the preflight still cannot hand a node a function.

use crate::bindings::warden::node as wit;
use crate::caps::wasi;
use crate::policy::capability::{Capabilities, Provider};
use crate::policy::config::WasmSecurityConfig;
use crate::runtime::store::StoreData;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

type Link = fn(&mut Linker<StoreData>) -> wasmtime::Result<()>;

/// The host functions of each implemented capability of warden's own WIT package.
fn warden_interface(bit: Capabilities) -> Option<Link> {
    let link: Link = match bit {
        Capabilities::STORAGE_READ => {
            |l| wit::storage_read::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        }
        Capabilities::STORAGE_WRITE => {
            |l| wit::storage_write::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        }
        Capabilities::STORAGE_DELETE => {
            |l| wit::storage_delete::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        }
        Capabilities::VARIABLES_READ => {
            |l| wit::variables_read::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        }
        Capabilities::VARIABLES_WRITE => {
            |l| wit::variables_write::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        }
        Capabilities::CACHE_READ => |l| wit::cache_read::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::CACHE_WRITE => |l| wit::cache_write::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::STREAMING => |l| wit::streaming::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::HTTP_GET => |l| wit::http_get::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::FUNCTIONS => |l| wit::functions::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::OAUTH => |l| wit::oauth::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::TOKEN => |l| wit::token::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::A2UI => |l| wit::a2ui::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::MODELS => |l| wit::models::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::WEBSOCKET => |l| wit::websocket::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        Capabilities::HTTP_WRITE => |l| wit::http_write::add_to_linker::<_, HasSelf<_>>(l, |s| s),
        _ => return None,
    };
    Some(link)
}

/// Whether the host has functions for a capability (kept in step with the table by a test).
#[cfg(test)]
pub fn implemented(bit: Capabilities) -> bool {
    warden_interface(bit).is_some()
}

/// A linker with the base world, baseline WASI and the interfaces of `granted`.
pub(crate) fn build(
    engine: &Engine,
    config: &WasmSecurityConfig,
    granted: Capabilities,
) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit::context::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wasi::add_baseline(&mut linker)?;
    if config.allow_wasi {
        wasi::add_filesystem(&mut linker)?;
    }
    let mut sockets = Vec::new();
    for info in granted.infos() {
        match info.provider {
            Provider::Warden => {
                if let Some(link) = warden_interface(info.bit) {
                    link(&mut linker)?;
                }
            }
            Provider::WasiSockets if config.allow_wasi_network && info.implemented => {
                sockets.extend(info.interfaces.iter().copied());
            }
            Provider::WasiSockets => {}
        }
    }
    sockets.sort_unstable();
    sockets.dedup();
    wasi::add_sockets(&mut linker, &sockets)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::capability::CAPABILITIES;

    #[test]
    fn the_table_says_which_capabilities_link_functions() {
        for info in CAPABILITIES {
            if info.provider == Provider::Warden {
                assert_eq!(implemented(info.bit), info.implemented, "{}", info.name);
            }
        }
    }

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
    }
}
