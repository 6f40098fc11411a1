//! Components from any toolchain import WASI at their own 0.2 patch version (a Rust wasip2
//! build 0.2.6, componentize-py 0.2.9, componentize-js 0.2.12) and import filesystem and
//! sockets by default. Each of them links, describes and runs with no grant: the baseline is
//! matched semver-compatibly, the ambient interfaces are served denied, and describe links
//! the same as a run, with the real types.
//!
//! The components are hand-written WAT (`adversarial::hostile`) against a copy of the project's
//! WIT whose WASI packages carry the version under test.

use crate::adversarial::hostile;
use std::path::Path;
use warden_host::{Capabilities, Error, Runtime, WasmSecurityConfig};

/// The project's WIT with its WASI at `version`, plus the wasi:cli and wasi:filesystem
/// functions the probe imports, and a world `wasi-probe` importing them.
fn wit_at(version: &str, dir: &Path) {
    hostile::project_wit_at(dir, version);
    std::fs::create_dir_all(dir.join("deps/cli")).unwrap();
    std::fs::write(
        dir.join("deps/cli/cli.wit"),
        format!(
            "package wasi:cli@{version};\ninterface environment {{\n  get-environment: func() -> list<tuple<string, string>>;\n}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("deps/filesystem")).unwrap();
    std::fs::write(
        dir.join("deps/filesystem/filesystem.wit"),
        format!(
            "package wasi:filesystem@{version};\ninterface types {{\n  resource descriptor;\n}}\ninterface preopens {{\n  use types.{{descriptor}};\n  get-directories: func() -> list<tuple<descriptor, string>>;\n}}\n"
        ),
    )
    .unwrap();
    let worlds = dir.join("worlds.wit");
    let mut text = std::fs::read_to_string(&worlds).unwrap();
    text += &format!(
        "\nworld wasi-probe {{\n    include base;\n    import wasi:cli/environment@{version};\n    import wasi:filesystem/preopens@{version};\n    import wasi:sockets/tcp-create-socket@{version};\n    import wasi:clocks/monotonic-clock@{version};\n}}\n"
    );
    std::fs::write(worlds, text).unwrap();
}

/// The probe: `describe` reads the environment (a trapping stand-in would stop it there);
/// `run` checks the environment and the preopened directories are empty, that a TCP socket is
/// refused, and takes a `pollable` from the clock (its type is wasi:io's own). Any surprise is
/// `unreachable`.
fn probe(version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    wit_at(version, dir.path());
    let imports = format!(
        r#"(import "wasi:cli/environment@{version}" "get-environment" (func $env (param i32)))
  (import "wasi:filesystem/preopens@{version}" "get-directories" (func $dirs (param i32)))
  (import "wasi:sockets/tcp-create-socket@{version}" "create-tcp-socket" (func $tcp (param i32 i32)))
  (import "wasi:clocks/monotonic-clock@{version}" "subscribe-duration" (func $sub (param i64) (result i32)))"#
    );
    let empty_environment = r#"
    (call $env (i32.const 2048))
    (if (i32.ne (i32.load (i32.const 2052)) (i32.const 0)) (then unreachable))"#;
    let body = format!(
        r#"{empty_environment}
    (call $dirs (i32.const 2056))
    (if (i32.ne (i32.load (i32.const 2060)) (i32.const 0)) (then unreachable))
    (call $tcp (i32.const 0) (i32.const 2064))
    (if (i32.ne (i32.load8_u (i32.const 2064)) (i32.const 1)) (then unreachable))
    (drop (call $sub (i64.const 1)))"#
    );
    hostile::component_in(
        dir.path(),
        "wasi-probe",
        2,
        &imports,
        "",
        empty_environment,
        &body,
    )
}

fn nothing() -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::empty(),
        ..WasmSecurityConfig::default()
    }
}

#[test]
fn wasi_at_any_0_2_patch_version_links_describes_and_runs_with_no_grant() {
    let runtime = Runtime::new().unwrap();
    for version in ["0.2.6", "0.2.9", "0.2.12"] {
        let component = warden_host::NodeComponent::from_bytes(probe(version))
            .unwrap_or_else(|error| panic!("{version}: {error}"));
        let nodes =
            crate::support::block_on(runtime.describe(&component, &warden_host::Limits::default()))
                .unwrap_or_else(|error| panic!("{version}: describe: {error}"));
        assert_eq!(nodes[0].name, "hostile", "{version}");
        crate::support::run(&runtime, &component, &nothing(), hostile::request())
            .unwrap_or_else(|error| panic!("{version}: run: {error}"));
        // Granted and switched on, the same import works (and the probe, expecting a
        // refusal, stops): the denial came from the context, not from a missing link.
        let granted = WasmSecurityConfig {
            capabilities: Capabilities::TCP,
            allow_wasi_network: true,
            ..nothing()
        };
        let error =
            crate::support::run(&runtime, &component, &granted, hostile::request()).unwrap_err();
        assert!(
            matches!(error, Error::Trapped(_)) || error.to_string().contains("unreachable"),
            "{version}: {error}"
        );
    }
}

#[test]
fn wasi_off_the_0_2_track_is_refused_by_name() {
    let runtime = Runtime::new().unwrap();
    let component = warden_host::NodeComponent::from_bytes(probe("0.3.0")).unwrap();
    let error =
        crate::support::run(&runtime, &component, &nothing(), hostile::request()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("wasi:cli/environment@0.3.0") && text.contains("provided by no capability"),
        "{text}"
    );
}

/// A component whose imports declare resources by the thousand is refused by name before the
/// describe linker matches them one against the other (which took seconds, then minutes).
#[test]
fn imports_declaring_resources_by_the_thousand_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    wit_at("0.2.12", dir.path());
    let resources: String = (0..1100)
        .map(|index| format!("  resource r{index};\n"))
        .collect();
    std::fs::create_dir_all(dir.path().join("deps/many")).unwrap();
    std::fs::write(
        dir.path().join("deps/many/many.wit"),
        format!(
            "package acme:many@1.0.0;\ninterface lots {{\n{resources}  record all {{ {} }}\n  ping: func(x: all);\n}}\n",
            (0..1100).map(|index| format!("a{index}: borrow<r{index}>")).collect::<Vec<_>>().join(", ")
        ),
    )
    .unwrap();
    let worlds = dir.path().join("worlds.wit");
    let text = std::fs::read_to_string(&worlds).unwrap()
        + "\nworld many {\n    include base;\n    import acme:many/lots@1.0.0;\n}\n";
    std::fs::write(worlds, text).unwrap();
    let bytes = hostile::component_in(
        dir.path(),
        "many",
        2,
        r#"(import "acme:many/lots@1.0.0" "ping" (func $ping (param i32)))"#,
        "",
        "",
        "",
    );
    let component = warden_host::NodeComponent::from_bytes(bytes).unwrap();
    let runtime = Runtime::new().unwrap();
    let error =
        crate::support::block_on(runtime.describe(&component, &warden_host::Limits::default()))
            .unwrap_err();
    assert!(
        error.to_string().contains("more than 1024 resources"),
        "{error}"
    );
}
