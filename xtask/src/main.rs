//! `cargo xtask demo` builds the example nodes and runs them through the `warden` CLI;
//! `cargo xtask test` runs the whole test suite. Both install the wasm targets first.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip2"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "demo" => install_targets().and_then(|()| demo()),
        "test" => install_targets().and_then(|()| test()),
        _ => Err("usage: cargo xtask demo | cargo xtask test".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|error| format!("cannot start {shown}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Adds the wasm targets with rustup (a no-op when they are there already).
fn install_targets() -> Result<(), String> {
    let mut command = Command::new("rustup");
    command
        .current_dir(root())
        .arg("target")
        .arg("add")
        .args(TARGETS);
    run(command).map_err(|error| {
        format!(
            "{error}; install the targets with `rustup target add {}`",
            TARGETS.join(" ")
        )
    })
}

fn test() -> Result<(), String> {
    let mut command = cargo();
    command.args(["test", "--workspace", "--all-targets"]);
    run(command)?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    run(doc)
}

/// Runs `warden ARGS`, echoing the command and its stdout; the node's log passes through on stderr.
fn warden(args: &[&str]) -> Result<String, String> {
    println!("\n$ warden {}", args.join(" "));
    let output = Command::new(root().join("target/debug/warden"))
        .current_dir(root())
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot start warden: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    print!("{stdout}");
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "warden {} failed ({})",
            args.join(" "),
            output.status
        ))
    }
}

/// Builds the example node `name` and returns its component's path.
fn component(name: &str) -> Result<String, String> {
    let built = warden(&["build", &format!("nodes/{name}")])?;
    built
        .lines()
        .last()
        .map(|line| line.trim().to_string())
        .ok_or_else(|| "warden build printed no path".to_string())
}

fn demo() -> Result<(), String> {
    let mut build = cargo();
    build.args(["build", "--quiet", "--package", "warden"]);
    run(build)?;

    println!("# A pure transform: no capabilities at all.");
    let text = component("text-transform")?;
    warden(&["inspect", &text])?;
    warden(&[
        "run",
        &text,
        "--node",
        "text-transform",
        "--input",
        "text=Hello, warden",
        "--grant",
        "none",
    ])?;
    warden(&[
        "run",
        &text,
        "--node",
        "concat",
        "--input",
        "left=sand",
        "--input",
        "right=box",
        "--input",
        "separator=",
        "--grant",
        "none",
    ])?;

    println!("\n# A counter keeping state in node-scoped storage (a fresh database each demo).");
    let data = std::env::temp_dir().join(format!("warden-demo-{}", std::process::id()));
    let data = data.to_string_lossy().to_string();
    let counter = component("counter")?;
    for step in ["1", "41"] {
        warden(&[
            "run",
            &counter,
            "--grant",
            "storage-read,storage-write",
            "--data",
            &data,
            "--input",
            &format!("step={step}"),
        ])?;
    }
    println!("\n# Without storage-write the counter is refused before it starts (exit code 3):");
    let refused = Command::new(root().join("target/debug/warden"))
        .args(["run", &counter, "--grant", "storage-read"])
        .status();
    println!(
        "exit code: {}",
        refused.ok().and_then(|status| status.code()).unwrap_or(-1)
    );

    println!("\n# Variables, the cache and streaming: the second run answers from the cache.");
    let greeter = component("greeter")?;
    for _ in 0..2 {
        warden(&[
            "run",
            &greeter,
            "--grant",
            "variables-read,cache-all,streaming",
            "--var",
            "name=Ada",
            "--data",
            &data,
        ])?;
    }
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "\nThe demo ran every example node. Next: target/debug/warden --help, docs/capabilities.md."
    );
    Ok(())
}
