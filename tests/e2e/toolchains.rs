//! Nodes from other component toolchains, built the default way (no stub flags) and run
//! through the CLI: Python with componentize-py, installed from PyPI at a pinned version into a
//! virtual environment under the target directory; JavaScript with componentize-js and
//! componentize-qjs, installed from npm at pinned versions into prefixes there (all kept
//! between runs).
//!
//! A test skips, saying why, only when Python or npm is not on the machine or its registry
//! cannot be reached; any other failure fails it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Tests run in parallel, and several need the same tool: one installs it while the others
/// wait, rather than all installing into one directory at once (on a fresh machine a test
/// would otherwise find the command while pip or npm were still writing it).
static INSTALLING: Mutex<()> = Mutex::new(());

/// Written once an install has finished: a directory without it is a broken install (an
/// interrupted run), and is made again.
const INSTALLED: &str = "warden-installed";

/// The componentize-py release the examples are built with (the one `warden build` names).
pub const COMPONENTIZE_PY: &str = warden::build::toolchain::COMPONENTIZE_PY;
/// The componentize-js and componentize-qjs releases (from npm).
const COMPONENTIZE_JS: &str = warden::build::toolchain::COMPONENTIZE_JS;
const COMPONENTIZE_QJS: &str = warden::build::toolchain::COMPONENTIZE_QJS;

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
    let _turn = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if venv.join(INSTALLED).exists() {
        return Some(tool);
    }
    let _ = std::fs::remove_dir_all(&venv);
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
    std::fs::write(venv.join(INSTALLED), "").unwrap();
    Some(tool)
}

/// Builds (a copy of) the example `nodes/LANGUAGE/NAME` the default way with `warden build`,
/// its tool named by `variable`; its component.
fn build_example(variable: &str, tool: &Path, language: &str, name: &str, into: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = into.join(name);
    std::fs::create_dir_all(&project).unwrap();
    for file in ["app.py", "app.js", "warden.toml"] {
        let source = root.join("nodes").join(language).join(name).join(file);
        if source.exists() {
            std::fs::copy(source, project.join(file)).unwrap();
        }
    }
    let built = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("build")
        .arg(&project)
        .env(variable, tool)
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

fn build_python(tool: &Path, name: &str, into: &Path) -> PathBuf {
    build_example("WARDEN_COMPONENTIZE_PY", tool, "python", name, into)
}

/// `package@version` from npm in a prefix of its own under the target directory (kept between
/// runs); the path of its command `bin`. `None` (with a message) when npm is missing or the
/// registry cannot be reached.
fn npm_tool(package: &str, version: &str, bin: &str) -> Option<PathBuf> {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "npm-{}-{version}",
        package.replace(['/', '@'], "_")
    ));
    let tool = prefix.join("node_modules/.bin").join(bin);
    let _turn = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if prefix.join(INSTALLED).exists() {
        return Some(tool);
    }
    let _ = std::fs::remove_dir_all(&prefix);
    let installed = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(format!("{package}@{version}"))
        .output();
    let installed = match installed {
        Ok(output) => output,
        Err(error) => {
            eprintln!(
                "SKIPPED: no npm on this machine ({error}); the JavaScript node tests need Node.js and npm"
            );
            return None;
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    if !installed.status.success() || !tool.exists() {
        let _ = std::fs::remove_dir_all(&prefix);
        if [
            "ENOTFOUND",
            "EAI_AGAIN",
            "ECONNREFUSED",
            "ETIMEDOUT",
            "ENETUNREACH",
            "network",
        ]
        .iter()
        .any(|sign| said.contains(sign))
        {
            eprintln!("SKIPPED: the npm registry cannot be reached to install {package}: {said}");
            return None;
        }
        panic!("npm could not install {package}@{version}: {said}");
    }
    std::fs::write(prefix.join(INSTALLED), "").unwrap();
    Some(tool)
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

    let stderr = text_transform_runs(path, &cache, "Hello Python World");
    // print() goes to the node's log, not the host's stdout.
    assert!(
        stderr.contains("[info stdout] text-transform: title"),
        "{stderr}"
    );
}

/// Runs a build of the text-transform example with no grant, as the Rust one behaves: title
/// case of "hello <language> world" is `title`, a value off the pin's list is refused, the
/// restrictive preset fits, fuel stops it, and the second node works. The run's stderr.
fn text_transform_runs(path: &str, cache: &Path, title: &str) -> String {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", path, "--grant", "none", "--node", "text-transform"];
        args.extend_from_slice(extra);
        warden(&args, cache)
    };
    let input = format!("text={}", title.to_lowercase());
    let ran = run(&["--input", &input, "--input", "mode=title"]);
    let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&ran.stderr).into_owned();
    assert!(ran.status.success(), "{stdout}{stderr}");
    let outputs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outputs["result"], title);
    assert_eq!(outputs["words"], 3);
    // A value off the pin's list is refused before the node runs.
    assert_eq!(
        run(&["--input", "text=x", "--input", "mode=bogus"])
            .status
            .code(),
        Some(2)
    );
    let reversed = run(&["--input", "text=añb 🎉x", "--input", "mode=reverse"]);
    let outputs: serde_json::Value = serde_json::from_slice(&reversed.stdout).unwrap();
    assert_eq!(outputs["result"], "x🎉 bña");
    // Under the restrictive preset it still fits; starved of fuel it is stopped by the limit.
    let restricted = run(&["--input", "text=x", "--preset", "restrictive"]);
    assert!(
        restricted.status.success(),
        "{}",
        String::from_utf8_lossy(&restricted.stderr)
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
        cache,
    );
    let outputs: serde_json::Value = serde_json::from_slice(&concat.stdout).unwrap();
    assert_eq!(outputs["result"], "a b");
    stderr
}

