//! W3C trace context (`traceparent`, `tracestate`), in and out.
//!
//! In: the client's `traceparent` is parsed once at the edge ([`super::server_span`]). With
//! tracing on, the request's server span becomes its child (same trace id). Either way, the
//! parsed context is kept for the request's tasks ([`Caller::scope`], [`carry`]).
//!
//! Out: every upstream request passes through [`outgoing`] (called by
//! [`UpstreamClient::send`](crate::egress::UpstreamClient)), which sets `traceparent` (and
//! `tracestate`):
//! - tracing on: the current span's context, i.e. the provider attempt's client span, so the
//!   provider's own spans (a traced vLLM, another gateway) join the trace under our attempt;
//! - tracing off: the caller's context unchanged, as the W3C recommendation asks of a hop that
//!   does not participate; nothing when the caller sent none. We never make up ids of our own
//!   when we export nothing.
//!
//! A malformed `traceparent` is ignored (as the specification says: start a new trace), and a
//! forwarded one is re-serialized from its parsed parts, so a client cannot smuggle arbitrary
//! bytes into our upstream requests through it.

use std::future::Future;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tokio::task::futures::TaskLocalFuture;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The caller's trace context, for the request's tasks (see [`Caller::scope`]).
    static CALLER: Option<SpanContext>;
}

/// The caller's trace context (from `traceparent`/`tracestate`), if it sent a valid one.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<SpanContext>);

impl Caller {
    /// Parses the request's `traceparent` (and `tracestate`); nothing when absent or invalid.
    pub(super) fn from_headers(headers: &HeaderMap) -> Self {
        if !headers.contains_key(TRACEPARENT) {
            return Self(None);
        }
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        let span = cx.span();
        let context = span.span_context();
        Self(context.is_valid().then(|| context.clone()))
    }

    /// The caller's context as a parent for our server span.
    pub(super) fn parent(&self) -> Option<Context> {
        self.0
            .clone()
            .map(|sc| Context::new().with_remote_span_context(sc))
    }

    /// Runs `fut` (the rest of the request, in the edge middleware) with the caller's context
    /// available to [`outgoing`]; spawned request tasks keep it through [`carry`].
    pub fn scope<F: Future>(self, fut: F) -> TaskLocalFuture<Option<SpanContext>, F> {
        CALLER.scope(self.0, fut)
    }
}

/// `task` with the current request's caller context, for a task spawned on the request's behalf
/// (the pipeline's task), which does not inherit task-locals.
pub(crate) fn carry<F: Future>(task: F) -> TaskLocalFuture<Option<SpanContext>, F> {
    let caller = CALLER.try_with(Clone::clone).ok().flatten();
    CALLER.scope(caller, task)
}

/// Sets `traceparent`/`tracestate` on an upstream request (see the module docs) and, with
/// tracing on, records the server's address and port on the current (client) span.
pub(crate) fn outgoing(request: &mut reqwest::Request) {
    if super::enabled() {
        let span = tracing::Span::current();
        super::spans::record_server(&span, request.url());
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new()
                .inject_context(&cx, &mut HeadersMut(request.headers_mut()));
            return;
        }
    }
    if let Ok(Some(caller)) = CALLER.try_with(Clone::clone) {
        let cx = Context::new().with_remote_span_context(caller);
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(request.headers_mut()));
    }
}

/// Header lookup for the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Header writes for the propagator (replacing any value already there).
struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is the same as none.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn forwarded(caller: Caller) -> HeaderMap {
        let mut request = reqwest::Request::new(
            reqwest::Method::POST,
            "http://upstream.test/v1".parse().unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // As the edge runs the handler, which spawns the pipeline's task with `carry`.
        rt.block_on(caller.scope(async {
            let task = carry(async { outgoing(&mut request) });
            task.await;
        }));
        request.headers().clone()
    }

    #[test]
    fn without_tracing_the_callers_context_is_forwarded_unchanged() {
        let caller = Caller::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
        ]));
        let out = forwarded(caller);
        assert_eq!(out["traceparent"], PARENT);
        assert_eq!(out["tracestate"], "vendor=abc");
    }

    #[test]
    fn invalid_or_missing_context_sends_nothing() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "not a traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx-evil: 1",
        ] {
            let h = match HeaderValue::from_str(bad) {
                Ok(v) => {
                    let mut h = HeaderMap::new();
                    h.insert("traceparent", v);
                    h
                }
                Err(_) => continue,
            };
            let out = forwarded(Caller::from_headers(&h));
            assert!(!out.contains_key("traceparent"), "{bad}");
        }
        assert!(forwarded(Caller::default()).is_empty());
        // No tracestate from the caller: none sent (not an empty one).
        let out = forwarded(Caller::from_headers(&headers(&[("traceparent", PARENT)])));
        assert_eq!(out["traceparent"], PARENT);
        assert!(!out.contains_key("tracestate"));
    }
}
