//! `cargo xtask demo` builds the example nodes and runs them through the `warden` CLI;
//! `cargo xtask test` runs the whole test suite. Both install the wasm targets first.
//! `cargo xtask deny` checks the dependency trees against deny.toml; `cargo xtask licenses`
//! regenerates the license inventory in thirdparty/ (`--check`: fails when it is stale).
//! `cargo xtask soak [--runs N]` runs the soak of tests/e2e/soak.rs longer than the test suite does.
//! `cargo xtask bench` runs the benchmark suite (benches/suite.rs) and writes docs/BENCHMARKS.md;
//! the test suite runs it once, quickly, only to prove it still builds and runs (and the Extism
//! bench of benches/extism/ likewise). `cargo xtask deploy-check` checks deploy/ against the
//! Kubernetes and Compose schemas (the test suite does too).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip2"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "demo" => install_targets().and_then(|()| demo()),
        "test" => install_targets().and_then(|()| test()),
        "fuzz" => {
            let seconds = std::env::args()
                .nth(2)
                .and_then(|text| text.parse().ok())
                .unwrap_or(60);
            fuzz(seconds)
        }
        "deny" => deny(),
        "deploy-check" => deploy_check(),
        "bench" => install_targets().and_then(|()| bench()),
        "soak" => soak_runs().and_then(|runs| install_targets().and_then(|()| soak(runs))),
        "licenses" => match std::env::args().nth(2).as_deref() {
            None => licenses(Inventory::Write),
            Some("--check") => licenses(Inventory::Check),
            Some(other) => Err(format!(
                "unknown argument `{other}`: use `cargo xtask licenses [--check]`"
            )),
        },
        _ => Err(
            "usage: cargo xtask demo | cargo xtask test | cargo xtask fuzz [SECONDS] | \
                  cargo xtask deny | cargo xtask licenses [--check] | cargo xtask soak [--runs N] | \
                  cargo xtask bench | cargo xtask deploy-check"
                .to_string(),
        ),
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
    let started = std::time::Instant::now();
    let mut steps = StepClock::default();
    let mut command = cargo();
    // The OTLP export is behind a feature: on for this one build, so that its test (spans
    // reaching a loopback receiver, daemon/tests/otlp.rs) runs with the rest rather than
    // rebuilding the daemon in a second pass (7 minutes of a CI run).
    command.args([
        "test",
        "--workspace",
        "--all-targets",
        "--features",
        "warden-daemon/otlp",
    ]);
    if steps.time("PostgreSQL found or installed", postgresql) {
        // Installed or found: the cluster tests must then run, not skip.
        command.env("WARDEN_REQUIRE_SERVICES", "1");
    }
    if let Some(moto) = steps.time("moto (S3) found or installed", moto) {
        // Installed or found: the object storage tests must then run, not skip.
        command
            .env("WARDEN_MOTO_BIN", moto)
            .env("WARDEN_REQUIRE_S3", "1");
    }
    steps.time("cargo test --workspace --all-targets", || run(command))?;
    let mut doc = cargo();
    // With the same features as the build above, whose libraries it reuses.
    doc.args([
        "test",
        "--workspace",
        "--doc",
        "--features",
        "warden-daemon/otlp",
    ]);
    steps.time("doc tests", || run(doc))?;
    // The Extism bench builds and runs once (its suite's quick pass ran with the benches above).
    steps.time("Extism bench, quick", || extism(false, &["--quick"]))?;
    steps.time("cargo audit", audit)?;
    steps.time("deploy-check", deploy_check)?;
    steps.time("cargo deny", deny)?;
    steps.time("license inventory check", || licenses(Inventory::Check))?;
    // The fuzz targets (`cargo xtask fuzz`) are not run here: their nightly sanitizer build of
    // Wasmtime took 1,662 s of a 5,372 s run on two cores, past what CI's 90 minutes allow.
    steps.report(started.elapsed());
    Ok(())
}

/// How long each step of `cargo xtask test` took, printed as each ends and summed at the end,
/// so that a slow CI run says where its time went.
#[derive(Default)]
struct StepClock {
    done: Vec<(&'static str, std::time::Duration)>,
}

impl StepClock {
    fn time<T>(&mut self, name: &'static str, step: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let outcome = step();
        let took = started.elapsed();
        eprintln!("xtask: {name}: {:.0} s", took.as_secs_f64());
        self.done.push((name, took));
        outcome
    }

