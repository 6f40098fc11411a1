//! Reading a node component before anything is compiled: is it a component, does it export
//! `node`, what does it import, and how many instances, memories and tables will it create.

use sha2::{Digest, Sha256};
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Instance, Parser, Payload,
};

/// The interface every node exports, without its version.
pub const NODE_EXPORT: &str = "warden:node/node";
/// The version of the `warden:node` package this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// The largest component accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 256 * 1024 * 1024;

/// Why bytes are not a usable node component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {0} bytes, over the {MAX_COMPONENT_BYTES}-byte limit for a component")]
    TooLarge(usize),
    #[error(
        "this is a core WebAssembly module, not a component; build nodes with `warden build`, which turns the module into a component"
    )]
    CoreModule,
    #[error(
        "this is not WebAssembly (no `\\0asm` header); give the path to a node's .wasm component"
    )]
    NotWasm,
    #[error("the component is malformed: {0}")]
    Malformed(String),
    #[error(
        "the component does not export `{NODE_EXPORT}@{WIT_VERSION}`, so it is not a warden node; its exports are: {0}"
    )]
    NoNodeExport(String),
}

/// A malformed component, saying what to do where the cause is known: componentize-qjs'
/// default output, for one, uses the component model's async ABI.
pub(crate) fn malformed(message: String) -> ComponentError {
    match message.contains("component model async") {
        true => ComponentError::Malformed(format!(
            "{message}; the component uses the component model's async ABI, which this host \
             does not enable: build it without (componentize-qjs --sync)"
        )),
        false => ComponentError::Malformed(message),
    }
}

/// What the host learns about a component from its bytes alone.
#[derive(Clone, Debug)]
pub struct ComponentSummary {
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Instance imports, with their versions (`warden:node/log@0.1.0`).
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Core instances instantiation creates, and the memories and tables they define.
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// Core instances, memories and tables: what instantiating something creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    instances: u32,
    memories: u32,
    tables: u32,
}

impl Counts {
    /// One instance of a module that defines nothing (yet).
    fn instance() -> Self {
        Counts {
            instances: 1,
            ..Counts::default()
        }
    }

    fn plus(self, other: Counts) -> Self {
        Counts {
            instances: self.instances.saturating_add(other.instances),
            memories: self.memories.saturating_add(other.memories),
            tables: self.tables.saturating_add(other.tables),
        }
    }

    /// The largest of each count.
    fn max(self, other: Counts) -> Self {
        Counts {
            instances: self.instances.max(other.instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
        }
    }
}

/// One component being read: its core module and component index spaces (the counts of each
/// entry, `None` when unknown) and what its own instantiations create so far.
#[derive(Default)]
struct Scope {
    modules: Vec<Option<Counts>>,
    components: Vec<Option<Counts>>,
    total: Counts,
}

fn unbalanced() -> ComponentError {
    ComponentError::Malformed("a nested component or module does not end".into())
}

/// Splits `pkg:ns/iface@1.2.3` into the name and the version.
pub fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((bare, version)) => (bare, Some(version)),
        None => (name, None),
    }
}

