//! The parts of OpenAI's chat completions and embeddings requests that the gateway reads, the
//! rules for turning a bad body into a 400 that names the offending field, and the rule for what
//! happens to every other field.
//!
//! Only what we need is typed (plus the common sampling fields, so a wrong type is reported the
//! way OpenAI reports it); everything else is kept verbatim in `extra` maps.
//!
//! # Pass-through, drop or refuse: the rule for `/v1/chat/completions`
//!
//! The gateway accepts the full current OpenAI request schema. What reaches the provider depends
//! on the provider's wire format:
//!
//! - **OpenAI family** (`openai`, `openai_compatible`, `azure_openai` and the presets in
//!   `providers::presets`: Mistral, Groq, DeepSeek, Together, Fireworks, xAI, OpenRouter, vLLM,
//!   Ollama, llama.cpp): the body is forwarded **verbatim**, unknown fields included, so a
//!   parameter a provider adds tomorrow passes through without a release. Only `model` is
//!   replaced and, for streams, `stream_options.include_usage` forced on (see
//!   [`UpstreamChatRequest`]). A preset may rename, drop or refuse the few standard fields its
//!   provider is documented to reject; its table says which and why.
//! - **Other providers** (Anthropic, Gemini, Bedrock): the adapter translates the fields
//!   `providers::canonical` reads (messages with text, images, tool calls and tool results;
//!   `tools`, `tool_choice`, `max_completion_tokens`/`max_tokens`, `temperature`, `top_p`,
//!   `stop`, `response_format`) and **drops** everything else, because dropping it leaves the
//!   answer's meaning intact: sampling and caching hints (`seed`, `presence_penalty`,
//!   `frequency_penalty`, `parallel_tool_calls`, `reasoning_effort`, `verbosity`,
//!   `prompt_cache_key`, `service_tier`), bookkeeping (`user`, `metadata`, `store`,
//!   `safety_identifier`), `stream_options` (the gateway meters streams itself) and unknown
//!   fields. What would change the answer's meaning if silently dropped is **refused** with a
//!   400 naming the parameter ([`ChatRequest::refuse_unsupported_for_non_openai`], see
//!   [`NON_OPENAI_REFUSED`]): several choices (`n` > 1), log probabilities (`logprobs`,
//!   `top_logprobs`), token biases (`logit_bias`: token ids of OpenAI's tokenizer mean nothing
//!   to another model), audio output (`audio`, `modalities` other than text), predicted outputs
//!   (`prediction`), web search (`web_search_options`) and the deprecated `functions` /
//!   `function_call` (dropping them would silently remove the model's tools; use `tools`).
//!   Fields set to their default (`n: 1`, `logprobs: false`, `null`) are not refused.
//!
//! Every non-OpenAI adapter calls [`ChatRequest::refuse_unsupported_for_non_openai`] before
//! translating, so the rule holds for all of them the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{GatewayError, invalid};

