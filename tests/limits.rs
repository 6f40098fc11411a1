//! Every limit actually hit by a node built with the SDK, on both targets, and reported by kind.

mod support;

use std::time::Duration;
use support::*;
use warden::build::Target;
use warden_host::log::Source;
use warden_host::{
    Capabilities, Error, LimitKind, Limits, Preset, Runtime, Value, WasmSecurityConfig,
};

fn config(limits: Limits) -> WasmSecurityConfig {
    WasmSecurityConfig {
        limits,
        capabilities: Capabilities::empty(),
        ..WasmSecurityConfig::default()
    }
}

fn limit_hit(result: Result<warden_host::RunOutcome, Error>) -> LimitKind {
    match result {
        Err(error) => {
            assert_eq!(error.exit_code(), 4, "{error}");
            error
                .limit()
                .unwrap_or_else(|| panic!("not a limit: {error}"))
        }
        Ok(outcome) => panic!("the node finished: {:?}", outcome.outputs),
    }
}

#[test]
fn an_infinite_loop_is_stopped_by_fuel() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        let limits = Limits {
            fuel: Some(50_000_000),
            ..Limits::default()
        };
        assert_eq!(
            limit_hit(run(&runtime, &node, &config(limits), request("spin", &[]))),
            LimitKind::Fuel
        );
    }
}

#[test]
fn a_loop_with_fuel_off_is_stopped_by_the_timeout() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        let limits = Limits {
            fuel: None,
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let error = run(&runtime, &node, &config(limits), request("spin", &[])).unwrap_err();
        assert_eq!(error.limit(), Some(LimitKind::Timeout), "{error}");
        assert!(error.to_string().contains("--timeout"), "{error}");
    }
}

#[test]
fn a_node_blocked_in_a_host_call_is_stopped_by_the_timeout() {
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Wasip2);
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let sleep = request("sleep", &[("ms", Value::Integer(600_000))]);
    assert_eq!(
        limit_hit(run(&runtime, &node, &config(limits), sleep)),
        LimitKind::Timeout
    );
}

#[test]
fn a_memory_grow_bomb_is_stopped_at_the_memory_limit() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        for preset in [Preset::Restrictive, Preset::Default] {
            let result = run(
                &runtime,
                &node,
                &config(Limits::preset(preset)),
                request("grow", &[]),
            );
            assert_eq!(limit_hit(result), LimitKind::Memory, "{target:?} {preset}");
        }
        let tiny = Limits {
            memory_bytes: 4 * 1024 * 1024,
            ..Limits::default()
        };
        assert_eq!(
            limit_hit(run(&runtime, &node, &config(tiny), request("grow", &[]))),
            LimitKind::Memory
        );
    }
}

#[test]
fn deep_recursion_is_stopped_at_the_stack_limit() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        for preset in Preset::ALL {
            let result = run(
                &runtime,
                &node,
                &config(Limits::preset(preset)),
                request("recurse", &[]),
            );
            assert_eq!(limit_hit(result), LimitKind::Stack, "{target:?} {preset}");
        }
        // A shallow recursion fits.
        let shallow = request("recurse", &[("depth", Value::Integer(100))]);
        run(&runtime, &node, &config(Limits::restrictive()), shallow).unwrap();
    }
}

#[test]
fn huge_outputs_are_refused_at_the_output_cap() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        let mut limits = Limits::default();
        limits.host.output_bytes = 64 * 1024;
        let big = request("big-output", &[("bytes", Value::Integer(1024 * 1024))]);
        assert_eq!(
            limit_hit(run(&runtime, &node, &config(limits.clone()), big)),
            LimitKind::OutputSize
        );
        let small = request("big-output", &[("bytes", Value::Integer(1024))]);
        run(&runtime, &node, &config(limits), small).unwrap();
    }
}

#[test]
fn huge_inputs_are_refused_at_the_input_cap() {
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Unknown);
    let mut limits = Limits::default();
    limits.host.input_bytes = 1024;
    let error = run(
        &runtime,
        &node,
        &config(limits),
        request("recurse", &[("depth", Value::Integer(1))]),
    );
    assert!(error.is_ok(), "a small input fits");
    let mut limits = Limits::default();
    limits.host.input_bytes = 4;
    let error = run(
        &runtime,
        &node,
        &config(limits),
        request("recurse", &[("depth", Value::Integer(1))]),
    );
    assert_eq!(limit_hit(error), LimitKind::InputSize);
}

