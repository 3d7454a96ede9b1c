//! The server skeleton every fake upstream shares ([`fake_openai`](crate::fake_openai),
//! [`fake_anthropic`](crate::fake_anthropic), [`fake_gemini`](crate::fake_gemini),
//! [`fake_bedrock`](crate::fake_bedrock)): binding `127.0.0.1:0` with `TCP_NODELAY`, serving one
//! handler for every path in a background task, a shutdown signal that releases held-open
//! requests, and the pieces of request recording and misbehaviour they all need.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use axum::serve::ListenerExt;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running fake: its address, its state, and the task serving it. Dropping it stops
/// accepting connections and flips the shutdown signal, so requests held open (a hang, a
/// stalled stream) end by dropping their connections.
pub(crate) struct FakeServer<S> {
    addr: SocketAddr,
    state: Arc<S>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<S: Send + Sync + 'static> FakeServer<S> {
    /// Binds `127.0.0.1:0` and serves `handler` for every method and path in a background task
    /// of the current tokio runtime. `state` is built with the shutdown signal's receiver, which
    /// held-open requests wait on (see [`wait_for_shutdown`]).
    pub(crate) async fn start<H, T>(
        state: impl FnOnce(watch::Receiver<bool>) -> S,
        handler: H,
    ) -> anyhow::Result<Self>
    where
        H: Handler<T, Arc<S>>,
        T: 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(state(shutdown_rx));
        let app = Router::new()
            .fallback(handler)
            .with_state(Arc::clone(&state));
        // Streamed events are small writes spaced apart; without TCP_NODELAY, Nagle's algorithm
        // holds each one back until the previous is acknowledged, and the client's delayed ACK
        // turns that into ~40 ms per event. Real endpoints (behind CDNs) do not do that.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            // Errors here mean the listener died; the test will notice failing requests.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            shutdown,
            task,
        })
    }
}

impl<S> FakeServer<S> {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn state(&self) -> &S {
        &self.state
    }

    /// The `Debug` output of the fake named `name`: its address only.
    pub(crate) fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for FakeServer<S> {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

/// Waits until the fake is dropped. An Err means the sender is gone, which also means the fake
/// was dropped.
pub(crate) async fn wait_for_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stopped| *stopped).await;
}

/// The lock is never held across an await, and a panicking test thread must not poison the fake
/// for the rest of the test, so a poisoned lock is simply taken over.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request taken apart for recording and routing.
pub(crate) struct Received {
    pub(crate) parts: Parts,
    pub(crate) bytes: Bytes,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub(crate) json: Value,
}

/// Reads the whole request.
pub(crate) async fn receive(req: Request) -> Received {
    let (parts, body) = req.into_parts();
    // The body limit matters only against a runaway client; 64 MiB is far above any test.
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Received { parts, bytes, json }
}

/// Headers as recorded: names lowercased (as HTTP/1.1 and HTTP/2 treat them), repeated headers
/// joined with `, `.
pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// A recorded header by (case-insensitive) name.
pub(crate) fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    headers.get(&name.to_ascii_lowercase()).map(String::as_str)
}

/// The error a response body yields to make the server drop the connection mid-response.
#[derive(Debug)]
pub(crate) struct ConnectionCut;

impl std::fmt::Display for ConnectionCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake upstream cut the connection on purpose")
    }
}

impl std::error::Error for ConnectionCut {}

/// How a streamed body ends after its events.
pub(crate) enum StreamEnd {
    /// These events, sent at once (the normal end; empty for none).
    Then(Vec<Bytes>),
    /// The connection drops.
    Cut,
    /// Nothing more is sent while the connection stays open, until the fake is dropped (this is
    /// its shutdown signal); then the connection drops.
    Stall(watch::Receiver<bool>),
    /// Nothing more until `gate` resolves: `true` sends `tail`, `false` drops the connection.
    Gated {
        gate: futures::future::BoxFuture<'static, bool>,
        tail: Vec<Bytes>,
    },
}

/// A streamed body: `events`, each as its own write, then `end`. Yielding before each event
/// makes the server flush what it has, so events leave as separate writes the way a real token
/// stream does, and the status line and the events before a cut reach the client before the
/// connection drops.
pub(crate) fn stream_body(events: Vec<Bytes>, end: StreamEnd) -> Body {
    let head = futures::stream::iter(events).then(|e| async move {
        tokio::task::yield_now().await;
        Ok::<Bytes, ConnectionCut>(e)
    });
    match end {
        StreamEnd::Then(tail) => {
            Body::from_stream(head.chain(futures::stream::iter(tail.into_iter().map(Ok))))
        }
        StreamEnd::Cut => Body::from_stream(head.chain(futures::stream::once(async {
            tokio::task::yield_now().await;
            Err(ConnectionCut)
        }))),
        StreamEnd::Stall(shutdown) => {
            Body::from_stream(head.chain(futures::stream::once(async move {
                wait_for_shutdown(shutdown).await;
                Err(ConnectionCut)
            })))
        }
        StreamEnd::Gated { gate, tail } => {
            let rest = futures::stream::once(gate)
                .map(move |open| {
                    let tail: Vec<Result<Bytes, ConnectionCut>> = if open {
                        tail.clone().into_iter().map(Ok).collect()
                    } else {
                        vec![Err(ConnectionCut)]
                    };
                    futures::stream::iter(tail)
                })
                .flatten();
            Body::from_stream(head.chain(rest))
        }
    }
}

/// A response whose body fails at once: the connection closes without an answer.
pub(crate) fn cut_response() -> Response {
    let body = futures::stream::once(async { Err::<Bytes, _>(ConnectionCut) });
    Response::new(Body::from_stream(body))
}
