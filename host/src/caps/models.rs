//! The `models` capability: inference through a provider the host operator configures. The one
//! provider here speaks the OpenAI-compatible HTTP API (llama.cpp's server, vLLM, Ollama):
//! `/embeddings` and `/chat/completions`, streamed as server-sent events.
//!
//! The endpoint is the operator's, so it does not need the node's `allowed_hosts`; the node can
//! reach nothing else through it, and the model names it may use can be restricted.

use crate::bindings::warden::node::models;
use crate::bindings::wit::{Header, HostError, Method};
use crate::net::client as http;
use crate::net::policy::NetworkPolicy;
use crate::net::tls::TlsRoots;
use crate::output::log::RunLog;
use crate::policy::allowlist::{AllowedHosts, Destination};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value as Json, json};
use std::collections::VecDeque;
use url::{Host, Url};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Bytes of one model response (a generation or a batch of embeddings).
pub const MAX_MODEL_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// An OpenAI-compatible endpoint, such as `http://127.0.0.1:8080/v1`. `Debug` shows
/// everything but the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelProvider {
    pub endpoint: String,
    /// Sent as `Authorization: Bearer …`; never shown to nodes or logged.
    pub api_key: Option<String>,
    /// Models nodes may use; any when empty.
    pub models: Vec<String>,
}

impl std::fmt::Debug for ModelProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelProvider")
            .field("endpoint", &self.endpoint)
            .field(
                "api_key",
                &self
                    .api_key
                    .as_ref()
                    .map(|_| crate::caps::embedder::REDACTED),
            )
            .field("models", &self.models)
            .finish()
    }
}

/// The parts of an OpenAI-compatible answer the host reads. Everything else in an answer is
/// skipped as it is parsed, never built into a tree: what the host holds stays within a small
/// factor of what it hands the node.
#[derive(serde::Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingItem>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: u64,
    embedding: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct ChatAnswer {
    choices: Vec<ChatChoice>,
}

#[derive(serde::Deserialize)]
struct ChatChoice {
    #[serde(default)]
    message: Option<ChatText>,
    #[serde(default)]
    delta: Option<ChatText>,
}

#[derive(serde::Deserialize)]
struct ChatText {
    #[serde(default)]
    content: Option<String>,
}

/// Bytes of a provider's error answer read for the operator's log; the node never sees them.
const ERROR_EXCERPT_BYTES: usize = 512;

/// A models endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the models endpoint `{endpoint}` is not a URL: {error}")]
    NotAUrl {
        endpoint: String,
        #[source]
        error: url::ParseError,
    },
    #[error("the models endpoint `{0}` must be an http or https URL")]
    NotHttp(String),
}

