//! The control API's extractors: axum's `Json`, `Path` and `Query` with every rejection turned
//! into an [`ApiError`] that names the field and never echoes more than a short preview of what
//! the client sent.
//!
//! - [`ApiJson`] reads the body (bounded by [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES), 413
//!   above it), then deserializes it with `serde_path_to_error`, so a wrong type deep inside a
//!   body is reported at its path (`models[2]: must be a string`). Request DTOs use
//!   `#[serde(deny_unknown_fields)]`; an unknown field is a 400 that names *every* unknown
//!   field of that object and lists the accepted ones, because a silently ignored field (a
//!   misspelt limit, a setting this version does not have) makes a user believe something is
//!   configured that is not.
//! - [`ApiQuery`] does the same for the query string (query DTOs deny unknown parameters too).
//! - [`ApiPath`] turns a malformed path parameter into `id: the path parameter must be a UUID`,
//!   without repeating the value.
//!
//! serde reports problems as text. The texts of serde's own errors have a fixed shape
//! (`unknown field `x`, expected one of `a`, `b``, `invalid type: string "…", expected u32`,
//! `missing field `x``, `unknown variant …`), which [`describe`] rewrites into our
//! `field: problem` form, dropping the parts that quote client input. Anything else is cut to a
//! short preview.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::validate::preview;
use crate::error::ApiError;

/// Longest field name or path repeated in an error message.
const MAX_FIELD_CHARS: usize = 64;
/// How many unknown fields one message names.
const MAX_UNKNOWN_NAMED: usize = 10;

/// `axum::Json` with our rejections; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::invalid(
                "body",
                "must be JSON, sent with content-type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::invalid("body", "could not be read")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The 413 of an oversized body.
pub(crate) fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "body: must be at most {} bytes",
        super::MAX_BODY_BYTES
    ))
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes a JSON body into `T`; every failure is a 400 naming the field.
/// Every request body of the control API is a JSON object (serde would also accept an array
/// for a struct, field by field, which no client means).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::invalid(
                "body",
                "must not be empty; send a JSON object",
            ));
        }
        Some(_) => return Err(ApiError::invalid("body", "must be a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            de.end().map_err(|e| syntax_error(&e))?;
            Ok(value)
        }
        Err(err) => {
            let inner = err.inner();
            if matches!(inner.classify(), serde_json::error::Category::Data) {
                let message = without_position(inner);
                let mut path: Vec<&Segment> = err.path().iter().collect();
                // Only for unknown fields: the whole object, to name every unknown field in it.
                let object = if message.starts_with("unknown field") {
                    // The path ends at the unknown key itself; the object is its parent.
                    if matches!(path.last(), Some(Segment::Map { .. })) {
                        path.pop();
                    }
                    serde_json::from_slice::<Value>(bytes)
                        .ok()
                        .and_then(|v| object_at(v, &path))
                } else {
                    None
                };
                Err(describe(&field_of(&path), &message, object.as_ref()))
            } else {
                Err(syntax_error(inner))
            }
        }
    }
}

/// `application/x-www-form-urlencoded` query string into `T`; failures as for bodies.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
        let message = err.inner().to_string();
        let mut path: Vec<&Segment> = err.path().iter().collect();
        let object = if message.starts_with("unknown field") {
            path.pop();
            // Every parameter name, as a flat object, to name every unknown one.
            let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, _)| (k.into_owned(), Value::Null))
                .collect();
            Some(map)
        } else {
            None
        };
        let field = match field_of(&path).as_str() {
            "body" => "query".to_owned(),
            other => other.to_owned(),
        };
        describe(&field, &message, object.as_ref())
    })
}

/// A JSON syntax error: serde_json's messages say what was expected and where, and never
/// quote the input.
fn syntax_error(e: &serde_json::Error) -> ApiError {
    ApiError::invalid(
        "body",
        format_args!(
            "is not valid JSON ({} at line {} column {})",
            preview(&without_position(e), 80),
            e.line(),
            e.column()
        ),
    )
}

/// serde_json's message without its ` at line L column C` suffix.
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// The field a path points at (`models[2]`, `capabilities.tools`), or `body` for the top level.
fn field_of(path: &[&Segment]) -> String {
    if path.is_empty() {
        return "body".to_owned();
    }
    let mut s = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&preview(key, MAX_FIELD_CHARS));
            }
            Segment::Unknown => s.push_str(if s.is_empty() { "?" } else { ".?" }),
        }
    }
    preview(&s, MAX_FIELD_CHARS * 2)
}

