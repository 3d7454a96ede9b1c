//! OpenTelemetry traces and JSON logs end to end: the gateway (in-process, with the fake OpenAI
//! upstream) exports to a fake OTLP/HTTP collector on 127.0.0.1.
//!
//! The tracer provider and the subscriber are process-wide, so this file is its own test binary
//! and one test owns them (`traces_logs_and_context_propagation`); the protobuf test builds its
//! own provider and never installs it. Spans are sent with `force_flush`, never by waiting for
//! the batch interval.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use common::{Gateway, REQUEST_ID, WAIT, deployment, user_message};
use data_plane::config::LogFormat;
use data_plane::telemetry::{OtelConfig, Telemetry, TelemetryGuard};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use serde_json::{Value, json};
use shared::config::{ProviderKind, RouteStrategy};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::logs::CapturedLogs;
use tokio::sync::mpsc;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The caller's trace: the gateway's spans must join it.
const CALLER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// What the fake collector received in one export request.
struct Export {
    content_type: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A fake OTLP/HTTP collector: answers `POST /v1/traces` with 200 and hands each request over.
async fn collector() -> (SocketAddr, mpsc::UnboundedReceiver<Export>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let answer = if content_type == "application/json" {
                    "{}"
                } else {
                    ""
                };
                let reply = ([(header::CONTENT_TYPE, content_type.clone())], answer);
                let _ = tx.send(Export {
                    content_type,
                    headers,
                    body,
                });
                reply
            }
        }),
    );
    (common::serve(app).await, rx)
}

fn otel_config(vars: &[(&str, String)]) -> OtelConfig {
    let vars: HashMap<&str, String> = vars.iter().cloned().collect();
    OtelConfig::from_lookup("switchyard-data-plane", |k| vars.get(k).cloned())
        .unwrap()
        .expect("an endpoint is set")
}

/// An exported span, flattened from OTLP/JSON.
#[derive(Debug, Clone)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i64,
    /// `status.code`: 0 unset, 1 ok, 2 error.
    status: i64,
    attributes: HashMap<String, Value>,
}

impl ExportedSpan {
    fn attr(&self, key: &str) -> &Value {
        self.attributes.get(key).unwrap_or(&Value::Null)
    }
}

/// OTLP/JSON ints may come as strings (the protobuf JSON mapping of int64) or numbers.
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// An OTLP `AnyValue` as plain JSON.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        s.clone()
    } else if let Some(i) = v.get("intValue") {
        json!(int(i))
    } else if let Some(d) = v.get("doubleValue") {
        d.clone()
    } else if let Some(b) = v.get("boolValue") {
        b.clone()
    } else if let Some(a) = v.get("arrayValue") {
        Value::Array(
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        )
    } else {
        Value::Null
    }
}

/// The spans of an OTLP/JSON `ExportTraceServiceRequest`, with the resource's `service.name`.
fn parse_spans(body: &[u8]) -> Vec<(String, ExportedSpan)> {
    let request: Value = serde_json::from_slice(body).expect("OTLP/JSON body");
    let mut out = Vec::new();
    for rs in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| any_value(&a["value"]))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                let attributes = span["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        (
                            a["key"].as_str().unwrap().to_owned(),
                            any_value(&a["value"]),
                        )
                    })
                    .collect();
                let text = |k: &str| span[k].as_str().unwrap_or_default().to_lowercase();
                out.push((
                    service.clone(),
                    ExportedSpan {
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent_span_id: text("parentSpanId"),
                        name: span["name"].as_str().unwrap().to_owned(),
                        kind: int(&span["kind"]),
                        status: int(&span["status"]["code"]),
                        attributes,
                    },
                ));
            }
        }
    }
    out
}

