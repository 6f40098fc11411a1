//! Reading a node component before anything is compiled: is it a component, does it export
//! `node`, what does it import, and how many instances, memories and tables will it create.

use sha2::{Digest, Sha256};
use wasmparser::{ComponentExternalKind, ComponentTypeRef, Instance, Parser, Payload};

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
    let malformed =
        |error: wasmparser::BinaryReaderError| ComponentError::Malformed(error.to_string());
    let mut summary = ComponentSummary {
        sha256: hex(&Sha256::digest(bytes)),
        imports: Vec::new(),
        exports: Vec::new(),
        core_instances: 0,
        memories: 0,
        tables: 0,
    };
    // Per nesting level, the (memories, tables) each core module defines, by module index.
    let mut modules: Vec<Vec<(u32, u32)>> = vec![Vec::new()];
    let mut current_module: Option<(u32, u32)> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } => current_module = Some((0, 0)),
            Payload::MemorySection(reader) => {
                if let Some(module) = current_module.as_mut() {
                    module.0 += reader.count();
                }
            }
            Payload::TableSection(reader) => {
                if let Some(module) = current_module.as_mut() {
                    module.1 += reader.count();
                }
            }
            Payload::ComponentSection { .. } => modules.push(Vec::new()),
            Payload::End(_) => {
                if let Some(module) = current_module.take() {
                    if let Some(level) = modules.last_mut() {
                        level.push(module);
                    }
                } else if modules.len() > 1 {
                    modules.pop();
                }
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } =
                        instance.map_err(malformed)?
                    {
                        let (memories, tables) = modules
                            .last()
                            .and_then(|level| level.get(module_index as usize))
                            .copied()
                            .unwrap_or((0, 0));
                        summary.core_instances += 1;
                        summary.memories += memories;
                        summary.tables += tables;
                    }
                }
            }
            Payload::ComponentImportSection(reader) if modules.len() == 1 => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    if let ComponentTypeRef::Instance(_) = import.ty {
                        summary.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if modules.len() == 1 => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if export.kind == ComponentExternalKind::Instance {
                        summary.exports.push(export.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
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