    fn report(&self, total: std::time::Duration) {
        eprintln!("xtask: test steps, in seconds:");
        for (name, took) in &self.done {
            eprintln!("  {:>6.0}  {name}", took.as_secs_f64());
        }
        eprintln!("  {:>6.0}  total", total.as_secs_f64());
    }
}

/// Whether this runs as root (who may install Debian packages).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Runs apt-get with `args`, without questions: whether it succeeded.
fn apt(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs Debian's package `name`, updating the package lists first if that is what it takes
/// (a fresh machine's may be empty or stale).
fn apt_install(name: &str) -> bool {
    let install = ["install", "-y", "-q", "--no-install-recommends", name];
    apt(&install) || (apt(&["update", "-q"]) && apt(&install))
}

/// Whether PostgreSQL's server binaries are here, for the cluster tests: found, or installed
/// from Debian's `postgresql` package when this runs as root with apt. The tests start their
/// own server in a temporary directory; without one they skip, saying why.
fn postgresql() -> bool {
    let root = is_root();
    // What the tests need (cluster/src/test_services.rs): initdb and postgres side by side,
    // and, as root, a `postgres` user to run them as.
    let usable = || {
        let user = !root
            || std::fs::read_to_string("/etc/passwd")
                .is_ok_and(|passwd| passwd.lines().any(|line| line.starts_with("postgres:")));
        let binaries = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .any(|version| {
                let bin = version.path().join("bin");
                bin.join("initdb").exists() && bin.join("postgres").exists()
            });
        user && binaries
    };
    if std::env::var_os("WARDEN_PG_BIN").is_some() || usable() {
        return true;
    }
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        eprintln!(
            "PostgreSQL is not installed and cannot be installed here (apt-get as root): the \
             cluster tests will skip. Install Debian's `postgresql` package to run them."
        );
        return false;
    }
    eprintln!(
        "installing PostgreSQL for the cluster tests (Debian's postgresql package, once; \
         without the package's default cluster, as /etc/postgresql-common/createcluster.conf now says)"
    );
    // The tests make their own servers: the package's default cluster would only be a server
    // left running on port 5432 (and at every boot). Written only where nothing is configured.
    let conf = Path::new("/etc/postgresql-common/createcluster.conf");
    if !conf.exists() {
        let _ = std::fs::create_dir_all("/etc/postgresql-common");
        let _ = std::fs::write(conf, "create_main_cluster = false\n");
    }
    let done = apt_install("postgresql");
    if !done || !usable() {
        eprintln!("PostgreSQL could not be installed: the cluster tests will skip");
        return false;
    }
    true
}

/// The S3-compatible server of the object storage tests, from PyPI: 5.2.5 honours conditional
/// writes (If-None-Match), which create-if-absent needs.
const MOTO: &str = "moto[server]==5.2.5";

/// `moto_server` for the object storage tests: installed from PyPI into a virtualenv under the
/// target directory when it is not there yet (with Debian's python3-venv first, as root with
/// apt, when Python cannot make one). `None`, saying why, when it cannot be installed: the
/// tests then skip.
fn moto() -> Option<PathBuf> {
    let venv = target_dir().join("tools").join("moto-venv");
    let binary = venv.join("bin").join("moto_server");
    let installed = || {
        Command::new(venv.join("bin").join("pip"))
            .args(["show", "-q", "moto", "flask"])
            .output()
            .is_ok_and(|output| output.status.success())
            && binary.exists()
    };
    if installed() {
        return Some(binary);
    }
    eprintln!("xtask: installing {MOTO} from PyPI for the object storage tests (once)");
    let make_venv = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .is_ok_and(|status| status.success())
    };
    let root = is_root();
    let mut made = make_venv();
    if !made && root && Path::new("/usr/bin/apt-get").exists() {
        made = apt_install("python3-venv") && make_venv();
    }
    let done = made
        && Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", MOTO])
            .status()
            .is_ok_and(|status| status.success());
    if !done || !installed() {
        eprintln!(
            "xtask: moto could not be installed (python3 -m venv and PyPI are needed): the \
             object storage tests will skip"
        );
        return None;
    }
    Some(binary)
}

/// The versions of the schema checkers `cargo xtask deploy-check` installs from PyPI.
const DEPLOY_CHECKERS: [&str; 2] = ["kubernetes-validate==1.37.0", "check-jsonschema==0.39.0"];

