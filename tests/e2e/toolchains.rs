//! Nodes from other component toolchains, built the default way (no stub flags) and run
//! through the CLI: Python with componentize-py, installed from PyPI at a pinned version into a
//! virtual environment under the target directory (kept between runs).
//!
//! The test skips, saying why, only when Python is not on the machine or PyPI cannot be
//! reached; any other failure fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release the examples are built with (the one `warden build` names).
pub const COMPONENTIZE_PY: &str = warden::build::python::COMPONENTIZE_PY;

/// Why a toolchain test cannot run here, when it cannot.
fn unreachable_registry(output: &str) -> bool {
    [
        "Could not find a version that satisfies",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "No matching distribution found",
        "Connection refused",
        "ProxyError",
    ]
    .iter()
    .any(|sign| output.contains(sign))
}

/// componentize-py in a virtual environment of its own; `None` (with a message) when Python
/// is missing or PyPI cannot be reached.
fn componentize_py() -> Option<PathBuf> {
    let venv =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("componentize-py-{COMPONENTIZE_PY}"));
    let tool = venv.join("bin/componentize-py");
    if tool.exists() {
        return Some(tool);
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    match created {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            eprintln!(
                "SKIPPED: python3 cannot make a virtual environment here: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: no python3 on this machine ({error}); the Python node tests need it"
            );
            return None;
        }
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "--quiet"])
        .arg(format!("componentize-py=={COMPONENTIZE_PY}"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    if !installed.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        if unreachable_registry(&said) {
            eprintln!("SKIPPED: PyPI cannot be reached to install componentize-py: {said}");
            return None;
        }
        panic!("pip could not install componentize-py=={COMPONENTIZE_PY}: {said}");
    }
    Some(tool)
}

/// Builds (a copy of) the Python example `nodes/python/NAME` the default way with
/// `warden build`; its component.
fn build_python(tool: &Path, name: &str, into: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = into.join(name);
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(
        root.join("nodes/python").join(name).join("app.py"),
        project.join("app.py"),
    )
    .unwrap();
    let built = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("build")
        .arg(&project)
        .env("WARDEN_COMPONENTIZE_PY", tool)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(
        built.status.success(),
        "warden build failed: {stdout}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = PathBuf::from(stdout.trim());
    assert_eq!(
        component,
        project.join("build").join(format!("{name}.wasm"))
    );
    component
}

fn warden(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_CODE_CACHE", cache)
        .output()
        .unwrap()
}

#[test]
fn a_default_python_build_runs_with_no_grant_through_the_cli() {
    let Some(tool) = componentize_py() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let component = build_python(&tool, "text-transform", scratch.path());
    let path = component.to_str().unwrap();
    // A directory warden makes itself, private to this user.
    let cache = scratch.path().join("code");
    // It imports WASI 0.2.9 with filesystem and sockets, as componentize-py does by default.
    let inspected = warden(&["inspect", path], &cache);
    let text = String::from_utf8_lossy(&inspected.stdout).into_owned();
    assert!(
        inspected.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    assert!(
        text.contains("node text-transform") && text.contains("node concat"),
        "{text}"
    );
    assert!(text.contains("capabilities: none"), "{text}");
    assert!(
        text.contains("ambient, served denied") && text.contains("wasi:sockets/tcp@0.2.9"),
        "{text}"
    );

    let run = |extra: &[&str]| {
        let mut args = vec!["run", path, "--grant", "none", "--node", "text-transform"];
        args.extend_from_slice(extra);
        warden(&args, &cache)
    };
    let ran = run(&[
        "--input",
        "text=hello python world",
        "--input",
        "mode=title",
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&ran.stderr).into_owned();
    assert!(ran.status.success(), "{stdout}{stderr}");
    let outputs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outputs["result"], "Hello Python World");
    assert_eq!(outputs["words"], 3);
    // print() goes to the node's log, not the host's stdout.
    assert!(
        stderr.contains("[info stdout] text-transform: title"),
        "{stderr}"
    );
    // A value off the pin's list is refused before the node runs; the node's own error
    // comes back as a node failure.
    assert_eq!(
        run(&["--input", "text=x", "--input", "mode=bogus"])
            .status
            .code(),
        Some(2)
    );
    // Under the restrictive preset it still fits; starved of fuel it is stopped by the limit.
    assert!(
        run(&["--input", "text=x", "--preset", "restrictive"])
            .status
            .success()
    );
    let starved = run(&["--input", "text=x", "--fuel", "100000"]);
    assert_eq!(
        starved.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&starved.stderr)
    );
    // The second node of the component.
    let concat = warden(
        &[
            "run", path, "--grant", "none", "--node", "concat", "--input", "left=a", "--input",
            "right=b",
        ],
        &cache,
    );
    let outputs: serde_json::Value = serde_json::from_slice(&concat.stdout).unwrap();
    assert_eq!(outputs["result"], "a b");
}

#[test]
fn warden_build_says_how_to_install_componentize_py_when_it_is_missing() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("app.py"), "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("build")
        .arg(project.path())
        .env("WARDEN_COMPONENTIZE_PY", "/nonexistent/componentize-py")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("pip install componentize-py=={COMPONENTIZE_PY}")),
        "{stderr}"
    );
    // The world it was to be built against is there to read.
    let worlds = std::fs::read_to_string(project.path().join("build/wit/worlds.wit")).unwrap();
    assert!(worlds.contains("world warden-node"), "{worlds}");
}