/// A `POST /v1/chat/completions` body. `Default` is an empty request, for code that needs a
/// placeholder (it is never valid: [`ChatRequest::parse`] refuses an empty `model`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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

    pub fn push_text(&self, out: &mut String) {
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

impl EmbeddingInput {
    /// How many embeddings the input asks for: one per string or per token array.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(texts) => texts.len(),
            EmbeddingInput::TokenBatches(batches) => batches.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `encoding_format` values OpenAI documents.
const ENCODING_FORMATS: [&str; 2] = ["float", "base64"];

impl EmbeddingsRequest {
    /// Parses a request body, mapping every failure to a 400 that names the field: a missing or
    /// empty `model` or `input`, an `input` of the wrong shape, an empty string or token array
    /// inside it (`input[i]`), an unknown `encoding_format`, `dimensions` of 0.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let request: EmbeddingsRequest = serde_path_to_error::deserialize(de).map_err(|e| {
            // `input` is an untagged enum: serde can only say "no variant matched".
            if e.path().to_string() == "input" && e.inner().is_data() {
                invalid(
                    "input",
                    "Invalid type for 'input': expected a string, an array of strings, an array of integers or an array of arrays of integers.",
                )
            } else {
                field_error(e)
            }
        })?;
        check_model(&request.model)?;
        let empty_input = || {
            invalid(
                "input",
                "Invalid value for 'input': must be a non-empty string or a non-empty array.",
            )
        };
        match &request.input {
            EmbeddingInput::Text(text) if text.is_empty() => return Err(empty_input()),
            EmbeddingInput::Tokens(ids) if ids.is_empty() => return Err(empty_input()),
            EmbeddingInput::Texts(texts) => {
                if texts.is_empty() {
                    return Err(empty_input());
                }
                if let Some(i) = texts.iter().position(String::is_empty) {
                    return Err(invalid(
                        format!("input[{i}]"),
                        format!("Invalid value for 'input[{i}]': must be a non-empty string."),
                    ));
                }
            }
            EmbeddingInput::TokenBatches(batches) => {
                if batches.is_empty() {
                    return Err(empty_input());
                }
                if let Some(i) = batches.iter().position(Vec::is_empty) {
                    return Err(invalid(
                        format!("input[{i}]"),
                        format!("Invalid value for 'input[{i}]': must be a non-empty array."),
                    ));
                }
            }
            _ => {}
        }
        if let Some(format) = &request.encoding_format
            && !ENCODING_FORMATS.contains(&format.as_str())
        {
            return Err(invalid(
                "encoding_format",
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
            ));
        }
        if request.dimensions == Some(0) {
            return Err(invalid(
                "dimensions",
                "Invalid value for 'dimensions': must be at least 1.",
            ));
        }
        Ok(request)
    }

    /// The body to send to an OpenAI-compatible provider: this request, every field kept, with
    /// `model` replaced by the deployment's upstream model.
    pub fn to_upstream<'a>(&'a self, upstream_model: &'a str) -> UpstreamEmbeddingsRequest<'a> {
        UpstreamEmbeddingsRequest {
            model: upstream_model,
            request: self,
        }
    }
}

/// What goes to an OpenAI-compatible embeddings endpoint.
#[derive(Debug, Serialize)]
pub struct UpstreamEmbeddingsRequest<'a> {
    model: &'a str,
    #[serde(flatten)]
    request: &'a EmbeddingsRequest,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The capabilities a request needs from the model that serves it (see [`ChatRequest::needs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub tools: bool,
    pub vision: bool,
    pub json_mode: bool,
}

/// Longest accepted `model`, in bytes. Real model names and aliases are under 100; a longer
/// one is refused before it is echoed, logged or stored anywhere.
pub const MAX_MODEL_LEN: usize = 256;

/// Refuses an empty or oversized `model`, naming the field and never quoting the value.
pub fn check_model(model: &str) -> Result<(), GatewayError> {
    if model.is_empty() {
        return Err(invalid(
            "model",
            "Invalid value for 'model': must be a non-empty string.",
        ));
    }
    if model.len() > MAX_MODEL_LEN {
        return Err(invalid(
            "model",
            format!(
                "Invalid value for 'model': longer than {MAX_MODEL_LEN} bytes ({} bytes).",
                model.len()
            ),
        ));
    }
    Ok(())
}

impl ChatRequest {
    /// Parses a request body, mapping every failure to a 400 that names the field.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let request: ChatRequest = serde_path_to_error::deserialize(de).map_err(field_error)?;
        check_model(&request.model)?;
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

    /// What the request needs of a model: tools (a non-empty `tools`), vision (an `image_url`
    /// content part), JSON mode (`response_format` of type `json_object` or `json_schema`).
    pub fn needs(&self) -> Needs {
        let tools = self
            .extra
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let json_mode = self
            .extra
            .get("response_format")
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "json_object" || t == "json_schema");
        let vision = self.messages.iter().any(|m| match &m.content {
            Some(Value::Array(parts)) => parts
                .iter()
                .any(|p| p.get("type").and_then(Value::as_str) == Some("image_url")),
            _ => false,
        });
        Needs {
            tools,
            vision,
            json_mode,
        }
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

