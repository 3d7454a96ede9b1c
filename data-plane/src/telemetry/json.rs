//! One JSON object per log line (`SWITCHYARD_LOG_FORMAT=json`).
//!
//! The shape is `tracing-subscriber`'s JSON format (`timestamp`, `level`, `target`, `fields`
//! with `message`, `span` for the innermost span and `spans` from the root), so log pipelines
//! built for it keep working, plus:
//! - `request_id`: the id of the request the line belongs to (the outermost `request` span's
//!   `id`, or `request_id` in the control plane's), at the top level, so a request's lines are
//!   one filter away;
//! - `trace_id` and `span_id`: the current OpenTelemetry span's, when tracing is on, so a log
//!   line leads to its trace and back.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line formatter; span fields must be formatted with
/// [`JsonFields`](tracing_subscriber::fmt::format::JsonFields) (as `init` does).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// The name of the span per HTTP request (the gateway's and the control plane's), whose `id`
/// (or `request_id`) field is the request id.
const REQUEST_SPAN: &str = "request";

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        // Lines bridged from the `log` crate carry their real target as a field.
        let target = match fields.remove("log.target") {
            Some(Value::String(t)) => t,
            _ => meta.target().to_owned(),
        };
        fields.retain(|k, _| !k.starts_with("log."));

        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(now()));
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_owned()),
        );
        line.insert("fields".into(), Value::Object(fields));
        line.insert("target".into(), Value::String(target));

        let mut request_id = None;
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut object = match span.extensions().get::<FormattedFields<N>>() {
                    Some(formatted) if !formatted.fields.is_empty() => {
                        match serde_json::from_str::<Value>(&formatted.fields) {
                            Ok(Value::Object(map)) => map,
                            // Not JSON (another field formatter): kept as text.
                            _ => Map::from_iter([(
                                "fields".to_owned(),
                                Value::String(formatted.fields.clone()),
                            )]),
                        }
                    }
                    _ => Map::new(),
                };
                // The OpenTelemetry layer's instructions (`otel.name`, `otel.kind`), not data.
                object.retain(|key, _| !key.starts_with("otel."));
                if span.name() == REQUEST_SPAN && request_id.is_none() {
                    // The gateway's span names it `id`, the control plane's `request_id`.
                    request_id = object
                        .get("id")
                        .or_else(|| object.get("request_id"))
                        .cloned();
                }
                object.insert("name".into(), Value::String(span.name().to_owned()));
                spans.push(Value::Object(object));
            }
            if let Some(current) = spans.last() {
                line.insert("span".into(), current.clone());
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        if let Some(id) = request_id {
            line.insert("request_id".into(), id);
        }
        if let Some((trace_id, span_id)) = otel_ids() {
            line.insert("trace_id".into(), Value::String(trace_id));
            line.insert("span_id".into(), Value::String(span_id));
        }

        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The current OpenTelemetry span's trace and span ids (hex), if there is one: the layer makes
/// an entered span's context current (context activation), so this is the span the event was
/// emitted in, or its nearest exported ancestor.
fn otel_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| {
            (
                context.trace_id().to_string(),
                context.span_id().to_string(),
            )
        })
    })
}

/// RFC 3339 in UTC with sub-second digits, like `tracing-subscriber`'s default.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An event's fields as JSON values (numbers and booleans as such, the rest as text).
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.0.insert(field.name().to_owned(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use testkit::logs::CapturedLogs;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};

    use crate::config::LogFormat;

    /// What the edge does per request: the `request` span, and a line logged in a task below it.
    fn log_a_request(id: &str) {
        let request = tracing::info_span!(target: "data_plane::telemetry", "request", id = %id, method = "POST");
        let _entered = request.enter();
        let attempt = tracing::info_span!("attempt", n = 2u64);
        let _inner = attempt.enter();
        tracing::warn!(status = 502u16, ratio = 0.5, ok = false, "attempt failed");
    }

    #[test]
    fn lines_carry_the_request_id_and_every_span() {
        let out = CapturedLogs::default();
        let layer =
            super::super::log_layer(LogFormat::Json, BoxMakeWriter::new(out.clone()), false);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            log_a_request("0190-abc");
            tracing::info!("outside any request");
        });
        let lines = out.json_lines().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "attempt failed");
        assert_eq!(line["fields"]["status"], 502);
        assert_eq!(line["fields"]["ratio"], 0.5);
        assert_eq!(line["fields"]["ok"], false);
        assert_eq!(line["request_id"], "0190-abc");
        assert_eq!(line["spans"][0]["name"], "request");
        assert_eq!(line["spans"][0]["id"], "0190-abc");
        assert_eq!(line["spans"][0]["method"], "POST");
        assert_eq!(line["span"]["name"], "attempt");
        assert_eq!(line["span"]["n"], 2);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        // No tracing: no ids made up.
        assert!(line.get("trace_id").is_none(), "{line}");

        let outside = &lines[1];
        assert!(outside.get("request_id").is_none() && outside.get("spans").is_none());
    }

    #[test]
    fn with_tracing_lines_carry_the_current_spans_trace_and_span_ids() {
        let out = CapturedLogs::default();
        // A provider without an exporter: spans get real ids, nothing is sent.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(super::super::log_layer(
                LogFormat::Json,
                BoxMakeWriter::new(out.clone()),
                false,
            ))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(EnvFilter::new("info")),
            );
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            let request =
                tracing::info_span!(target: "data_plane::telemetry", "request", id = "r-1");
            let _entered = request.enter();
            tracing::info!("inside");
            let cx = request.context();
            let span = cx.span();
            let sc = span.span_context();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let lines = out.json_lines().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["trace_id"], trace_id.as_str());
        assert_eq!(lines[0]["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
    }
}
