//! `warden new NAME`: a node project in Rust, Python or JavaScript that `warden build` builds
//! and `warden run` runs at once, its world already including the capabilities asked for.

use crate::failure::Failure;
use crate::output::out;
use std::path::{Path, PathBuf};
use warden_host::Capabilities;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Language {
    Rust,
    Python,
    Js,
}

#[derive(clap::Args)]
pub(crate) struct NewArgs {
    /// The node's name (lower-case letters, digits and dashes); the project's directory too.
    name: String,
    #[arg(long, value_enum, default_value = "rust")]
    lang: Language,
    /// Capabilities the node's world includes, comma-separated (`storage-read,variables-read`).
    #[arg(long = "cap", value_name = "CAP[,CAP]...")]
    capabilities: Option<String>,
    /// Where to make the project; ./NAME by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// For a Rust node: the warden-sdk directory (guest-sdk/ of warden's sources) to depend on;
    /// by default the one this warden was built from, when it is still there.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

const LIB_RS: &str = include_str!("../templates/lib.rs.tmpl");
const APP_PY: &str = include_str!("../templates/app.py.tmpl");
const APP_JS: &str = include_str!("../templates/app.js.tmpl");

/// Whether `name` can name a node and a crate: `[a-z][a-z0-9-]*`, at most 64 bytes.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|first| first.is_ascii_lowercase())
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.ends_with('-')
}

fn fill(template: &str, name: &str, grant: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{grant}}", grant)
}

/// The files of the project, by path inside it.
fn files(
    language: Language,
    name: &str,
    capabilities: Capabilities,
    sdk: Option<&Path>,
) -> Vec<(&'static str, String)> {
    let grant = match capabilities.is_empty() {
        true => "none".to_string(),
        false => capabilities.names().join(","),
    };
    let names: Vec<String> = capabilities
        .names()
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect();
    let warden_toml = format!(
        "# The capabilities this node's world includes: `warden build` writes the world from\n\
         # this list, and a run must grant them (`warden run --grant ...`).\n\
         capabilities = [{}]\n",
        names.join(", ")
    );
    match language {
        Language::Rust => {
            let sdk = sdk
                .map(|path| path.display().to_string())
                .unwrap_or_default();
            let cargo_toml = format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n\
                 # A feature of warden-sdk per capability the node uses: its world includes them.\n\
                 [dependencies]\nwarden-sdk = {{ path = {sdk:?}, features = [{}] }}\n\n\
                 [profile.release]\nopt-level = \"s\"\nstrip = \"debuginfo\"\n\n\
                 # A project of its own, not a member of an enclosing workspace.\n[workspace]\n",
                names.join(", ")
            );
            vec![
                ("Cargo.toml", cargo_toml),
                ("src/lib.rs", fill(LIB_RS, name, &grant)),
                (".gitignore", "target/\n".into()),
            ]
        }
        Language::Python => vec![
            ("app.py", fill(APP_PY, name, &grant)),
            ("warden.toml", warden_toml),
            (".gitignore", "build/\n__pycache__/\n".into()),
        ],
        Language::Js => vec![
            ("app.js", fill(APP_JS, name, &grant)),
            ("warden.toml", warden_toml),
            (".gitignore", "build/\nnode_modules/\n".into()),
        ],
    }
}

/// The SDK a Rust project depends on: `--sdk`, else the one this binary was built from.
fn sdk(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    let sdk = given.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-sdk"));
    match sdk.join("Cargo.toml").is_file() {
        true => sdk
            .canonicalize()
            .map_err(|error| Failure::usage(format!("cannot resolve {}: {error}", sdk.display()))),
        false => Err(Failure::usage(format!(
            "no warden-sdk at {}; give the guest-sdk directory of warden's sources with --sdk PATH",
            sdk.display()
        ))),
    }
}

pub(crate) fn execute(args: NewArgs) -> Result<(), Failure> {
    let NewArgs {
        name,
        lang,
        capabilities,
        dir,
        sdk: given_sdk,
    } = args;
    if !valid_name(&name) {
        return Err(Failure::usage(format!(
            "`{name}` cannot name a node: use lower-case letters, digits and dashes, starting with a letter"
        )));
    }
    let capabilities = match capabilities {
        Some(list) => list
            .parse::<Capabilities>()
            .map_err(|error| Failure::usage(format!("--cap: {error}")))?,
        None => Capabilities::empty(),
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(Failure::usage(format!(
            "{} already exists and is not empty; pick another NAME or --dir",
            dir.display()
        )));
    }
    let sdk = match lang {
        Language::Rust => Some(sdk(given_sdk)?),
        _ => None,
    };
    for (path, text) in files(lang, &name, capabilities, sdk.as_deref()) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                Failure::usage(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        std::fs::write(&path, text)
            .map_err(|error| Failure::usage(format!("cannot write {}: {error}", path.display())))?;
    }
    out(&format!("{}\n", dir.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["hello", "a", "text-transform2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Hello",
            "-a",
            "a-",
            "1a",
            "a_b",
            "a/b",
            "..",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_capabilities_reach_the_world_and_the_hint() {
        let caps = Capabilities::STORAGE_READ | Capabilities::VARIABLES_READ;
        let python = files(Language::Python, "notes", caps, None);
        let toml = &python
            .iter()
            .find(|(path, _)| *path == "warden.toml")
            .unwrap()
            .1;
        assert!(
            toml.contains("\"storage-read\", \"variables-read\""),
            "{toml}"
        );
        let app = &python[0].1;
        assert!(
            app.contains("--grant storage-read,variables-read") && !app.contains("{{"),
            "{app}"
        );
        let rust = files(Language::Rust, "my-node", caps, Some(Path::new("/sdk")));
        let cargo = &rust[0].1;
        assert!(
            cargo.contains("features = [\"storage-read\", \"variables-read\"]")
                && cargo.contains("path = \"/sdk\""),
            "{cargo}"
        );
        assert!(rust[1].1.contains("\"$(warden build .)\""), "{}", rust[1].1);
        let js = files(Language::Js, "n", Capabilities::empty(), None);
        assert!(js[0].1.contains("--grant none"), "{}", js[0].1);
    }
}
