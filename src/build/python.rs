//! `warden build` for a Python node: a directory with `app.py`, built the default way with
//! componentize-py against warden's WIT (embedded in this binary, so a node project needs no
//! copy of it) and a world of `base` plus the capabilities asked for.

use super::BuildError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use warden_host::{CAPABILITIES, Capabilities};

/// The componentize-py release warden's examples and tests are built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// warden's WIT, as `wit/` holds it (a test keeps the two the same).
pub const WIT_FILES: [(&str, &str); 7] = [
    (
        "capabilities.wit",
        include_str!("../../wit/capabilities.wit"),
    ),
    ("node.wit", include_str!("../../wit/node.wit")),
    ("types.wit", include_str!("../../wit/types.wit")),
    ("worlds.wit", include_str!("../../wit/worlds.wit")),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../wit/deps/clocks/clocks.wit"),
    ),
    ("deps/io/io.wit", include_str!("../../wit/deps/io/io.wit")),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../wit/deps/sockets/sockets.wit"),
    ),
];

/// The world a node with `capabilities` is built against: `base` and each capability's world.
pub fn world(capabilities: Capabilities) -> String {
    let mut world = "world warden-node {\n    include base;\n".to_string();
    for info in CAPABILITIES
        .iter()
        .filter(|info| capabilities.contains(info.bit))
    {
        world += &format!("    include {};\n", info.world);
    }
    world + "}\n"
}

/// Whether `dir` is a Python node project.
pub fn is_project(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").exists()
}

/// componentize-py: `$WARDEN_COMPONENTIZE_PY`, else on the PATH.
fn tool() -> PathBuf {
    std::env::var_os("WARDEN_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("componentize-py"))
}

/// Builds the project in `dir` into `dir/build/NAME.wasm` (NAME: the directory's name).
pub fn build(dir: &Path, capabilities: Capabilities, quiet: bool) -> Result<PathBuf, BuildError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    let wit = dir.join("build/wit");
    for (name, text) in WIT_FILES {
        let path = wit.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let text = match name {
            "worlds.wit" => format!("{text}\n{}", world(capabilities)),
            _ => text.to_string(),
        };
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    let name = dir
        .canonicalize()
        .map_err(io(dir))?
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "node".into());
    let out = dir.join("build").join(format!("{name}.wasm"));
    let tool = tool();
    let status = Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "warden-node", "componentize", "-p"])
        .arg(dir)
        .arg("app")
        .arg("-o")
        .arg(&out)
        // Its own chatter goes to stderr: stdout is for the built component's path.
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output();
    if let Ok(output) = &status
        && !quiet
    {
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
    }
    match status {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(BuildError::ToolMissing {
                tool: tool.display().to_string(),
                install: format!(
                    "python3 -m venv .venv && .venv/bin/pip install componentize-py=={COMPONENTIZE_PY}, then put .venv/bin on the PATH (or set WARDEN_COMPONENTIZE_PY to the componentize-py to use)"
                ),
            })
        }
        Err(error) => Err(BuildError::Io {
            path: tool,
            source: error,
        }),
        Ok(output) if !output.status.success() => Err(BuildError::Componentize {
            path: dir.to_path_buf(),
            message: format!(
                "componentize-py failed{}",
                match String::from_utf8_lossy(&output.stderr).trim() {
                    "" => " (its messages are above)".to_string(),
                    said => format!(": {said}"),
                }
            ),
        }),
        Ok(_) => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_is_the_projects() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        for (name, text) in WIT_FILES {
            assert_eq!(
                std::fs::read_to_string(root.join(name)).unwrap(),
                text,
                "{name}"
            );
        }
        let mut on_disk = Vec::new();
        for dir in [
            root.clone(),
            root.join("deps/clocks"),
            root.join("deps/io"),
            root.join("deps/sockets"),
        ] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|ext| ext == "wit") {
                    on_disk.push(path);
                }
            }
        }
        assert_eq!(
            on_disk.len(),
            WIT_FILES.len(),
            "every .wit file is embedded: {on_disk:?}"
        );
    }

    #[test]
    fn the_world_includes_each_capability_asked_for() {
        let world = world(Capabilities::STORAGE_READ | Capabilities::VARIABLES_READ);
        assert!(world.contains("include base;"));
        assert!(world.contains("include cap-storage-read;"));
        assert!(world.contains("include cap-variables-read;"));
        assert!(!world.contains("cap-storage-write"));
    }
}
