//! Every limit actually hit by a node built with the SDK, on both targets, and reported by kind.

use crate::support::*;
use std::time::Duration;
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

/// A component that looks like a node (it exports an empty `warden:node/node` instance) after
/// `body`: enough to be counted before anything runs.
fn hostile(body: &str) -> warden_host::NodeComponent {
    let bytes = wat::parse_str(format!(
        r#"(component
            {body}
            (instance $node)
            (export "warden:node/node@0.1.0" (instance $node)))"#
    ))
    .unwrap();
    warden_host::NodeComponent::from_bytes(bytes).unwrap()
}

fn refused_with(node: &warden_host::NodeComponent, limits: Limits) -> LimitKind {
    let runtime = Runtime::new().unwrap();
    let error = match block_on(runtime.prepare(node, &config(limits))) {
        Err(error) => error,
        Ok(_) => panic!("prepared"),
    };
    assert_eq!(error.exit_code(), 4, "{error}");
    assert!(error.to_string().starts_with("limit hit: "), "{error}");
    error.limit().unwrap()
}

#[test]
fn instances_in_nested_components_are_counted_per_instantiation() {
    // 3 instantiations of a component that instantiates a module 3 times: 9 core instances,
    // though the text holds only 3 instantiations of the module.
    let node = hostile(
        r#"(component $inner
               (core module $m)
               (core instance (instantiate $m))
               (core instance (instantiate $m))
               (core instance (instantiate $m)))
           (instance (instantiate $inner))
           (instance (instantiate $inner))
           (instance (instantiate $inner))"#,
    );
    assert_eq!(node.summary().core_instances, 9);
    let limits = Limits {
        max_instances: 8,
        ..Limits::default()
    };
    assert_eq!(refused_with(&node, limits), LimitKind::Instances);
}

#[test]
fn memories_and_tables_of_a_module_instantiated_several_times_are_counted() {
    let node = hostile(
        r#"(core module $m (memory 1) (memory 1) (table 1 funcref))
           (core instance (instantiate $m))
           (core instance (instantiate $m))
           (core instance (instantiate $m))"#,
    );
    let limits = Limits {
        max_memories: 5,
        ..Limits::default()
    };
    assert_eq!(refused_with(&node, limits), LimitKind::Memories);
    let limits = Limits {
        max_tables: 2,
        ..Limits::default()
    };
    assert_eq!(refused_with(&node, limits), LimitKind::Tables);
}

#[test]
fn a_component_within_its_counts_is_not_refused_as_malformed_for_them() {
    // Two memories in one core module fit the pool (the per-module limit is not 1); this
    // component then fails only because its `node` export is empty.
    let node = hostile(
        r#"(core module $m (memory 1) (memory 1))
           (core instance (instantiate $m))"#,
    );
    let runtime = Runtime::new().unwrap();
    let error = match block_on(runtime.prepare(&node, &config(Limits::default()))) {
        Err(error) => error,
        Ok(_) => panic!("prepared"),
    };
    let message = error.to_string();
    assert_eq!(error.exit_code(), 2, "{message}");
    assert!(message.contains("does not match warden's WIT"), "{message}");
    assert!(!message.contains("memor"), "{message}");
    assert!(!message.contains("internal error"), "{message}");
}

#[test]
fn the_documented_concurrency_holds_for_the_default_preset() {
    // 64 runs at once (the default) of a wasip2 node, each with several memories, all find a
    // pool slot; the 65th is told the runtime is busy.
    let runtime = Runtime::new().unwrap();
    let node = test_node("limits", Target::Wasip2);
    let config = config(Limits::default());
    block_on(async {
        let prepared = runtime.prepare(&node, &config).await.unwrap();
        let sleeping = request("sleep", &[("ms", Value::Integer(4_000))]);
        let runs = futures_util::future::join_all(
            (0..warden_host::DEFAULT_CONCURRENCY).map(|_| prepared.run(sleeping.clone())),
        );
        let extra = async {
            let started = std::time::Instant::now();
            while runtime.running() < warden_host::DEFAULT_CONCURRENCY {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "only {} runs started",
                    runtime.running()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            prepared.run(request("noop", &[])).await
        };
        let (results, extra) = tokio::join!(runs, extra);
        assert!(matches!(extra, Err(Error::Busy(_))), "{:?}", extra.err());
        for result in results {
            result.unwrap();
        }
        assert_eq!(runtime.running(), 0);
        prepared.run(request("noop", &[])).await.unwrap();
    });
}

/// The environment variable that tells the child test which component to run.
const ULIMIT_NODE: &str = "WARDEN_TEST_ULIMIT_NODE";

#[test]
fn a_runtime_works_under_an_8_gib_address_space_limit() {
    let node = build_node("tests/nodes/limits", Target::Wasip2, &[]);
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 8388608 && exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "limits::runtime_under_ulimit_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ULIMIT_NODE, &node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("child under ulimit: ok"),
        "{stdout}\n{stderr}"
    );
}

/// Run by `a_runtime_works_under_an_8_gib_address_space_limit` under `ulimit -v`.
#[test]
#[ignore = "run by a_runtime_works_under_an_8_gib_address_space_limit"]
fn runtime_under_ulimit_child() {
    let Ok(path) = std::env::var(ULIMIT_NODE) else {
        return;
    };
    let node = load(std::path::Path::new(&path));
    let settings = |concurrency: u32, pool_limits: Limits| {
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = warnings.clone();
        let settings = warden_host::RuntimeConfig {
            concurrency,
            pool_limits,
            on_warning: Some(std::sync::Arc::new(move |line: &str| {
                sink.lock().unwrap().push(line.to_string())
            })),
            ..warden_host::RuntimeConfig::new(warden_host::Storage::in_memory().unwrap())
        };
        (settings, warnings)
    };
    // Sized for what runs: 4 runs of the default preset fit in the pool.
    let (small, warnings) = settings(4, Limits::default());
    let runtime = Runtime::from_config(small);
    for preset in [Preset::Default, Preset::Restrictive] {
        run(
            &runtime,
            &node,
            &config(Limits::preset(preset)),
            request("noop", &[]),
        )
        .unwrap();
    }
    assert!(
        warnings.lock().unwrap().is_empty(),
        "{:?}",
        warnings.lock().unwrap()
    );
    // Sized far past the limit: one warning, and the runs still happen, on demand.
    let (huge, warnings) = settings(64, Limits::permissive());
    let runtime = Runtime::from_config(huge);
    for preset in Preset::ALL {
        let outcome = run(
            &runtime,
            &node,
            &config(Limits::preset(preset)),
            request("noop", &[]),
        );
        outcome.unwrap_or_else(|error| panic!("{preset}: {error}"));
    }
    let warnings = warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("sandbox pool"), "{warnings:?}");
    // A default runtime works too.
    run(
        &Runtime::new().unwrap(),
        &node,
        &config(Limits::default()),
        request("noop", &[]),
    )
    .unwrap();
    println!("child under ulimit: ok");
}
