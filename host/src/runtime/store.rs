//! The data of one run's store, and the host functions of the capabilities this issue implements.
//! Each interface's functions are linked only when its capability is granted (see `linker.rs`).

use crate::bindings::warden::node::{
    a2ui, functions, http_get, http_write, models, oauth, token, websocket,
};
use crate::bindings::warden::node::{
    cache_read, cache_write, context, log, storage_delete, storage_read, storage_write, streaming,
    types, variables_read, variables_write,
};
use crate::bindings::wit::{
    CacheScope, HostError, HttpRequest, HttpResponse, Method, Scope as WitScope,
};
use crate::caps::embedder::{Credentials, Functions, covers, validate_ui};
use crate::caps::http::{self, HttpLimits, TlsRoots};
use crate::caps::models::{Generation, ModelProvider, Models};
use crate::caps::websocket::Connection;
use crate::net::policy::NetworkPolicy;
use crate::node::context::RunContext;
use crate::node::value::Value;
use crate::policy::capability::Capabilities;
use crate::policy::limits::HostLimits;
use crate::runtime::delivery::{CallbackFailed, Delivery, panic_message};
use crate::runtime::limiter::Limiter;
use crate::runtime::log::{Level, RunLog, Source};
use crate::storage::{
    KeyError, Scope, Storage, StorageError, cache_partition, validate_key, validate_prefix,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::Resource;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How long a cache entry lives when the node gives no expiry.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest expiry a node may ask for.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The most keys one `list` returns.
pub const MAX_LIST: u32 = 10_000;
/// The longest variable name.
pub const MAX_VARIABLE_NAME: usize = 256;
/// The most variables a run holds.
pub const MAX_VARIABLES: usize = 10_000;
/// What one streamed chunk costs against the stream cap beyond its value, so empty chunks
/// count too.
pub const CHUNK_OVERHEAD: usize = 32;

pub(crate) struct StoreData {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub context: RunContext,
    pub storage: Storage,
    pub variables: BTreeMap<String, Value>,
    /// Bytes of the names and values in `variables`, kept as they change.
    pub variables_bytes: usize,
    pub log: RunLog,
    /// The embedder's stream and UI sinks (the log's are inside `log`).
    pub delivery: Delivery,
    pub streamed_bytes: usize,
    /// Bytes of UI documents rendered so far.
    pub rendered_bytes: usize,
    /// The run's open WebSocket connections.
    pub connections: crate::caps::websocket::Connections,
    /// The runtime's open WebSocket connections, over all runs, and their cap.
    pub runtime_connections: (crate::caps::websocket::Connections, usize),
    pub limits: HostLimits,
    pub deadline: Instant,
    pub network: Arc<NetworkPolicy>,
    pub tls: TlsRoots,
    /// The grant, for host functions that require capabilities of their own.
    pub capabilities: Capabilities,
    pub functions: Option<Arc<Functions>>,
    pub credentials: Option<Arc<Credentials>>,
    pub models: Option<Arc<ModelProvider>>,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn scope(scope: WitScope) -> Scope {
    match scope {
        WitScope::Board => Scope::Board,
        WitScope::Node => Scope::Node,
        WitScope::User => Scope::User,
        WitScope::Upload => Scope::Upload,
        WitScope::Cache => Scope::Cache,
    }
}

impl From<KeyError> for HostError {
    fn from(error: KeyError) -> Self {
        HostError::Invalid(error.to_string())
    }
}

impl From<StorageError> for HostError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::QuotaExceeded { .. } => HostError::QuotaExceeded(error.to_string()),
            StorageError::Backend(_) => HostError::Unavailable(error.to_string()),
        }
    }
}

impl StoreData {
    fn check_value_size(&self, what: &str, size: usize, cap: usize) -> Result<(), HostError> {
        if size > cap {
            return Err(HostError::TooLarge(format!(
                "the {what} is {size} bytes; the host accepts at most {cap}"
            )));
        }
        Ok(())
    }

    fn writable(&self, scope: Scope) -> Result<(), HostError> {
        if scope.writable_by_nodes() {
            Ok(())
        } else {
            Err(HostError::Denied(format!(
                "the {} scope is read-only for nodes; only the host puts files there",
                scope.name()
            )))
        }
    }