/// Reads a component's imports, exports and resource counts, and checks it is a node.
pub fn summarize(bytes: &[u8]) -> Result<ComponentSummary, ComponentError> {
    if bytes.is_empty() {
        return Err(ComponentError::Empty);
    }
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(ComponentError::TooLarge(bytes.len()));
    }
    if Parser::is_core_wasm(bytes) {
        return Err(ComponentError::CoreModule);
    }
    if !Parser::is_component(bytes) {
        return Err(ComponentError::NotWasm);
    }
    let malformed = |error: wasmparser::BinaryReaderError| malformed(error.to_string());
    let mut summary = ComponentSummary {
        sha256: hex(&Sha256::digest(bytes)),
        imports: Vec::new(),
        exports: Vec::new(),
        core_instances: 0,
        memories: 0,
        tables: 0,
    };
    // One scope per component being read, the root first; nested components push one.
    let mut scopes = vec![Scope::default()];
    let mut current_module: Option<Counts> = None;
    // What an imported module or component costs is unknown here: count it as the largest
    // seen, so the count is never below what instantiation creates (Wasmtime's own count,
    // checked after compilation, is exact).
    let mut largest_module = Counts::instance();
    let mut largest_component = Counts::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        let depth = scopes.len();
        match payload {
            Payload::ModuleSection { .. } => current_module = Some(Counts::instance()),
            Payload::MemorySection(reader) => {
                if let Some(module) = current_module.as_mut() {
                    module.memories = module.memories.saturating_add(reader.count());
                }
            }
            Payload::TableSection(reader) => {
                if let Some(module) = current_module.as_mut() {
                    module.tables = module.tables.saturating_add(reader.count());
                }
            }
            Payload::ComponentSection { .. } => scopes.push(Scope::default()),
            Payload::End(_) => {
                if let Some(module) = current_module.take() {
                    largest_module = largest_module.max(module);
                    scopes
                        .last_mut()
                        .ok_or_else(unbalanced)?
                        .modules
                        .push(Some(module));
                } else if depth > 1 {
                    let inner = scopes.pop().ok_or_else(unbalanced)?;
                    largest_component = largest_component.max(inner.total);
                    scopes
                        .last_mut()
                        .ok_or_else(unbalanced)?
                        .components
                        .push(Some(inner.total));
                }
            }
            Payload::InstanceSection(reader) => {
                let scope = scopes.last_mut().ok_or_else(unbalanced)?;
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } =
                        instance.map_err(malformed)?
                    {
                        let module = scope
                            .modules
                            .get(module_index as usize)
                            .copied()
                            .flatten()
                            .unwrap_or(largest_module);
                        scope.total = scope.total.plus(module);
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                let scope = scopes.last_mut().ok_or_else(unbalanced)?;
                for instance in reader {
                    if let ComponentInstance::Instantiate {
                        component_index, ..
                    } = instance.map_err(malformed)?
                    {
                        let component = scope
                            .components
                            .get(component_index as usize)
                            .copied()
                            .flatten()
                            .unwrap_or(largest_component);
                        scope.total = scope.total.plus(component);
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    let (module, component) = match alias.map_err(malformed)? {
                        ComponentAlias::Outer { kind, count, index } => {
                            let outer = depth
                                .checked_sub(1 + count as usize)
                                .and_then(|level| scopes.get(level));
                            match kind {
                                ComponentOuterAliasKind::CoreModule => (
                                    Some(outer.and_then(|o| {
                                        o.modules.get(index as usize).copied().flatten()
                                    })),
                                    None,
                                ),
                                ComponentOuterAliasKind::Component => (
                                    None,
                                    Some(outer.and_then(|o| {
                                        o.components.get(index as usize).copied().flatten()
                                    })),
                                ),
                                _ => (None, None),
                            }
                        }
                        ComponentAlias::InstanceExport { kind, .. } => match kind {
                            ComponentExternalKind::Module => (Some(None), None),
                            ComponentExternalKind::Component => (None, Some(None)),
                            _ => (None, None),
                        },
                        ComponentAlias::CoreInstanceExport { .. } => (None, None),
                    };
                    let scope = scopes.last_mut().ok_or_else(unbalanced)?;
                    if let Some(module) = module {
                        scope.modules.push(module);
                    }
                    if let Some(component) = component {
                        scope.components.push(component);
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                let scope = scopes.last_mut().ok_or_else(unbalanced)?;
                for import in reader {
                    let import = import.map_err(malformed)?;
                    match import.ty {
                        ComponentTypeRef::Module(_) => scope.modules.push(None),
                        ComponentTypeRef::Component(_) => scope.components.push(None),
                        ComponentTypeRef::Instance(_) if depth == 1 => {
                            summary.imports.push(import.name.name.to_string());
                        }
                        _ => {}
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                let scope = scopes.last_mut().ok_or_else(unbalanced)?;
                for export in reader {
                    let export = export.map_err(malformed)?;
                    // An export adds the item to its index space again.
                    match export.kind {
                        ComponentExternalKind::Module => {
                            let module =
                                scope.modules.get(export.index as usize).copied().flatten();
                            scope.modules.push(module);
                        }
                        ComponentExternalKind::Component => {
                            let component = scope
                                .components
                                .get(export.index as usize)
                                .copied()
                                .flatten();
                            scope.components.push(component);
                        }
                        ComponentExternalKind::Instance if depth == 1 => {
                            summary.exports.push(export.name.name.to_string());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let root = scopes.first().map(|scope| scope.total).unwrap_or_default();
    summary.core_instances = root.instances;
    summary.memories = root.memories;
    summary.tables = root.tables;
    let exports_node = summary.exports.iter().any(|export| {
        let (name, version) = split_version(export);
        name == NODE_EXPORT && version.is_some_and(compatible_version)
    });
    if !exports_node {
        let exports = if summary.exports.is_empty() {
            "none".to_string()
        } else {
            summary.exports.join(", ")
        };
        return Err(ComponentError::NoNodeExport(exports));
    }
    Ok(summary)
}

/// Whether a `warden:node` version is one this host implements (same 0.minor).
pub fn compatible_version(version: &str) -> bool {
    let mut ours = WIT_VERSION.split('.');
    let mut theirs = version.split('.');
    ours.next() == theirs.next() && ours.next() == theirs.next()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_node_component() {
        assert_eq!(summarize(b"").unwrap_err(), ComponentError::Empty);
        assert_eq!(
            summarize(b"hello world").unwrap_err(),
            ComponentError::NotWasm
        );
        let module = wat::parse_str("(module)").unwrap();
        assert_eq!(summarize(&module).unwrap_err(), ComponentError::CoreModule);
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(
            summarize(&component).unwrap_err(),
            ComponentError::NoNodeExport("none".into())
        );
        let mut truncated = wat::parse_str("(component (core module (memory 1)))").unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            summarize(&truncated).unwrap_err(),
            ComponentError::Malformed(_)
        ));
    }

    #[test]
    fn versions() {
        assert!(compatible_version("0.1.0"));
        assert!(compatible_version("0.1.7"));
        assert!(!compatible_version("0.2.0"));
        assert!(!compatible_version("1.1.0"));
        assert_eq!(
            split_version("wasi:io/poll@0.2.6"),
            ("wasi:io/poll", Some("0.2.6"))
        );
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;

    /// A component whose only export is an empty instance named like the node interface, after
    /// `body`: enough for `summarize`.
    fn component(body: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(component
                {body}
                (instance $node)
                (export "warden:node/node@0.1.0" (instance $node)))"#
        ))
        .unwrap()
    }

    fn counts(body: &str) -> (u32, u32, u32) {
        let summary = summarize(&component(body)).unwrap();
        (summary.core_instances, summary.memories, summary.tables)
    }

    #[test]
    fn a_module_instantiated_several_times_counts_each_time() {
        let body = r#"
            (core module $m (memory 1) (table 1 funcref))
            (core instance (instantiate $m))
            (core instance (instantiate $m))
            (core instance (instantiate $m))"#;
        assert_eq!(counts(body), (3, 3, 3));
        assert_eq!(
            counts(r#"(core module $m (memory 1) (memory 1))"#),
            (0, 0, 0)
        );
    }

    #[test]
    fn nested_components_count_once_per_instantiation() {
        let body = r#"
            (component $inner
                (core module $m (memory 1) (memory 1))
                (core instance (instantiate $m))
                (core instance (instantiate $m)))
            (component $unused
                (core module $m (memory 1))
                (core instance (instantiate $m)))
            (instance (instantiate $inner))
            (instance (instantiate $inner))
            (instance (instantiate $inner))"#;
        assert_eq!(counts(body), (6, 12, 0));
    }

    #[test]
    fn modules_reached_through_outer_aliases_and_deeper_nesting_count() {
        let body = r#"
            (core module $m (memory 1))
            (component $middle
                (alias outer 1 0 (core module $m2))
                (component $inner
                    (alias outer $middle $m2 (core module $m3))
                    (core instance (instantiate $m3))
                    (core instance (instantiate $m3)))
                (instance (instantiate $inner))
                (instance (instantiate $inner)))
            (instance (instantiate $middle))
            (instance (instantiate $middle))"#;
        assert_eq!(counts(body).0, 8);
        assert_eq!(counts(body).1, 8);
    }
}
