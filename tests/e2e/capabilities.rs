//! Each capability, through a node built with the SDK: refused when not granted (before it
//! runs, naming the import and the grant), working when granted.

use crate::support::*;
use warden::build::Target;
use warden_host::{CAPABILITIES, Capabilities, Error, Runtime, WasmSecurityConfig};

fn config(grant: Capabilities) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: grant,
        ..WasmSecurityConfig::default()
    }
}

/// The probe built to call exactly the capability `name`.
fn probe(name: &str, socket: bool) -> warden_host::NodeComponent {
    let target = if socket {
        Target::Wasip2
    } else {
        Target::Unknown
    };
    load(&build_node("tests/nodes/probe", target, &[name]))
}

#[test]
fn every_capability_is_refused_unless_granted_and_works_when_granted() {
    let runtime = Runtime::new().unwrap();
    for info in CAPABILITIES {
        let socket = info.provider == warden_host::capability::Provider::WasiSockets;
        let component = probe(info.name, socket);
        let required = component.required_capabilities();
        if socket {
            // wasi:sockets is ambient: it requires nothing; the package may ask for the
            // capability whose own interface the probe imports.
            assert_eq!(required, Capabilities::empty(), "{}", info.name);
            let ambient =
                warden_host::preflight::ambient_capabilities(&component.summary().imports);
            assert!(
                ambient.contains(info.bit)
                    && (Capabilities::TCP | Capabilities::UDP | Capabilities::DNS)
                        .contains(ambient),
                "{}: {ambient}",
                info.name
            );
            // It links and runs with no grant at all; network.rs shows every operation denied.
            let outcome = run(
                &runtime,
                &component,
                &config(Capabilities::empty()),
                request("probe", &[]),
            )
            .unwrap_or_else(|error| panic!("{}: {error}", info.name));
            assert_eq!(
                output(&outcome, "called"),
                &warden_host::Value::Text(info.name.into())
            );
            continue;
        }
        assert_eq!(
            required, info.bit,
            "{} requires exactly its own bit",
            info.name
        );

        // Not granted: refused before anything runs, for every other grant too.
        let everything_else = Capabilities::all() - info.bit;
        for grant in [Capabilities::empty(), everything_else] {
            let mut refused_config = config(grant);
            refused_config.allow_wasi_network = true;
            let error =
                run(&runtime, &component, &refused_config, request("probe", &[])).unwrap_err();
            let Error::Refused(refusal) = &error else {
                panic!("{}: expected a refusal, got {error}", info.name)
            };
            assert!(
                refusal.missing().contains(info.bit),
                "{}: {refusal}",
                info.name
            );
            let text = error.to_string();
            assert!(text.contains(info.name), "{}: {text}", info.name);
            assert!(text.contains("needed by import"), "{}: {text}", info.name);
            assert_eq!(error.exit_code(), 3);
        }

        // Granted.
        let result = run(
            &runtime,
            &component,
            &config(info.bit),
            request("probe", &[]),
        );
        let outcome = result.unwrap_or_else(|error| panic!("{}: {error}", info.name));
        assert_eq!(
            output(&outcome, "called"),
            &warden_host::Value::Text(info.name.into())
        );
    }
}

#[test]
fn a_refusal_lists_every_missing_capability_at_once() {
    let runtime = Runtime::new().unwrap();
    let greeter = load(&example("greeter", Target::Unknown));
    let expected = Capabilities::VARIABLES_READ
        | Capabilities::CACHE_READ
        | Capabilities::CACHE_WRITE
        | Capabilities::STREAMING;
    assert_eq!(greeter.required_capabilities(), expected);
    let error = run(
        &runtime,
        &greeter,
        &config(Capabilities::CACHE_READ),
        request("greeter", &[]),
    )
    .unwrap_err();
    let Error::Refused(refusal) = &error else {
        panic!("{error}")
    };
    assert_eq!(refusal.missing(), expected - Capabilities::CACHE_READ);
    assert!(
        error
            .to_string()
            .contains("--grant variables-read,cache-write,streaming"),
        "{error}"
    );
}

#[test]
fn a_node_with_no_capabilities_runs_with_no_grant_on_both_targets() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let component = load(&example("text-transform", target));
        assert_eq!(component.required_capabilities(), Capabilities::empty());
        let text = warden_host::Value::Text("Hello sandbox".into());
        let outcome = run(
            &runtime,
            &component,
            &config(Capabilities::empty()),
            request("text-transform", &[("text", text)]),
        )
        .unwrap();
        assert_eq!(
            output(&outcome, "result"),
            &warden_host::Value::Text("HELLO SANDBOX".into())
        );
        assert_eq!(output(&outcome, "words"), &warden_host::Value::Integer(2));
    }
}

#[test]
fn wasip2_nodes_get_no_directory_without_allow_wasi() {
    let runtime = Runtime::new().unwrap();
    let component = probe("filesystem", true);
    assert!(
        component
            .summary()
            .imports
            .iter()
            .any(|import| import.starts_with("wasi:filesystem/"))
    );
    // wasi:filesystem is ambient: linked, with nothing preopened, so nothing can be opened.
    let outcome = run(
        &runtime,
        &component,
        &config(Capabilities::empty()),
        request("probe", &[]),
    )
    .unwrap();
    assert_eq!(
        output(&outcome, "called"),
        &warden_host::Value::Text("filesystem-broken".into())
    );
    // With allow_wasi the node gets its own directory as `/`, and nothing outside it.
    let allowed = WasmSecurityConfig {
        allow_wasi: true,
        ..config(Capabilities::empty())
    };
    let outcome = run(&runtime, &component, &allowed, request("probe", &[])).unwrap();
    assert_eq!(
        output(&outcome, "called"),
        &warden_host::Value::Text("filesystem-own-dir".into())
    );
}
