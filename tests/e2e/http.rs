//! http-get and http-write through a node, against HTTP/1.1 and HTTP/2 servers with TLS from a
//! test CA made at run time, all on loopback: the allow/deny matrix, redirects, caps.

use crate::support::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use warden::build::Target;
use warden_host::allowlist::AllowedHosts;
use warden_host::{
    Capabilities, RunOutcome, Runtime, RuntimeConfig, Storage, Value, WasmSecurityConfig,
};

struct Servers {
    /// The test CA, DER.
    ca: Vec<u8>,
    https: SocketAddr,
    http: SocketAddr,
}

/// What the test servers answer, by path.
async fn handle(
    request: Request<Incoming>,
    own: String,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let protocol = format!("{:?}", request.version());
    let path = request.uri().path().to_string();
    let method = request.method().to_string();
    let authorization = request.headers().get("authorization").is_some();
    let body = request.into_body().collect().await?.to_bytes();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("x-protocol", protocol.clone())
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let redirect = |to: String| {
        Response::builder()
            .status(302)
            .header("location", to)
            .header("x-protocol", protocol.clone())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    Ok(match path.as_str() {
        "/json" => reply(200, r#"{"answer":42}"#.into()),
        "/echo" => reply(
            200,
            format!(
                "{method} {} auth={authorization}",
                String::from_utf8_lossy(&body)
            ),
        ),
        "/redirect-home" => redirect("/json".into()),
        "/redirect-away" => redirect("http://forbidden.example/".into()),
        "/redirect-other-port" => redirect(format!("{own}/echo")),
        "/loop" => redirect("/loop".into()),
        "/big" => reply(200, "x".repeat(8 * 1024 * 1024)),
        "/many-headers" => {
            let mut response = Response::builder().status(200);
            for index in 0..150 {
                response = response.header(format!("x-filler-{index}"), "x");
            }
            response.body(Full::new(Bytes::new())).unwrap()
        }
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(20)).await;
            reply(200, "late".into())
        }
        _ => reply(404, "not found".into()),
    })
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let (https_address, http_address) =
                    (https.local_addr().unwrap(), http.local_addr().unwrap());
                sender.send((https_address, http_address)).unwrap();
                let http_own = format!("http://127.0.0.1:{}", http_address.port());
                let https_own = format!("https://127.0.0.1:{}", https_address.port());
                let plain = tokio::spawn(async move {
                    while let Ok((stream, _)) = http.accept().await {
                        let own = https_own.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                handle(request, own.clone())
                            });
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                        });
                    }
                });
                while let Ok((stream, _)) = https.accept().await {
                    let acceptor = acceptor.clone();
                    let own = http_own.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service =
                            hyper::service::service_fn(move |request| handle(request, own.clone()));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                plain.abort();
            });
        });
        let (https, http) = receiver.recv().unwrap();
        Servers {
            ca: ca.der().to_vec(),
            https,
            http,
        }
    })
}

fn runtime() -> Runtime {
    let settings = RuntimeConfig {
        root_certificates: vec![servers().ca.clone()],
        ..RuntimeConfig::new(Storage::in_memory().unwrap())
    };
    Runtime::from_config(settings)
}

fn config(allowed: &[&str]) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: Capabilities::HTTP_GET | Capabilities::HTTP_WRITE,
        allowed_hosts: AllowedHosts::parse(allowed).unwrap(),
        ..WasmSecurityConfig::default()
    }
}

fn fetch(
    runtime: &Runtime,
    config: &WasmSecurityConfig,
    method: &str,
    url: &str,
    write: bool,
) -> RunOutcome {
    let node = test_node("http-probe", Target::Unknown);
    let inputs = [
        ("method", Value::Text(method.into())),
        ("url", Value::Text(url.into())),
        ("body", Value::Text("hello".into())),
        ("write", Value::Boolean(write)),
    ];
    run(runtime, &node, config, request("http", &inputs)).unwrap()
}

fn field(outcome: &RunOutcome, name: &str) -> Option<Value> {
    outcome
        .outputs
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value.clone())
}

fn error(outcome: &RunOutcome) -> String {
    match field(outcome, "error") {
        Some(Value::Text(text)) => text,
        _ => panic!("expected an error: {:?}", outcome.outputs),
    }
}

fn https(path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", servers().https.port())
}

fn http(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", servers().http.port())
}

