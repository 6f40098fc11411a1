//! Baseline WASI for nodes built for `wasm32-wasip2`: no ambient authority.
//!
//! Empty environment and arguments, an empty stdin, stdout and stderr captured into the node's
//! log, clocks and a cryptographically secure random source. No directory is preopened and no
//! socket is usable unless a capability links them.

use crate::net::policy::{Guarded, GuardedLookup, NetworkPolicy};
use crate::policy::capability::Capabilities;
use crate::runtime::log::{RunLog, Source};
use crate::runtime::store::StoreData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView, WasiSocketsView};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiView};
use wasmtime_wasi_io::bytes::Bytes;

/// A WASI context with nothing from the host: the node's stdout and stderr go to `log`;
/// sockets work only for the granted network capabilities, every address checked by `network`;
/// `files`, when given, is the node's private directory, preopened as `/`. The builder's
/// defaults are the rest of the baseline: no environment, no arguments, stdin closed, and the
/// secure random source seeded from the operating system.
pub(crate) fn context(
    log: &RunLog,
    granted: Capabilities,
    network: &Arc<NetworkPolicy>,
    files: Option<&Path>,
) -> Result<WasiCtx, crate::Error> {
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
        .allow_tcp(granted.contains(Capabilities::TCP))
        .allow_udp(granted.contains(Capabilities::UDP))
        .allow_ip_name_lookup(granted.contains(Capabilities::DNS));
    if granted.intersects(Capabilities::TCP | Capabilities::UDP) {
        let network = network.clone();
        builder.socket_addr_check(move |address, use_| {
            let allowed = network.allows_socket(address, use_);
            Box::pin(async move { allowed })
        });
    }
    if let Some(dir) = files {
        // The node's own directory, as `/`: the only path wasi:filesystem can reach.
        builder
            .preopened_dir(dir, "/", FsPerms::ReadWrite)
            .map_err(|error| {
                crate::Error::Internal(format!("cannot open {}: {error}", dir.display()))
            })?;
    }
    Ok(builder.build())
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links wasi:io, wasi:clocks, wasi:random and wasi:cli: what every wasip2 node imports.
pub fn add_baseline<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, Io>(linker, |state| state.ctx().table)?;
    io::poll::add_to_linker::<T, Io>(linker, |state| state.ctx().table)?;
    io::streams::add_to_linker::<T, Io>(linker, |state| state.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    cli::environment::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::exit::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    Ok(())
}

/// Links wasi:filesystem; the context preopens only the node instance's private directory.
pub fn add_filesystem<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    filesystem::types::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)
}

/// Links the wasi:sockets interfaces `wanted` names (without versions).
pub(crate) fn add_sockets(linker: &mut Linker<StoreData>, wanted: &[&str]) -> wasmtime::Result<()> {
    type T = StoreData;
    let has = |name: &str| wanted.contains(&name);
    if has("wasi:sockets/network") {
        sockets::network::add_to_linker::<T, WasiSockets>(linker, &Default::default(), T::sockets)?;
    }
    if has("wasi:sockets/instance-network") {
        sockets::instance_network::add_to_linker::<T, WasiSockets>(linker, T::sockets)?;
    }
    if has("wasi:sockets/tcp") {
        sockets::tcp::add_to_linker::<T, WasiSockets>(linker, T::sockets)?;
    }
    if has("wasi:sockets/tcp-create-socket") {
        sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(linker, T::sockets)?;
    }
    if has("wasi:sockets/udp") {
        sockets::udp::add_to_linker::<T, WasiSockets>(linker, T::sockets)?;
    }
    if has("wasi:sockets/udp-create-socket") {
        sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(linker, T::sockets)?;
    }
    if has("wasi:sockets/ip-name-lookup") {
        sockets::ip_name_lookup::add_to_linker::<T, Guarded>(linker, |state| GuardedLookup {
            sockets: WasiSocketsCtxView {
                ctx: state.wasi.sockets(),
                table: &mut state.table,
            },
            policy: &state.network,
        })?;
    }
    Ok(())
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
