//! What `describe` links for imports the host does not serve without a grant: functions that
//! refuse (by trapping) and stand-in resources, typed as the import says.
//!
//! wasmtime's `define_unknown_imports_as_traps` is not used. It stubs whole instances by their
//! exact name, so an import of `wasi:cli/environment@0.2.9` got trapping stubs although the
//! linker serves 0.2.12 (which it matches semver-compatibly); and it defines every resource an
//! import re-exports as a fresh host resource, so an interface that uses `wasi:io/poll`'s
//! `pollable` no longer type-checks against the real one. Here, what the linker serves
//! (baseline and ambient WASI, on the 0.2 track) is left to it, and a stubbed instance leaves
//! out the resources that are a served import's own.

use crate::policy::preflight::{Need, need_of};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

/// Whether the describe linker serves `import` itself.
fn served(import: &str) -> bool {
    matches!(need_of(import), Need::Baseline | Need::Ambient(_))
}

/// Defines, for every import of `component` the linker does not serve, functions that refuse
/// and the resources the import defines itself.
pub(crate) fn stub_unserved<T: 'static>(
    linker: &mut Linker<T>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    // The resources served imports export: an unserved import that re-exports one of them
    // (`use wasi:io/poll.{pollable}`) must keep the real type, so it is not stubbed.
    let mut served_resources: Vec<ResourceType> = Vec::new();
    for (name, import) in ty.imports(engine) {
        if let (true, ComponentItem::ComponentInstance(instance)) = (served(name), &import.ty) {
            for (_, export) in instance.exports(engine) {
                if let ComponentItem::Resource(resource) = export.ty {
                    served_resources.push(resource);
                }
            }
        }
    }
    for (name, import) in ty.imports(engine) {
        if served(name) {
            continue;
        }
        match import.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut stub = linker.instance(name)?;
                for (export, item) in instance.exports(engine) {
                    match item.ty {
                        ComponentItem::ComponentFunc(_) => {
                            let what = format!("{name}#{export}");
                            stub.func_new(export, move |_, _, _, _| {
                                wasmtime::bail!(
                                    "`{what}` is not available while the node describes itself: describing grants nothing"
                                )
                            })?;
                        }
                        ComponentItem::Resource(resource)
                            if !served_resources.contains(&resource) =>
                        {
                            stub.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                        }
                        _ => {}
                    }
                }
            }
            ComponentItem::ComponentFunc(_) => {
                let what = name.to_string();
                linker.root().func_new(name, move |_, _, _, _| {
                    wasmtime::bail!(
                        "`{what}` is not available while the node describes itself: describing grants nothing"
                    )
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}