#[test]
fn a_log_flood_is_capped_and_the_run_still_completes() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        let mut limits = Limits::default();
        limits.host.log_bytes = 10_000;
        let flood = request("log-flood", &[("lines", Value::Integer(100_000))]);
        let outcome = run(&runtime, &node, &config(limits), flood).unwrap();
        let kept: usize = outcome
            .log
            .iter()
            .filter(|r| r.source == Source::Log)
            .map(|r| r.message.len())
            .sum();
        assert!(kept <= 10_000, "kept {kept} bytes");
        assert!(
            outcome.log_dropped_bytes >= 100_000 * 100 - 10_000,
            "dropped {}",
            outcome.log_dropped_bytes
        );
        assert!(
            outcome
                .log
                .iter()
                .any(|r| r.source == Source::Host && r.message.contains("log cap"))
        );
        assert_eq!(output(&outcome, "result"), &Value::Integer(100_000));
    }
}

#[test]
fn stdout_and_stderr_floods_land_in_the_capped_log() {
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Wasip2);
    let mut limits = Limits::default();
    limits.host.log_bytes = 5_000;
    let flood = request("print-flood", &[("lines", Value::Integer(20_000))]);
    let outcome = run(&runtime, &node, &config(limits), flood).unwrap();
    assert_eq!(outcome.log[0].source, Source::Stdout);
    assert!(outcome.log[0].message.starts_with("stdout line 0 "));
    assert_eq!(outcome.log[1].source, Source::Stderr);
    let kept: usize = outcome
        .log
        .iter()
        .filter(|r| r.source != Source::Host)
        .map(|r| r.message.len())
        .sum();
    assert!(kept <= 5_000);
    assert!(outcome.log_dropped_bytes > 1_000_000);
}

#[test]
fn too_many_instances_are_refused_before_instantiation() {
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Wasip2);
    assert!(
        node.summary().core_instances > 1,
        "a wasip2 component has several core instances"
    );
    let limits = Limits {
        max_instances: 1,
        ..Limits::default()
    };
    assert_eq!(
        limit_hit(run(&runtime, &node, &config(limits), request("noop", &[]))),
        LimitKind::Instances
    );
    let limits = Limits {
        max_memories: 0,
        ..Limits::default()
    };
    assert_eq!(
        limit_hit(run(&runtime, &node, &config(limits), request("noop", &[]))),
        LimitKind::Memories
    );
}

#[test]
fn failures_and_traps_are_told_apart_from_limits() {
    let runtime = Runtime::new().unwrap();
    for target in TARGETS {
        let node = test_node("limits", target);
        let config = config(Limits::default());
        let error = run(&runtime, &node, &config, request("fail", &[])).unwrap_err();
        assert!(
            matches!(&error, Error::NodeFailed(message) if message == "deliberate failure"),
            "{error}"
        );
        assert_eq!(error.exit_code(), 5);
        let error = run(&runtime, &node, &config, request("panic", &[])).unwrap_err();
        assert!(
            matches!(&error, Error::Trapped(message) if message.contains("deliberate panic")),
            "{error}"
        );
        assert_eq!(error.exit_code(), 5);
    }
    let wasip2 = test_node("limits", Target::Wasip2);
    let error = run(
        &runtime,
        &wasip2,
        &config(Limits::default()),
        request("exit", &[]),
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::NodeFailed(message) if message.contains("called exit")),
        "{error}"
    );
}

#[test]
fn a_runtime_keeps_working_after_limits_were_hit() {
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Unknown);
    let strict = config(Limits {
        fuel: Some(1_000_000),
        ..Limits::default()
    });
    for _ in 0..3 {
        assert_eq!(
            limit_hit(run(&runtime, &node, &strict, request("spin", &[]))),
            LimitKind::Fuel
        );
        let outcome = run(&runtime, &node, &strict, request("noop", &[])).unwrap();
        assert!(
            outcome
                .fuel_consumed
                .is_some_and(|fuel| fuel > 0 && fuel < 1_000_000)
        );
    }
}