    fn cache_partition(&self, scope: CacheScope) -> String {
        cache_partition(
            &self.context,
            scope.contains(CacheScope::PER_NODE),
            scope.contains(CacheScope::PER_USER),
        )
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

impl types::Host for StoreData {}

impl log::Host for StoreData {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.push(level, Source::Log, &message);
    }
}

impl context::Host for StoreData {
    fn current(&mut self) -> types::RunContext {
        (&self.context).into()
    }

    fn remaining_ms(&mut self) -> u64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64
    }
}

impl storage_read::Host for StoreData {
    fn get(&mut self, scope_: WitScope, key: String) -> Result<Option<Vec<u8>>, HostError> {
        let scope = scope(scope_);
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .get(&scope.partition(&self.context), key)?)
    }

    fn exists(&mut self, scope_: WitScope, key: String) -> Result<bool, HostError> {
        storage_read::Host::get(self, scope_, key).map(|value| value.is_some())
    }

    fn list_keys(
        &mut self,
        scope_: WitScope,
        prefix: String,
        limit: u32,
    ) -> Result<Vec<String>, HostError> {
        let scope = scope(scope_);
        let prefix = validate_prefix(&prefix)?;
        let limit = limit.min(MAX_LIST) as usize;
        Ok(self
            .storage
            .backend()
            .list(&scope.partition(&self.context), &prefix, limit)?)
    }
}

impl storage_write::Host for StoreData {
    fn set(&mut self, scope_: WitScope, key: String, value: Vec<u8>) -> Result<(), HostError> {
        let scope = scope(scope_);
        self.writable(scope)?;
        let key = validate_key(&key)?;
        self.check_value_size("value", value.len(), self.limits.storage_value_bytes)?;
        let quota = self.limits.storage_quota_bytes;
        Ok(self
            .storage
            .backend()
            .set(&scope.partition(&self.context), key, &value, quota)?)
    }
}

impl storage_delete::Host for StoreData {
    fn delete(&mut self, scope_: WitScope, key: String) -> Result<bool, HostError> {
        let scope = scope(scope_);
        self.writable(scope)?;
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .delete(&scope.partition(&self.context), key)?)
    }
}

fn validate_variable_name(name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.len() > MAX_VARIABLE_NAME || name.chars().any(char::is_control) {
        return Err(HostError::Invalid(format!(
            "variable names are 1 to {MAX_VARIABLE_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

/// Bytes of names and values of a run's variables.
pub(crate) fn variables_size(variables: &BTreeMap<String, Value>) -> usize {
    variables
        .iter()
        .map(|(name, value)| name.len() + value.size())
        .sum()
}

impl variables_read::Host for StoreData {
    fn get(&mut self, name: String) -> Result<Option<types::Value>, HostError> {
        validate_variable_name(&name)?;
        Ok(self.variables.get(&name).cloned().map(Into::into))
    }

    fn names(&mut self) -> Vec<String> {
        self.variables.keys().cloned().collect()
    }
}

impl variables_write::Host for StoreData {
    fn set(&mut self, name: String, value: types::Value) -> Result<(), HostError> {
        validate_variable_name(&name)?;
        let value = Value::from(value);
        self.check_value_size("variable", value.size(), self.limits.variable_bytes)?;
        let replaced = self.variables.get(&name).map(|old| name.len() + old.size());
        if replaced.is_none() && self.variables.len() >= MAX_VARIABLES {
            return Err(HostError::QuotaExceeded(format!(
                "a run holds at most {MAX_VARIABLES} variables"
            )));
        }
        let total =
            variables_size(&self.variables) - replaced.unwrap_or(0) + name.len() + value.size();
        if total > self.limits.variables_total_bytes {
            return Err(HostError::QuotaExceeded(format!(
                "the run's variables would take {total} bytes; the host keeps at most {} \
                 (names and values)",
                self.limits.variables_total_bytes
            )));
        }
        self.variables.insert(name, value);
        self.variables_bytes = total;
        Ok(())
    }
}

impl cache_read::Host for StoreData {
    fn get(&mut self, key: String, scope: CacheScope) -> Result<Option<Vec<u8>>, HostError> {
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .cache_get(&self.cache_partition(scope), key, now_ms())?)
    }
}

impl cache_write::Host for StoreData {
    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        scope: CacheScope,
    ) -> Result<(), HostError> {
        let key = validate_key(&key)?;
        self.check_value_size("cache value", value.len(), self.limits.storage_value_bytes)?;
        let ttl = ttl_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_CACHE_TTL);
        if ttl.is_zero() || ttl > MAX_CACHE_TTL {
            return Err(HostError::Invalid(format!(
                "a cache expiry must be between 1 ms and {} days",
                MAX_CACHE_TTL.as_secs() / 86_400
            )));
        }
        let now = now_ms();
        let expires = now.saturating_add(ttl.as_millis() as u64);
        let quota = self.limits.storage_quota_bytes;
        Ok(self.storage.backend().cache_set(
            &self.cache_partition(scope),
            key,
            &value,
            expires,
            quota,
            now,
        )?)
    }

    fn remove(&mut self, key: String, scope: CacheScope) -> Result<bool, HostError> {
        let key = validate_key(&key)?;
        Ok(self
            .storage
            .backend()
            .cache_remove(&self.cache_partition(scope), key)?)
    }
}

impl streaming::Host for StoreData {
    fn emit(&mut self, chunk: types::Value) -> Result<(), HostError> {
        let chunk = Value::from(chunk);
        let total = self
            .streamed_bytes
            .saturating_add(chunk.size())
            .saturating_add(CHUNK_OVERHEAD);
        if total > self.limits.stream_bytes {
            return Err(HostError::TooLarge(format!(
                "this run has streamed {} bytes (each chunk counts {CHUNK_OVERHEAD} more than \
                 its value); the host accepts at most {}",
                self.streamed_bytes, self.limits.stream_bytes
            )));
        }
        self.streamed_bytes = total;
        self.delivery.chunk(chunk);
        Ok(())
    }
}

impl StoreData {
    fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            request_body_bytes: self.limits.http_request_bytes,
            response_body_bytes: self.limits.http_response_bytes,
        }
    }
}

