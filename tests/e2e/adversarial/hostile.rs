//! Hostile components written by hand: a core module in WAT, wrapped into a component against
//! the project's own WIT with wit-component, without the SDK. The module describes one node,
//! `hostile`, with no pins, and its `run` executes the WAT body it is given before returning no
//! outputs.
//!
//! Memory layout of the module (one memory, exported):
//! - `0..1024`: the harness's own data (the node description and the return areas);
//! - `1024..65536`: free for a body's data segments and scratch;
//! - `65536..`: the heap that `cabi_realloc` hands the host, grown as needed.

use std::path::Path;
use warden_host::{RunContext, RunRequest};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

/// A hostile component: `imports` are core import declarations (module names are the WIT
/// interfaces, e.g. `(import "warden:node/log@0.1.0" "log" (func $log (param i32 i32 i32)))`),
/// `data` extra data segments, and `body` the instructions `run` executes first. `run`'s
/// sixteen parameters are locals 0 to 15; `$i` and `$j` are two free i32 locals.
pub fn component(imports: &str, data: &str, body: &str) -> Vec<u8> {
    component_with_memory(2, imports, data, body)
}

/// [`component`] with a memory of `pages` (64 KiB each) to begin with, for data segments above
/// the first 128 KiB.
pub fn component_with_memory(pages: u32, imports: &str, data: &str, body: &str) -> Vec<u8> {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    component_in(&wit, "node-host", pages, imports, data, "", body)
}

/// A hostile component against the WIT in `wit` and its `world`, whose `describe` first runs
/// `describe_body` (its locals: `$i`, `$j`).
pub fn component_in(
    wit: &Path,
    world: &str,
    pages: u32,
    imports: &str,
    data: &str,
    describe_body: &str,
    body: &str,
) -> Vec<u8> {
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") {pages})
  (global $heap (mut i32) (i32.const 65536))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then unreachable))))
    (if (local.get $old) (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
  ;; "hostile", the node's name
  (data (i32.const 16) "hostile")
  ;; describe's return area: the list of node descriptions, at 128, one long
  (data (i32.const 64) "\80\00\00\00\01\00\00\00")
  ;; the node-info record: name, friendly-name, description, category, pins
  (data (i32.const 128) "\10\00\00\00\07\00\00\00\10\00\00\00\07\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  ;; run's return area: ok, with an empty list of outputs
  (data (i32.const 256) "\00\00\00\00\00\00\00\00\00\00\00\00")
  {data}
  (func (export "warden:node/node@0.1.0#describe") (result i32)
    (local $i i32) (local $j i32)
    {describe_body}
    (i32.const 64))
  (func (export "warden:node/node@0.1.0#run")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (local $i i32) (local $j i32)
    {body}
    (i32.const 256))
)"#
    );
    let mut module = wat::parse_str(&wat).unwrap_or_else(|error| panic!("{error}\n{wat}"));
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit).expect("the WIT parses");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("the world is in the WIT");
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .expect("metadata embeds");
    ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|error| panic!("the hostile module does not encode: {error:#}"))
}

/// Copies the `.wit` files of `from` into `to`, their WASI packages moved from 0.2.12 (the
/// project's) to `version`.
pub fn copy_wit(from: &Path, to: &Path, version: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".wit") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(
                to.join(name),
                text.replace("@0.2.12", &format!("@{version}")),
            )
            .unwrap();
        }
    }
}

/// The project's WIT (with its WASI dependencies) in `dir`, its WASI at `version`.
pub fn project_wit_at(dir: &Path, version: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    copy_wit(&source, dir, version);
    for dep in ["clocks", "io", "sockets"] {
        copy_wit(
            &source.join("deps").join(dep),
            &dir.join("deps").join(dep),
            version,
        );
    }
}

/// The import of the always-available `log` function, as `$log (level, ptr, len)`.
pub const LOG: &str = r#"(import "warden:node/log@0.1.0" "log" (func $log (param i32 i32 i32)))"#;

/// A request to run the hostile node, with a valid context and nothing else.
pub fn request() -> RunRequest {
    RunRequest {
        node: Some("hostile".into()),
        context: RunContext::for_node("hostile"),
        ..RunRequest::default()
    }
}