/// The deployment files against their schemas: every manifest in deploy/kubernetes/ with
/// kubernetes-validate (strict: an unknown field is an error; Kubernetes 1.37), and
/// deploy/compose/compose.yaml with check-jsonschema's Compose Specification schema. Both come
/// from PyPI, into a virtualenv under the target directory; where Python's venv or PyPI is not
/// available the check is skipped, saying so.
fn deploy_check() -> Result<(), String> {
    let venv = target_dir().join("tools").join("deploy-venv");
    let bin = venv.join("bin");
    let installed = || {
        Command::new(bin.join("pip"))
            .args(["show", "-q", "kubernetes-validate", "check-jsonschema"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if !installed() {
        eprintln!(
            "xtask: installing {} from PyPI (once)",
            DEPLOY_CHECKERS.join(" and ")
        );
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|status| status.success());
        let done = made
            && Command::new(bin.join("pip"))
                .args(["install", "-q"])
                .args(DEPLOY_CHECKERS)
                .status()
                .is_ok_and(|status| status.success());
        if !done {
            eprintln!(
                "xtask: the deployment files were NOT checked: the schema checkers could not be \
                 installed (python3 -m venv and PyPI are needed)"
            );
            return Ok(());
        }
    }
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .map_err(|error| format!("cannot read deploy/kubernetes: {error}"))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    manifests.sort();
    let mut kubernetes = Command::new(bin.join("kubernetes-validate"));
    kubernetes.args(["--strict", "--quiet"]).args(&manifests);
    run(kubernetes)?;
    let mut compose = Command::new(bin.join("check-jsonschema"));
    compose
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(root().join("deploy/compose/compose.yaml"));
    run(compose)?;
    eprintln!(
        "xtask: {} Kubernetes manifests and the Compose file match their schemas",
        manifests.len()
    );
    Ok(())
}

/// The target directory: `$CARGO_TARGET_DIR`, or `target/` in the repository.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The Extism bench (benches/extism/, a workspace of its own: Extism is built on another
/// Wasmtime), with `args`: `--quick`, or `--out FILE`.
fn extism(release: bool, args: &[&str]) -> Result<(), String> {
    let mut command = cargo();
    command.arg("run");
    if release {
        command.arg("--release");
    }
    command
        .args(["--manifest-path", "benches/extism/Cargo.toml"])
        // In the environment, so that the bench builds its plugin there too.
        .env("CARGO_TARGET_DIR", target_dir().join("extism"))
        .arg("--")
        .args(args);
    run(command)
}

/// The oha version `cargo xtask bench` installs to load the daemon.
const OHA: &str = "1.16.0";

/// oha, installed from crates.io under the target directory when it is not there yet; `None`,
/// with a message, when it cannot be installed here.
fn oha() -> Option<PathBuf> {
    let tools = target_dir().join("tools");
    let binary = tools.join("bin").join("oha");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(OHA));
    if installed {
        return Some(binary);
    }
    println!(
        "xtask: installing oha {OHA} (the daemon's load generator) into {}",
        tools.display()
    );
    let mut install = cargo();
    install
        .args(["install", "oha", "--locked", "--version", OHA, "--root"])
        .arg(&tools);
    match run(install) {
        Ok(()) => Some(binary),
        Err(error) => {
            println!("xtask: {error}; the daemon's throughput is not measured");
            None
        }
    }
}

/// The benchmark suite, measured (release build), writing docs/BENCHMARKS.md and its charts:
/// first Extism's bench, whose results the suite folds in, then the suite, with oha to load
/// the daemon.
fn bench() -> Result<(), String> {
    let results = target_dir().join("bench");
    std::fs::create_dir_all(&results)
        .map_err(|error| format!("cannot create {}: {error}", results.display()))?;
    let extism_results = results.join("extism.json");
    let _ = std::fs::remove_file(&extism_results);
    extism(true, &["--out", &extism_results.to_string_lossy()])?;
    let mut command = cargo();
    command
        .args(["bench", "--bench", "suite"])
        .env("WARDEN_BENCH_EXTISM", &extism_results);
    if let Some(oha) = oha() {
        command.env("WARDEN_BENCH_OHA", oha);
    }
    run(command)
}

/// The runs `cargo xtask soak` makes: `--runs N`, 5,000 when not given.
fn soak_runs() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    match args.as_slice() {
        [] => Ok(5_000),
        [flag, runs] if flag == "--runs" => match runs.parse::<usize>() {
            Ok(runs) if (1..=10_000_000).contains(&runs) => Ok(runs),
            _ => Err(format!(
                "--runs takes a number of runs from 1 to 10000000, not `{runs}`"
            )),
        },
        _ => Err("usage: cargo xtask soak [--runs N]".into()),
    }
}

