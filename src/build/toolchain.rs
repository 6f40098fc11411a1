//! `warden build` for nodes in other languages: a directory with `app.py` (Python, built with
//! componentize-py) or `app.js` (JavaScript, built with componentize-js), built the default way
//! against warden's WIT (embedded in this binary, so a node project needs no copy of it) and a
//! world of `base` plus the capabilities the project asks for in `warden.toml` (or `--cap`).

use super::BuildError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use warden_host::{CAPABILITIES, Capabilities};

/// The componentize-py release warden's examples and tests are built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js release warden's examples and tests are built with.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The componentize-qjs release the tests also build the JavaScript example with.
pub const COMPONENTIZE_QJS: &str = "0.4.5";

/// The file of a project that says which capabilities its world includes.
pub const PROJECT_FILE: &str = "warden.toml";
/// Bytes a `warden.toml` may have.
const MAX_PROJECT_FILE_BYTES: u64 = 64 * 1024;
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

/// A language's toolchain: how to find its project, its tool, and how to call it.
pub struct Toolchain {
    /// The language, for messages.
    pub language: &'static str,
    /// The source file that makes a directory a project of this language.
    pub source: &'static str,
    /// The tool's command name, looked up on the PATH.
    pub tool: &'static str,
    /// The variable that names the tool instead.
    pub variable: &'static str,
    /// How to install the tool.
    pub install: &'static str,
    /// The tool's arguments: the project, the WIT directory, the world, the output.
    arguments: fn(&Path, &Path, &str, &Path) -> Vec<OsString>,
}

/// Python, with componentize-py.
pub const PYTHON: Toolchain = Toolchain {
    language: "Python",
    source: "app.py",
    tool: "componentize-py",
    variable: "WARDEN_COMPONENTIZE_PY",
    install: "python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1, then put .venv/bin on the PATH (or set WARDEN_COMPONENTIZE_PY to the componentize-py to use)",
    arguments: |dir, wit, world, out| {
        let mut arguments: Vec<OsString> = vec!["-d".into(), wit.into(), "-w".into(), world.into()];
        arguments.extend(["componentize".into(), "-p".into(), dir.into(), "app".into()]);
        arguments.extend(["-o".into(), out.into()]);
        arguments
    },
};

/// JavaScript, with componentize-js (the StarlingMonkey engine).
pub const JAVASCRIPT: Toolchain = Toolchain {
    language: "JavaScript",
    source: "app.js",
    tool: "componentize-js",
    variable: "WARDEN_COMPONENTIZE_JS",
    install: "npm install --prefix .tools @bytecodealliance/componentize-js@0.23.0, then put .tools/node_modules/.bin on the PATH (or set WARDEN_COMPONENTIZE_JS to the componentize-js to use)",
    arguments: |dir, wit, world, out| {
        vec![
            dir.join("app.js").into(),
            "--wit".into(),
            wit.into(),
            "--world-name".into(),
            world.into(),
            "-o".into(),
            out.into(),
        ]
    },
};

/// The toolchain of the project in `dir`, if it is a Python or JavaScript one (a directory
/// with a Cargo.toml is a Rust crate, whatever else it holds).
pub fn of_project(dir: &Path) -> Option<&'static Toolchain> {
    if dir.join("Cargo.toml").exists() {
        return None;
    }
    [&PYTHON, &JAVASCRIPT]
        .into_iter()
        .find(|toolchain| dir.join(toolchain.source).is_file())
}

