//! OpenTelemetry trace export over OTLP (HTTP, protobuf), behind the `otlp` feature. It is on
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, such as
//! `http://127.0.0.1:4318`; the other standard `OTEL_*` variables (headers, timeout, service
//! name) apply as the OpenTelemetry SDK reads them. Every `tracing` span (one per run, with its
//! run id and context ids) becomes an OpenTelemetry span.
//!
//! The exporter sends with hyper (plain HTTP: export to a collector beside the daemon), on the
//! daemon's own Tokio runtime, so neither reqwest nor a second TLS stack is linked.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::registry::LookupSpan;

/// The variables that turn export on.
pub const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Flushes the spans still buffered and stops the exporter when dropped.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

impl Exporting {
    /// Sends what is buffered now.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

/// Sends each export on the Tokio runtime it was made on: the SDK's batch processor exports
/// from a thread of its own, where hyper has no runtime.
#[derive(Debug, Clone)]
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    client: Arc<opentelemetry_http::hyper::HyperClient>,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|error| Box::new(error) as HttpError)?
    }
}

/// The tracing layer that exports spans, when an endpoint is configured; call it within the
/// Tokio runtime the daemon runs on.
#[allow(clippy::type_complexity)]
pub fn layer<S>() -> Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Exporting,
    )>,
    String,
>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let configured = ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "OTLP export needs the daemon's runtime".to_string())?;
    let client = OnRuntime {
        runtime,
        client: Arc::new(
            opentelemetry_http::hyper::HyperClient::with_default_connector(
                Duration::from_secs(10),
                None,
            ),
        ),
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|error| format!("OTLP exporter: {error}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "warden".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("warden");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Exporting { provider },
    )))
}
