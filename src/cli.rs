//! The command line: parsing and dispatch to `crate::commands`, one module per command. Every
//! failure is one line on stderr and an exit code (`crate::failure` lists them).

use crate::commands::{
    self, approve::ApproveArgs, build::BuildArgs, call::CallArgs, capabilities::CapabilitiesArgs,
    inspect::InspectArgs, install::InstallArgs, installed::InstalledArgs, keygen::KeygenArgs,
    new::NewArgs, pack::PackArgs, publish::PublishArgs, registry::RegistryCommand, run::RunArgs,
    serve::ServeArgs, sync::SyncArgs, verify::VerifyArgs, yank::YankArgs,
};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Build, inspect and run sandboxed workflow nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a node project (Rust, Python or JavaScript) that builds and runs at once.
    New(NewArgs),
    /// Build a node crate, or a Python or JavaScript node, into a component and print its path.
    Build(BuildArgs),
    /// Show the nodes a component provides, their pins, and the capabilities it needs.
    Inspect(InspectArgs),
    /// Run a node in a sandbox. Outputs go to stdout as JSON, the node's log to stderr.
    Run(Box<RunArgs>),
    /// Make an Ed25519 key pair for signing packages: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen(KeygenArgs),
    /// Sign a node into a package: the manifest's capabilities come from the component's imports.
    Pack(Box<PackArgs>),
    /// Verify a package: its manifest, component, capabilities and signatures.
    Verify(VerifyArgs),
    /// Publish a package to a registry.
    Publish(PublishArgs),
    /// Install a node from a registry after verifying the index, the log and the package.
    Install(Box<InstallArgs>),
    /// Approve what an installed node's new version requests, enabling it.
    Approve(ApproveArgs),
    /// Re-verify a registry's newest signed state and block installed nodes it no longer
    /// vouches for (a revoked signing key): the kill switch. Run it more often than the
    /// registry's index lifetime.
    Sync(SyncArgs),
    /// List installed nodes, the registries they came from, and accepted publisher changes.
    Installed(InstalledArgs),
    /// Yank a published version: hosts will not install it anew.
    Yank(YankArgs),
    /// Run the host daemon: nodes loaded by manifest, run for callers over an authenticated
    /// HTTPS API (see docs/daemon.md).
    Serve(Box<ServeArgs>),
    /// Make one request to a daemon's API over HTTPS (the key from $WARDEN_API_KEY or
    /// --key-file), such as `warden call POST /v1/runs --data '{"node": "..."}'`.
    Call(Box<CallArgs>),
    /// Run the node registry, check one, or manage its users, tokens and publisher keys.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// List the capabilities and the names --grant accepts.
    Capabilities(CapabilitiesArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's message spans several lines (tip, usage); keep the promise of one line.
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("warden: error: {first} (see warden --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::New(args) => commands::new::execute(args),
        Command::Build(args) => commands::build::execute(args),
        Command::Inspect(args) => commands::inspect::execute(args),
        Command::Run(args) => commands::run::execute(*args),
        Command::Keygen(args) => commands::keygen::execute(args),
        Command::Pack(args) => commands::pack::execute(*args),
        Command::Verify(args) => commands::verify::execute(args),
        Command::Publish(args) => commands::publish::execute(args),
        Command::Install(args) => commands::install::execute(*args),
        Command::Approve(args) => commands::approve::execute(args),
        Command::Sync(args) => commands::sync::execute(args),
        Command::Installed(args) => commands::installed::execute(args),
        Command::Yank(args) => commands::yank::execute(args),
        Command::Serve(args) => commands::serve::execute(*args),
        Command::Call(args) => commands::call::execute(*args),
        Command::Registry(command) => commands::registry::execute(command),
        Command::Capabilities(args) => commands::capabilities::execute(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Messages may carry a node's words (its error, its names): one line, shown.
            let message = warden_host::log::one_line(&failure.message, 16 * 1024);
            eprintln!("warden: error: {message}");
            ExitCode::from(failure.code)
        }
    }
}