    /// Refuses, with a 400 naming the parameter, what a non-OpenAI provider cannot do and what
    /// would change the answer's meaning if it were silently dropped (see the module docs and
    /// [`NON_OPENAI_REFUSED`]). Values that ask for nothing (`n: 1`, `logprobs: false`,
    /// `null`, an empty `logit_bias`, `modalities: ["text"]`) pass.
    ///
    /// Adapters for non-OpenAI wire formats call this before translating the request.
    pub fn refuse_unsupported_for_non_openai(&self) -> Result<(), GatewayError> {
        if self.n.is_some_and(|n| n > 1) {
            return Err(unsupported_param(
                "n",
                "Generating several choices ('n' above 1) is not supported by this model's provider.",
            ));
        }
        if self.logprobs == Some(true) {
            return Err(unsupported_param(
                "logprobs",
                "Log probabilities ('logprobs') are not supported by this model's provider.",
            ));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(unsupported_param(
                "top_logprobs",
                "Log probabilities ('top_logprobs') are not supported by this model's provider.",
            ));
        }
        for (param, message) in NON_OPENAI_REFUSED_EXTRA {
            let Some(value) = self.extra.get(*param) else {
                continue;
            };
            let asks = match *param {
                // Text-only output is what every provider does anyway.
                "modalities" => value
                    .as_array()
                    .is_some_and(|m| m.iter().any(|v| v.as_str() != Some("text"))),
                _ => asks_for_something(value),
            };
            if asks {
                return Err(unsupported_param(param, message));
            }
        }
        Ok(())
    }

    /// The body to send upstream: this request with `model` replaced and, for streams,
    /// `stream_options.include_usage` forced on (see [`UpstreamChatRequest`]).
    pub fn to_upstream<'a>(&'a self, upstream_model: &'a str) -> UpstreamChatRequest<'a> {
        self.to_upstream_with(upstream_model, true)
    }