impl http_get::Host for StoreData {
    async fn fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let limits = self.http_limits();
        http::send(
            &self.tls,
            &self.network,
            request,
            &[Method::Get, Method::Head],
            "http-get",
            self.deadline,
            limits,
        )
        .await
    }
}

impl http_write::Host for StoreData {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let limits = self.http_limits();
        let methods = [Method::Post, Method::Put, Method::Patch, Method::Delete];
        http::send(
            &self.tls,
            &self.network,
            request,
            &methods,
            "http-write",
            self.deadline,
            limits,
        )
        .await
    }
}

impl functions::Host for StoreData {
    async fn call(
        &mut self,
        name: String,
        arguments: Vec<types::Field>,
    ) -> wasmtime::Result<Result<Vec<types::Field>, HostError>> {
        let Some(function) = self
            .functions
            .as_ref()
            .and_then(|functions| functions.get(&name))
        else {
            return Ok(Err(HostError::Denied(format!(
                "the host registered no function `{name}`"
            ))));
        };
        let missing = function.requires - self.capabilities;
        if !missing.is_empty() {
            return Ok(Err(HostError::Denied(format!(
                "`{name}` needs the capabilities {missing}, which this node was not granted"
            ))));
        }
        let handler = function.handler.clone();
        let arguments = arguments
            .into_iter()
            .map(crate::node::value::Field::from)
            .collect();
        // On a blocking thread: the handler may wait on anything, and the run's timeout still
        // ends the run by dropping this future (the thread finishes on its own).
        let outcome = tokio::task::spawn_blocking(move || handler(arguments)).await;
        match outcome {
            Ok(Ok(results)) => Ok(Ok(results.into_iter().map(Into::into).collect())),
            Ok(Err(message)) => Ok(Err(HostError::Unavailable(format!(
                "`{name}` failed: {message}"
            )))),
            Err(error) => {
                let failure = match error.try_into_panic() {
                    Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                    Err(error) => format!("did not finish: {error}"),
                };
                Err(wasmtime::Error::new(CallbackFailed {
                    callback: format!("host function `{name}`"),
                    failure,
                }))
            }
        }
    }
}

impl oauth::Host for StoreData {
    fn access_token(
        &mut self,
        provider: String,
        scopes: Vec<String>,
    ) -> Result<oauth::OauthToken, HostError> {
        let now = now_ms();
        let found = self.credentials.as_ref().and_then(|credentials| {
            credentials.oauth.iter().find(|token| {
                token.provider == provider
                    && covers(&token.scopes, &scopes)
                    && token.expires_at_ms.is_none_or(|expiry| expiry > now)
            })
        });
        match found {
            Some(token) => Ok(oauth::OauthToken {
                token: token.token.clone(),
                scopes: token.scopes.clone(),
                expires_at_ms: token.expires_at_ms,
            }),
            // Never the token itself, in an error or a log.
            None => Err(HostError::Denied(format!(
                "the host holds no unexpired {provider} token covering the scopes [{}]",
                scopes.join(", ")
            ))),
        }
    }
}