#[test]
fn get_over_http2_with_tls_and_http1_in_plain() {
    let runtime = runtime();
    let allowed = config(&["127.0.0.1"]);
    let outcome = fetch(&runtime, &allowed, "GET", &https("/json"), false);
    assert_eq!(
        field(&outcome, "status"),
        Some(Value::Integer(200)),
        "{:?}",
        outcome.outputs
    );
    assert_eq!(
        field(&outcome, "body"),
        Some(Value::Text(r#"{"answer":42}"#.into()))
    );
    assert_eq!(
        field(&outcome, "protocol"),
        Some(Value::Text("HTTP/2.0".into()))
    );
    let outcome = fetch(&runtime, &allowed, "GET", &http("/json"), false);
    assert_eq!(
        field(&outcome, "protocol"),
        Some(Value::Text("HTTP/1.1".into())),
        "{:?}",
        outcome.outputs
    );
}

#[test]
fn hosts_outside_the_allowlist_are_denied_with_a_hint() {
    let runtime = runtime();
    let port = servers().https.port();
    for allowed in [
        &[][..],
        &["example.com"],
        &["*"],
        &["localhost"],
        &["127.0.0.2"],
        &["https://127.0.0.1:1"],
        &["http://127.0.0.1"],
    ] {
        let outcome = fetch(&runtime, &config(allowed), "GET", &https("/json"), false);
        let error = error(&outcome);
        assert!(error.starts_with("denied:"), "{allowed:?}: {error}");
        let log = outcome
            .log
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            log.contains("http request denied") && log.contains("allowed_hosts"),
            "{log}"
        );
    }
    let tricks = [
        format!("https://127.0.0.1:{port}@forbidden.example/json"),
        format!("https://forbidden.example/127.0.0.1:{port}"),
        format!("https://forbidden.example/#@127.0.0.1:{port}"),
    ];
    for url in tricks {
        assert!(
            error(&fetch(
                &runtime,
                &config(&["127.0.0.1"]),
                "GET",
                &url,
                false
            ))
            .starts_with("denied:"),
            "{url}"
        );
    }
    // Cloud metadata and other special addresses: never through `*` or a name.
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",
    ] {
        let error_text = error(&fetch(&runtime, &config(&["*"]), "GET", url, false));
        assert!(
            error_text.starts_with("denied:") && error_text.contains("169.254.169.254"),
            "{url}: {error_text}"
        );
    }
    // A name allowed by pattern that resolves to loopback is refused unless the address is listed.
    let by_name = format!("https://localhost:{port}/json");
    let error_text = error(&fetch(
        &runtime,
        &config(&["localhost"]),
        "GET",
        &by_name,
        false,
    ));
    assert!(error_text.contains("loopback"), "{error_text}");
    let outcome = fetch(
        &runtime,
        &config(&["localhost", "127.0.0.1", "::1"]),
        "GET",
        &by_name,
        false,
    );
    assert_eq!(
        field(&outcome, "status"),
        Some(Value::Integer(200)),
        "{:?}",
        outcome.outputs
    );
}

#[test]
fn methods_follow_the_capability() {
    let runtime = runtime();
    let allowed = config(&["127.0.0.1"]);
    let error_text = error(&fetch(&runtime, &allowed, "POST", &https("/echo"), false));
    assert!(
        error_text.contains("needs the http-write capability"),
        "{error_text}"
    );
    let error_text = error(&fetch(&runtime, &allowed, "GET", &https("/echo"), true));
    assert!(
        error_text.contains("needs the http-get capability"),
        "{error_text}"
    );
    let outcome = fetch(&runtime, &allowed, "POST", &https("/echo"), true);
    assert_eq!(
        field(&outcome, "body"),
        Some(Value::Text("POST hello auth=true".into())),
        "{:?}",
        outcome.outputs
    );
    let outcome = fetch(&runtime, &allowed, "HEAD", &https("/json"), false);
    assert_eq!(
        field(&outcome, "status"),
        Some(Value::Integer(200)),
        "{:?}",
        outcome.outputs
    );
    // Without http-write the node is refused before it runs.
    let get_only = WasmSecurityConfig {
        capabilities: Capabilities::HTTP_GET,
        ..allowed
    };
    let node = test_node("http-probe", Target::Unknown);
    let refused = run(
        &runtime,
        &node,
        &get_only,
        request("http", &[("url", Value::Text(https("/json")))]),
    );
    assert_eq!(refused.unwrap_err().exit_code(), 3);
}

