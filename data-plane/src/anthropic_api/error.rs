//! Errors in Anthropic's format: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`
//! (<https://docs.anthropic.com/en/api/errors>).
//!
//! The gateway renders every error in OpenAI's shape ([`crate::error::GatewayError`]); the
//! `/v1/messages` routes rewrite those bodies with [`from_openai`], keeping the status, the
//! headers (`Retry-After` included) and the message. The Anthropic `type` follows the status as
//! Anthropic's documentation lists it; statuses it does not list map to the nearest kind
//! (other 4xx → `invalid_request_error`, 503 → `overloaded_error`, 504 → `timeout_error`,
//! other 5xx → `api_error`). The status itself is never changed (529 is not invented for a 503):
//! the SDKs pick their exception class from the status. A guardrail refusal also keeps its
//! `code` (`guardrail_blocked`) as `error.code`.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The one gateway code kept in Anthropic-format errors (see [`from_openai`]).
const GUARDRAIL_BLOCKED: &str = "guardrail_blocked";

/// The part of an OpenAI error body we keep: the message (and a guardrail refusal's code).
#[derive(Deserialize)]
struct OpenAiError {
    error: OpenAiErrorDetail,
}

#[derive(Deserialize)]
struct OpenAiErrorDetail {
    message: String,
    #[serde(default)]
    code: Option<Value>,
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An Anthropic error body.
pub fn body(kind: &str, message: &str, request_id: Option<&str>) -> Value {
    let mut body = json!({
        "type": "error",
        "error": { "type": kind, "message": message },
    });
    if let Some(id) = request_id {
        body["request_id"] = json!(id);
    }
    body
}

/// Rewrites an error response body (OpenAI's shape) into Anthropic's for `status`. A body that
/// is already Anthropic-shaped is kept (with the request id added); anything else (not JSON, an
/// HTML page) gets a generic message naming the status.
pub fn from_openai(status: StatusCode, raw: &[u8], request_id: Option<&str>) -> Value {
    if let Ok(openai) = serde_json::from_slice::<OpenAiError>(raw) {
        let mut out = body(error_type(status), &openai.error.message, request_id);
        // A guardrail refusal keeps its code (the issue's contract: `guardrail_blocked` in the
        // client's format) as an extra field of `error`; Anthropic's SDKs keep unknown fields
        // in the exception's body. Other errors stay exactly Anthropic's shape.
        if let Some(code @ Value::String(_)) = openai.error.code
            && code == GUARDRAIL_BLOCKED
        {
            out["error"]["code"] = code;
        }
        return out;
    }
    if let Ok(mut value) = serde_json::from_slice::<Value>(raw)
        && value.get("type").and_then(Value::as_str) == Some("error")
        && value.get("error").is_some_and(Value::is_object)
    {
        if let Some(id) = request_id {
            value["request_id"] = json!(id);
        }
        return value;
    }
    let message = match status.canonical_reason() {
        Some(reason) => format!("HTTP {}: {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    body(error_type(status), &message, request_id)
}

/// The `data` of a mid-stream `event: error` for an OpenAI stream error event
/// (`{"error":{"message":…}}`): always `api_error`, since the response status (200) is already
/// sent and says nothing about the failure.
pub fn stream_error(openai_event: &Value) -> Value {
    let message = openai_event
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("The upstream provider failed while streaming the answer.");
    body("api_error", message, None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn statuses_map_to_anthropic_types() {
        let t = |s: u16| error_type(StatusCode::from_u16(s).unwrap());
        assert_eq!(t(400), "invalid_request_error");
        assert_eq!(t(405), "invalid_request_error");
        assert_eq!(t(422), "invalid_request_error");
        assert_eq!(t(401), "authentication_error");
        assert_eq!(t(403), "permission_error");
        assert_eq!(t(404), "not_found_error");
        assert_eq!(t(413), "request_too_large");
        assert_eq!(t(429), "rate_limit_error");
        assert_eq!(t(500), "api_error");
        assert_eq!(t(502), "api_error");
        assert_eq!(t(503), "overloaded_error");
        assert_eq!(t(504), "timeout_error");
        assert_eq!(t(529), "overloaded_error");
    }

    #[test]
    fn openai_bodies_are_rewritten_keeping_the_message() {
        let raw = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let out = from_openai(StatusCode::TOO_MANY_REQUESTS, raw, Some("rid"));
        assert_eq!(
            out,
            json!({"type":"error","error":{"type":"rate_limit_error","message":"Rate limit reached"},"request_id":"rid"})
        );
        let out = from_openai(StatusCode::BAD_GATEWAY, b"<html>oops</html>", None);
        assert_eq!(out["error"]["type"], "api_error");
        assert_eq!(out["error"]["message"], "HTTP 502: Bad Gateway");
        assert!(out.get("request_id").is_none());
        let already = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        let out = from_openai(StatusCode::SERVICE_UNAVAILABLE, already, Some("r"));
        assert_eq!(out["error"]["message"], "busy");
        assert_eq!(out["request_id"], "r");
    }

    #[test]
    fn stream_errors_are_api_errors() {
        let out = stream_error(
            &json!({"error":{"message":"cut","type":"api_error","code":"stream_truncated"}}),
        );
        assert_eq!(
            out,
            json!({"type":"error","error":{"type":"api_error","message":"cut"}})
        );
    }
}
