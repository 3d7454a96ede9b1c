//! The parts of OpenAI's chat completions request that the gateway reads, and the rules for
//! turning a bad body into a 400 that names the offending field.
//!
//! Only what we need is typed (plus the common sampling fields, so a wrong type is reported the
//! way OpenAI reports it); everything else is kept verbatim in `extra` maps and forwarded, so a
//! parameter a provider adds tomorrow passes through without a release.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// A `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatRequest {
    /// The model name the client asked for. Replaced by the deployment's upstream model when
    /// forwarded, so it is never serialized from here (see [`UpstreamChatRequest`]).
    #[serde(skip_serializing)]
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Rewritten when forwarded (we always ask for usage), hence not serialized from here.
    #[serde(default, skip_serializing)]
    pub stream_options: Option<StreamOptions>,

    // Typed only so that a wrong type is refused with the field's name, as OpenAI does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,

    /// Every other field, forwarded unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message. Only `role` and `content` are read; the rest (`name`, `tool_calls`,
/// `tool_call_id`, …) is forwarded as sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The message's text: a string content, or the concatenated `text` parts of an array
    /// content (images and audio parts contribute nothing).
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.push_text(&mut out);
        out
    }

    fn push_text(&self, out: &mut String) {
        match &self.content {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(Value::String(t)) = part.get("text") {
                        out.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A `POST /v1/embeddings` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingsRequest {
    /// Replaced by the deployment's upstream model when forwarded.
    #[serde(skip_serializing)]
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, forwarded unchanged to OpenAI-family providers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What to embed: OpenAI accepts a string, strings, token ids, or batches of token ids.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Parses a request body, mapping every failure to a 400 that names the field.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let request: ChatRequest = serde_path_to_error::deserialize(de).map_err(field_error)?;
        if request.model.is_empty() {
            return Err(GatewayError::InvalidRequest {
                message: "Invalid value for 'model': must be a non-empty string.".to_owned(),
                param: Some("model".to_owned()),
            });
        }
        if request.messages.is_empty() {
            return Err(GatewayError::InvalidRequest {
                message: "Invalid value for 'messages': must contain at least one message."
                    .to_owned(),
                param: Some("messages".to_owned()),
            });
        }
        Ok(request)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)
    }

    /// Text of the last `user` message (what the mock provider echoes).
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(Message::text)
            .unwrap_or_default()
    }

    /// Text of every message, in order, for token counting.
    pub fn message_texts(&self) -> impl Iterator<Item = String> + '_ {
        self.messages.iter().map(Message::text)
    }

    /// The body to send upstream: this request with `model` replaced and, for streams,
    /// `stream_options.include_usage` forced on (see [`UpstreamChatRequest`]).
    pub fn to_upstream<'a>(&'a self, upstream_model: &'a str) -> UpstreamChatRequest<'a> {
        let stream_options = if self.is_stream() {
            Some(UpstreamStreamOptions {
                include_usage: true,
                extra: self.stream_options.as_ref().map(|o| &o.extra),
            })
        } else {
            None
        };
        UpstreamChatRequest {
            model: upstream_model,
            stream_options,
            request: self,
        }
    }
}

/// What goes to an OpenAI-compatible provider. We always ask for usage on streams so a stream
/// is never metered as zero; the gateway drops the usage chunk again if the client did not ask
/// for it.
#[derive(Debug, Serialize)]
pub struct UpstreamChatRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<UpstreamStreamOptions<'a>>,
    #[serde(flatten)]
    request: &'a ChatRequest,
}

#[derive(Debug, Serialize)]
struct UpstreamStreamOptions<'a> {
    include_usage: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

/// Turns a deserialization failure into the 400 OpenAI would send, naming the field.
fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !inner.is_data() {
        // Syntax errors and truncated bodies: there is no field to name.
        return GatewayError::InvalidJson(inner.to_string());
    }
    let full = inner.to_string();
    let text = strip_location(&full);
    let at_root = path == "." || path.is_empty();

    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let param = if at_root {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return GatewayError::InvalidRequest {
            message: format!("Missing required parameter: '{param}'."),
            param: Some(param),
        };
    }
    if at_root {
        return GatewayError::InvalidRequest {
            message: "The request body must be a JSON object.".to_owned(),
            param: None,
        };
    }
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        return GatewayError::InvalidRequest {
            message: format!(
                "Invalid type for '{path}': expected {}, but got {} instead.",
                describe_expected(expected),
                describe_got(got)
            ),
            param: Some(path),
        };
    }
    if let Some(rest) = text.strip_prefix("invalid value: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        return GatewayError::InvalidRequest {
            message: format!(
                "Invalid value for '{path}': expected {}.",
                describe_expected(expected)
            ),
            param: Some(path),
        };
    }
    GatewayError::InvalidRequest {
        message: format!("Invalid value for '{path}': {text}."),
        param: Some(path),
    }
}

