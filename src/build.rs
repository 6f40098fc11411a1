//! `warden build`: compile a node crate for a wasm target and turn it into a component, or
//! build a Python or JavaScript node with its language's toolchain (`build::toolchain`).

pub mod toolchain;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The wasm targets a node can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// No WASI at all: the component imports only warden's interfaces (the default).
    #[value(name = "wasm32-unknown-unknown")]
    Unknown,
    /// WASI preview 2: Rust's standard library works (stdout lands in the node's log).
    #[value(name = "wasm32-wasip2")]
    Wasip2,
}

impl Target {
    pub fn triple(self) -> &'static str {
        match self {
            Target::Unknown => "wasm32-unknown-unknown",
            Target::Wasip2 => "wasm32-wasip2",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no Cargo.toml at {0}; give the path of a node crate (or of a Python or JavaScript node: a directory with app.py or app.js)"
    )]
    NoManifest(PathBuf),
    #[error("cannot run cargo: {0}")]
    Cargo(std::io::Error),
    #[error(
        "the wasm target {target} is not installed and rustup could not add it; run `rustup target add {target}`"
    )]
    TargetMissing { target: &'static str },
    #[error("cargo build failed (its messages are above)")]
    CompileFailed,
    #[error("cargo built no cdylib; a node crate needs `[lib] crate-type = [\"cdylib\"]`")]
    NoArtifact,
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot turn {path} into a component: {message}")]
    Componentize { path: PathBuf, message: String },
    #[error("{path}: {message}; it may hold `capabilities = [\"storage-read\", ...]`")]
    Project { path: PathBuf, message: String },
    #[error(
        "{0} is a symbolic or hard link, or not a plain file or directory; warden build reads and writes only the project's own files: replace it with one"
    )]
    Symlink(PathBuf),
    #[error("{tool} is not installed; install it with: {install}")]
    ToolMissing { tool: String, install: String },
}

/// Options for one build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub target: Target,
    pub release: bool,
    /// Cargo features to enable on the node crate.
    pub features: Vec<String>,
    /// Where cargo puts its output; cargo's default when `None`.
    pub target_dir: Option<PathBuf>,
    pub quiet: bool,
    /// For a Python or JavaScript project: capabilities its world includes beyond those its
    /// `warden.toml` names (a Rust crate says them with the SDK's features).
    pub capabilities: warden_host::Capabilities,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            target: Target::Unknown,
            release: true,
            features: Vec::new(),
            target_dir: None,
            quiet: false,
            capabilities: warden_host::Capabilities::empty(),
        }
    }
}

/// Builds the node crate (or every cdylib of the workspace) at `path`; returns the components.
pub fn build(path: &Path, options: &BuildOptions) -> Result<Vec<PathBuf>, BuildError> {
    if let Some(toolchain) = toolchain::of_project(path) {
        let capabilities = toolchain::project_capabilities(path)? | options.capabilities;
        return toolchain
            .build(path, capabilities, options.quiet)
            .map(|built| vec![built]);
    }
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_path_buf()
    };
    if !manifest.is_file() {
        return Err(BuildError::NoManifest(manifest));
    }
    ensure_target(options.target)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "--target",
            options.target.triple(),
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(if options.quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if options.release {
        command.arg("--release");
    }
    if !options.features.is_empty() {
        command.arg("--features").arg(options.features.join(","));
    }
    if let Some(dir) = &options.target_dir {
        command.arg("--target-dir").arg(dir);
    }
    let output = command.output().map_err(BuildError::Cargo)?;
    if !output.status.success() {
        if options.quiet {
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
        }
        return Err(BuildError::CompileFailed);
    }
    let modules = cdylib_artifacts(&String::from_utf8_lossy(&output.stdout));
    if modules.is_empty() {
        return Err(BuildError::NoArtifact);
    }
    modules.iter().map(|module| componentize(module)).collect()
}

/// The `.wasm` files of the cdylibs in cargo's JSON messages.
fn cdylib_artifacts(messages: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let files = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|file| file.as_str());
        found.extend(
            files
                .filter(|file| file.ends_with(".wasm"))
                .map(PathBuf::from),
        );
    }
    found
}

/// Writes the component for `module` to `<dir>/component/<name>.wasm`. A module from
/// `wasm32-unknown-unknown` is encoded with wit-component; `wasm32-wasip2` output already is one.
pub fn componentize(module: &Path) -> Result<PathBuf, BuildError> {
    let io = |source| BuildError::Io {
        path: module.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(module).map_err(io)?;
    let component = if wasmparser::Parser::is_component(&bytes) {
        bytes
    } else {
        wit_component::ComponentEncoder::default()
            .module(&bytes)
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|error| BuildError::Componentize {
                path: module.to_path_buf(),
                message: format!("{error:#}"),
            })?
    };
    let dir = module.parent().unwrap_or(Path::new(".")).join("component");
    std::fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
        path: dir.clone(),
        source,
    })?;
    let out = dir.join(module.file_name().unwrap_or_default());
    std::fs::write(&out, component).map_err(|source| BuildError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// Adds the wasm target with rustup when the toolchain lacks it.
fn ensure_target(target: Target) -> Result<(), BuildError> {
    let triple = target.triple();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", triple])
        .output();
    if let Ok(output) = libdir {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() && Path::new(&dir).is_dir() {
            return Ok(());
        }
    }
    eprintln!("warden: installing the {triple} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => Err(BuildError::TargetMissing { target: triple }),
    }
}
