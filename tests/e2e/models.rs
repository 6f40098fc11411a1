//! The models capability against a stub OpenAI-compatible server on loopback: streamed tokens
//! reach the embedder as they come, and the provider is the operator's, not the node's choice.

use crate::support::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use warden::build::Target;
use warden_host::models::ModelProvider;
use warden_host::{
    Capabilities, RunRequest, Runtime, RuntimeConfig, Storage, Value, WasmSecurityConfig,
};

const TOKENS: [&str; 4] = ["Once", " upon", " a", " time"];

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let authorized = request
        .headers()
        .get("authorization")
        .map(|v| v.as_bytes() == b"Bearer operator-key")
        .unwrap_or(false);
    let body: serde_json::Value =
        serde_json::from_slice(&request.into_body().collect().await?.to_bytes())
            .unwrap_or_default();
    let json = |value: serde_json::Value| Response::new(Full::new(Bytes::from(value.to_string())));
    if !authorized {
        return Ok(Response::builder()
            .status(401)
            .body(Full::new(Bytes::from("no key")))
            .unwrap());
    }
    Ok(match path.as_str() {
        "/v1/embeddings" => {
            let inputs = body["input"].as_array().cloned().unwrap_or_default();
            let data: Vec<_> = inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(index, input)| serde_json::json!({"index": index, "embedding": [input.as_str().unwrap_or("").len() as f64, 0.5]}))
                .collect();
            json(serde_json::json!({ "data": data }))
        }
        "/v1/chat/completions" if body["stream"] == true => {
            let mut events = String::new();
            for token in TOKENS {
                events += &format!(
                    "data: {}\n\n",
                    serde_json::json!({"choices": [{"delta": {"content": token}}]})
                );
            }
            events += "data: [DONE]\n\n";
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(events)))
                .unwrap()
        }
        "/v1/chat/completions" => json(
            serde_json::json!({"choices": [{"message": {"content": format!("echo: {}", body["messages"][0]["content"].as_str().unwrap_or(""))}}]}),
        ),
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    })
}

fn stub() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        serve_loopback(|stream| async move {
            let service = hyper::service::service_fn(answer);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        })
    })
}

fn runtime(key: &str, models: Vec<String>) -> Runtime {
    let provider =
        ModelProvider::new(&format!("http://{}/v1", stub()), Some(key.into()), models).unwrap();
    Runtime::from_config(RuntimeConfig {
        models: Some(provider),
        ..RuntimeConfig::new(Storage::in_memory().unwrap())
    })
}

fn config() -> WasmSecurityConfig {
    // No allowed_hosts at all: the provider is the operator's endpoint, not the node's.
    WasmSecurityConfig {
        capabilities: Capabilities::MODELS | Capabilities::STREAMING,
        ..WasmSecurityConfig::default()
    }
}

fn prompt(model: &str) -> RunRequest {
    request(
        "token-stream",
        &[
            ("prompt", Value::Text("tell a story".into())),
            ("model", Value::Text(model.into())),
        ],
    )
}

#[test]
fn tokens_stream_to_the_embedder_as_they_are_generated() {
    let node = load(&example("token-stream", Target::Unknown));
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let sink = chunks.clone();
    let mut request = prompt("default");
    request.on_stream = Some(Arc::new(move |chunk: &Value| {
        sink.lock().unwrap().push(chunk.clone())
    }));
    let outcome = run(&runtime("operator-key", vec![]), &node, &config(), request).unwrap();
    assert_eq!(
        output(&outcome, "text"),
        &Value::Text("Once upon a time".into())
    );
    assert_eq!(output(&outcome, "pieces"), &Value::Integer(4));
    let streamed: Vec<Value> = TOKENS
        .iter()
        .map(|token| Value::Text(token.to_string()))
        .collect();
    assert_eq!(*chunks.lock().unwrap(), streamed);
}

#[test]
fn provider_failures_and_unoffered_models_are_errors_for_the_node() {
    let node = load(&example("token-stream", Target::Unknown));
    let error = run(
        &runtime("wrong-key", vec![]),
        &node,
        &config(),
        prompt("default"),
    )
    .unwrap_err();
    assert!(error.to_string().contains("answered 401"), "{error}");
    assert!(!error.to_string().contains("wrong-key"), "{error}");
    let error = run(
        &runtime("operator-key", vec!["small".into()]),
        &node,
        &config(),
        prompt("huge"),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the model `huge` is not offered; use one of small"),
        "{error}"
    );
    let no_provider = Runtime::new().unwrap();
    let error = run(&no_provider, &node, &config(), prompt("default")).unwrap_err();
    assert!(error.to_string().contains("no model provider"), "{error}");
    let refused = WasmSecurityConfig {
        capabilities: Capabilities::STREAMING,
        ..config()
    };
    assert_eq!(
        run(&no_provider, &node, &refused, prompt("default"))
            .unwrap_err()
            .exit_code(),
        3
    );
}

#[test]
fn embeddings_come_back_in_input_order() {
    let probe = load(&build_node(
        "tests/nodes/probe",
        Target::Unknown,
        &["models"],
    ));
    let config = WasmSecurityConfig {
        capabilities: Capabilities::MODELS,
        ..WasmSecurityConfig::default()
    };
    let outcome = run(
        &runtime("operator-key", vec![]),
        &probe,
        &config,
        request("probe", &[]),
    )
    .unwrap();
    assert_eq!(output(&outcome, "called"), &Value::Text("models".into()));
    // The stub answers in reverse order with each input's length; the host sorts by index.
    assert_eq!(output(&outcome, "detail"), &Value::Text("1,3".into()));
}