/// Runs tests/e2e/soak.rs with `runs` runs (the test suite runs 600).
fn soak(runs: usize) -> Result<(), String> {
    let mut command = cargo();
    command
        .args([
            "test",
            "--test",
            "e2e",
            "--",
            "--exact",
            "soak::a_bounded_soak_of_mixed_benign_and_hostile_runs",
            "--nocapture",
        ])
        .env("WARDEN_SOAK_RUNS", runs.to_string());
    run(command)
}

const FUZZ_TARGETS: [&str; 6] = [
    "package",
    "manifest",
    "index",
    "log",
    "node_boundary",
    "node_text",
];

/// Runs each cargo-fuzz target (libFuzzer, nightly) for `seconds`. Nightly Rust and
/// cargo-fuzz are installed when missing (with rustup and from crates.io); when that is not
/// possible here, or the fuzz build fails on this nightly, the libFuzzer run is skipped with a
/// message, and only the bounded stable mutation run in tests/e2e/fuzz_parsers.rs (part of the
/// suite) has exercised the same targets. A crash found while fuzzing fails the run.
fn fuzz(seconds: u64) -> Result<(), String> {
    let dir = root().join("fuzz");
    // The rustup proxy, not $CARGO: only the proxy understands `+nightly`.
    let nightly = || {
        let mut command = Command::new("cargo");
        command.current_dir(&dir).arg("+nightly");
        command
    };
    let works = |mut command: Command| command.output().is_ok_and(|output| output.status.success());
    let skip = |why: &str| {
        println!(
            "xtask: {why}, so the libFuzzer run is skipped (the stable mutation run in \
             tests/e2e/fuzz_parsers.rs ran)"
        );
        Ok(())
    };
    let mut has_nightly = nightly();
    has_nightly.arg("--version");
    if !works(has_nightly) {
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        if run(install).is_err() {
            return skip("nightly Rust cannot be installed here");
        }
    }
    let mut has_fuzz = nightly();
    has_fuzz.args(["fuzz", "--version"]);
    if !works(has_fuzz) {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        if run(install).is_err() {
            return skip("cargo-fuzz cannot be installed here");
        }
    }
    let mut build = nightly();
    build.args(["fuzz", "build"]);
    if run(build).is_err() {
        return skip("the fuzz targets do not build on this nightly");
    }
    for target in FUZZ_TARGETS {
        println!("xtask: fuzzing {target} for {seconds} s");
        let mut command = nightly();
        command.args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
            "-timeout=10",
        ]);
        run(command)?;
    }
    Ok(())
}

/// Checks Cargo.lock against the RustSec advisory database, offline: the one in
/// $WARDEN_ADVISORY_DB, or ../shared/advisory-db beside the repository. cargo-audit is
/// installed from crates.io when missing. Any vulnerable dependency fails the run.
fn audit() -> Result<(), String> {
    let db = std::env::var_os("WARDEN_ADVISORY_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/advisory-db"));
    if !db.is_dir() {
        println!(
            "xtask: no advisory database at {}; dependency audit skipped (set WARDEN_ADVISORY_DB)",
            db.display()
        );
        return Ok(());
    }
    // The prebuilt binary in ../shared/bin when there is one: installing takes about 6 minutes.
    let binary = tool("cargo-audit", &[]).ok_or(
        "cargo-audit is not in ../shared/bin, not on PATH and cannot be installed; install it \
         with `cargo install --locked cargo-audit`",
    )?;
    let mut audit = Command::new(binary);
    audit
        .current_dir(root())
        .args(["audit", "--no-fetch", "--db"])
        .arg(&db);
    run(audit)
}

