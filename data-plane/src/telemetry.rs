//! Logs and traces for both binaries: one [`init`] that installs the log writer (text or JSON,
//! `SWITCHYARD_LOG_FORMAT`), the `RUST_LOG` filter and, when an OTLP endpoint is configured,
//! OpenTelemetry traces exported over OTLP/HTTP.
//!
//! - [`OtelConfig`]: the standard `OTEL_*` variables, read once at start and validated (a bad
//!   value stops the process with a message naming the variable). With neither
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set there is no
//!   OpenTelemetry layer at all: no span is built for export and no span helper below does any
//!   work beyond one atomic load.
//! - `json`: the JSON log line, with the fields of every enclosing span, the request id at the
//!   top level, and `trace_id`/`span_id` of the current OpenTelemetry span.
//! - `spans`: the server span of each HTTP request and the GenAI client span of each provider
//!   attempt (OpenTelemetry semantic conventions for HTTP and GenAI), and their attributes.
//! - `propagation`: W3C trace context in (`traceparent`/`tracestate` of the client's request)
//!   and out (every upstream request, through [`UpstreamClient`](crate::egress::UpstreamClient)).
//!
//! # Filtering
//!
//! `RUST_LOG` (default `info`) filters log lines only. The OpenTelemetry layer has its own
//! filter: spans and events of Switchyard's crates at `info` and above, whatever `RUST_LOG`
//! says, and nothing from dependencies. That keeps the exporter's own HTTP client (hyper,
//! reqwest) out of the traces it exports, which would otherwise feed itself.
//!
//! # Export
//!
//! Spans are batched and sent by the SDK's batch processor on its own thread, with the blocking
//! reqwest client (DEPENDENCIES.md §6.1). An unreachable collector costs log warnings
//! (`BatchSpanProcessor.ExportError`), never a request. [`TelemetryGuard::shutdown`] flushes
//! what is left at exit, bounded by [`SHUTDOWN_TIMEOUT`].

mod json;
mod propagation;
mod spans;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

pub use json::JsonLines;
pub use propagation::Caller;
pub(crate) use propagation::{carry, outgoing};
pub(crate) use spans::{
    Operation, attempt_failed, attempt_span, record_chat_request, record_completion,
    record_embeddings_response, record_request_event, record_stream_response, record_usage,
};
pub use spans::{record_response, server_span};

/// How long [`TelemetryGuard::shutdown`] waits for the last spans to reach the collector.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The crates whose spans and events are exported (see "Filtering").
const TRACED_CRATES: [&str; 4] = ["data_plane", "control_plane", "shared", "billing"];

/// The instrumentation scope name on every exported span.
const TRACER_NAME: &str = "switchyard";

/// Whether an OpenTelemetry layer is installed (set once by [`Telemetry::install`]). The span
/// helpers check it first, so with tracing off they cost one relaxed load.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are being exported: an OpenTelemetry layer is installed.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// The data plane's choice.
    Stdout,
    /// The control plane's choice (its getting-started text goes there too).
    Stderr,
}

/// Installs logging and, when configured, trace export for the process: the log writer
/// (`format`), the `RUST_LOG` filter (default `info`) and the OpenTelemetry layer when
/// [`OtelConfig::from_env`] finds an endpoint. `service_default` is the `service.name` unless
/// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
///
/// Like `try_init`: when a subscriber is already installed (a test harness did it), this one is
/// dropped, trace export included, and the guard does nothing.
///
/// # Errors
/// An invalid `OTEL_*` variable (including `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, which this build
/// does not ship), or an exporter that cannot be built.
pub fn init(
    service_default: &str,
    format: LogFormat,
    output: LogOutput,
) -> anyhow::Result<TelemetryGuard> {
    let otel = OtelConfig::from_env(service_default)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in collected logs.
    let (writer, ansi) = match output {
        LogOutput::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        LogOutput::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    Ok(Telemetry::build(otel.as_ref(), format, filter, writer, ansi)?.install())
}

/// The subscriber type [`Telemetry::build`] assembles.
type Subscriber = tracing_subscriber::layer::Layered<Vec<BoxedLayer>, Registry>;
type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// A subscriber (log layer, optional OpenTelemetry layer) not installed yet. [`init`] is
/// `build` + [`install`](Self::install) from the environment; tests build one with their own
/// writer and [`OtelConfig`].
pub struct Telemetry {
    subscriber: Subscriber,
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Assembles the layers: log lines in `format` to `writer` filtered by `filter`, and the
    /// OpenTelemetry layer exporting as `otel` says (none when `None`).
    ///
    /// # Errors
    /// When the OTLP exporter cannot be built.
    pub fn build(
        otel: Option<&OtelConfig>,
        format: LogFormat,
        filter: EnvFilter,
        writer: BoxMakeWriter,
        ansi: bool,
    ) -> anyhow::Result<Self> {
        let provider = otel.map(OtelConfig::tracer_provider).transpose()?;
        let mut layers: Vec<BoxedLayer> = Vec::with_capacity(2);
        layers.push(log_layer(format, writer, ansi).with_filter(filter).boxed());
        if let Some(provider) = &provider {
            layers.push(otel_layer(provider));
        }
        Ok(Self {
            subscriber: Registry::default().with(layers),
            provider,
        })
    }

    /// Installs the subscriber for the whole process (and the `log` crate bridge), unless one is
    /// installed already: then this one is dropped and the span helpers stay off (the guard
    /// then has nothing to flush).
    pub fn install(self) -> TelemetryGuard {
        if self.subscriber.try_init().is_ok() && self.provider.is_some() {
            ENABLED.store(true, Ordering::Relaxed);
        }
        TelemetryGuard {
            provider: self.provider,
        }
    }
}

/// The log layer: text (the formatter's default) or one JSON object per line ([`JsonLines`]).
fn log_layer(format: LogFormat, writer: BoxMakeWriter, ansi: bool) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer
            .with_ansi(false)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines)
            .boxed(),
    }
}