#[test]
fn a_default_javascript_build_runs_with_no_grant_through_the_cli() {
    let Some(tool) = npm_tool(
        "@bytecodealliance/componentize-js",
        COMPONENTIZE_JS,
        "componentize-js",
    ) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let component = build_example(
        "WARDEN_COMPONENTIZE_JS",
        &tool,
        "js",
        "text-transform",
        scratch.path(),
    );
    let path = component.to_str().unwrap();
    let cache = scratch.path().join("code");
    // StarlingMonkey imports wasi:http (for fetch) and WASI 0.2.12 by default.
    let inspected = warden(&["inspect", path], &cache);
    let text = String::from_utf8_lossy(&inspected.stdout).into_owned();
    assert!(inspected.status.success(), "{text}");
    assert!(text.contains("capabilities: none"), "{text}");
    assert!(
        text.contains("wasi:http/outgoing-handler@0.2.10")
            && text.contains("ambient, served denied"),
        "{text}"
    );
    text_transform_runs(path, &cache, "Hello Js World");
}

/// componentize-qjs builds the same source. Its default output uses the component model's
/// async ABI, which this host's engine does not enable (it is refused, saying so); `--sync`
/// (not a stub: the node's WASI stays real) builds a plain component.
#[test]
fn componentize_qjs_builds_the_javascript_example_too() {
    let Some(tool) = npm_tool("componentize-qjs", COMPONENTIZE_QJS, "componentize-qjs") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let wit = scratch.path().join("wit");
    for (name, text) in warden::build::toolchain::WIT_FILES {
        let path = wit.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = match name {
            "worlds.wit" => format!(
                "{text}\n{}",
                warden::build::toolchain::world(warden_host::Capabilities::empty())
            ),
            _ => text.to_string(),
        };
        std::fs::write(path, text).unwrap();
    }
    let build = |extra: &[&str], out: &Path| {
        let output = Command::new(&tool)
            .arg("--wit")
            .arg(&wit)
            .arg("--js")
            .arg(root.join("nodes/js/text-transform/app.js"))
            .args(["-n", "warden-node", "-o"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "componentize-qjs failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let cache = scratch.path().join("code");
    let default = scratch.path().join("async.wasm");
    build(&[], &default);
    let refused = warden(&["inspect", default.to_str().unwrap()], &cache);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("async") && said.contains("--sync"), "{said}");
    let sync = scratch.path().join("sync.wasm");
    build(&["--sync"], &sync);
    text_transform_runs(sync.to_str().unwrap(), &cache, "Hello Qjs World");
}

/// The Python example that keeps notes in board storage and signs them with a variable: what
/// one run writes the next reads, another board starts empty, and without the grant it is
/// refused naming every capability.
#[test]
fn a_python_node_keeps_state_in_storage_and_reads_variables() {
    let Some(tool) = componentize_py() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let component = build_python(&tool, "notes", scratch.path());
    let path = component.to_str().unwrap();
    let cache = scratch.path().join("code");
    let data = scratch.path().join("data");
    let data = data.to_str().unwrap();
    let grant = "storage-read,storage-write,variables-read";
    let note = |extra: &[&str]| {
        let mut args = vec!["run", path, "--grant", grant, "--data", data];
        args.extend_from_slice(extra);
        let output = warden(&args, &cache);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let first = note(&["--var", "author=Ada", "--input", "note=buy milk"]);
    assert_eq!(first["count"], 1);
    assert_eq!(first["latest"], serde_json::json!(["Ada: buy milk"]));
    let second = note(&["--input", "note=call Ada"]);
    assert_eq!(second["count"], 2);
    assert_eq!(
        second["latest"],
        serde_json::json!(["Ada: buy milk", "anonymous: call Ada"])
    );
    let other = note(&["--board", "other", "--input", "note=fresh"]);
    assert_eq!(other["count"], 1);
    let refused = warden(
        &[
            "run", path, "--grant", "none", "--data", data, "--input", "note=x",
        ],
        &cache,
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(
        said.contains("--grant storage-read,storage-write,variables-read"),
        "{said}"
    );
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

/// `warden new NAME --lang L --cap ...`, then `warden build` and `warden run` with no other
/// step: the project's world has the capabilities, and the hint in its source is the command.
fn new_project_runs(lang: &str, tool: Option<(&str, &Path)>, scratch: &Path) {
    let name = format!("hello-{lang}");
    let command = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .args(args)
            .current_dir(scratch)
            .env("WARDEN_CODE_CACHE", scratch.join("code"))
            // A Rust project's dependencies, kept between runs.
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("warden-new"),
            );
        if let Some((variable, tool)) = tool {
            command.env(variable, tool);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "warden {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let dir = command(&["new", &name, "--lang", lang, "--cap", "storage-read"]);
    let component = command(&["build", &dir]);
    let outputs = command(&[
        "run",
        &component,
        "--grant",
        "storage-read",
        "--input",
        "name=you",
    ]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs).unwrap();
    assert_eq!(outputs["greeting"], "Hello, you!", "{lang}");
}

#[test]
fn warden_new_makes_projects_that_build_and_run_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    new_project_runs("rust", None, scratch.path());
    // What it refuses: a name that cannot name a node, and a directory with something in it.
    for args in [
        vec!["new", "Hello"],
        vec!["new", "hello-rust"],
        vec!["new", "x", "--lang", "cobol"],
        vec!["new", "x", "--cap", "teleport"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(&args)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    if let Some(tool) = componentize_py() {
        new_project_runs(
            "python",
            Some(("WARDEN_COMPONENTIZE_PY", &tool)),
            scratch.path(),
        );
    }
    if let Some(tool) = npm_tool(
        "@bytecodealliance/componentize-js",
        COMPONENTIZE_JS,
        "componentize-js",
    ) {
        new_project_runs(
            "js",
            Some(("WARDEN_COMPONENTIZE_JS", &tool)),
            scratch.path(),
        );
    }
}
