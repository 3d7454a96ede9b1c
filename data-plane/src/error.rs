//! [`GatewayError`], the data plane's one error type, and the only place errors become HTTP.
//!
//! Every error is rendered in OpenAI's shape, `{"error":{"message","type","param","code"}}`, so
//! the official SDKs raise their usual exception classes (they map the HTTP status to a class and
//! read `error.message`). Rendering does not log: [`GatewayError::into_response`] puts the error
//! into the response extensions and the edge middleware ([`crate::http::log_errors`]) logs it once,
//! inside the request's span, and counts it under [`GatewayError::code`].
//!
//! 5xx responses never carry internal details (they are in the log line); messages never carry
//! an API key, a key hash or a provider secret.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// See [`ProviderError::scrub`].
const MIN_SCRUBBED_SECRET: usize = 8;
/// Longest provider error message passed on to a client, in characters. A provider's real
/// messages are a sentence or two; a longer one is cut, so an arbitrary upstream cannot make
/// us relay a page of its body.
pub const MAX_PROVIDER_MESSAGE: usize = 1024;
/// Longest provider `type`, `param` or `code` passed on.
const MAX_PROVIDER_FIELD: usize = 128;
/// How much of a client-supplied value an error message may quote (a model name, say).
pub const MAX_ECHO: usize = 64;

/// `value` cut to `max` characters, with an ellipsis when something was cut.
pub fn truncate(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}…", &value[..end]),
    }
}

/// The first `max` characters of `value`, borrowed (no allocation on the request path).
pub fn prefix(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        None => value,
        Some((end, _)) => &value[..end],
    }
}

/// Why a provider could not be reached, for the client's message and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    Refused,
    Dns,
    Tls,
    Timeout,
    Other,
}

impl Unreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::Refused => "the connection was refused",
            Unreachable::Dns => "its host name could not be resolved",
            Unreachable::Tls => "the TLS handshake failed",
            Unreachable::Timeout => "connecting timed out",
            Unreachable::Other => "the connection failed",
        }
    }
}