/// The OpenTelemetry layer: our crates' spans at `info` and above (see "Filtering"), without
/// the per-span thread, target, source-location and busy/idle attributes (noise in a gateway's
/// spans).
fn otel_layer(provider: &SdkTracerProvider) -> BoxedLayer {
    let targets = TRACED_CRATES.iter().fold(Targets::new(), |t, krate| {
        t.with_target(*krate, LevelFilter::INFO)
    });
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_threads(false)
        .with_target(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(targets)
        .boxed()
}

/// Keeps the trace exporter for the end of the process. Call [`shutdown`](Self::shutdown) last,
/// after the last request finished, so its spans are sent.
#[must_use = "call shutdown() at exit, or the last spans are lost"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("tracing", &self.provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Exports every span that has ended so far, and waits until the collector answered (or the
    /// exporter's timeout). For tests, which must not wait for the batch interval.
    ///
    /// # Errors
    /// When the export failed.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        // The batch processor's thread does the export; waiting for it blocks.
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .context("the flush task failed")?
            .context("exporting spans")
    }

    /// Sends the spans not exported yet and stops the exporter, waiting at most
    /// [`SHUTDOWN_TIMEOUT`]. A failure is logged, never returned: it must not change how the
    /// process exits.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let result =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "spans could not be exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "the trace exporter's shutdown failed"),
        }
    }
}

/// The OTLP encoding on the wire (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the default): `application/x-protobuf`.
    HttpProtobuf,
    /// `http/json`: `application/json`.
    HttpJson,
}

/// Which traces are kept (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    /// This fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// The caller's decision when the request carries a `traceparent`, else always.
    ParentBasedAlwaysOn,
    /// The caller's decision when the request carries a `traceparent`, else never.
    ParentBasedAlwaysOff,
    /// The caller's decision when the request carries a `traceparent`, else the fraction.
    ParentBasedTraceIdRatio(f64),
}