impl ModelProvider {
    /// Checks the endpoint is an http(s) URL.
    pub fn new(
        endpoint: &str,
        api_key: Option<String>,
        models: Vec<String>,
    ) -> Result<Self, EndpointError> {
        let url = Url::parse(endpoint).map_err(|error| EndpointError::NotAUrl {
            endpoint: endpoint.to_string(),
            error,
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(EndpointError::NotHttp(endpoint.to_string()));
        }
        Ok(ModelProvider {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            api_key,
            models,
        })
    }

    /// The allowlist that reaches exactly the endpoint (its address, when it is one, counts as
    /// listed: the operator chose it).
    fn allowlist(&self) -> Result<AllowedHosts, HostError> {
        let url = Url::parse(&self.endpoint)
            .map_err(|error| HostError::Unavailable(error.to_string()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut patterns = vec![match url.host() {
            Some(Host::Ipv6(v6)) => format!("{}://[{v6}]:{port}", url.scheme()),
            Some(host) => format!("{}://{host}:{port}", url.scheme()),
            None => {
                return Err(HostError::Unavailable(
                    "the models endpoint has no host".into(),
                ));
            }
        }];
        if url.host_str() == Some("localhost") {
            patterns.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        }
        AllowedHosts::parse(&patterns).map_err(|error| HostError::Unavailable(error.to_string()))
    }
}

/// A generation being streamed: the response body and what was read but not yet handed out.
pub struct Generation {
    body: Option<Incoming>,
    buffer: Vec<u8>,
    pending: VecDeque<String>,
    read: usize,
}

pub(crate) struct Models<'a> {
    pub provider: Option<&'a ModelProvider>,
    pub tls: &'a TlsRoots,
    pub log: &'a RunLog,
}

impl Models<'_> {
    fn provider(&self, model: &str) -> Result<&ModelProvider, HostError> {
        let provider = self.provider.ok_or_else(|| {
            HostError::Unavailable("this host has no model provider configured".into())
        })?;
        if !provider.models.is_empty() && !provider.models.iter().any(|allowed| allowed == model) {
            return Err(HostError::Denied(format!(
                "the model `{model}` is not offered; use one of {}",
                provider.models.join(", ")
            )));
        }
        Ok(provider)
    }

    async fn post(
        &self,
        provider: &ModelProvider,
        path: &str,
        body: Json,
    ) -> Result<hyper::Response<Incoming>, HostError> {
        let url = format!("{}{path}", provider.endpoint);
        let policy = NetworkPolicy::new(provider.allowlist()?, self.log.clone());
        let destination: Destination = policy
            .check_http_url(&url)
            .map_err(|denied| HostError::Unavailable(denied.to_string()))?;
        let mut headers = vec![Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }];
        if let Some(key) = &provider.api_key {
            headers.push(Header {
                name: "authorization".into(),
                value: format!("Bearer {key}"),
            });
        }
        let response = http::open(
            self.tls,
            &policy,
            &destination,
            &url,
            Method::Post,
            &headers,
            body.to_string().as_bytes(),
        )
        .await?;
        if !response.status().is_success() {
            // The answer's body stays with the operator: a provider may echo the request,
            // Authorization header and all, and the node must not read the operator's key.
            let status = response.status();
            let excerpt = read_excerpt(response.into_body()).await;
            let excerpt = match &provider.api_key {
                Some(key) if !key.is_empty() => {
                    excerpt.replace(key.as_str(), crate::caps::embedder::REDACTED)
                }
                _ => excerpt,
            };
            tracing::warn!(%status, answer = %excerpt, "the model provider refused a request");
            return Err(HostError::Unavailable(format!(
                "the model provider answered {status}; its answer is in the host's log, not \
                 shown to nodes"
            )));
        }
        Ok(response)
    }

    pub async fn embed(
        &self,
        model: String,
        inputs: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, HostError> {
        let provider = self.provider(&model)?;
        let response = self
            .post(
                provider,
                "/embeddings",
                json!({ "model": model, "input": inputs }),
            )
            .await?;
        let answer: EmbeddingsAnswer = parse(&read_all(response.into_body()).await?)?;
        let mut data: Vec<(u64, Vec<f32>)> = answer
            .data
            .into_iter()
            .map(|item| (item.index, item.embedding))
            .collect();
        data.sort_by_key(|(index, _)| *index);
        Ok(data.into_iter().map(|(_, vector)| vector).collect())
    }

    fn chat(
        request: &crate::bindings::warden::node::models::GenerationRequest,
        stream: bool,
    ) -> Json {
        let mut body = json!({
            "model": request.model,
            "messages": [{ "role": "user", "content": request.prompt }],
            "stream": stream,
        });
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        body
    }

    pub async fn generate(
        &self,
        request: crate::bindings::warden::node::models::GenerationRequest,
    ) -> Result<String, HostError> {
        let provider = self.provider(&request.model)?;
        let response = self
            .post(provider, "/chat/completions", Self::chat(&request, false))
            .await?;
        let answer: ChatAnswer = parse(&read_all(response.into_body()).await?)?;
        answer
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message)
            .and_then(|message| message.content)
            .ok_or_else(|| malformed("no `choices[0].message.content`"))
    }

    pub async fn generate_stream(
        &self,
        request: crate::bindings::warden::node::models::GenerationRequest,
    ) -> Result<Generation, HostError> {
        let provider = self.provider(&request.model)?;
        let response = self
            .post(provider, "/chat/completions", Self::chat(&request, true))
            .await?;
        Ok(Generation {
            body: Some(response.into_body()),
            buffer: Vec::new(),
            pending: VecDeque::new(),
            read: 0,
        })
    }
}

