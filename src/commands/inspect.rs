//! `warden inspect`: the nodes a component provides, their pins, and the capabilities it needs.

use crate::args::CodeCacheDir;
use crate::async_runtime::tokio;
use crate::failure::Failure;
use crate::files::read_component;
use crate::output::{out, out_json, print_warning};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use warden_host::{Error, Limits, NodeInfo, Runtime, RuntimeConfig, Storage, preflight};

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    node: PathBuf,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    code_cache: CodeCacheDir,
}

pub(crate) fn execute(args: InspectArgs) -> Result<(), Failure> {
    let InspectArgs {
        node: path,
        json: as_json,
        code_cache,
    } = args;
    let component = read_component(&path)?;
    // One description, so a pool for one run of the default preset.
    let runtime = Runtime::from_config(RuntimeConfig {
        concurrency: 1,
        pool_limits: Limits::default(),
        on_warning: Some(Arc::new(print_warning)),
        code_cache: code_cache.open()?,
        ..RuntimeConfig::new(Storage::in_memory().map_err(Error::from)?)
    });
    let nodes = tokio()?.block_on(runtime.describe(&component, &Limits::default()))?;
    let required = component.required_capabilities();
    let ambient = preflight::ambient_capabilities(&component.summary().imports);
    let summary = component.summary();
    if as_json {
        let document = json!({
            "sha256": summary.sha256,
            "nodes": nodes.iter().map(NodeInfo::to_json).collect::<Vec<_>>(),
            "capabilities": required.names(),
            "ambient_capabilities": ambient.names(),
            "imports": summary.imports,
            "import_needs": summary
                .imports
                .iter()
                .map(|import| json!({ "import": import, "need": preflight::describe_need(import) }))
                .collect::<Vec<_>>(),
        });
        out_json(&document);
        return Ok(());
    }
    let mut text = String::new();
    for node in &nodes {
        text += &format!("node {} ({})\n", node.name, node.friendly_name);
        if !node.description.is_empty() {
            text += &format!("  {}\n", node.description);
        }
        if !node.category.is_empty() {
            text += &format!("  category: {}\n", node.category);
        }
        for pin in &node.pins {
            let direction = if pin.direction == warden_host::Direction::Input {
                "in "
            } else {
                "out"
            };
            let mut line = format!("  {direction} {}: {}", pin.name, pin.data_type.name());
            if let Some(default) = &pin.default {
                line += &format!(" = {}", default.to_json());
            }
            if !pin.valid_values.is_empty() {
                let values: Vec<String> = pin
                    .valid_values
                    .iter()
                    .map(|v| v.to_json().to_string())
                    .collect();
                line += &format!(" (one of {})", values.join(", "));
            }
            if let Some(range) = pin.range {
                line += &format!(" (range {} to {})", range.min, range.max);
            }
            if !pin.description.is_empty() {
                line += &format!("  # {}", pin.description);
            }
            text += &format!("{line}\n");
        }
    }
    text += &format!("capabilities: {required}\n");
    if !ambient.is_empty() {
        text += &format!(
            "may also ask for: {ambient} (its ambient wasi:sockets or wasi:http imports can use them: `warden pack --capability`)\n"
        );
    }
    if summary.imports.is_empty() {
        text += "imports: none\n";
    } else {
        // Grouped by what each is: always there, there but served denied, or a request.
        text += "imports:\n";
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for import in &summary.imports {
            let need = preflight::describe_need(import);
            match groups.iter_mut().find(|(existing, _)| *existing == need) {
                Some((_, imports)) => imports.push(import),
                None => groups.push((need, vec![import])),
            }
        }
        for (need, imports) in groups {
            text += &format!("  {need}: {}\n", imports.join(", "));
        }
    }
    text += &format!("sha256: {}\n", summary.sha256);
    out(&text);
    Ok(())
}
