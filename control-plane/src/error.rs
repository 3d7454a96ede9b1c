//! `ApiError`: the one error type of the control API, turned into HTTP in one place.
//!
//! Every error response has the same body, `{"error": {"code": "…", "message": "…"}}`, with a
//! stable snake_case `code` that clients can match on:
//!
//! | code                | status | when |
//! | ------------------- | ------ | ---- |
//! | `validation_failed` | 400    | the request is malformed or a field is invalid (bad JSON, missing field, bad id in the path, bad query) |
//! | `unauthorized`      | 401    | no, invalid or expired credentials |
//! | `forbidden`         | 403    | authenticated, but the role does not allow this |
//! | `csrf_failed`       | 403    | a cookie-session refresh without the matching `x-switchyard-csrf` header |
//! | `not_found`         | 404    | no such object *in the caller's tenant* (another tenant's object looks missing) |
//! | `conflict`          | 409    | a unique name is taken, or the object is still in use |
//! | `method_not_allowed`| 405    | the path exists, the method does not |
//! | `rate_limited`      | 429    | too many failed sign-ins or sign-ups; `Retry-After` says when to try again |
//! | `payload_too_large` | 413    | the request body is over the control plane's cap ([`MAX_BODY_BYTES`](crate::http::MAX_BODY_BYTES)) |
//! | `uri_too_long`      | 414    | the path and query are over [`MAX_URI_BYTES`](crate::http::MAX_URI_BYTES) |
//! | `internal`          | 500    | anything else; details are logged, never sent |
//! | `unavailable`       | 503    | `/readyz` only: the database does not answer |
//!
//! We answer 400 (not 422) for every invalid input, as OpenAI and Stripe do, so clients need a
//! single rule: 400 means "fix the request", and the message says which field.
//!
//! `into_response` does not log: it stores the error in the response extensions and
//! [`log_errors`] (a middleware inside the request's trace span) logs it once, with the request
//! id in scope. This keeps a single log line per failure however deep the error was built.
//!
//! Messages are built from our own words plus, at most, a short preview of what the client sent
//! (see `http::validate::preview`); as a last guard, [`IntoResponse`] cuts any message at
//! [`MAX_MESSAGE_CHARS`], so an oversized input is never echoed back or logged in full.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sea_orm::{DbErr, SqlErr};
use serde::Serialize;
use utoipa::ToSchema;

/// Why a request failed. Messages are written for API users and never contain secrets, key
/// hashes or internal details; [`ApiError::Internal`] carries its cause for the log only.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// A cookie-session refresh whose `x-switchyard-csrf` header is missing or does not match
    /// the `switchyard_csrf` cookie.
    #[error("missing or wrong x-switchyard-csrf header")]
    CsrfFailed,
    /// The message names what was not found, e.g. "api key not found".
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("this route does not support this HTTP method")]
    MethodNotAllowed,
    /// Throttled (login failures, sign-ups); answered with `Retry-After` in whole seconds.
    #[error("{message}")]
    TooManyRequests {
        message: &'static str,
        retry_after: std::time::Duration,
    },
    /// The body is larger than the control plane accepts; the message says the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The path and query string are longer than the control plane accepts.
    #[error("{0}")]
    UriTooLong(String),
    /// A dependency (the database) is down; for readiness checks.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::CsrfFailed => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for a validation error naming a field.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::Validation(format!("{field}: {problem}"))
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database error"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// Longest message sent (and logged) for an error, in characters. Every message we build is
/// far shorter; this is the backstop that keeps a bug elsewhere from echoing a large input.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// The error body, also used in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `validation_failed`, `unauthorized`, `forbidden`, `csrf_failed`, `not_found`, `conflict`,
    /// `method_not_allowed`, `payload_too_large`, `uri_too_long`, `rate_limited`, `internal`, `unavailable`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// A human-readable explanation.
    #[schema(example = "email: must be a valid email address")]
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // Internal details stay in the log.
            ApiError::Internal(_) => "internal error".to_owned(),
            other => bounded(other.to_string()),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            // Whole seconds, rounded up, at least 1: "0" would invite an immediate retry.
            let secs = retry_after
                .as_secs()
                .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
                .max(1);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters (on a character boundary), marked with `…`.
fn bounded(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// Logs the [`ApiError`] a handler returned, once, inside the request's span: 5xx at error level
/// with the full cause chain, 4xx at debug level (they are the client's business).
pub async fn log_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(err) = response.extensions().get::<Arc<ApiError>>() {
        match err.as_ref() {
            ApiError::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed")
            }
            ApiError::Unavailable(why) => tracing::warn!(reason = why, "not ready"),
            other => {
                tracing::debug!(code = other.code(), message = %bounded(other.to_string()), "request refused")
            }
        }
    }
    response
}

/// Turns database constraint violations into API errors at the call site.
pub trait ResultExt<T> {
    /// A unique-constraint violation becomes `409 conflict` with `message`; anything else stays
    /// an internal error. Call it only on statements that can violate one unique constraint
    /// (SQLite does not report which constraint failed, so we cannot tell them apart portably).
    fn on_unique_violation(self, message: &str) -> Result<T, ApiError>;
    /// A foreign-key violation becomes `409 conflict` with `message` (e.g. "still in use").
    fn on_foreign_key_violation(self, message: &str) -> Result<T, ApiError>;
}

impl<T> ResultExt<T> for Result<T, DbErr> {
    fn on_unique_violation(self, message: &str) -> Result<T, ApiError> {
        self.map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => ApiError::Conflict(message.to_owned()),
            _ => ApiError::from(e),
        })
    }

    fn on_foreign_key_violation(self, message: &str) -> Result<T, ApiError> {
        self.map_err(|e| match e.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                ApiError::Conflict(message.to_owned())
            }
            _ => ApiError::from(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::Internal(anyhow::anyhow!("password=hunter2 in connection string"));
        assert_eq!(err.to_string(), "internal error");
        assert_eq!(err.code(), "internal");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn throttled_answers_carry_retry_after() {
        let err = ApiError::TooManyRequests {
            message: "slow down",
            retry_after: std::time::Duration::from_millis(2_001),
        };
        assert_eq!(err.code(), "rate_limited");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
    }

    #[test]
    fn messages_are_bounded() {
        let err = ApiError::Validation(format!("name: {}", "é".repeat(5000)));
        let msg = bounded(err.to_string());
        assert_eq!(msg.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(msg.ends_with('…'));
        assert_eq!(bounded("short".to_owned()), "short");
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(ApiError::Validation("x".into()).code(), "validation_failed");
        assert_eq!(
            ApiError::NotFound("api key").to_string(),
            "api key not found"
        );
        assert_eq!(
            ApiError::Conflict("taken".into()).status(),
            StatusCode::CONFLICT
        );
    }
}