/// The binary of the cargo subcommand `name` (cargo-audit, cargo-deny, cargo-about): the prebuilt one in
/// ../shared/bin beside the repository, else the one on PATH or in $CARGO_HOME/bin, else one
/// installed now with `cargo install --locked name EXTRA`. None when none of that gives a binary
/// that runs.
fn tool(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let runs = |path: &PathBuf| {
        Command::new(path)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    let candidates = || {
        let mut paths = vec![root().join("../shared/bin").join(name), PathBuf::from(name)];
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
        if let Some(home) = home {
            paths.push(home.join("bin").join(name));
        }
        paths.into_iter().find(runs)
    };
    if let Some(found) = candidates() {
        return Some(found);
    }
    let mut install = cargo();
    install.args(["install", "--locked", name]).args(extra);
    if let Err(error) = run(install) {
        println!("xtask: {error}");
        return None;
    }
    candidates()
}

/// Downloads every crate in `workspace`'s lock file, for every platform (crates.io only), so
/// that cargo-deny and cargo-about can then run offline. The main workspace's Cargo.lock must be
/// current (`--locked`); the other lock files are brought up to date first, as their own builds
/// (`warden build`, `cargo fuzz`) do.
fn fetch(workspace: &str) -> Result<(), String> {
    let mut fetch = cargo();
    fetch.arg("fetch");
    if workspace == "." {
        fetch.arg("--locked");
    }
    fetch.arg("--manifest-path").arg(manifest(workspace));
    run(fetch)
}

/// The Cargo.toml of `workspace`, a directory relative to the repository root.
fn manifest(workspace: &str) -> PathBuf {
    match workspace {
        "." => root().join("Cargo.toml"),
        _ => root().join(workspace).join("Cargo.toml"),
    }
}

/// The workspaces with a lock file of their own: the main one, the example nodes, the test nodes
/// and the fuzz targets.
const WORKSPACES: [&str; 4] = [".", "nodes", "tests/nodes", "fuzz"];

/// The directory name cargo-deny gives its clone of https://github.com/rustsec/advisory-db.
const DENY_DB: &str = "advisory-db-3157b0e258782691";

/// Runs `cargo deny --offline check` with deny.toml on every workspace: advisories (the database
/// of `audit`, copied to target/advisory-dbs as the git checkout cargo-deny reads), a license
/// allowlist, bans on OpenSSL, native-tls and aws-lc, and crates.io as the only source. cargo-deny
/// is installed when missing; when it cannot be, the check is skipped with a message. Any
/// finding fails the run.
fn deny() -> Result<(), String> {
    let started = Instant::now();
    let Some(deny) = tool("cargo-deny", &[]) else {
        println!(
            "xtask: cargo-deny is not in ../shared/bin, not on PATH and cannot be installed; \
             cargo deny check skipped (install it with `cargo install --locked cargo-deny`)"
        );
        return Ok(());
    };
    let checks: &[&str] = match deny_database() {
        Ok(()) => &["advisories", "bans", "licenses", "sources"],
        Err(why) => {
            println!(
                "xtask: {why}; cargo deny checks bans, licenses and sources only (set \
                 WARDEN_ADVISORY_DB to a copy of the RustSec advisory database)"
            );
            &["bans", "licenses", "sources"]
        }
    };
    for workspace in WORKSPACES {
        fetch(workspace)?;
        println!(
            "xtask: cargo deny check {} in {workspace}",
            checks.join(" ")
        );
        let mut check = Command::new(&deny);
        check
            .current_dir(root())
            .args(["--offline", "--manifest-path"])
            .arg(manifest(workspace))
            .arg("--config")
            .arg(root().join("deny.toml"))
            .arg("check")
            .args(checks)
            // The libfuzzer-sys exception is for fuzz/ only.
            .args(["--allow", "license-exception-not-encountered"]);
        if workspace != "." {
            // The allowlist is the main workspace's; the smaller ones need only part of it.
            check.args(["--allow", "license-not-encountered"]);
        }
        run(check)?;
    }
    println!(
        "xtask: cargo deny passed on {} workspaces in {:.1} s",
        WORKSPACES.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Copies the advisory database `audit` uses to target/advisory-dbs/advisory-db-3157b0e258782691
/// (deny.toml's db-path) and makes the copy a git checkout, which cargo-deny needs even offline.
/// The copy is made afresh each time; the database itself is never written to.
fn deny_database() -> Result<(), String> {
    let source = std::env::var_os("WARDEN_ADVISORY_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/advisory-db"));
    if !source.is_dir() {
        return Err(format!("no advisory database at {}", source.display()));
    }
    let copy = root().join("target/advisory-dbs").join(DENY_DB);
    match std::fs::remove_dir_all(&copy) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot remove {}: {error}", copy.display())),
    }
    copy_tree(&source, &copy)?;
    if copy.join(".git").exists() {
        return Ok(());
    }
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        command
            .current_dir(&copy)
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "user.name=xtask",
                "-c",
                "user.email=xtask@localhost",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
            ])
            .args(args);
        command
            .output()
            .map_err(|error| format!("cannot start git: {error}"))
            .and_then(|output| {
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "git {} failed in {}: {}",
                        args.join(" "),
                        copy.display(),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            })
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&[
        "commit",
        "-q",
        "--no-verify",
        "-m",
        "advisory database snapshot",
    ])
}

