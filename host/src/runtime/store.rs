//! The data of one run's store, and the narrow view each capability family gets of it (one
//! trait per family, in the family's file; together `caps::Views`). Each family's host functions are linked only when its capability is
//! granted (see `linker.rs`), and see only the fields their view lends them.

use crate::caps;
use crate::caps::embedder::{Credentials, Functions};
use crate::caps::models::ModelProvider;
use crate::caps::sockets::GuardedLookup;
use crate::caps::variables::Variables;
use crate::caps::websocket::Connections;
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::node::context::RunContext;
use crate::output::delivery::Delivery;
use crate::output::log::RunLog;
use crate::policy::capability::Capabilities;
use crate::policy::limits::HostLimits;
use crate::runtime::limiter::Limiter;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub(crate) struct StoreData {
    /// The run's WASI context, built when the node first reaches WASI: most runs of a node
    /// built for `wasm32-unknown-unknown` never do, and building one seeds two random
    /// generators (about a microsecond a run). A node directory's context is built up front,
    /// where opening the directory can fail.
    pub wasi: Option<WasiCtx>,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub context: RunContext,
    pub storage: Storage,
    pub variables: Variables,
    pub log: RunLog,
    /// The embedder's stream and UI sinks (the log's are inside `log`).
    pub delivery: Delivery,
    pub streamed_bytes: usize,
    /// Bytes of UI documents rendered so far.
    pub rendered_bytes: usize,
    /// The run's open WebSocket connections.
    pub connections: Connections,
    /// The runtime's open WebSocket connections, over all runs, and their cap.
    pub runtime_connections: (Connections, usize),
    pub limits: HostLimits,
    pub deadline: Instant,
    pub network: Arc<NetworkPolicy>,
    pub tls: TlsRoots,
    /// The grant, for host functions that require capabilities of their own.
    pub capabilities: Capabilities,
    /// What wasi:sockets serves: the network capabilities granted with `allow_wasi_network`.
    pub wasi_sockets: Capabilities,
    pub functions: Option<Arc<Functions>>,
    pub credentials: Option<Arc<Credentials>>,
    pub models: Option<Arc<ModelProvider>>,
    /// wasi:http: its context, and hooks that send only what the grant covers.
    pub http: WasiHttpCtx,
    pub http_hooks: caps::wasi_http::Hooks,
}

/// The store data lends every family its view (each trait is implemented below).
impl caps::Views for StoreData {}

/// The run's WASI context in `wasi`; the baseline (no directory) if none was built yet. A
/// function of fields rather than a method, so that the caller can lend the other fields too.
fn wasi_ctx<'a>(
    wasi: &'a mut Option<WasiCtx>,
    log: &RunLog,
    sockets: Capabilities,
    network: &Arc<NetworkPolicy>,
) -> &'a mut WasiCtx {
    wasi.get_or_insert_with(|| caps::wasi::baseline(log, sockets, network).build())
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: wasi_ctx(&mut self.wasi, &self.log, self.wasi_sockets, &self.network),
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl caps::base::BaseView for StoreData {
    fn base(&mut self) -> caps::base::View<'_> {
        caps::base::View {
            log: &self.log,
            context: &self.context,
            deadline: self.deadline,
        }
    }
}

impl caps::storage::StorageView for StoreData {
    fn storage(&mut self) -> caps::storage::View<'_> {
        caps::storage::View {
            storage: &self.storage,
            context: &self.context,
            limits: &self.limits,
        }
    }
}

impl caps::variables::VariablesView for StoreData {
    fn variables(&mut self) -> caps::variables::View<'_> {
        caps::variables::View {
            variables: &mut self.variables,
            limits: &self.limits,
        }
    }
}

impl caps::streaming::StreamingView for StoreData {
    fn streaming(&mut self) -> caps::streaming::View<'_> {
        caps::streaming::View {
            streamed_bytes: &mut self.streamed_bytes,
            limits: &self.limits,
            delivery: &self.delivery,
        }
    }
}

impl caps::a2ui::A2uiView for StoreData {
    fn a2ui(&mut self) -> caps::a2ui::View<'_> {
        caps::a2ui::View {
            rendered_bytes: &mut self.rendered_bytes,
            limits: &self.limits,
            allowed: self.network.allowed_hosts(),
            delivery: &self.delivery,
        }
    }
}

impl caps::http::HttpView for StoreData {
    fn http(&mut self) -> caps::http::View<'_> {
        caps::http::View {
            tls: &self.tls,
            network: &self.network,
            deadline: self.deadline,
            limits: &self.limits,
        }
    }
}

impl caps::embedder::EmbedderView for StoreData {
    fn embedder(&mut self) -> caps::embedder::View<'_> {
        caps::embedder::View {
            functions: self.functions.as_ref(),
            credentials: self.credentials.as_deref(),
            capabilities: self.capabilities,
        }
    }
}

impl caps::models::ModelsView for StoreData {
    fn models(&mut self) -> caps::models::View<'_> {
        caps::models::View {
            provider: self.models.as_deref(),
            tls: &self.tls,
            log: &self.log,
            table: &mut self.table,
        }
    }
}

impl caps::websocket::WebSocketView for StoreData {
    fn websocket(&mut self) -> caps::websocket::View<'_> {
        caps::websocket::View {
            connections: &self.connections,
            runtime_connections: (&self.runtime_connections.0, self.runtime_connections.1),
            limits: &self.limits,
            tls: &self.tls,
            network: &self.network,
            deadline: self.deadline,
            table: &mut self.table,
        }
    }
}

impl caps::sockets::LookupView for StoreData {
    fn lookup(&mut self) -> GuardedLookup<'_> {
        GuardedLookup {
            sockets: WasiSocketsCtxView {
                ctx: wasi_ctx(&mut self.wasi, &self.log, self.wasi_sockets, &self.network)
                    .sockets(),
                table: &mut self.table,
            },
            policy: &self.network,
            allowed: self.wasi_sockets.contains(Capabilities::DNS),
        }
    }
}