/// An error body as a provider sent it, kept so 400/429 answers can be passed on faithfully.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderError {
    pub message: Option<String>,
    pub kind: Option<String>,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ProviderError {
    /// Parses an OpenAI-style error body. Anything else yields an empty error: a non-JSON body
    /// (an HTML page from a proxy, say) is not something to show a client.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            message: Option<serde_json::Value>,
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
            param: Option<serde_json::Value>,
            code: Option<serde_json::Value>,
        }
        fn text(v: Option<serde_json::Value>) -> Option<String> {
            match v? {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error: Some(e) }) => Self {
                message: text(e.message),
                kind: text(e.kind),
                param: text(e.param),
                code: text(e.code),
            }
            .bounded(),
            _ => Self::default(),
        }
    }

    /// Cuts every field to its cap. Each adapter's parser ends with this, so what a client
    /// sees of an upstream error is always a parsed message of bounded length, never raw body
    /// bytes. Control characters are dropped: they have no business in a one-line message.
    pub fn bounded(self) -> Self {
        fn clean(s: String, max: usize) -> String {
            let s: String = s.chars().filter(|c| !c.is_control() || *c == ' ').collect();
            truncate(&s, max)
        }
        Self {
            message: self.message.map(|m| clean(m, MAX_PROVIDER_MESSAGE)),
            kind: self.kind.map(|k| clean(k, MAX_PROVIDER_FIELD)),
            param: self.param.map(|p| clean(p, MAX_PROVIDER_FIELD)),
            code: self.code.map(|c| clean(c, MAX_PROVIDER_FIELD)),
        }
    }

    /// Replaces every occurrence of `secret` in the message, in case a provider echoes the key
    /// it was given (some do, masked or not). Secrets shorter than 8 bytes are
    /// left alone: replacing "k" would mangle every word containing a k, and a key that short
    /// protects nothing anyway.
    pub fn scrub(mut self, secret: Option<&str>) -> Self {
        if let (Some(msg), Some(secret)) = (self.message.as_mut(), secret)
            && secret.len() >= MIN_SCRUBBED_SECRET
            && msg.contains(secret)
        {
            *msg = msg.replace(secret, "[redacted]");
        }
        self
    }
}

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON at all (syntax error or truncated).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is well formed but a field is missing, of the wrong type or invalid.
    /// `message` names the field and `param` is its path (e.g. `messages[0].role`).
    #[error("invalid request: {message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The request body could not be read (client went away mid-upload, bad chunking).
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("request body larger than {limit} bytes")]
    RequestTooLarge { limit: usize },

    #[error("no API key presented")]
    MissingApiKey,
    /// `/metrics` without the configured `SWITCHYARD_METRICS_TOKEN`.
    #[error("metrics token missing or wrong")]
    MetricsUnauthorized,
    #[error("unknown API key")]
    InvalidApiKey,
    #[error("revoked API key")]
    KeyRevoked,
    #[error("expired API key")]
    KeyExpired,

    #[error("model {model:?} is not allowed for this key")]
    ModelNotAllowed { model: String },
    /// A guardrail policy refused the request; names the policy and the rule, never the text
    /// that matched.
    #[error("blocked by guardrail {guardrail:?}, rule {rule}")]
    GuardrailBlocked { guardrail: String, rule: String },
    /// The guardrail policy that applies does not compile on this node (it was validated when
    /// written, so this is a version skew): refused rather than let through unchecked.
    #[error("guardrail {0:?} cannot be applied")]
    GuardrailUnavailable(String),
    #[error("model {model:?} does not exist for this tenant")]
    ModelNotFound { model: String },
    /// No deployment the request may use satisfies the region policies that apply to it.
    #[error("no deployment of {model:?} satisfies the region policy: {policy}")]
    RegionNotAllowed { model: String, policy: String },
    #[error("no route for this path")]
    RouteNotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,

    /// The provider answered 429; its `Retry-After` is passed on so SDKs back off correctly.
    #[error("upstream rate limited the request")]
    UpstreamRateLimited {
        retry_after: Option<HeaderValue>,
        error: Box<ProviderError>,
    },
    /// The provider refused the request as invalid (400, 413, 422); the client can fix it.
    #[error("upstream refused the request with HTTP {status}")]
    UpstreamBadRequest {
        status: StatusCode,
        error: Box<ProviderError>,
    },
    /// The provider refused our credentials (401/403): a gateway configuration problem.
    #[error("upstream rejected the provider credentials with HTTP {status}")]
    UpstreamAuthFailed { status: u16 },
    /// The provider failed (5xx, or a 4xx the client cannot fix such as an unknown upstream model).
    #[error("upstream answered HTTP {status}")]
    UpstreamError {
        status: u16,
        error: Box<ProviderError>,
    },
    /// The provider could not be reached (DNS, connect refused, TLS, connect timeout).
    #[error("upstream {host} unreachable: {}", why.as_str())]
    UpstreamUnreachable { host: String, why: Unreachable },
    /// The provider's address is one the egress policy refuses (loopback, private, metadata…).
    #[error("egress policy refuses {host}: {refused}")]
    EgressRefused {
        host: String,
        refused: shared::egress::Refused,
    },
    /// The request came back to this gateway (its own hop tag), or passed too many gateways.
    #[error("request loop detected after {hops} hops")]
    LoopDetected { hops: usize },
    /// The node is at its concurrent request cap (`SWITCHYARD_MAX_CONCURRENT_REQUESTS`).
    #[error("node at its concurrent request cap")]
    Overloaded,
    /// The node is stopping and the request was still waiting for its provider when the
    /// shutdown grace period ended (see [`crate::lifecycle`]).
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The organization is at its per-node concurrent request cap
    /// (`SWITCHYARD_MAX_CONCURRENT_PER_ORG`).
    #[error("organization at its concurrent request cap of {limit}")]
    TooManyConcurrent { limit: usize },
    /// Every candidate is at its provider quota (`rpm_limit`/`tpm_limit`) for this minute.
    #[error("every candidate deployment is at its provider quota")]
    QuotaExhausted { retry_after_secs: u64 },
    /// The provider credential is at its per-node concurrent call cap
    /// (`SWITCHYARD_MAX_CONCURRENT_PER_PROVIDER`).
    #[error("provider at its concurrent call cap of {limit}")]
    ProviderBusy { limit: usize },
    /// The request URL (path and query) is longer than the gateway accepts.
    #[error("request URL longer than {limit} bytes")]
    UriTooLong { limit: usize },
    /// A request header is larger than the gateway accepts.
    #[error("request header {name} too large")]
    HeaderTooLarge { name: String, limit: usize },
    /// No response headers (or body bytes) within the configured timeout.
    #[error("upstream timed out: {0}")]
    UpstreamTimeout(&'static str),
    /// The provider answered something we cannot use (connection closed early, bad JSON).
    #[error("upstream protocol error: {0}")]
    UpstreamProtocol(String),
    /// The deployment points at a provider we cannot use (missing, no base URL, secret that
    /// does not open under this node's master key).
    #[error("provider not usable: {0}")]
    ProviderUnavailable(String),

    /// A rate limit (RPM or TPM of the key, its team or its organization) has no room for the
    /// request. `headers` are the `x-ratelimit-*` values (see `pipeline::limit`).
    #[error("{} rate limit of the {} reached ({limit} {} per minute)", .metric.as_str(), .level.as_str(), .metric.as_str())]
    RateLimitExceeded {
        level: crate::governance::limits::Level,
        metric: crate::governance::limits::Metric,
        limit: u64,
        requested: u64,
        retry_after_ms: u64,
        headers: crate::pipeline::limit::RateHeaders,
    },
    /// The key is scoped to other endpoints (`endpoints`).
    #[error("key not allowed on {endpoint}")]
    EndpointNotAllowed { endpoint: &'static str },
    /// The client address is outside the key's `allowed_cidrs`.
    #[error("client address {ip} not allowed for this key")]
    ClientIpNotAllowed { ip: String },
    /// A hard budget that applies to the request (its key's, team's or tenant's) has no room
    /// for the request's worst-case cost. `period_end` is RFC 3339, or `never` (lifetime).
    #[error("{scope} budget exceeded until {period_end}")]
    BudgetExceeded {
        scope: &'static str,
        period_end: String,
    },
    /// The budget ledger (Redis) is unreachable and this node's leases do not cover the
    /// request: budgets fail closed.
    #[error("budget ledger unavailable")]
    BudgetUnavailable,

    /// The organization is suspended by billing (payment failed past the grace period, free
    /// credit spent, or an operator): 402 `organization_suspended` with the control plane's
    /// message saying how to fix it.
    #[error("organization suspended ({reason})")]
    OrganizationSuspended {
        reason: &'static str,
        message: String,
    },

    /// The key is not cached and the config store (Redis) cannot be reached.
    #[error("config store unavailable: {0}")]
    StoreUnavailable(String),
    /// A bug or a panic; details only in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The wire shape, shared with the streamed error event.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

const INVALID_REQUEST: &str = "invalid_request_error";
const API_ERROR: &str = "api_error";

/// A 400 `invalid_request_error` naming the offending field in `param`.
pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidJson(_) | InvalidRequest { .. } | BodyRead(_) | GuardrailBlocked { .. } => {
                StatusCode::BAD_REQUEST
            }
            GuardrailUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MissingApiKey | InvalidApiKey | KeyRevoked | KeyExpired | MetricsUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ModelNotAllowed { .. } | RegionNotAllowed { .. } => StatusCode::FORBIDDEN,
            ModelNotFound { .. } | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UpstreamRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamBadRequest { status, .. } => *status,
            UpstreamAuthFailed { .. }
            | UpstreamError { .. }
            | UpstreamUnreachable { .. }
            | EgressRefused { .. }
            | UpstreamProtocol(_)
            | ProviderUnavailable(_) => StatusCode::BAD_GATEWAY,
            LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            Overloaded | ProviderBusy { .. } | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            TooManyConcurrent { .. } | QuotaExhausted { .. } | RateLimitExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            EndpointNotAllowed { .. } | ClientIpNotAllowed { .. } => StatusCode::FORBIDDEN,
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            HeaderTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            BudgetUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OrganizationSuspended { .. } => StatusCode::PAYMENT_REQUIRED,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A low-cardinality label for metrics and the usage event's `error_code`. Stable: dashboards
    /// and stored usage rows depend on these strings.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            InvalidRequest { .. } => "invalid_request",
            BodyRead(_) => "invalid_body",
            RequestTooLarge { .. } => "request_too_large",
            MissingApiKey => "missing_api_key",
            MetricsUnauthorized => "metrics_unauthorized",
            InvalidApiKey => "invalid_api_key",
            KeyRevoked => "key_revoked",
            KeyExpired => "key_expired",
            ModelNotAllowed { .. } => "model_not_allowed",
            GuardrailBlocked { .. } => "guardrail_blocked",
            GuardrailUnavailable(_) => "guardrail_unavailable",
            ModelNotFound { .. } => "model_not_found",
            RegionNotAllowed { .. } => "region_not_allowed",
            RouteNotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            UpstreamRateLimited { .. } => "upstream_rate_limited",
            UpstreamBadRequest { .. } => "upstream_bad_request",
            UpstreamAuthFailed { .. } => "upstream_auth_failed",
            UpstreamError { .. } | UpstreamProtocol(_) => "upstream_error",
            UpstreamUnreachable { .. } => "upstream_unreachable",
            EgressRefused { .. } => "egress_refused",
            LoopDetected { .. } => "loop_detected",
            Overloaded => "overloaded",
            ShuttingDown => "shutting_down",
            TooManyConcurrent { .. } => "concurrency_limit_exceeded",
            QuotaExhausted { .. } => "provider_quota_exhausted",
            ProviderBusy { .. } => "provider_overloaded",
            UriTooLong { .. } => "uri_too_long",
            HeaderTooLarge { .. } => "header_too_large",
            UpstreamTimeout(_) => "upstream_timeout",
            ProviderUnavailable(_) => "provider_unavailable",
            RateLimitExceeded { .. } => "rate_limit_exceeded",
            EndpointNotAllowed { .. } => "endpoint_not_allowed",
            ClientIpNotAllowed { .. } => "ip_not_allowed",
            StoreUnavailable(_) => "config_store_unavailable",
            BudgetExceeded { .. } => "budget_exceeded",
            BudgetUnavailable => "budget_unavailable",
            OrganizationSuspended { .. } => "organization_suspended",
            Internal(_) => "internal_error",
        }
    }

    /// The body the client sees.
    pub fn body(&self) -> ErrorBody {
        use GatewayError::*;
        let own = |message: String, kind: &str, param: Option<String>| ErrorDetail {
            message,
            kind: kind.to_owned(),
            param,
            code: Some(self.code().to_owned()),
        };
        let error = match self {
            InvalidJson(_) => own(
                "We could not parse the JSON body of your request. The API expects a JSON \
                 payload, but what was sent was not valid JSON."
                    .to_owned(),
                INVALID_REQUEST,
                None,
            ),
            InvalidRequest { message, param } => {
                own(message.clone(), INVALID_REQUEST, param.clone())
            }
            BodyRead(_) => own(
                "The request body could not be read.".to_owned(),
                INVALID_REQUEST,
                None,
            ),
            RequestTooLarge { limit } => own(
                format!("The request body is too large: the limit is {limit} bytes."),
                INVALID_REQUEST,
                None,
            ),
            MissingApiKey => own(
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), \
                 or in an x-api-key header."
                    .to_owned(),
                INVALID_REQUEST,
                None,
            ),
            MetricsUnauthorized => own(
                "This endpoint requires the metrics token (SWITCHYARD_METRICS_TOKEN) as \
                 Authorization: Bearer <token>."
                    .to_owned(),
                INVALID_REQUEST,
                None,
            ),
            InvalidApiKey => own(
                "Incorrect API key provided. You can find your API keys in the Switchyard console."
                    .to_owned(),
                INVALID_REQUEST,
                None,
            ),
            KeyRevoked => own(
                "This API key has been revoked.".to_owned(),
                INVALID_REQUEST,
                None,
            ),
            KeyExpired => own(
                "This API key has expired.".to_owned(),
                INVALID_REQUEST,
                None,
            ),
            ModelNotAllowed { model } => own(
                format!("This API key is not allowed to use the model `{model}`."),
                "permission_error",
                Some("model".to_owned()),
            ),
            GuardrailBlocked { guardrail, rule } => own(
                format!(
                    "The request was blocked by the guardrail policy `{guardrail}` (rule `{rule}`)."
                ),
                INVALID_REQUEST,
                None,
            ),
            GuardrailUnavailable(guardrail) => own(
                format!(
                    "The guardrail policy `{guardrail}` cannot be applied on this gateway node; \
                     the request was not sent. Retry shortly or contact your administrator."
                ),
                API_ERROR,
                None,
            ),
            ModelNotFound { model } => own(
                format!("The model `{model}` does not exist or you do not have access to it."),
                INVALID_REQUEST,
                Some("model".to_owned()),
            ),
            RegionNotAllowed { model, policy } => own(
                format!(
                    "No deployment of `{model}` satisfies the region policy that applies to \
                     this request ({policy})."
                ),
                "permission_error",
                Some("model".to_owned()),
            ),
            RouteNotFound => own("Unknown request URL.".to_owned(), INVALID_REQUEST, None),
            MethodNotAllowed => own(
                "This method is not allowed on this URL.".to_owned(),
                INVALID_REQUEST,
                None,
            ),
            UpstreamRateLimited { error, .. } => passthrough(
                error,
                "The upstream provider is rate limiting requests; retry later.",
                "rate_limit_error",
                self.code(),
            ),
            UpstreamBadRequest { error, .. } => passthrough(
                error,
                "The upstream provider refused the request as invalid.",
                INVALID_REQUEST,
                self.code(),
            ),
            UpstreamAuthFailed { .. } => own(
                "The upstream provider rejected the gateway's credentials for this model. \
                 Ask your Switchyard administrator to check the provider's API key."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            UpstreamError { status, error } => own(
                match &error.message {
                    Some(m) => {
                        format!("The upstream provider returned an error (HTTP {status}): {m}")
                    }
                    None => format!("The upstream provider returned an error (HTTP {status})."),
                },
                API_ERROR,
                None,
            ),
            UpstreamUnreachable { host, why } => own(
                format!(
                    "The upstream provider at {host} could not be reached: {}.",
                    why.as_str()
                ),
                API_ERROR,
                None,
            ),
            EgressRefused { host, refused } => own(
                format!(
                    "The provider's address {host} is refused by this gateway's egress policy \
                     ({refused}). Ask your Switchyard administrator to point the provider at a \
                     public address, or to allow it with SWITCHYARD_UPSTREAM_ALLOW_CIDRS."
                ),
                API_ERROR,
                None,
            ),
            LoopDetected { .. } => own(
                "This request looped back into the gateway: the provider of this model points \
                 at the gateway itself, directly or through other gateways. Ask your Switchyard \
                 administrator to fix the provider's base URL."
                    .to_owned(),
                INVALID_REQUEST,
                None,
            ),
            Overloaded => own(
                "The gateway is handling too many requests right now; retry shortly.".to_owned(),
                API_ERROR,
                None,
            ),
            ShuttingDown => own(
                "This gateway node is shutting down and stopped waiting for the provider; \
                 retry the request."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            TooManyConcurrent { limit } => own(
                format!(
                    "Your organization has too many requests in flight on this gateway node \
                     (the limit is {limit}); retry when some have finished."
                ),
                "rate_limit_error",
                None,
            ),
            QuotaExhausted { retry_after_secs } => own(
                format!(
                    "Every deployment of this model is at its provider's rate quota; retry in \
                     {retry_after_secs} s."
                ),
                "rate_limit_error",
                None,
            ),
            ProviderBusy { .. } => own(
                "The provider of this model has too many requests in flight on this gateway \
                 node; retry shortly."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            UriTooLong { limit } => own(
                format!("The request URL is too long: the limit is {limit} bytes."),
                INVALID_REQUEST,
                None,
            ),
            HeaderTooLarge { name, limit } => own(
                format!("The request header `{name}` is too large: the limit is {limit} bytes."),
                INVALID_REQUEST,
                None,
            ),
            UpstreamTimeout(_) => own(
                "The upstream provider did not respond in time.".to_owned(),
                API_ERROR,
                None,
            ),
            UpstreamProtocol(_) => own(
                "The upstream provider returned an invalid response.".to_owned(),
                API_ERROR,
                None,
            ),
            ProviderUnavailable(_) => own(
                "The provider configured for this model cannot be used right now. \
                 Ask your Switchyard administrator to check its settings."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            RateLimitExceeded {
                level,
                metric,
                limit,
                requested,
                retry_after_ms,
                ..
            } => own(
                format!(
                    "Rate limit reached for {} per minute on this {}: Limit {limit}, Requested \
                     {requested}. Please try again in {}.",
                    metric.as_str(),
                    level.describe(),
                    crate::governance::limits::format_reset(*retry_after_ms),
                ),
                metric.as_str(),
                None,
            ),
            EndpointNotAllowed { endpoint } => own(
                format!("This API key is not allowed to call {endpoint}."),
                "permission_error",
                None,
            ),
            ClientIpNotAllowed { .. } => own(
                "Requests from your network address are not allowed with this API key.".to_owned(),
                "permission_error",
                None,
            ),
            StoreUnavailable(_) => own(
                "The gateway's configuration store is unavailable right now; please retry shortly."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            BudgetExceeded { scope, period_end } => own(
                if period_end == "never" {
                    format!(
                        "This request could exceed the {scope} budget that applies to it \
                         (a lifetime budget: it never resets, period end: never). \
                         Ask your Switchyard administrator to raise it."
                    )
                } else {
                    format!(
                        "This request could exceed the {scope} budget that applies to it \
                         until the current period ends at {period_end}."
                    )
                },
                "insufficient_quota",
                None,
            ),
            BudgetUnavailable => own(
                "The gateway cannot check this request's budget right now; retry shortly."
                    .to_owned(),
                API_ERROR,
                None,
            ),
            // `insufficient_quota` is the type OpenAI gives its own billing refusals ("You
            // exceeded your current quota, please check your plan and billing details"), so
            // clients that special-case billing problems recognise it; the status is 402
            // (Payment Required), and `code` says precisely what happened.
            OrganizationSuspended { message, .. } => {
                own(message.clone(), "insufficient_quota", None)
            }
            Internal(_) => own(
                "The gateway had an internal error while processing your request.".to_owned(),
                API_ERROR,
                None,
            ),
        };
        ErrorBody { error }
    }
}

/// A provider's 400/429 body, passed on as the provider wrote it (its `code` such as
/// `context_length_exceeded` is useful to the client), with our defaults filling the gaps.
fn passthrough(error: &ProviderError, message: &str, kind: &str, code: &str) -> ErrorDetail {
    ErrorDetail {
        message: error.message.clone().unwrap_or_else(|| message.to_owned()),
        kind: error.kind.clone().unwrap_or_else(|| kind.to_owned()),
        param: error.param.clone(),
        code: Some(error.code.clone().unwrap_or_else(|| code.to_owned())),
    }
}

/// What the edge middleware finds in the response extensions: the error, for one log line.
#[derive(Clone)]
pub struct LoggedError(pub Arc<GatewayError>);

impl fmt::Debug for LoggedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if let GatewayError::QuotaExhausted { retry_after_secs } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if matches!(
            self,
            GatewayError::Overloaded
                | GatewayError::TooManyConcurrent { .. }
                | GatewayError::ProviderBusy { .. }
                | GatewayError::ShuttingDown
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let GatewayError::RateLimitExceeded {
            retry_after_ms,
            headers,
            ..
        } = &self
        {
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            headers.apply(response.headers_mut());
        }
        match &self {
            // The official SDKs retry 429s unless told not to: a budget does not free up by
            // retrying.
            GatewayError::BudgetExceeded { .. } | GatewayError::OrganizationSuspended { .. } => {
                response
                    .headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            GatewayError::BudgetUnavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if let GatewayError::UpstreamRateLimited {
            retry_after: Some(value),
            ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, value.clone());
        }
        response
            .extensions_mut()
            .insert(LoggedError(Arc::new(self)));
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_variant_renders_the_openai_shape_with_its_code() {
        let all = [
            GatewayError::InvalidJson("x".into()),
            GatewayError::MissingApiKey,
            GatewayError::MetricsUnauthorized,
            GatewayError::KeyRevoked,
            GatewayError::ModelNotAllowed { model: "m".into() },
            GatewayError::UpstreamAuthFailed { status: 401 },
            GatewayError::Internal("secret detail".into()),
        ];
        for e in all {
            let body = serde_json::to_value(e.body()).expect("serializes");
            let err = &body["error"];
            assert!(err["message"].is_string(), "{body}");
            assert!(err["type"].is_string(), "{body}");
            assert!(err.get("param").is_some(), "{body}");
            assert_eq!(err["code"], e.code(), "{body}");
            assert!(!body.to_string().contains("secret detail"));
        }
    }

    #[test]
    fn provider_errors_parse_and_scrub() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-123","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = ProviderError::parse(body).scrub(Some("sk-live-123"));
        assert_eq!(
            e.message.as_deref(),
            Some("Incorrect API key provided: [redacted]")
        );
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        assert_eq!(e.param, None);
        assert_eq!(
            ProviderError::parse(b"<html>bad gateway</html>"),
            ProviderError::default()
        );
    }

    #[test]
    fn upstream_400_passes_the_provider_body_through() {
        let e = GatewayError::UpstreamBadRequest {
            status: StatusCode::BAD_REQUEST,
            error: Box::new(ProviderError {
                message: Some("too long".into()),
                kind: Some("invalid_request_error".into()),
                param: Some("messages".into()),
                code: Some("context_length_exceeded".into()),
            }),
        };
        let body = e.body();
        assert_eq!(body.error.message, "too long");
        assert_eq!(body.error.param.as_deref(), Some("messages"));
        assert_eq!(body.error.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.code(), "upstream_bad_request");
    }
}
