//! Logging, set up once: JSON lines when output is not a terminal (services,
//! containers), readable lines on a terminal. Each request's lines carry its
//! `request_id` through the request span. With `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set (and the `otlp` feature, on by default), spans are also exported as
//! OpenTelemetry traces over OTLP/HTTP; the standard `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`) apply.

use std::io::IsTerminal;

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when the process ends (`shutdown`).
#[must_use = "keep it until the process ends, then call shutdown"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered. Call outside the async runtime.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: exporting the last traces failed: {e}");
        }
    }
}

/// Sets up logging (and trace export when configured). Call once, before
/// the async runtime starts; a second call (tests start many apps in one
/// process) keeps the first.
pub fn init(filter: &str, format: &str) -> Telemetry {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    #[cfg(feature = "otlp")]
    let (traces, exporting) = match otlp::tracer() {
        Ok(Some((provider, layer))) => (Some(provider), Some(layer)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: traces will not be exported: {e}");
            (None, None)
        }
    };
    #[cfg(not(feature = "otlp"))]
    let exporting: Option<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = None;
    let _ = tracing_subscriber::registry()
        .with(exporting)
        .with(filter)
        .with(log_lines(json))
        .try_init();
    Telemetry {
        #[cfg(feature = "otlp")]
        traces,
    }
}

/// Log lines on stderr, JSON or readable.
fn log_lines<S>(json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    if json {
        lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        lines.compact().boxed()
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::{Layer, Registry};

    type OtelLayer = Box<dyn Layer<Registry> + Send + Sync>;

    /// The exporter and the layer feeding it, when `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (or its traces-only twin) is set.
    pub fn tracer() -> anyhow::Result<Option<(SdkTracerProvider, OtelLayer)>> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name("integro");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("integro");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
        Ok(Some((provider, layer)))
    }
}