/// The JSON object at `path` inside `value`, if there is one.
fn object_at(value: Value, path: &[&Segment]) -> Option<serde_json::Map<String, Value>> {
    let mut current = value;
    for segment in path {
        current = match (segment, current) {
            (Segment::Map { key }, Value::Object(mut map)) => map.remove(key)?,
            (Segment::Seq { index }, Value::Array(mut items)) if *index < items.len() => {
                items.swap_remove(*index)
            }
            _ => return None,
        };
    }
    match current {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Rewrites one of serde's messages about `field` into our `field: problem` form.
/// `object` is the object holding an unknown field, to name all of its unknown fields.
fn describe(
    field: &str,
    message: &str,
    object: Option<&serde_json::Map<String, Value>>,
) -> ApiError {
    // `unknown field `x`, expected one of `a`, `b`` / `expected `a` or `b`` / `there are no fields`.
    // The unknown name comes first and is client input; the expected list is ours, so split at
    // the last ", expected " and never at one inside the client's name.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = match rest.rfind("`, expected ") {
            Some(i) => (&rest[..i], &rest[i + "`, expected ".len()..]),
            None => (rest.trim_end_matches('`'), ""),
        };
        let accepted = backticked(expected);
        let mut unknown: Vec<String> = match object {
            Some(map) => map
                .keys()
                .filter(|k| !accepted.iter().any(|a| a == *k))
                .map(|k| preview(k, MAX_FIELD_CHARS))
                .collect(),
            None => vec![],
        };
        if unknown.is_empty() {
            unknown.push(preview(name, MAX_FIELD_CHARS));
        }
        let more = unknown.len().saturating_sub(MAX_UNKNOWN_NAMED);
        unknown.truncate(MAX_UNKNOWN_NAMED);
        let prefix = match field {
            "body" | "query" => String::new(),
            parent => format!("{parent}."),
        };
        let names: Vec<String> = unknown.iter().map(|n| format!("{prefix}{n}")).collect();
        let mut names = names.join(", ");
        if more > 0 {
            names.push_str(&format!(" (and {more} more)"));
        }
        let what = if field == "query" {
            "query parameter"
        } else {
            "field"
        };
        let plural = if unknown.len() + more > 1 { "s" } else { "" };
        let accepted = if accepted.is_empty() {
            "none".to_owned()
        } else {
            accepted.join(", ")
        };
        return ApiError::Validation(format!(
            "{names}: unknown {what}{plural}; accepted: {accepted}"
        ));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = preview(rest.trim_end_matches('`'), MAX_FIELD_CHARS);
        return match field {
            "body" | "query" => ApiError::invalid(&name, "is required"),
            parent => ApiError::invalid(&format!("{parent}.{name}"), "is required"),
        };
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        // `invalid type: string "…", expected u32`: keep only the kind of what was sent.
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        let got = rest
            .split([' ', '`', '"', ','])
            .next()
            .map(|g| if g == "floating" { "number" } else { g })
            .unwrap_or("value");
        if field == "body" {
            return ApiError::invalid("body", "must be a JSON object");
        }
        return ApiError::invalid(
            field,
            format_args!("must be {}, not {got}", friendly(expected)),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        return ApiError::invalid(field, format_args!("must be {}", friendly(expected)));
    }
    if message.starts_with("unknown variant `") {
        let expected = message.rsplit_once("`, expected ").map_or("", |(_, e)| e);
        let choices = backticked(expected);
        return ApiError::invalid(field, format_args!("must be one of {}", choices.join(", ")));
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        return ApiError::invalid(field, format_args!("must be {}", friendly(expected)));
    }
    // std's integer parse errors, as serde_urlencoded reports them for query parameters.
    if matches!(
        message,
        "invalid digit found in string"
            | "cannot parse integer from empty string"
            | "number too large to fit in target type"
            | "number too small to fit in target type"
    ) {
        return ApiError::invalid(field, "must be an integer in range");
    }
    if message.starts_with("UUID parsing failed") {
        return ApiError::invalid(field, "must be a UUID");
    }
    // A custom message (e.g. from a number parser): our words, cut short.
    ApiError::invalid(field, preview(message, 120))
}

/// The `backticked` names in `s`, e.g. "one of `a`, `b`" → [a, b].
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(|n| preview(n, MAX_FIELD_CHARS))
        .collect()
}

/// serde's description of an expected type, in API words.
fn friendly(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "a string" => e.to_owned(),
        "a map" => "an object".to_owned(),
        "a UUID" | "UUID" => "a UUID".to_owned(),
        e if e.starts_with("struct ") => "an object".to_owned(),
        e if e.starts_with("a sequence") || e.starts_with("a list") => "an array".to_owned(),
        e => preview(e, 80),
    }
}