/// Copies the files under `from` to `to`, as new files the current user owns (the source may be
/// read-only).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to)
        .map_err(|error| format!("cannot create {}: {error}", to.display()))?;
    let entries = std::fs::read_dir(from)
        .map_err(|error| format!("cannot read {}: {error}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot read {}: {error}", from.display()))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            let bytes = std::fs::read(&path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            std::fs::write(&target, bytes)
                .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
        }
    }
    Ok(())
}

/// The third-party license inventory, generated by cargo-about from about.toml and the template.
const INVENTORY: &str = "thirdparty/LICENSES.md";
const INVENTORY_TEMPLATE: &str = "thirdparty/about.hbs";

#[derive(Clone, Copy, PartialEq)]
enum Inventory {
    /// Regenerate thirdparty/LICENSES.md.
    Write,
    /// Regenerate into target/ and fail when thirdparty/LICENSES.md differs.
    Check,
}

/// Generates the license inventory of the main workspace's dependencies with cargo-about
/// (offline, from the crates' own license files), into thirdparty/LICENSES.md or, to check it,
/// into target/ to compare. cargo-about is installed when missing; when it cannot be, the check
/// is skipped with a message, and regenerating fails.
fn licenses(mode: Inventory) -> Result<(), String> {
    let started = Instant::now();
    let Some(about) = tool("cargo-about", &["--features", "cli"]) else {
        let why = "cargo-about is not in ../shared/bin, not on PATH and cannot be installed";
        let how = "install it with `cargo install --locked cargo-about --features cli`";
        return match mode {
            Inventory::Write => Err(format!("{why}; {how}")),
            Inventory::Check => {
                println!("xtask: {why}; license inventory check skipped ({how})");
                Ok(())
            }
        };
    };
    fetch(".")?;
    let output = match mode {
        Inventory::Write => root().join(INVENTORY),
        Inventory::Check => root().join("target/thirdparty/LICENSES.md"),
    };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    println!("xtask: generating the license inventory with cargo-about (about 2 CPU-minutes)");
    let mut generate = Command::new(&about);
    generate
        .current_dir(root())
        .args(["generate", "--frozen", "--workspace", "--fail", "--config"])
        .arg(root().join("about.toml"))
        .arg("--output-file")
        .arg(&output)
        .arg(root().join(INVENTORY_TEMPLATE));
    run(generate)?;
    let seconds = started.elapsed().as_secs_f64();
    if mode == Inventory::Write {
        println!("xtask: wrote {INVENTORY} in {seconds:.1} s");
        return Ok(());
    }
    let fresh = std::fs::read(&output)
        .map_err(|error| format!("cannot read {}: {error}", output.display()))?;
    let committed = std::fs::read(root().join(INVENTORY)).unwrap_or_default();
    if fresh != committed {
        return Err(format!(
            "{INVENTORY} is stale: it does not match Cargo.lock, about.toml and \
             {INVENTORY_TEMPLATE} (the fresh one is {}). Run `cargo xtask licenses` and commit \
             the result",
            output.display()
        ));
    }
    println!("xtask: {INVENTORY} is up to date (checked in {seconds:.1} s)");
    Ok(())
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
    registry_demo()?;
    println!(
        "\nThe demo ran every example node. Next: target/debug/warden --help, docs/capabilities.md, docs/registry.md."
    );
    Ok(())
}