    /// As [`ChatRequest::to_upstream`]; `ask_stream_usage = false` leaves `stream_options`
    /// out entirely, for servers that reject the field (they report usage on their own).
    pub fn to_upstream_with<'a>(
        &'a self,
        upstream_model: &'a str,
        ask_stream_usage: bool,
    ) -> UpstreamChatRequest<'a> {
        let stream_options = if self.is_stream() && ask_stream_usage {
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

/// Every parameter [`ChatRequest::refuse_unsupported_for_non_openai`] refuses when it asks for
/// something: the typed ones, then the untyped ones kept in `extra`.
pub const NON_OPENAI_REFUSED: [&str; 10] = [
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
];

/// The untyped refused parameters (kept in `extra`), with the refusal's text.
const NON_OPENAI_REFUSED_EXTRA: &[(&str, &str)] = &[
    (
        "logit_bias",
        "Token biases ('logit_bias') are not supported by this model's provider: token ids are specific to OpenAI's tokenizer.",
    ),
    (
        "audio",
        "Audio output ('audio') is not supported by this model's provider.",
    ),
    (
        "modalities",
        "Output modalities other than text ('modalities') are not supported by this model's provider.",
    ),
    (
        "prediction",
        "Predicted outputs ('prediction') are not supported by this model's provider.",
    ),
    (
        "web_search_options",
        "Web search ('web_search_options') is not supported by this model's provider.",
    ),
    (
        "functions",
        "The deprecated 'functions' parameter is not supported by this model's provider; use 'tools'.",
    ),
    (
        "function_call",
        "The deprecated 'function_call' parameter is not supported by this model's provider; use 'tool_choice'.",
    ),
];

/// Whether a parameter's value asks for anything: `null`, `false`, `0`, `""`, `[]` and `{}`
/// are what an absent parameter means.
pub(crate) fn asks_for_something(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The 400 for a parameter the chosen provider cannot honour.
pub(crate) fn unsupported_param(param: &str, message: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "{message} Remove '{param}' or use a model served by a provider that supports it."
        ),
        param: Some(param.to_owned()),
    }
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

    #[test]
    fn non_openai_providers_refuse_what_would_change_the_answer() {
        let refused = |extra: &str| {
            let body = format!(r#"{{"model":"m",{MSGS},{extra}}}"#);
            match ChatRequest::parse(body.as_bytes())
                .expect("parses")
                .refuse_unsupported_for_non_openai()
            {
                Ok(()) => None,
                Err(GatewayError::InvalidRequest { param, message }) => {
                    let param = param.expect("names the param");
                    assert!(message.contains(&param), "{message}");
                    Some(param)
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(refused(r#""n":2"#).as_deref(), Some("n"));
        assert_eq!(refused(r#""logprobs":true"#).as_deref(), Some("logprobs"));
        assert_eq!(
            refused(r#""top_logprobs":2"#).as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(
            refused(r#""logit_bias":{"50256":-100}"#).as_deref(),
            Some("logit_bias")
        );
        assert_eq!(
            refused(r#""modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"}"#)
                .as_deref(),
            Some("audio")
        );
        assert_eq!(
            refused(r#""modalities":["audio"]"#).as_deref(),
            Some("modalities")
        );
        assert_eq!(
            refused(r#""prediction":{"type":"content","content":"x"}"#).as_deref(),
            Some("prediction")
        );
        assert_eq!(
            refused(r#""functions":[{"name":"f"}]"#).as_deref(),
            Some("functions")
        );
        // Defaults ask for nothing; droppable fields are not refused.
        for ok in [
            r#""n":1"#,
            r#""logprobs":false"#,
            r#""logit_bias":{}"#,
            r#""modalities":["text"]"#,
            r#""prediction":null"#,
            r#""seed":7,"user":"u","metadata":{"a":"b"},"parallel_tool_calls":false"#,
        ] {
            assert_eq!(refused(ok), None, "{ok}");
        }
    }

    fn embeddings_error(body: &str) -> (String, Option<String>) {
        match EmbeddingsRequest::parse(body.as_bytes()) {
            Err(GatewayError::InvalidRequest { message, param }) => (message, param),
            Err(GatewayError::InvalidJson(_)) => ("invalid json".into(), None),
            other => panic!("expected a 400 for {body}: {other:?}"),
        }
    }

    #[test]
    fn embeddings_bodies_are_checked_naming_the_field() {
        let param = |body: &str| embeddings_error(body).1;
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("input"));
        assert_eq!(
            embeddings_error(r#"{"model":"m"}"#).0,
            "Missing required parameter: 'input'."
        );
        assert_eq!(param(r#"{"input":"x"}"#).as_deref(), Some("model"));
        assert_eq!(
            param(r#"{"model":"","input":"x"}"#).as_deref(),
            Some("model")
        );
        for bad in [
            r#""""#,
            "[]",
            "5",
            "null",
            r#"[1,"a"]"#,
            r#"{"a":1}"#,
            "[-1]",
        ] {
            assert_eq!(
                param(&format!(r#"{{"model":"m","input":{bad}}}"#)).as_deref(),
                Some("input"),
                "{bad}"
            );
        }
        assert_eq!(
            param(r#"{"model":"m","input":["a",""]}"#).as_deref(),
            Some("input[1]")
        );
        assert_eq!(
            param(r#"{"model":"m","input":[[1],[]]}"#).as_deref(),
            Some("input[1]")
        );
        assert_eq!(
            param(r#"{"model":"m","input":"x","encoding_format":"hex"}"#).as_deref(),
            Some("encoding_format")
        );
        assert_eq!(
            param(r#"{"model":"m","input":"x","dimensions":"big"}"#).as_deref(),
            Some("dimensions")
        );
        assert_eq!(
            param(r#"{"model":"m","input":"x","dimensions":0}"#).as_deref(),
            Some("dimensions")
        );
        assert_eq!(embeddings_error("{").0, "invalid json");

        let ok = EmbeddingsRequest::parse(
            br#"{"model":"alias","input":[[1,2],[3]],"encoding_format":"base64","dimensions":256,"x_extra":true}"#,
        )
        .expect("valid");
        assert_eq!(ok.input.len(), 2);
        let out = serde_json::to_value(ok.to_upstream("text-embedding-3-small")).expect("json");
        assert_eq!(out["model"], "text-embedding-3-small");
        assert_eq!(out["input"], serde_json::json!([[1, 2], [3]]));
        assert_eq!(out["encoding_format"], "base64");
        assert_eq!(out["dimensions"], 256);
        assert_eq!(out["x_extra"], true);
    }

    #[test]
    fn stream_options_can_be_left_out() {
        let req = ChatRequest::parse(
            format!(
                r#"{{"model":"m",{MSGS},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            )
            .as_bytes(),
        )
        .expect("parses");
        let out = serde_json::to_value(req.to_upstream_with("x", false)).expect("json");
        assert!(out.get("stream_options").is_none(), "{out}");
        assert_eq!(out["stream"], true);
    }
}