impl token::Host for StoreData {
    fn get(&mut self, service: String, scopes: Vec<String>) -> Result<String, HostError> {
        let found = self.credentials.as_ref().and_then(|credentials| {
            credentials
                .tokens
                .iter()
                .find(|token| token.service == service && covers(&token.scopes, &scopes))
        });
        found.map(|token| token.token.clone()).ok_or_else(|| {
            HostError::Denied(format!(
                "the host holds no {service} token covering the scopes [{}]",
                scopes.join(", ")
            ))
        })
    }
}

impl a2ui::Host for StoreData {
    fn render(&mut self, document: String) -> Result<(), HostError> {
        let total = self.rendered_bytes.saturating_add(document.len());
        if total > self.limits.ui_bytes {
            return Err(HostError::TooLarge(format!(
                "this run has rendered {} bytes of UI documents; the host accepts at most {}",
                self.rendered_bytes, self.limits.ui_bytes
            )));
        }
        let document = validate_ui(&document, self.network.allowed_hosts())
            .map_err(|error| HostError::Invalid(format!("the UI document is invalid: {error}")))?;
        self.rendered_bytes = total;
        self.delivery.ui(document);
        Ok(())
    }
}

impl StoreData {
    fn models(&self) -> Models<'_> {
        Models {
            provider: self.models.as_deref(),
            tls: &self.tls,
            log: &self.log,
        }
    }
}

impl models::Host for StoreData {
    async fn embed(
        &mut self,
        model: String,
        inputs: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, HostError> {
        self.models().embed(model, inputs).await
    }

    async fn generate(&mut self, request: models::GenerationRequest) -> Result<String, HostError> {
        self.models().generate(request).await
    }

    async fn generate_stream(
        &mut self,
        request: models::GenerationRequest,
    ) -> Result<Resource<Generation>, HostError> {
        let generation = self.models().generate_stream(request).await?;
        self.table
            .push(generation)
            .map_err(|error| HostError::Unavailable(format!("too many open generations: {error}")))
    }
}

impl models::HostGeneration for StoreData {
    async fn next(
        &mut self,
        generation: Resource<Generation>,
    ) -> Result<Option<String>, HostError> {
        let generation = self
            .table
            .get_mut(&generation)
            .map_err(|error| HostError::Invalid(format!("not an open generation: {error}")))?;
        generation.next().await
    }

    fn drop(&mut self, generation: Resource<Generation>) -> wasmtime::Result<()> {
        self.table.delete(generation)?;
        Ok(())
    }
}

impl websocket::Host for StoreData {
    async fn connect(
        &mut self,
        url: String,
        headers: Vec<types::Header>,
    ) -> Result<Resource<Connection>, HostError> {
        let (runtime, runtime_cap) = &self.runtime_connections;
        let slot = self
            .connections
            .take(self.limits.connections, runtime, *runtime_cap)?;
        let connection = crate::caps::websocket::connect(
            &self.tls,
            &self.network,
            &url,
            &headers,
            self.deadline,
            slot,
        )
        .await?;
        self.table
            .push(connection)
            .map_err(|error| HostError::Unavailable(format!("too many open connections: {error}")))
    }
}

impl StoreData {
    fn connection(
        &mut self,
        connection: &Resource<Connection>,
    ) -> Result<&mut Connection, HostError> {
        self.table
            .get_mut(connection)
            .map_err(|error| HostError::Invalid(format!("not an open connection: {error}")))
    }
}

impl websocket::HostConnection for StoreData {
    async fn send(
        &mut self,
        connection: Resource<Connection>,
        message: websocket::Message,
    ) -> Result<(), HostError> {
        self.connection(&connection)?.send(message).await
    }

    async fn receive(
        &mut self,
        connection: Resource<Connection>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<websocket::Message>, HostError> {
        let deadline = self.deadline;
        let timeout = timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        self.connection(&connection)?
            .receive(timeout, deadline)
            .await
    }

    async fn close(&mut self, connection: Resource<Connection>) -> Result<(), HostError> {
        self.connection(&connection)?.close().await
    }

    fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}
