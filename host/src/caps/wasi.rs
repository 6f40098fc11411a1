//! Baseline WASI for nodes built for `wasm32-wasip2`: no ambient authority.
//!
//! Empty environment and arguments, an empty stdin, stdout and stderr captured into the node's
//! log, clocks and a cryptographically secure random source. No directory is preopened and no
//! socket is usable unless a capability links them.

use crate::net::policy::NetworkPolicy;
use crate::output::log::{RunLog, Source};
use crate::policy::capability::Capabilities;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi_io::bytes::Bytes;

/// The baseline WASI context of [`baseline`] with `dir`, the node's private directory,
/// preopened as `/`: the only path wasi:filesystem can reach.
pub(crate) fn context(
    log: &RunLog,
    sockets: Capabilities,
    network: &Arc<NetworkPolicy>,
    dir: &Path,
) -> Result<WasiCtx, crate::Error> {
    let mut builder = baseline(log, sockets, network);
    builder
        .preopened_dir(dir, "/", FsPerms::ReadWrite)
        .map_err(|error| {
            crate::Error::Internal(format!("cannot open {}: {error}", dir.display()))
        })?;
    Ok(builder.build())
}

/// A WASI context with nothing from the host: the node's stdout and stderr go to `log`;
/// sockets work only for `sockets` (the network capabilities granted with
/// `allow_wasi_network`; wasi:sockets is linked whatever the grant, so this is what keeps it
/// denied), every address checked by `network`. The builder's defaults are the rest of the
/// baseline: no environment, no arguments, no directory, stdin closed, and the secure random
/// source seeded from the operating system.
pub(crate) fn baseline(
    log: &RunLog,
    sockets: Capabilities,
    network: &Arc<NetworkPolicy>,
) -> WasiCtxBuilder {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(LogStream {
            log: log.clone(),
            source: Source::Stdout,
        })
        .stderr(LogStream {
            log: log.clone(),
            source: Source::Stderr,
        })
        .allow_tcp(sockets.contains(Capabilities::TCP))
        .allow_udp(sockets.contains(Capabilities::UDP))
        .allow_ip_name_lookup(sockets.contains(Capabilities::DNS));
    if sockets.intersects(Capabilities::TCP | Capabilities::UDP) {
        let network = network.clone();
        builder.socket_addr_check(move |address, use_| {
            let allowed = network.allows_socket(address, use_);
            Box::pin(async move { allowed })
        });
    }
    builder
}

struct Io;

fn table<T: WasiView>(state: &mut T) -> &mut ResourceTable {
    state.ctx().table
}

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links one WASI interface of the baseline (wasi:io, wasi:clocks, wasi:random, wasi:cli: what
/// every wasip2 node imports) or of wasi:filesystem; false if `interface` is neither. Which of
/// them a run gets is `policy::preflight`'s `BASELINE` and `FILESYSTEM`, read by the linker.
pub(crate) fn link<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    use wasmtime_wasi_io::bindings::wasi::io;
    match interface {
        "wasi:io/error" => io::error::add_to_linker::<T, Io>(linker, table::<T>)?,
        "wasi:io/poll" => io::poll::add_to_linker::<T, Io>(linker, table::<T>)?,
        "wasi:io/streams" => io::streams::add_to_linker::<T, Io>(linker, table::<T>)?,
        "wasi:clocks/wall-clock" => {
            clocks::wall_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?
        }
        "wasi:clocks/monotonic-clock" => {
            clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?
        }
        "wasi:random/random" => random::random::add_to_linker::<T, WasiRandom>(linker, T::random)?,
        "wasi:random/insecure" => {
            random::insecure::add_to_linker::<T, WasiRandom>(linker, T::random)?
        }
        "wasi:random/insecure-seed" => {
            random::insecure_seed::add_to_linker::<T, WasiRandom>(linker, T::random)?
        }
        "wasi:cli/environment" => cli::environment::add_to_linker::<T, WasiCli>(linker, T::cli)?,
        "wasi:cli/exit" => cli::exit::add_to_linker::<T, WasiCli>(linker, T::cli)?,
        "wasi:cli/stdin" => cli::stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?,
        "wasi:cli/stdout" => cli::stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?,
        "wasi:cli/stderr" => cli::stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?,
        "wasi:cli/terminal-input" => {
            cli::terminal_input::add_to_linker::<T, WasiCli>(linker, T::cli)?
        }
        "wasi:cli/terminal-output" => {
            cli::terminal_output::add_to_linker::<T, WasiCli>(linker, T::cli)?
        }
        "wasi:cli/terminal-stdin" => {
            cli::terminal_stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?
        }
        "wasi:cli/terminal-stdout" => {
            cli::terminal_stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?
        }
        "wasi:cli/terminal-stderr" => {
            cli::terminal_stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?
        }
        // The context preopens only the node instance's private directory.
        "wasi:filesystem/types" => {
            filesystem::types::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?
        }
        "wasi:filesystem/preopens" => {
            filesystem::preopens::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// stdout or stderr of a node: every byte goes to the run's log, which applies the cap.
#[derive(Clone)]
struct LogStream {
    log: RunLog,
    source: Source,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write_stream(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Writes past the log cap are dropped, never refused: a refused write would make a
        // Rust node's `println!` panic, turning a log flood into a crash.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write_stream(self.source, bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