/// `axum::extract::Query` with our rejections; see the module docs. An absent query string
/// is the empty one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// `axum::extract::Path` with our rejections; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(path_error::<T>)
    }
}

/// A path rejection as `id: the path parameter must be a UUID`, without the value. Every route of the control API
/// has at most one parameter, so a key-less error is about `id`.
fn path_error<T>(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        return ApiError::Internal(anyhow::anyhow!("path parameters missing: {rejection}"));
    };
    let key = match e.kind() {
        ErrorKind::ParseErrorAtKey { key, .. }
        | ErrorKind::InvalidUtf8InPathParam { key }
        | ErrorKind::DeserializeError { key, .. } => preview(key, MAX_FIELD_CHARS),
        _ => "id".to_owned(),
    };
    if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) {
        return ApiError::invalid(&key, "the path parameter must be valid UTF-8");
    }
    if std::any::type_name::<T>().contains("Uuid") {
        ApiError::invalid(
            &key,
            "the path parameter must be a UUID, e.g. 0192f0c1-7c4e-7d3a-9a57-1c2e3f4a5b6c",
        )
    } else {
        ApiError::invalid(&key, "the path parameter is not valid")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        tags: Option<Vec<String>>,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        on: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Chat,
        Embedding,
    }

    fn msg(body: &str) -> String {
        match parse_json::<Body>(body.as_bytes()) {
            Ok(b) => panic!("accepted: {b:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `(body, expected message)`: data-driven, so each rule is one line.
    #[test]
    fn rejections_name_the_field() {
        let huge = "x".repeat(100_000);
        let cases: Vec<(String, String)> = vec![
            (
                r#"{"name":"a","max_budget":10,"rpm_limit":5}"#.into(),
                "max_budget, rpm_limit: unknown fields; accepted: name, limit, tags, inner, mode"
                    .into(),
            ),
            (
                r#"{"name":"a","inner":{"on":true,"off":1}}"#.into(),
                "inner.off: unknown field; accepted: on".into(),
            ),
            (r#"{"limit":1}"#.into(), "name: is required".into()),
            (
                r#"{"name":"a","limit":"ten"}"#.into(),
                "limit: must be a non-negative integer, not string".into(),
            ),
            (
                r#"{"name":"a","limit":-1}"#.into(),
                "limit: must be a non-negative integer".into(),
            ),
            (
                r#"{"name":"a","tags":["ok",5]}"#.into(),
                "tags[1]: must be a string, not integer".into(),
            ),
            (
                r#"{"name":"a","mode":"turbo"}"#.into(),
                "mode: must be one of chat, embedding".into(),
            ),
            (
                r#"{"name":7}"#.into(),
                "name: must be a string, not integer".into(),
            ),
            ("[1,2]".into(), "body: must be a JSON object".into()),
            (
                format!(r#"{{"name":"a","{huge}":1}}"#),
                format!(
                    "{}…: unknown field; accepted: name, limit, tags, inner, mode",
                    &huge[..64]
                ),
            ),
            (
                format!(r#"{{"name":"a","mode":"{huge}"}}"#),
                "mode: must be one of chat, embedding".into(),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(msg(&body), want, "{}", preview(&body, 80));
        }
        assert_eq!(msg(""), "body: must not be empty; send a JSON object");
        assert_eq!(msg("\"x\""), "body: must be a JSON object");
        let syntax = msg(r#"{"name": "a",}"#);
        assert!(
            syntax.starts_with("body: is not valid JSON (trailing comma"),
            "{syntax}"
        );
        let trailing = msg(r#"{"name": "a"} x"#);
        assert!(
            trailing.starts_with("body: is not valid JSON"),
            "{trailing}"
        );
        // A long string of the wrong type is not echoed.
        let wrong = msg(&format!(r#"{{"name":"a","limit":"{huge}"}}"#));
        assert!(wrong.len() < 200, "{wrong}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Query {
        limit: Option<u64>,
        before: Option<String>,
    }

    #[test]
    fn query_rejections_name_the_parameter() {
        let msg = |q: &str| match parse_query::<Query>(q) {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            msg("limt=5&x=1"),
            "limt, x: unknown query parameters; accepted: limit, before"
        );
        assert!(
            msg("limit=ten").starts_with("limit:"),
            "{}",
            msg("limit=ten")
        );
        assert!(parse_query::<Query>("limit=5&before=x").is_ok());
        assert!(parse_query::<Query>("").is_ok());
    }
}
