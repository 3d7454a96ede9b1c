//! Bedrock's error responses → [`GatewayError`].
//!
//! Bedrock answers an error with an HTTP status, the error's name in the `x-amzn-ErrorType`
//! header (sometimes suffixed with `:<namespace URL>`; some front ends put it in the body's
//! `__type` instead) and a JSON body `{"message": "…"}`. Names and statuses are listed per
//! operation (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors>)
//! and for every AWS API (<https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html>):
//!
//! | Bedrock | status | gateway |
//! | --- | --- | --- |
//! | `ValidationException` | 400 | 400, the provider's message; `context_length_exceeded` when the message says the input is too long |
//! | `ThrottlingException`, `ModelNotReadyException` (documented as 429: retrying later helps) | 429 | 429, `Retry-After` kept if sent |
//! | `AccessDeniedException`, `UnrecognizedClientException`, `InvalidSignatureException`, `ExpiredTokenException`, `MissingAuthenticationTokenException` | 403 | 502 `upstream_auth_failed` (no provider text: the gateway's credentials are at fault) |
//! | `ResourceNotFoundException` (404), `ModelTimeoutException` (408), `ModelErrorException` (424), `InternalServerException` (500), `ServiceUnavailableException` (503), `ServiceQuotaExceededException` | other | 502 `upstream_error` with the provider's message |
//!
//! The status decides, as for every provider ([`transport::error_for_status`]); the name only
//! refines a 400 and goes into the log of an auth failure, whose kind (model access not granted
//! vs. wrong secret) the administrator needs and the client must not see.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::error::{GatewayError, ProviderError};
use crate::providers::transport;

/// OpenAI's code for a prompt over the model's context window.
pub(crate) const CONTEXT_LENGTH_EXCEEDED: &str = "context_length_exceeded";

/// Whether a `ValidationException` message says the input does not fit the model, in the words
/// Bedrock and the models behind it use ("Input is too long for requested model.", "prompt is
/// too long: 210000 tokens > 200000 maximum", "too many input tokens", "…context window…").
pub(crate) fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (m.contains("too long") && ["input", "prompt", "context"].iter().any(|w| m.contains(w)))
        || m.contains("too many input tokens")
        || m.contains("input token count")
        || m.contains("context length")
        || m.contains("context window")
}

/// The error's name: `x-amzn-ErrorType` without its `:namespace` suffix, else the body's
/// `__type` (`namespace#Name`) or `code`.
fn error_type(headers: &HeaderMap, body: Option<&Value>) -> Option<String> {
    if let Some(v) = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
    {
        return v.split(':').next().map(|s| s.trim().to_owned());
    }
    let body = body?;
    body.get("__type")
        .or_else(|| body.get("code"))
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
}

/// Maps a non-2xx Bedrock response. `secret` is scrubbed from the message in case it is ever
/// echoed.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let kind = error_type(headers, parsed.as_ref());
    let message = parsed
        .as_ref()
        .and_then(|b| b.get("message").or_else(|| b.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut error = ProviderError {
        message,
        ..ProviderError::default()
    }
    .scrub(Some(secret));
    match status.as_u16() {
        400 if error.message.as_deref().is_some_and(is_context_length) => {
            error.kind = Some("invalid_request_error".to_owned());
            error.param = Some("messages".to_owned());
            error.code = Some(CONTEXT_LENGTH_EXCEEDED.to_owned());
        }
        401 | 403 => {
            // Logged here because GatewayError::UpstreamAuthFailed carries no provider text.
            tracing::warn!(
                status = status.as_u16(),
                error_type = kind.as_deref().unwrap_or("unknown"),
                message = error.message.as_deref().unwrap_or(""),
                "bedrock refused the provider's AWS credentials"
            );
        }
        _ => {}
    }
    transport::error_for_status(status, headers.get(RETRY_AFTER).cloned(), error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use reqwest::header::HeaderValue;

    use super::*;

    fn map(status: u16, kind: &str, message: &str) -> GatewayError {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_str(&format!(
                "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ))
            .unwrap(),
        );
        let body = serde_json::json!({ "message": message }).to_string();
        from_response(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
    }

    #[test]
    fn errors_map_by_status_with_context_length_recognized() {
        let e = map(
            400,
            "ValidationException",
            "Input is too long for requested model.",
        );
        assert_eq!(e.status().as_u16(), 400);
        let body = e.body();
        assert_eq!(body.error.code.as_deref(), Some(CONTEXT_LENGTH_EXCEEDED));
        assert_eq!(body.error.message, "Input is too long for requested model.");

        let e = map(
            400,
            "ValidationException",
            "Malformed input request: extraneous key [foo] is not permitted",
        );
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.body().error.code.as_deref(), Some("upstream_bad_request"));

        assert_eq!(
            map(429, "ThrottlingException", "Too many requests")
                .status()
                .as_u16(),
            429
        );
        for kind in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
        ] {
            let e = map(403, kind, "nope");
            assert_eq!(
                (e.status().as_u16(), e.code()),
                (502, "upstream_auth_failed")
            );
        }
        let e = map(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        );
        assert_eq!((e.status().as_u16(), e.code()), (502, "upstream_error"));
        assert!(e.body().error.message.contains("unable to process"));
    }

    #[test]
    fn error_type_comes_from_header_or_body() {
        let body = serde_json::json!({"__type": "com.amazon.coral.service#ThrottlingException"});
        assert_eq!(
            error_type(&HeaderMap::new(), Some(&body)).as_deref(),
            Some("ThrottlingException")
        );
        assert!(is_context_length(
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(!is_context_length(
            "Too many tokens, please wait before trying again."
        ));
        let leaked = map(
            500,
            "InternalServerException",
            "key wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        assert!(!leaked.body().error.message.contains("EXAMPLEKEY"));
    }
}