/// The capabilities the project in `dir` asks for in its `warden.toml`
/// (`capabilities = ["storage-read", …]`); none without one.
pub fn project_capabilities(dir: &Path) -> Result<Capabilities, BuildError> {
    let path = dir.join(PROJECT_FILE);
    // Only the project's own small file: not a link or a hard link to another file (whose
    // lines a parse error would quote), not a FIFO (which would hold the build forever).
    match std::fs::symlink_metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Capabilities::empty());
        }
        Err(source) => return Err(BuildError::Io { path, source }),
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            if !meta.file_type().is_file() || meta.nlink() != 1 {
                return Err(BuildError::Symlink(path));
            }
            if meta.len() > MAX_PROJECT_FILE_BYTES {
                return Err(BuildError::Project {
                    path,
                    message: format!(
                        "it is {} bytes; at most {MAX_PROJECT_FILE_BYTES}",
                        meta.len()
                    ),
                });
            }
        }
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Capabilities::empty());
        }
        Err(source) => return Err(BuildError::Io { path, source }),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Project {
        #[serde(default)]
        capabilities: Vec<String>,
    }
    // The message and the line, not toml's multi-line excerpt of the file.
    let project: Project = toml::from_str(&text).map_err(|error| BuildError::Project {
        path: path.clone(),
        message: match error.span() {
            Some(span) => format!(
                "line {}: {}",
                text[..span.start.min(text.len())].lines().count().max(1),
                error.message()
            ),
            None => error.message().to_string(),
        },
    })?;
    project
        .capabilities
        .iter()
        .try_fold(Capabilities::empty(), |all, name| {
            name.parse::<Capabilities>()
                .map(|one| all | one)
                .map_err(|error| BuildError::Project {
                    path: path.clone(),
                    message: error.to_string(),
                })
        })
}

impl Toolchain {
    /// The tool: `$VARIABLE`, else `tool` on the PATH.
    fn command(&self) -> PathBuf {
        std::env::var_os(self.variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(self.tool))
    }

    /// Builds the project in `dir` into `dir/build/NAME.wasm` (NAME: the directory's name),
    /// against a world with `capabilities`.
    pub fn build(
        &self,
        dir: &Path,
        capabilities: Capabilities,
        quiet: bool,
    ) -> Result<PathBuf, BuildError> {
        self.build_with(&self.command(), dir, capabilities, quiet)
    }

