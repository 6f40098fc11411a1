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

/// Resources a component's import types may declare, counted apart for the imports the
/// linker serves and the others: matching one against the other is quadratic, and a hostile
/// component could declare hundreds of thousands (real ones declare a few dozen).
pub(crate) const MAX_IMPORTED_RESOURCES: usize = 1024;

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
                    if served_resources.len() > MAX_IMPORTED_RESOURCES {
                        wasmtime::bail!(TooManyResources(served_resources.len()));
                    }
                }
            }
        }
    }
    let unserved = ty
        .imports(engine)
        .filter(|(name, _)| !served(name))
        .map(|(_, import)| match import.ty {
            ComponentItem::ComponentInstance(instance) => instance
                .exports(engine)
                .filter(|(_, item)| matches!(item.ty, ComponentItem::Resource(_)))
                .count(),
            _ => 0,
        })
        .sum::<usize>();
    let most = served_resources.len().max(unserved);
    if most > MAX_IMPORTED_RESOURCES {
        wasmtime::bail!(TooManyResources(most));
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

/// A component whose import types declare more resources than [`MAX_IMPORTED_RESOURCES`].
#[derive(Debug, thiserror::Error)]
#[error(
    "its imports declare more than {MAX_IMPORTED_RESOURCES} resources ({0} at least); no interface warden serves needs that many"
)]
pub(crate) struct TooManyResources(pub usize);