/// A host daemon on loopback whose manifest loads the example nodes from the demo's registry,
/// called over HTTPS as a caller would: a run answered whole, one streamed, a limit hit and a
/// denial as the caller sees them, and a few lines of its metrics.
fn daemon_demo(dir: &std::path::Path, registry: &str, token_file: &str) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    println!("\n# The host daemon: nodes loaded by manifest from the registry, run over HTTPS.");
    let path = |name: &str| dir.join(name).to_string_lossy().to_string();
    let registry_key = std::fs::read_to_string(path("registry/registry.pub"))
        .map_err(|error| format!("cannot read the registry's key: {error}"))?;
    let manifest = format!(
        r#"[api]
listen = "127.0.0.1:0"

[metrics]
listen = "127.0.0.1:0"

[storage]
data_dir = "daemon"

[[registries]]
name = "demo"
url = "{registry}"
root_key = "{}"
ca_certs = ["registry/tls/cert.pem"]
token_file = "{token_file}"

[[nodes]]
name = "text-transform"
# Enough fuel for short texts, not for long ones: the demo hits it on purpose.
limits = {{ preset = "default", fuel = 200000 }}

[[nodes]]
name = "greeter"
grant = ["variables-read", "cache-read", "cache-write", "streaming"]

[[nodes]]
name = "fetch-json"
grant = ["http-get"]
allowed_hosts = ["api.example.com"]
"#,
        registry_key.trim()
    );
    let manifest_path = path("host.toml");
    std::fs::write(&manifest_path, &manifest)
        .map_err(|error| format!("cannot write {manifest_path}: {error}"))?;
    println!("{manifest_path}:\n{manifest}");
    // A key for the demo only; real ones come from `openssl rand -hex 32`.
    let key = "demo-key-not-for-production-0001";
    let mut daemon = Command::new(root().join("target/debug/warden"))
        .args([
            "serve",
            "--manifest",
            &manifest_path,
            "--log-format",
            "text",
        ])
        .env("WARDEN_API_KEY", key)
        .env("WARDEN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start the daemon: {error}"))?;
    let mut api = String::new();
    let mut metrics = String::new();
    if let Some(stdout) = daemon.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  daemon: {line}");
            if let Some(address) = line.strip_prefix("metrics on ") {
                metrics = address.trim_end_matches("/metrics").to_string();
            }
            if let Some(address) = line.strip_prefix("listening on ") {
                api = address.trim().to_string();
                break;
            }
        }
    }
    let ca = path("daemon/tls/cert.pem");
    let result = (|| {
        if api.is_empty() {
            return Err("the daemon did not start".to_string());
        }
        let call_shown = |args: &[&str], may_fail: bool, shown: bool| -> Result<String, String> {
            let mut all = vec!["call"];
            all.extend_from_slice(args);
            if !args.contains(&"--daemon") {
                all.extend(["--daemon", api.as_str()]);
            }
            all.extend(["--ca-cert", ca.as_str()]);
            println!("\n$ warden {}", all.join(" "));
            let output = Command::new(root().join("target/debug/warden"))
                .args(&all)
                .env("WARDEN_API_KEY", key)
                .output()
                .map_err(|error| format!("cannot start warden: {error}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            if shown {
                print!("{stdout}");
            }
            if !output.status.success() {
                eprint!("{}", String::from_utf8_lossy(&output.stderr));
                if !may_fail {
                    return Err("warden call failed".into());
                }
            }
            Ok(stdout)
        };
        let call = |args: &[&str], may_fail: bool| call_shown(args, may_fail, true);
        call(&["GET", "/readyz"], false).map(|_| ())?;
        call(
            &[
                "POST",
                "/v1/runs",
                "--data",
                r#"{"node": "text-transform", "inputs": {"text": "hello over https"}}"#,
            ],
            false,
        )?;
        println!("\n# Streamed as the node produces it (NDJSON):");
        call(
            &[
                "POST",
                "/v1/runs",
                "--stream",
                "--data",
                r#"{"node": "greeter", "variables": {"name": "Ada"}}"#,
            ],
            false,
        )?;
        println!("\n# A limit hit, as the caller sees it (422, a code that names the limit):");
        let long = format!(
            r#"{{"node": "text-transform", "inputs": {{"text": "{}"}}}}"#,
            "many words ".repeat(2000)
        );
        call(&["POST", "/v1/runs", "--data", &long], true)?;
        println!("\n# A denial: the node asks for a host the manifest does not allow:");
        call(
            &[
                "POST",
                "/v1/runs",
                "--data",
                r#"{"node": "fetch-json", "inputs": {"url": "https://not-allowed.example.net/data.json"}}"#,
            ],
            true,
        )?;
        println!("\n# A few lines of /metrics (the separate metrics listener):");
        let scraped = call_shown(
            &["GET", "/metrics", "--daemon", metrics.as_str()],
            false,
            false,
        );
        if let Ok(text) = scraped {
            for line in text.lines().filter(|line| {
                line.starts_with("warden_runs_total")
                    || line.starts_with("warden_limit_hits_total")
                    || line.starts_with("warden_denials_total")
            }) {
                println!("  {line}");
            }
        }
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    result
}

/// Writes `secret` to a new file at `path` that only its owner can read; returns the path.
fn secret_file(path: &str, secret: &str) -> Result<String, String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(secret.as_bytes()))
        .map_err(|error| format!("cannot write {path}: {error}"))?;
    Ok(path.to_string())
}

