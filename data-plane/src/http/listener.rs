//! The TCP listener both binaries serve on: `TCP_NODELAY` on every connection, and JSON bodies
//! for the errors the HTTP parser answers by itself.
//!
//! hyper refuses a request whose head it cannot parse before any of our code runs: a URL over
//! 64 KiB (414), headers over its buffer (431), a malformed request line or header (400). It
//! answers those with an empty body, which breaks the promise that every error is JSON (an SDK
//! shows "unexpected response" instead of a message). hyper offers no hook for that answer, so
//! [`JsonErrorIo`] recognises it on the way out (one of those statuses, `content-length: 0`,
//! the whole head in one write, which is how hyper writes it) and sends ours instead. Our own
//! smaller limits (`limit_head`) answer the common cases inside the app; this catches the rest.
//!
//! The body reads as an error in both planes' formats: OpenAI's `{"error":{"message","type",
//! "param","code"}}` and the control plane's `{"error":{"code","message"}}`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::{Listener, ListenerExt, TapIo};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The listener type [`listener`] returns. It is a `TapIo` so that axum's
/// `ConnectInfo<SocketAddr>` works with it as with a plain `TcpListener`.
pub type JsonListener = TapIo<JsonErrorListener, fn(&mut JsonErrorIo<TcpStream>)>;

/// Wraps a bound listener (see the module docs).
pub fn listener(tcp: TcpListener) -> JsonListener {
    fn nothing(_: &mut JsonErrorIo<TcpStream>) {}
    JsonErrorListener { inner: tcp }.tap_io(nothing as fn(&mut JsonErrorIo<TcpStream>))
}

/// A `TcpListener` whose connections are [`JsonErrorIo`]s with `TCP_NODELAY` set.
pub struct JsonErrorListener {
    inner: TcpListener,
}

impl Listener for JsonErrorListener {
    type Io = JsonErrorIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept loop for TcpListener already backs off on errors (EMFILE and friends).
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        // Without TCP_NODELAY, Nagle's algorithm holds small SSE chunks back for up to ~40 ms.
        let _ = tcp.set_nodelay(true);
        (JsonErrorIo::new(tcp), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that swaps the parser's empty error answers for JSON ones.
pub struct JsonErrorIo<T> {
    inner: T,
    /// A replacement being written, and how much of it is out.
    pending: Option<(Bytes, usize)>,
}

impl<T> JsonErrorIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// Our answer for hyper's automatic error response in `head`, if that is what it is.
fn replacement(head: &[u8]) -> Option<Bytes> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let (status, code, message) = match rest.get(..4)? {
        b"414 " => (
            "414 URI Too Long",
            "uri_too_long",
            "The request URL is too long.",
        ),
        b"431 " => (
            "431 Request Header Fields Too Large",
            "header_too_large",
            "The request headers are too large.",
        ),
        b"400 " => (
            "400 Bad Request",
            "invalid_request",
            "The request is not valid HTTP.",
        ),
        _ => return None,
    };
    // The whole head, with no body: hyper writes its automatic answer in one piece.
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    if !lower.windows(19).any(|w| w == b"content-length: 0\r\n") {
        return None;
    }
    let body = format!(
        r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{code}"}}}}"#
    );
    Some(Bytes::from(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )))
}

impl<T: AsyncWrite + Unpin> JsonErrorIo<T> {
    /// Writes out a pending replacement, if any.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(bytes) = replacement(buf) {
            this.pending = Some((bytes, 0));
            // The original is consumed either way; the replacement goes out now or on the
            // flush hyper does next.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    /// Not vectored, so hyper flattens each message head into one write (see the module docs).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_the_parsers_empty_answers_are_replaced() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 00:00:00 GMT\r\n\r\n";
        let out = replacement(auto).expect("replaced");
        let text = std::str::from_utf8(&out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).expect("body");
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["error"]["code"], "uri_too_long");
        assert!(json["error"]["message"].is_string());
        assert!(
            replacement(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"
            )
            .is_some()
        );
        // Our own JSON errors, other statuses, partial heads and bodies pass untouched.
        assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 80\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
        assert!(replacement(b"{\"error\":1}").is_none());
    }
}
