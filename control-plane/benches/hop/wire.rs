//! The two logic-free servers of the `hop` benchmark, each run in a process of its own (the
//! benchmark binary started again with `HOP_ROLE`), pinned to its core by the parent:
//!
//! - **upstream**: a fast fake of OpenAI's chat completions endpoint. The shapes follow OpenAI's
//!   API reference: the chat completion object
//!   (<https://platform.openai.com/docs/api-reference/chat/object>), the chunk object and the
//!   stream framing (<https://platform.openai.com/docs/api-reference/chat-streaming>: one
//!   `data: {json}` event per chunk, a role chunk first, a `finish_reason` chunk, a `choices: []`
//!   usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`). A whole answer
//!   is ~600 bytes; a stream is 22 events plus the usage chunk, with an optional delay before
//!   each event, asked for in the prompt as `[[delay:<ms>]]` (so it reaches the fake unchanged
//!   through any hop). It reads the body only to find `"stream":true`, the usage option and the
//!   delay marker: no JSON parse, so its own cost stays out of the way.
//! - **bare**: a reverse proxy with no logic (hyper server, hyper-util pooled keep-alive client,
//!   `TCP_NODELAY` on both sides, bodies streamed through untouched): one HTTP hop, the physical
//!   limit a gateway is compared with.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Content words of a streamed answer: one chunk each.
const STREAM_WORDS: usize = 20;
const MODEL: &str = "gpt-4o-mini-2024-07-18";

/// A whole chat completion (~600 bytes), as OpenAI sends it.
const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-hopbench0000000000000000000001","object":"chat.completion","created":1765000000,"#,
    r#""model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"Hello! This is the benchmark upstream's fixed answer, about as long as a short reply to a short question.","#,
    r#""refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":19,"completion_tokens":24,"total_tokens":43,"#,
    r#""prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"#,
    r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"#,
    r#""service_tier":"default","system_fingerprint":"fp_hopbench1"}"#
);

type Body = BoxBody<Bytes, Infallible>;

/// Binds 127.0.0.1:0, prints `listening on http://ADDR` (what the parent waits for) and serves
/// HTTP/1.1 connections with `handler` until the process is killed.
async fn serve<F, Fut, B>(handler: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .await;
        });
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `<ms>` of a `[[delay:<ms>]]` marker in the body, if any.
fn delay_marker(body: &[u8]) -> Option<Duration> {
    const MARK: &[u8] = b"[[delay:";
    let at = body.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits: &[u8] = &body[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    let ms: u64 = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

fn chunk(delta: &str, finish: &str, usage_null: bool) -> Bytes {
    let usage = if usage_null { r#","usage":null"# } else { "" };
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-hopbench1\",\"object\":\"chat.completion.chunk\",\"created\":1765000000,\"model\":\"{MODEL}\",\"system_fingerprint\":\"fp_hopbench1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n"
    ))
}

/// Every event of one streamed answer, in order.
fn stream_events(include_usage: bool) -> Vec<Bytes> {
    let mut events = Vec::with_capacity(STREAM_WORDS + 4);
    events.push(chunk(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
        include_usage,
    ));
    for i in 0..STREAM_WORDS {
        events.push(chunk(
            &format!(r#"{{"content":"word{i} "}}"#),
            "null",
            include_usage,
        ));
    }
    events.push(chunk("{}", r#""stop""#, include_usage));
    if include_usage {
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-hopbench1\",\"object\":\"chat.completion.chunk\",\"created\":1765000000,\"model\":\"{MODEL}\",\"system_fingerprint\":\"fp_hopbench1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":19,\"completion_tokens\":{STREAM_WORDS},\"total_tokens\":{}}}}}\n\n",
            19 + STREAM_WORDS
        )));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

async fn upstream_handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut resp = if contains(&body, br#""stream":true"#) {
        let events = stream_events(contains(&body, br#""include_usage":true"#));
        let delay = delay_marker(&body);
        let frames = futures::stream::iter(events).then(move |event| async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok::<_, Infallible>(Frame::data(event))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        r
    } else {
        let mut r = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(
            COMPLETION.as_bytes(),
        ))));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    resp.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("req_hopbench0000000000000001"),
    );
    Ok(resp)
}

/// The fake upstream's process body.
pub(crate) async fn upstream() -> anyhow::Result<()> {
    serve(upstream_handle).await
}

/// The bare proxy's process body: every request forwarded to `upstream` (`http://host:port`).
pub(crate) async fn bare(upstream: String) -> anyhow::Result<()> {
    let authority: http::uri::Authority = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    serve(move |req: Request<Incoming>| {
        let (client, authority) = (client.clone(), authority.clone());
        async move {
            let (mut parts, body) = req.into_parts();
            let mut uri = parts.uri.into_parts();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(authority.clone());
            parts.uri = Uri::from_parts(uri).unwrap_or_default();
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
            Ok::<_, Infallible>(
                match client.request(Request::from_parts(parts, body)).await {
                    Ok(resp) => resp.map(|b| b.map_err(std::io::Error::other).boxed()),
                    Err(_) => {
                        let mut r = Response::new(
                            Full::new(Bytes::from_static(b"bad gateway"))
                                .map_err(|never| match never {})
                                .boxed(),
                        );
                        *r.status_mut() = StatusCode::BAD_GATEWAY;
                        r
                    }
                },
            )
        }
    })
    .await
}