#[test]
fn every_redirect_hop_is_checked() {
    let runtime = runtime();
    let allowed = config(&["127.0.0.1"]);
    let outcome = fetch(&runtime, &allowed, "GET", &https("/redirect-home"), false);
    assert_eq!(
        field(&outcome, "body"),
        Some(Value::Text(r#"{"answer":42}"#.into())),
        "{:?}",
        outcome.outputs
    );
    let error_text = error(&fetch(
        &runtime,
        &allowed,
        "GET",
        &https("/redirect-away"),
        false,
    ));
    assert!(
        error_text.starts_with("denied:") && error_text.contains("forbidden.example"),
        "{error_text}"
    );
    let error_text = error(&fetch(&runtime, &allowed, "GET", &https("/loop"), false));
    assert!(error_text.contains("more than 5 redirects"), "{error_text}");
    // To another origin the authorization header is dropped.
    let outcome = fetch(
        &runtime,
        &allowed,
        "GET",
        &http("/redirect-other-port"),
        false,
    );
    assert_eq!(
        field(&outcome, "body"),
        Some(Value::Text("GET  auth=false".into())),
        "{:?}",
        outcome.outputs
    );
    // Only the https port allowed: the redirect to the plain port is refused.
    let one_port = config(&[&format!("https://127.0.0.1:{}", servers().https.port())]);
    let outcome = fetch(&runtime, &one_port, "GET", &https("/redirect-home"), false);
    assert_eq!(
        field(&outcome, "status"),
        Some(Value::Integer(200)),
        "{:?}",
        outcome.outputs
    );
    let error_text = error(&fetch(&runtime, &one_port, "GET", &http("/json"), false));
    assert!(error_text.starts_with("denied:"), "{error_text}");
    // A redirect from the allowed https port to the plain port is refused at that hop.
    let plain_only = config(&[&format!("http://127.0.0.1:{}", servers().http.port())]);
    let error_text = error(&fetch(
        &runtime,
        &plain_only,
        "GET",
        &http("/redirect-other-port"),
        false,
    ));
    assert!(
        error_text.starts_with("denied:") && error_text.contains("https://127.0.0.1"),
        "{error_text}"
    );
}

#[test]
fn response_size_and_untrusted_certificates() {
    let runtime = runtime();
    let mut allowed = config(&["127.0.0.1"]);
    allowed.limits.host.http_response_bytes = 1024 * 1024;
    let error_text = error(&fetch(&runtime, &allowed, "GET", &https("/big"), false));
    assert!(error_text.starts_with("too large:"), "{error_text}");
    // A runtime that does not trust the test CA refuses the server's certificate.
    let untrusting = Runtime::new().unwrap();
    let error_text = error(&fetch(
        &untrusting,
        &config(&["127.0.0.1"]),
        "GET",
        &https("/json"),
        false,
    ));
    assert!(
        error_text.starts_with("unavailable:") && error_text.to_lowercase().contains("certificate"),
        "{error_text}"
    );
}

#[test]
fn the_fetch_json_example_reads_a_value_over_https() {
    let runtime = runtime();
    let node = load(&example("fetch-json", Target::Unknown));
    let inputs = [
        ("url", Value::Text(https("/json"))),
        ("pointer", Value::Text("/answer".into())),
    ];
    let outcome = run(
        &runtime,
        &node,
        &config(&["127.0.0.1"]),
        request("fetch-json", &inputs),
    )
    .unwrap();
    assert_eq!(field(&outcome, "value"), Some(Value::Json("42".into())));
    let error = run(
        &runtime,
        &node,
        &config(&[]),
        request("fetch-json", &inputs),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("not in allowed_hosts"),
        "{error}"
    );
}

#[test]
fn a_slow_server_cannot_hold_a_node_past_its_deadline() {
    let runtime = runtime();
    let mut allowed = config(&["127.0.0.1"]);
    allowed.limits.timeout = std::time::Duration::from_millis(700);
    let node = test_node("http-probe", Target::Unknown);
    let result = run(
        &runtime,
        &node,
        &allowed,
        request("http", &[("url", Value::Text(https("/slow")))]),
    );
    // Either the request gives up inside the deadline (an error the node sees) or the run's
    // timeout ends it: never the server's 20 seconds.
    match result {
        Ok(outcome) => assert!(
            error(&outcome).contains("timed out"),
            "{:?}",
            outcome.outputs
        ),
        Err(error) => assert_eq!(
            error.limit(),
            Some(warden_host::LimitKind::Timeout),
            "{error}"
        ),
    }
}

#[test]
fn request_bodies_and_response_headers_are_capped() {
    let runtime = runtime();
    let mut small = config(&["127.0.0.1"]);
    small.limits.host.http_request_bytes = 3;
    let error_text = error(&fetch(&runtime, &small, "POST", &https("/echo"), true));
    assert!(
        error_text.starts_with("too large:") && error_text.contains("request body is 5 bytes"),
        "{error_text}"
    );
    let error_text = error(&fetch(
        &runtime,
        &config(&["127.0.0.1"]),
        "GET",
        &https("/many-headers"),
        false,
    ));
    assert!(
        error_text.starts_with("too large:") && error_text.contains("at most 100 headers"),
        "{error_text}"
    );
}
