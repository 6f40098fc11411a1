//! `warden call`: one request to a daemon's API (`warden serve`) over HTTPS, as a caller would
//! make it: `warden call POST /v1/runs --data '{"node": "…"}'`. The key comes from
//! `$WARDEN_API_KEY` or `--key-file`; streamed answers (`--stream`) are printed as they come.

use crate::async_runtime::tokio;
use crate::failure::Failure;
use crate::files::{ca_certificates, read_text};
use crate::output::out;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct CallArgs {
    /// GET or POST.
    method: String,
    /// The route, such as /v1/runs or /v1/nodes.
    path: String,
    /// The daemon, as `https://HOST:PORT`.
    #[arg(long, env = "WARDEN_DAEMON", value_name = "URL")]
    daemon: String,
    /// The JSON body to send.
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// A file holding the API key (else $WARDEN_API_KEY).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Also trust the CA certificate(s) in FILE (such as the daemon's development certificate).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
    /// Ask for the answer as it is produced (NDJSON), one line per event.
    #[arg(long)]
    stream: bool,
}

/// The longest a call may take: a run's longest timeout and then some.
const CALL_TIMEOUT: Duration = Duration::from_secs(24 * 3600 + 60);

pub(crate) fn execute(args: CallArgs) -> Result<(), Failure> {
    let method = hyper::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::usage(format!("`{}` is not an HTTP method", args.method)))?;
    let url = url::Url::parse(&args.daemon)
        .map_err(|error| Failure::usage(format!("--daemon `{}`: {error}", args.daemon)))?;
    if url.scheme() != "https" {
        return Err(Failure::usage(
            "--daemon: the daemon is reached over https:// only",
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Failure::usage("--daemon: the URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(443);
    if !args.path.starts_with('/') {
        return Err(Failure::usage("the path starts with /, such as /v1/nodes"));
    }
    let key = match &args.key_file {
        Some(file) => Some(read_text(file)?.trim().to_string()),
        None => std::env::var("WARDEN_API_KEY")
            .ok()
            .filter(|key| !key.trim().is_empty()),
    };
    if let Some(data) = &args.data {
        serde_json::from_str::<serde_json::Value>(data)
            .map_err(|error| Failure::usage(format!("--data is not JSON: {error}")))?;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in ca_certificates(&args.ca_certs)? {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|error| Failure::usage(format!("--ca-cert: {error}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Failure::failed(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let failed =
        |what: &str, error: String| Failure::failed(format!("{what} {}: {error}", args.daemon));
    let call = async {
        let tcp = ::tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| failed("cannot reach", error.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|error| Failure::usage(format!("--daemon: {error}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|error| failed("TLS with", error.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|error| failed("HTTP with", error.to_string()))?;
        ::tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&args.path)
            .header("host", url.authority())
            .header("content-type", "application/json")
            .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if args.stream {
            request = request.header("accept", "application/x-ndjson");
        }
        let body = Full::new(Bytes::from(args.data.clone().unwrap_or_default()));
        let request = request
            .body(body)
            .map_err(|error| Failure::usage(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| failed("no answer from", error.to_string()))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut text = Vec::new();
        // A streamed run that fails after it began says so in its last event, under a 200.
        let mut line = Vec::new();
        let mut stream_failed = false;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| failed("the answer broke off from", error.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if args.stream && status.is_success() {
                    out(&String::from_utf8_lossy(data));
                    // Error events are small; a line past 1 MiB is a chunk or a result.
                    for &byte in data.iter() {
                        if byte == b'\n' {
                            stream_failed |= serde_json::from_slice::<serde_json::Value>(&line)
                                .is_ok_and(|event| event["event"] == "error");
                            line.clear();
                        } else if line.len() < 1024 * 1024 {
                            line.push(byte);
                        }
                    }
                } else {
                    text.extend_from_slice(data);
                }
            }
        }
        if stream_failed {
            return Err(Failure::failed(
                "the run failed (its last event, above, says why)",
            ));
        }
        if !text.is_empty() {
            let mut shown = String::from_utf8_lossy(&text).into_owned();
            if !shown.ends_with('\n') {
                shown.push('\n');
            }
            out(&shown);
        }
        match status.is_success() {
            true => Ok(()),
            // The answer (its error code and message) is printed above.
            false => Err(Failure::failed(format!("the daemon answered {status}"))),
        }
    };
    tokio()?.block_on(async {
        ::tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| Failure::failed("no answer in time"))?
    })
}