/// Publishes a signed node to a registry on loopback and installs and runs it from there.
fn registry_demo() -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    println!("\n# A registry on loopback (TLS, HTTP/2): sign, publish, install, run.");
    let dir = std::env::temp_dir().join(format!("warden-registry-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let path = |name: &str| dir.join(name).to_string_lossy().to_string();
    let mut server = Command::new(root().join("target/debug/warden"))
        .args([
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            &path("registry"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start the registry: {error}"))?;
    let mut url = String::new();
    let mut owner = String::new();
    if let Some(stdout) = server.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  registry: {line}");
            if let Some(token) = line
                .split_whitespace()
                .find(|word| word.starts_with("wdn_pat_"))
            {
                owner = token.to_string();
            }
            if let Some(rest) = line.strip_prefix("listening on ") {
                url = rest.trim().to_string();
                break;
            }
        }
    }
    let result = (|| {
        if url.is_empty() || owner.is_empty() {
            return Err("the registry did not start".to_string());
        }
        let ca = path("registry/tls/cert.pem");
        let common = ["--registry", url.as_str(), "--ca-cert", ca.as_str()];
        // Tokens go in files readable by their owner only: on the command line, other local
        // users could read them in the process list.
        let with = |args: &[&str], token_file: &str| -> Vec<String> {
            let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
            all.extend(common.iter().map(|arg| arg.to_string()));
            all.extend(["--token-file".to_string(), token_file.to_string()]);
            all
        };
        let owner = secret_file(&path("owner.token"), &owner)?;
        let call = |args: Vec<String>| {
            let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
            warden(&borrowed)
        };
        call(with(
            &[
                "registry",
                "user",
                "alice",
                "--role",
                "publisher",
                "--publisher",
                "acme",
            ],
            &owner,
        ))?;
        let alice = call(with(&["registry", "token", "--user", "alice"], &owner))?;
        let alice = secret_file(&path("alice.token"), alice.trim())?;
        warden(&["keygen", "--out", &path("acme")])?;
        call(with(
            &["registry", "key", "acme", &path("acme.pub")],
            &alice,
        ))?;
        let text = component("text-transform")?;
        let package = path("text-transform-1.0.0.wpkg");
        warden(&[
            "pack",
            &text,
            "--name",
            "text-transform",
            "--version",
            "1.0.0",
            "--publisher",
            "acme",
            "--key",
            &path("acme.key"),
            "--out",
            &package,
        ])?;
        call(with(&["publish", &package], &alice))?;
        let state = path("host");
        call(with(
            &[
                "install",
                "text-transform",
                "--state",
                &state,
                "--registry-key",
                &path("registry/registry.pub"),
            ],
            &alice,
        ))?;
        warden(&[
            "run",
            "--installed",
            "text-transform",
            "--state",
            &state,
            "--node",
            "text-transform",
            "--input",
            "text=installed from a signed registry",
        ])?;
        // The other example nodes this demo's daemon serves, signed and published.
        for (node, hosts) in [
            ("greeter", &[][..]),
            ("fetch-json", &["api.example.com"][..]),
        ] {
            let component = component(node)?;
            let package = path(&format!("{node}-1.0.0.wpkg"));
            let mut args = vec![
                "pack",
                &component,
                "--name",
                node,
                "--version",
                "1.0.0",
                "--publisher",
                "acme",
                "--key",
            ];
            let key = path("acme.key");
            args.extend([key.as_str(), "--out", package.as_str()]);
            for host in hosts {
                args.extend(["--allow-host", host]);
            }
            warden(&args)?;
            call(with(&["publish", &package], &alice))?;
        }
        daemon_demo(&dir, &url, &alice)
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