    /// [`Toolchain::build`] with the tool at `tool`.
    pub fn build_with(
        &self,
        tool: &Path,
        dir: &Path,
        capabilities: Capabilities,
        quiet: bool,
    ) -> Result<PathBuf, BuildError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };
        // build/ is written afresh, never through a link: a project from elsewhere could point
        // build/ or a file in it at any file of the user's.
        let build = dir.join("build");
        match std::fs::symlink_metadata(&build) {
            Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
                return Err(BuildError::Symlink(build));
            }
            _ => {}
        }
        let wit = build.join("wit");
        match std::fs::remove_dir_all(&wit) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(BuildError::Io {
                    path: wit,
                    source: error,
                });
            }
            _ => {}
        }
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
        let out = build.join(format!("{name}.wasm"));
        // What the tool writes is the result, never a file left from before.
        match std::fs::remove_file(&out) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(BuildError::Io {
                    path: out,
                    source: error,
                });
            }
            _ => {}
        }
        let tool = tool.to_path_buf();
        let status = Command::new(&tool)
            .args((self.arguments)(dir, &wit, "warden-node", &out))
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
                    install: self.install.to_string(),
                })
            }
            Err(error) => Err(BuildError::Io {
                path: tool,
                source: error,
            }),
            Ok(output) if !output.status.success() => Err(BuildError::Componentize {
                path: dir.to_path_buf(),
                message: format!(
                    "{} failed{}",
                    self.tool,
                    match String::from_utf8_lossy(&output.stderr).trim() {
                        "" => " (its messages are above)".to_string(),
                        said => format!(": {said}"),
                    }
                ),
            }),
            // componentize-js exits 0 on some failures: no component is no success.
            Ok(_) if !out.is_file() => Err(BuildError::Componentize {
                path: dir.to_path_buf(),
                message: format!("{} wrote no component (its messages are above)", self.tool),
            }),
            Ok(_) => Ok(out),
        }
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
    fn projects_are_told_apart_by_their_source_and_a_cargo_toml_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(of_project(dir.path()).is_none());
        std::fs::write(dir.path().join("app.js"), "").unwrap();
        assert_eq!(
            of_project(dir.path()).map(|t| t.language),
            Some("JavaScript")
        );
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(of_project(dir.path()).map(|t| t.language), Some("Python"));
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert!(of_project(dir.path()).is_none());
    }

    #[test]
    fn warden_toml_names_the_capabilities_or_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            project_capabilities(dir.path()).unwrap(),
            Capabilities::empty()
        );
        let file = dir.path().join(PROJECT_FILE);
        std::fs::write(&file, "capabilities = []\n").unwrap();
        assert_eq!(
            project_capabilities(dir.path()).unwrap(),
            Capabilities::empty()
        );
        std::fs::write(
            &file,
            "capabilities = [\"storage-read\", \"variables-read\"]\n",
        )
        .unwrap();
        assert_eq!(
            project_capabilities(dir.path()).unwrap(),
            Capabilities::STORAGE_READ | Capabilities::VARIABLES_READ
        );
        for (text, says) in [
            ("capabilities = [\"teleport\"]", "teleport"),
            ("capabilites = []", "capabilites"),
            ("capabilities = 3", "capabilities"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = project_capabilities(dir.path()).unwrap_err().to_string();
            assert!(
                error.contains(says) && error.contains("warden.toml"),
                "{text}: {error}"
            );
        }
    }

    /// A project from elsewhere cannot make the build write through a link, nor pass off a
    /// component it ships as the build's.
    #[test]
    fn the_build_writes_through_no_link_and_returns_only_what_the_tool_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("build/wit")).unwrap();
        std::fs::write(project.join("app.js"), "").unwrap();
        std::os::unix::fs::symlink(&victim, project.join("build/wit/node.wit")).unwrap();
        std::fs::write(project.join("build/project.wasm"), "shipped").unwrap();
        // A tool that exits 0 and writes nothing.
        let quiet = Toolchain {
            arguments: |_, _, _, _| Vec::new(),
            tool: "true",
            variable: "WARDEN_TEST_NO_SUCH_VARIABLE",
            ..JAVASCRIPT
        };
        let error = quiet
            .build(&project, Capabilities::empty(), true)
            .unwrap_err();
        assert!(error.to_string().contains("wrote no component"), "{error}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        assert!(!project.join("build/project.wasm").exists());
        // build/ itself a link: refused.
        let linked = dir.path().join("linked");
        std::fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(dir.path(), linked.join("build")).unwrap();
        let error = quiet
            .build(&linked, Capabilities::empty(), true)
            .unwrap_err();
        assert!(matches!(error, BuildError::Symlink(_)), "{error}");
        // warden.toml a link: refused, its target never echoed.
        std::os::unix::fs::symlink(&victim, linked.join(PROJECT_FILE)).unwrap();
        let error = project_capabilities(&linked).unwrap_err();
        assert!(matches!(error, BuildError::Symlink(_)) && !error.to_string().contains("mine"));
        // A hard link to another file, or a FIFO: refused, never read.
        let hard = dir.path().join("hard");
        std::fs::create_dir_all(&hard).unwrap();
        std::fs::hard_link(&victim, hard.join(PROJECT_FILE)).unwrap();
        assert!(matches!(
            project_capabilities(&hard),
            Err(BuildError::Symlink(_))
        ));
        let fifo = dir.path().join("fifo");
        std::fs::create_dir_all(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fifo.join(PROJECT_FILE))
            .status()
            .is_ok_and(|status| status.success());
        if made {
            assert!(matches!(
                project_capabilities(&fifo),
                Err(BuildError::Symlink(_))
            ));
        }
    }

    #[test]
    fn the_install_hints_name_the_pinned_releases() {
        assert!(PYTHON.install.contains(COMPONENTIZE_PY));
        assert!(JAVASCRIPT.install.contains(COMPONENTIZE_JS));
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