impl TraceSampler {
    fn to_sdk(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Trace export settings from the standard OpenTelemetry variables (names as in the
/// OpenTelemetry specification; the traces-specific variable wins over the general one).
#[derive(Clone, PartialEq)]
pub struct OtelConfig {
    /// The full URL spans are POSTed to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. a vendor's API key: never
    /// printed.
    pub headers: Vec<(String, String)>,
    /// Per export request (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; default 10 s).
    pub timeout: Duration,
    pub sampler: TraceSampler,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
    /// else the binary's default.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES` (without `service.name`).
    pub resource: Vec<(String, String)>,
}

impl std::fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            // Names only: values are often credentials.
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("sampler", &self.sampler)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .finish()
    }
}

/// The default of `OTEL_EXPORTER_OTLP_TIMEOUT`.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl OtelConfig {
    /// Reads the process environment; see [`from_lookup`](Self::from_lookup).
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env(service_default: &str) -> anyhow::Result<Option<Self>> {
        Self::from_lookup(service_default, |name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (a variable's value by name; empty counts as unset), or `None`
    /// when tracing is off: no endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    ///
    /// # Errors
    /// A variable with a value we cannot honour, named in the message (values of
    /// `OTEL_EXPORTER_OTLP_HEADERS` are never quoted).
    pub fn from_lookup(
        service_default: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Self>> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        // The traces-specific variable, else the general one; with the name that was used.
        let either = |traces: &'static str, general: &'static str| {
            var(traces)
                .map(|v| (traces, v))
                .or_else(|| var(general).map(|v| (general, v)))
        };

        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporter) = var("OTEL_TRACES_EXPORTER") {
            match exporter.trim() {
                "otlp" => {}
                "none" => return Ok(None),
                other => bail!(
                    "OTEL_TRACES_EXPORTER={other} is not supported: use otlp (the default) or none"
                ),
            }
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => (
                traces.trim().to_owned(),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (None, Some(base)) => (
                format!("{}/v1/traces", base.trim().trim_end_matches('/')),
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (None, None) => return Ok(None),
        };
        let (endpoint, endpoint_var) = endpoint;
        match url::Url::parse(&endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => bail!("{endpoint_var}: {endpoint} is not an http:// or https:// URL"),
        }

        let protocol = match either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            None => OtlpProtocol::HttpProtobuf,
            Some((name, value)) => match value.trim() {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "http/json" => OtlpProtocol::HttpJson,
                "grpc" => bail!(
                    "{name}=grpc is not supported: Switchyard exports OTLP over HTTP only; use \
                     http/protobuf (the default) or http/json, and the collector's OTLP/HTTP \
                     port (4318 by default, not gRPC's 4317)"
                ),
                other => bail!("{name}={other} is not supported: use http/protobuf or http/json"),
            },
        };

        let headers = match either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            None => Vec::new(),
            Some((name, value)) => parse_pairs(&value)
                .with_context(|| format!("{name} must be a list of key=value pairs"))?,
        };
        for (key, value) in &headers {
            let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                && http::HeaderValue::from_str(value).is_ok();
            if !valid {
                bail!("OTEL_EXPORTER_OTLP_HEADERS: the header {key:?} is not a valid HTTP header");
            }
        }

        let timeout = match either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            None => DEFAULT_EXPORT_TIMEOUT,
            Some((name, value)) => match value.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => bail!("{name}={value} is not a positive number of milliseconds"),
            },
        };

        let sampler = parse_sampler(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;

        let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            None => Vec::new(),
            Some(value) => parse_pairs(&value)
                .context("OTEL_RESOURCE_ATTRIBUTES must be a list of key=value pairs")?,
        };
        let from_resource = resource
            .iter()
            .position(|(k, _)| k == "service.name")
            .map(|i| resource.remove(i).1);
        let service_name = var("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_owned())
            .or(from_resource)
            .unwrap_or_else(|| service_default.to_owned());

        Ok(Some(Self {
            endpoint,
            protocol,
            headers,
            timeout,
            sampler,
            service_name,
            resource,
        }))
    }

    /// The SDK's provider: the OTLP/HTTP exporter behind a batch processor, the sampler and the
    /// resource. Everything is set here explicitly, so the exporter's own reading of the
    /// environment (which ignores `OTEL_EXPORTER_OTLP_PROTOCOL`) has nothing left to decide.
    ///
    /// # Errors
    /// When the exporter cannot be built.
    pub fn tracer_provider(&self) -> anyhow::Result<SdkTracerProvider> {
        let protocol = match self.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
            OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(self.endpoint.clone())
            .with_protocol(protocol)
            .with_timeout(self.timeout)
            .with_headers(self.headers.iter().cloned().collect())
            .build()
            .context("cannot build the OTLP trace exporter")?;
        let resource = Resource::builder_empty()
            .with_detector(Box::new(
                opentelemetry_sdk::resource::TelemetryResourceDetector,
            ))
            .with_attributes(
                self.resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_service_name(self.service_name.clone())
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(self.sampler.to_sdk())
            .with_resource(resource)
            .build())
    }
}

/// `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) with its `OTEL_TRACES_SAMPLER_ARG`
/// (a ratio in [0, 1], default 1, for the ratio samplers).
fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> anyhow::Result<TraceSampler> {
    let ratio = || -> anyhow::Result<f64> {
        match arg.map(str::trim) {
            None => Ok(1.0),
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => bail!("OTEL_TRACES_SAMPLER_ARG={a} is not a ratio between 0 and 1"),
            },
        }
    };
    Ok(
        match name.map(str::trim).unwrap_or("parentbased_always_on") {
            "always_on" => TraceSampler::AlwaysOn,
            "always_off" => TraceSampler::AlwaysOff,
            "traceidratio" => TraceSampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => TraceSampler::ParentBasedAlwaysOn,
            "parentbased_always_off" => TraceSampler::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => TraceSampler::ParentBasedTraceIdRatio(ratio()?),
            other => bail!(
                "OTEL_TRACES_SAMPLER={other} is not supported: use always_on, always_off, \
             traceidratio, parentbased_always_on, parentbased_always_off or \
             parentbased_traceidratio"
            ),
        },
    )
}