/// Flushes and collects exported spans until `done` says the set is complete (a span is
/// exported once it has ended, which for a request's server span is when its task ends, just
/// after its usage event; each round is one export, no timer).
async fn spans_until(
    guard: &TelemetryGuard,
    exports: &mut mpsc::UnboundedReceiver<Export>,
    collected: &mut Vec<(String, ExportedSpan)>,
    done: impl Fn(&[(String, ExportedSpan)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(collected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans not exported in time; got {collected:#?}"
        );
        guard.flush().await.expect("export accepted");
        while let Ok(export) = exports.try_recv() {
            assert_eq!(export.content_type, "application/json");
            collected.extend(parse_spans(&export.body));
        }
        tokio::task::yield_now().await;
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_logs_and_context_propagation() {
    let (collector_addr, mut exports) = collector().await;
    let logs = CapturedLogs::default();
    let config = otel_config(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".to_owned(),
        ),
    ]);
    let guard = Telemetry::build(
        Some(&config),
        LogFormat::Json,
        tracing_subscriber::EnvFilter::new("info"),
        BoxMakeWriter::new(logs.clone()),
        false,
    )
    .unwrap()
    .install();
    assert!(data_plane::telemetry::enabled(), "this binary's subscriber");

    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = Gateway::start().await;
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(fake.base_url()),
        Some("sk-provider-secret-0123456789"),
    );
    let served = deployment("gpt", &provider, "gpt-4o-mini");
    let broken = deployment("broken", &provider, fake_openai::MODEL_500);
    let route = common::route("fallback", RouteStrategy::Priority, &[&broken, &served]);
    let (served_id, broken_id) = (served.id, broken.id);
    let embed = deployment("embed", &provider, "text-embedding-3-small");
    gw.set_tenant_with(vec![provider], vec![served, broken, embed], |c| {
        c.routes = vec![route]
    });
    let key = gw.key();
    let traceparent = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01");

    // 1. A chat request inside the caller's trace, with sampling parameters.
    let mut body = user_message("gpt", "Say hello");
    body["max_tokens"] = json!(50);
    body["temperature"] = json!(0.25);
    body["top_p"] = json!(0.5);
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", &traceparent)
        .header("tracestate", "caller=1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chat_id = header(&response, REQUEST_ID);
    let answer: Value = response.json().await.unwrap();
    let usage = gw.next_usage().await;
    assert_eq!(usage.id.to_string(), chat_id);

    // 2. A route whose first candidate fails (500) and the second serves: two attempts, and a
    //    log line in between. A fresh trace (no traceparent).
    let response = gw.chat(&key, user_message("fallback", "Say hello")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    let fallback_id = header(&response, REQUEST_ID);
    gw.next_usage().await;

    // 3. An unknown model: refused before any attempt, a 404 on the server span.
    let response = gw.chat(&key, user_message("no-such-model", "hi")).await;
    assert_eq!(response.status(), 404);
    let refused_id = header(&response, REQUEST_ID);
    gw.next_usage().await;

    // 4. A stream (with the usage chunk), 5. embeddings.
    let mut body = user_message("gpt", "Say hello");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let stream_id = header(&response, REQUEST_ID);
    response.text().await.unwrap();
    let stream_usage = gw.next_usage().await;
    let response = gw
        .embeddings(&key, json!({"model": "embed", "input": "hello"}))
        .await;
    assert_eq!(response.status(), 200);
    let embed_id = header(&response, REQUEST_ID);
    let embed_usage = gw.next_usage().await;

    let server_span_of = |spans: &[(String, ExportedSpan)], id: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.kind == 2 && s.attr("switchyard.request_id") == id)
            .cloned()
    };
    let mut spans = Vec::new();
    spans_until(&guard, &mut exports, &mut spans, |spans| {
        [&chat_id, &fallback_id, &refused_id, &stream_id, &embed_id]
            .iter()
            .all(|id| server_span_of(spans, id).is_some())
    })
    .await;

    // --- 1: the server span joins the caller's trace; the attempt is its GenAI client child.
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "switchyard-data-plane")
    );
    let server = server_span_of(&spans, &chat_id).unwrap();
    assert_eq!(server.trace_id, CALLER_TRACE_ID);
    assert_eq!(server.parent_span_id, CALLER_SPAN_ID);
    assert_eq!(server.name, "POST /v1/chat/completions");
    assert_eq!(server.attr("http.request.method"), "POST");
    assert_eq!(server.attr("http.route"), "/v1/chat/completions");
    assert_eq!(server.attr("url.path"), "/v1/chat/completions");
    assert_eq!(server.attr("http.response.status_code"), 200);
    assert_eq!(
        server.attr("switchyard.tenant_id"),
        gw.tenant_id.to_string().as_str()
    );
    assert_eq!(server.attr("switchyard.model"), "gpt");
    assert_eq!(server.attr("switchyard.cost_micros"), usage.cost_micros);
    assert_eq!(
        server.status, 0,
        "a success leaves the server span's status unset"
    );

    let attempts: Vec<&ExportedSpan> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.trace_id, CALLER_TRACE_ID);
    assert_eq!(attempt.kind, 3, "CLIENT");
    assert_eq!(attempt.name, "chat gpt-4o-mini");
    let expect = [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.provider.name", json!("openai_compatible")),
        ("gen_ai.system", json!("openai_compatible")),
        ("gen_ai.request.model", json!("gpt-4o-mini")),
        ("gen_ai.response.model", answer["model"].clone()),
        ("gen_ai.response.id", answer["id"].clone()),
        ("gen_ai.response.finish_reasons", json!(["stop"])),
        ("gen_ai.request.max_tokens", json!(50)),
        ("gen_ai.request.temperature", json!(0.25)),
        ("gen_ai.request.top_p", json!(0.5)),
        ("gen_ai.usage.input_tokens", json!(usage.prompt_tokens)),
        ("gen_ai.usage.output_tokens", json!(usage.completion_tokens)),
        ("server.address", json!("127.0.0.1")),
        ("server.port", json!(fake.addr().port())),
        ("switchyard.request_id", json!(chat_id)),
        ("switchyard.deployment_id", json!(served_id.to_string())),
        ("switchyard.route", json!("gpt")),
        ("switchyard.attempt", json!(1)),
        ("switchyard.cost_micros", json!(usage.cost_micros)),
        ("switchyard.tokens_estimated", json!(false)),
    ];
    for (key, value) in expect {
        assert_eq!(attempt.attr(key), &value, "{key} in {attempt:#?}");
    }
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (fake_openai::PROMPT_TOKENS, fake_openai::COMPLETION_TOKENS)
    );
    assert!(attempt.attr("error.type").is_null());
    // No content or secret in any attribute.
    let everything = format!("{spans:?}");
    assert!(!everything.contains("Say hello") && !everything.contains(fake_openai::CONTENT));
    assert!(!everything.contains("sk-provider-secret") && !everything.contains(&key));

    // The provider was called inside the trace, as a child of the attempt's span.
    let sent = fake.chat_requests();
    let upstream = sent[0].header("traceparent").expect("traceparent upstream");
    assert_eq!(
        upstream,
        format!("00-{CALLER_TRACE_ID}-{}-01", attempt.span_id)
    );
    assert_eq!(sent[0].header("tracestate"), Some("caller=1"));

    // --- 2: a fresh trace with two attempts, the first failed.
    let server = server_span_of(&spans, &fallback_id).unwrap();
    assert_ne!(server.trace_id, CALLER_TRACE_ID);
    assert!(server.parent_span_id.is_empty() || server.parent_span_id == "0000000000000000");
    let mut attempts: Vec<&ExportedSpan> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    attempts.sort_by_key(|s| int(s.attr("switchyard.attempt")));
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let (failed, ok) = (attempts[0], attempts[1]);
    assert_eq!(failed.name, format!("chat {}", fake_openai::MODEL_500));
    assert_eq!(failed.attr("error.type"), "upstream_error");
    assert_eq!(failed.attr("http.response.status_code"), 500);
    assert_eq!(
        failed.attr("switchyard.deployment_id"),
        broken_id.to_string().as_str()
    );
    assert_eq!(failed.status, 2, "ERROR");
    assert!(failed.attr("gen_ai.usage.input_tokens").is_null());
    assert_eq!(ok.name, "chat gpt-4o-mini");
    assert_eq!(ok.attr("switchyard.attempt"), 2);
    assert_eq!(ok.attr("switchyard.route"), "fallback");
    assert_eq!(ok.attr("gen_ai.usage.output_tokens"), 5);
    assert_eq!(ok.status, 0);
    // Each attempt's upstream request carried its own span as the parent.
    let parents: Vec<String> = fake.chat_requests()[1..3]
        .iter()
        .map(|r| r.header("traceparent").unwrap().to_owned())
        .collect();
    assert_eq!(
        parents,
        [failed, ok].map(|s| format!("00-{}-{}-01", server.trace_id, s.span_id))
    );

    // --- 3: refused: no attempt, the 404 and the error code on the server span.
    let server = server_span_of(&spans, &refused_id).unwrap();
    assert_eq!(server.attr("http.response.status_code"), 404);
    assert_eq!(server.attr("switchyard.error_code"), "model_not_found");
    assert!(
        server.attr("error.type").is_null(),
        "a 4xx is not a server error"
    );
    assert!(
        !spans
            .iter()
            .any(|(_, s)| s.parent_span_id == server.span_id)
    );

    // --- 4 and 5: the served attempt of each, with what its answer said.
    let only_attempt = |id: &str| {
        let server = server_span_of(&spans, id).unwrap();
        let children: Vec<ExportedSpan> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.parent_span_id == server.span_id)
            .cloned()
            .collect();
        assert_eq!(children.len(), 1, "{children:#?}");
        children.into_iter().next().unwrap()
    };
    let streamed = only_attempt(&stream_id);
    assert_eq!(streamed.name, "chat gpt-4o-mini");
    assert_eq!(
        streamed.attr("gen_ai.response.finish_reasons"),
        &json!(["stop"])
    );
    assert!(
        streamed
            .attr("gen_ai.response.id")
            .as_str()
            .unwrap()
            .starts_with("chatcmpl-")
    );
    assert_eq!(streamed.attr("gen_ai.response.model"), "gpt-4o-mini");
    assert_eq!(
        streamed.attr("gen_ai.usage.input_tokens"),
        stream_usage.prompt_tokens
    );
    assert_eq!(
        streamed.attr("gen_ai.usage.output_tokens"),
        stream_usage.completion_tokens
    );
    assert_eq!(
        streamed.attr("switchyard.ttft_ms"),
        stream_usage.ttft_ms.unwrap()
    );
    let embedded = only_attempt(&embed_id);
    assert_eq!(embedded.name, "embeddings text-embedding-3-small");
    assert_eq!(embedded.attr("gen_ai.operation.name"), "embeddings");
    assert_eq!(
        embedded.attr("gen_ai.usage.input_tokens"),
        embed_usage.prompt_tokens
    );
    assert_eq!(embedded.attr("gen_ai.usage.output_tokens"), 0);
    assert_eq!(
        embedded.attr("gen_ai.response.model"),
        "text-embedding-3-small"
    );

    // --- JSON logs: every line of a request carries its id and its trace.
    let lines = logs.json_lines().unwrap();
    let of = |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["request_id"] == id).collect() };
    let fallback_lines = of(&fallback_id);
    let line = fallback_lines
        .iter()
        .find(|l| l["fields"]["message"] == "attempt failed; trying the next candidate")
        .unwrap_or_else(|| panic!("no attempt line in {lines:#?}"));
    let fallback_server = server_span_of(&spans, &fallback_id).unwrap();
    assert_eq!(line["trace_id"], fallback_server.trace_id.as_str());
    assert_eq!(line["span_id"], fallback_server.span_id.as_str());
    assert_eq!(line["spans"][0]["name"], "request");
    assert_eq!(line["spans"][0]["id"], fallback_id.as_str());
    assert!(line["span"].get("otel.name").is_none(), "{line}");
    let refused_lines = of(&refused_id);
    assert!(
        !refused_lines.is_empty(),
        "the refusal is logged: {lines:#?}"
    );
    for line in refused_lines {
        assert_eq!(line["trace_id"], server.trace_id.as_str());
    }
    // No line inside a request lacks its id.
    for line in &lines {
        if line["spans"][0]["name"] == "request" {
            assert!(line["request_id"].is_string(), "{line}");
        }
    }

    guard.shutdown().await;
}

/// The default encoding is protobuf (`application/x-protobuf`), with the configured headers
/// and the service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_is_the_default_encoding() {
    let (collector_addr, mut exports) = collector().await;
    let config = otel_config(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{collector_addr}/v1/traces"),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-collector-key=k%3D1".to_owned(),
        ),
        ("OTEL_SERVICE_NAME", "gateway-under-test".to_owned()),
    ]);
    let provider = config.tracer_provider().unwrap();
    provider.tracer("probe").start("probe-span").end();
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .unwrap()
        .unwrap();
    let export = exports.try_recv().expect("one export after the flush");
    assert_eq!(export.content_type, "application/x-protobuf");
    assert_eq!(export.headers["x-collector-key"], "k=1");
    let has = |needle: &[u8]| export.body.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"probe-span") && has(b"gateway-under-test"));
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// The binary refuses `grpc` at start, naming the variable, before touching Redis.
#[tokio::test]
async fn the_binary_refuses_grpc_at_start() {
    let mut cmd = testkit::proc::command(std::path::Path::new(env!("CARGO_BIN_EXE_data-plane")));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let output = cmd
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("SWITCHYARD_MASTER_KEY", "00".repeat(32))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"),
        "{stderr}"
    );
}