/// serde_json appends " at line L column C"; the field path says more to an API user.
fn strip_location(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// serde's "expected" wording (`f64`, `u32`, `a string`, `struct Message`, …) in API terms.
fn describe_expected(expected: &str) -> &'static str {
    match expected {
        "f64" | "f32" => "a number",
        "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" => "an integer",
        "a boolean" => "a boolean",
        "a string" => "a string",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        _ => "a value of another type",
    }
}

/// serde's "invalid type" wording (`string "hot"`, `integer `5``, …) in API terms.
fn describe_got(got: &str) -> &'static str {
    let kind = got.split([' ', '`']).next().unwrap_or(got);
    match kind {
        "string" => "a string",
        "integer" => "an integer",
        "floating" => "a number",
        "boolean" => "a boolean",
        "null" | "unit" => "null",
        "sequence" => "an array",
        "map" => "an object",
        _ => "a value of another type",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Parses `body` and returns (message, param) of the resulting 400, or "ok".
    fn check(body: &str, want_message: &str, want_param: Option<&str>) {
        match ChatRequest::parse(body.as_bytes()) {
            Ok(_) => panic!("expected an error for {body}"),
            Err(GatewayError::InvalidRequest { message, param }) => {
                assert_eq!(message, want_message, "{body}");
                assert_eq!(param.as_deref(), want_param, "{body}");
            }
            Err(GatewayError::InvalidJson(_)) => {
                assert_eq!("invalid json", want_message, "{body}");
            }
            Err(other) => panic!("unexpected {other:?} for {body}"),
        }
    }

    const MSGS: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn bad_bodies_name_the_field() {
        check("{", "invalid json", None);
        check("not json", "invalid json", None);
        check(r#"{"model":"m""#, "invalid json", None);
        check(
            &format!("{{{MSGS}}}"),
            "Missing required parameter: 'model'.",
            Some("model"),
        );
        check(
            r#"{"model":"m"}"#,
            "Missing required parameter: 'messages'.",
            Some("messages"),
        );
        check(
            &format!(r#"{{"model":"m",{MSGS},"temperature":"hot"}}"#),
            "Invalid type for 'temperature': expected a number, but got a string instead.",
            Some("temperature"),
        );
        check(
            &format!(r#"{{"model":5,{MSGS}}}"#),
            "Invalid type for 'model': expected a string, but got an integer instead.",
            Some("model"),
        );
        check(
            &format!(r#"{{"model":"m",{MSGS},"stream":"yes"}}"#),
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            Some("stream"),
        );
        check(
            &format!(r#"{{"model":"m",{MSGS},"n":-1}}"#),
            "Invalid value for 'n': expected a non-negative integer.",
            Some("n"),
        );
        check(
            r#"{"model":"m","messages":[{"content":"hi"}]}"#,
            "Missing required parameter: 'messages[0].role'.",
            Some("messages[0].role"),
        );
        check(
            r#"{"model":"m","messages":"hi"}"#,
            "Invalid type for 'messages': expected an array, but got a string instead.",
            Some("messages"),
        );
        check("[1]", "The request body must be a JSON object.", None);
        check(
            r#"{"model":"m","messages":[]}"#,
            "Invalid value for 'messages': must contain at least one message.",
            Some("messages"),
        );
    }

    #[test]
    fn unknown_fields_are_forwarded_and_model_replaced() {
        let body = r#"{"model":"alias","messages":[{"role":"user","content":"hi","name":"bob"}],
            "temperature":0.7,"response_format":{"type":"json_object"},"x_custom":[1,2],
            "stream":true,"stream_options":{"include_usage":false,"other":1}}"#;
        let req = ChatRequest::parse(body.as_bytes()).expect("parses");
        assert!(req.is_stream());
        assert!(!req.wants_stream_usage());
        let out = serde_json::to_value(req.to_upstream("gpt-4o")).expect("serializes");
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["temperature"], 0.7);
        assert_eq!(out["response_format"]["type"], "json_object");
        assert_eq!(out["x_custom"], serde_json::json!([1, 2]));
        assert_eq!(out["messages"][0]["name"], "bob");
        assert_eq!(out["stream"], true);
        assert_eq!(
            out["stream_options"],
            serde_json::json!({"include_usage": true, "other": 1})
        );
        assert!(
            out.get("top_p").is_none(),
            "absent optional fields stay absent: {out}"
        );
    }

    #[test]
    fn message_text_handles_strings_and_parts() {
        let req = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"system","content":"be nice"},
            {"role":"user","content":[{"type":"text","text":"a "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null,"tool_calls":[]}]}"#,
        )
        .expect("parses");
        assert_eq!(req.last_user_text(), "a b");
        assert_eq!(
            req.message_texts().collect::<Vec<_>>(),
            ["be nice", "a b", ""]
        );
        let out = serde_json::to_value(req.to_upstream("x")).expect("serializes");
        assert!(out.get("stream_options").is_none());
        assert_eq!(out["messages"][2]["tool_calls"], serde_json::json!([]));
    }
}