impl Generation {
    /// The next piece of text, reading events from the provider as they arrive.
    pub async fn next(&mut self) -> Result<Option<String>, HostError> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Ok(Some(piece));
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.frame().await {
                None => {
                    self.body = None;
                    self.parse_events(true)?;
                }
                Some(frame) => {
                    let frame = frame.map_err(|error| {
                        HostError::Unavailable(format!("the model stream broke: {error}"))
                    })?;
                    if let Ok(data) = frame.into_data() {
                        self.read += data.len();
                        if self.read > MAX_MODEL_RESPONSE_BYTES {
                            self.body = None;
                            return Err(HostError::TooLarge(format!(
                                "the generation is over {MAX_MODEL_RESPONSE_BYTES} bytes"
                            )));
                        }
                        self.buffer.extend_from_slice(&data);
                        self.parse_events(false)?;
                    }
                }
            }
        }
    }

    /// Moves complete `data:` events from the buffer to `pending`.
    fn parse_events(&mut self, at_end: bool) -> Result<(), HostError> {
        // One pass over the buffer, then one move of what is left: linear in what arrived.
        let buffer = std::mem::take(&mut self.buffer);
        let mut rest = buffer.as_slice();
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            self.event_line(&String::from_utf8_lossy(&rest[..end]))?;
            rest = &rest[end + 1..];
        }
        self.buffer = rest.to_vec();
        if at_end && !self.buffer.is_empty() {
            let line = std::mem::take(&mut self.buffer);
            self.event_line(&String::from_utf8_lossy(&line))?;
        }
        Ok(())
    }

    fn event_line(&mut self, line: &str) -> Result<(), HostError> {
        let Some(data) = line.trim().strip_prefix("data:") else {
            return Ok(());
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.body = None;
            return Ok(());
        }
        let event: ChatAnswer = parse(data.as_bytes())?;
        if let Some(piece) = event
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.delta)
            .and_then(|delta| delta.content)
            && !piece.is_empty()
        {
            self.pending.push_back(piece);
        }
        Ok(())
    }
}

async fn read_all(body: Incoming) -> Result<Vec<u8>, HostError> {
    let limited = http_body_util::Limited::new(body, MAX_MODEL_RESPONSE_BYTES);
    limited
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .map_err(|error| {
            HostError::Unavailable(format!(
                "reading the model provider's answer failed: {error}"
            ))
        })
}

/// At most [`ERROR_EXCERPT_BYTES`] of an answer, for the operator's log.
async fn read_excerpt(body: Incoming) -> String {
    let mut body = body;
    let mut excerpt = Vec::new();
    while excerpt.len() < ERROR_EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = ERROR_EXCERPT_BYTES - excerpt.len();
                    excerpt.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&excerpt).into_owned()
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, HostError> {
    // The kind and the place only: serde's own message quotes the answer, which the node must
    // not read word for word.
    serde_json::from_slice(bytes).map_err(|error| {
        let kind = match error.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "not the expected fields or types",
            serde_json::error::Category::Eof => "cut short",
        };
        malformed(&format!(
            "{kind} (line {}, column {})",
            error.line(),
            error.column()
        ))
    })
}

fn malformed(what: &str) -> HostError {
    HostError::Unavailable(format!("the model provider's answer is malformed: {what}"))
}

/// What the models host functions may touch: the provider, the TLS trust, the run's log, and
/// the resource table that holds open generations.
pub(crate) struct View<'a> {
    pub provider: Option<&'a ModelProvider>,
    pub tls: &'a TlsRoots,
    pub log: &'a RunLog,
    pub table: &'a mut ResourceTable,
}

impl View<'_> {
    fn models(&self) -> Models<'_> {
        Models {
            provider: self.provider,
            tls: self.tls,
            log: self.log,
        }
    }
}

struct ModelsFamily;

impl HasData for ModelsFamily {
    type Data<'a> = View<'a>;
}

/// What the store data lends the models host functions: their view, and nothing else.
pub(crate) trait ModelsView: Send + 'static {
    fn models(&mut self) -> View<'_>;
}

pub(crate) fn link<T: ModelsView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/models" => models::add_to_linker::<T, ModelsFamily>(linker, T::models)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl models::Host for View<'_> {
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

impl models::HostGeneration for View<'_> {
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

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn a_malformed_answer_is_described_without_its_text() {
        let answer = br#"{"data": [{"index": 0, "embedding": "sk-secret-echoed"}]}"#;
        let Err(HostError::Unavailable(message)) = parse::<EmbeddingsAnswer>(answer) else {
            panic!("a string where numbers belong was accepted");
        };
        assert!(!message.contains("secret"), "{message}");
        assert!(
            message.contains("not the expected fields or types"),
            "{message}"
        );
    }
}