/// `key=value,key=value` as in `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`:
/// keys and values trimmed, values percent-decoded; empty entries skipped. The error names the
/// entry's position, never its value.
fn parse_pairs(input: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = BTreeMap::new();
    for (i, entry) in input.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            bail!("entry {} has no `=`", i + 1);
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("entry {} has an empty key", i + 1);
        }
        let value = percent_decode(value.trim())
            .with_context(|| format!("entry {} is not valid percent-encoded UTF-8", i + 1))?;
        // The last of a repeated key wins.
        pairs.insert(key.to_owned(), value);
    }
    Ok(pairs.into_iter().collect())
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Option<OtelConfig>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelConfig::from_lookup("switchyard-data-plane", |k| vars.get(k).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        format!("{:#}", config(vars).expect_err("refused"))
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(config(&[]).unwrap(), None);
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert!(config(&on).unwrap().is_some());
        assert_eq!(
            config(&[on[0], ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(),
            None
        );
        assert_eq!(
            config(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
        assert!(
            error(&[on[0], ("OTEL_TRACES_EXPORTER", "zipkin")]).contains("OTEL_TRACES_EXPORTER")
        );
    }

    #[test]
    fn defaults_follow_the_specification() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.sampler, TraceSampler::ParentBasedAlwaysOn);
        assert_eq!(c.service_name, "switchyard-data-plane");
        assert!(c.headers.is_empty() && c.resource.is_empty());
    }

    #[test]
    fn traces_variables_win_over_general_ones() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ])
        .unwrap()
        .unwrap();
        // The traces endpoint is used exactly as given.
        assert_eq!(c.endpoint, "https://traces.example/custom");
        assert_eq!(c.protocol, OtlpProtocol::HttpJson);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.headers, vec![("b".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn grpc_and_unknown_protocols_are_refused_with_the_variable_named() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        let grpc = error(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert!(
            grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported")
                && grpc.contains("http/protobuf"),
            "{grpc}"
        );
        let other = error(&[base, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")]);
        assert!(
            other.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "{other}"
        );
        assert!(error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).contains("URL"));
        assert!(error(&[base, ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")]).contains("TIMEOUT"));
    }

    #[test]
    fn samplers() {
        let s = |name: Option<&str>, arg: Option<&str>| parse_sampler(name, arg);
        assert_eq!(s(None, None).unwrap(), TraceSampler::ParentBasedAlwaysOn);
        assert_eq!(s(Some("always_on"), None).unwrap(), TraceSampler::AlwaysOn);
        assert_eq!(
            s(Some("always_off"), None).unwrap(),
            TraceSampler::AlwaysOff
        );
        assert_eq!(
            s(Some("parentbased_traceidratio"), Some("0.25")).unwrap(),
            TraceSampler::ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(
            s(Some("traceidratio"), None).unwrap(),
            TraceSampler::TraceIdRatio(1.0)
        );
        assert!(s(Some("traceidratio"), Some("1.5")).is_err());
        assert!(s(Some("jaeger_remote"), None).is_err());
    }

    #[test]
    fn headers_and_resource_attributes_are_decoded_and_secrets_not_printed() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=s3cr%3Dt , authorization=Basic%20abc",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=from-resource",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            c.headers,
            vec![
                ("authorization".to_owned(), "Basic abc".to_owned()),
                ("x-api-key".to_owned(), "s3cr=t".to_owned()),
            ]
        );
        assert_eq!(c.service_name, "from-resource");
        assert_eq!(
            c.resource,
            vec![("deployment.environment".to_owned(), "prod".to_owned())]
        );
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("s3cr") && !printed.contains("abc"),
            "{printed}"
        );

        // OTEL_SERVICE_NAME wins over the resource attribute.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SERVICE_NAME", "gateway-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.service_name, "gateway-eu");

        let bad = error(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key:supersecret"),
        ]);
        assert!(bad.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{bad}");
        assert!(!bad.contains("supersecret"), "{bad}");
    }
}
