//! Anthropic's Messages API as an inbound format: `POST /v1/messages` (and
//! `/v1/messages/count_tokens`), translated at the edge to and from the gateway's hub format,
//! OpenAI chat completions, so every provider the gateway routes to serves Anthropic clients
//! (the official SDKs, and tools built on them) unchanged.
//!
//! The HTTP handler is [`crate::http::messages`]; this module holds the pure translations, each
//! testable without a server:
//!
//! - [`request`]: an Anthropic `MessageCreateParams` body → an OpenAI chat request JSON (what the
//!   pipeline then parses like any `/v1/chat/completions` body). Validation errors name the field
//!   in Anthropic's path style (`messages.0.content.1.text: Field required`).
//! - [`response`]: an OpenAI `chat.completion` → an Anthropic `Message`.
//! - [`stream`]: OpenAI `chat.completion.chunk` events → Anthropic's event stream
//!   (`message_start`, `content_block_start`, `ping`, `content_block_delta`,
//!   `content_block_stop`, `message_delta`, `message_stop`), event by event, never buffered.
//! - [`error`]: OpenAI error bodies → Anthropic error bodies (`{"type":"error","error":{…}}`).
//!
//! # Why translate at the edge
//!
//! The pipeline (limits, routing, attempts, metering) is written once, against OpenAI's format,
//! and every provider adapter already produces OpenAI output. Translating the Anthropic request
//! into that format and the OpenAI answer back keeps one pipeline and one meter: a request to
//! `/v1/messages` is metered exactly like a chat completion, with `endpoint = "messages"`.
//! The price is a second translation when the deployment is itself on Anthropic; its cost is small
//! next to a model call, and the mapping is lossless for everything listed below.
//!
//! # What is translated, and what is not
//!
//! | Anthropic | OpenAI chat | note |
//! | --- | --- | --- |
//! | `system` (string or text blocks) | a leading `system` message | blocks joined with a blank line |
//! | `messages[].content` string | `content` string | |
//! | `text` block | `text` part (user) / content text (assistant) | assistant text blocks are concatenated |
//! | `image` block, `base64` source | `image_url` part with a `data:` URL | |
//! | `image` block, `url` source | `image_url` part | |
//! | `tool_use` block (assistant) | `tool_calls[]`, `arguments` = the JSON text of `input` | ids kept verbatim |
//! | `tool_result` block (user) | a `tool` message per result, before the user's other content | text blocks joined with a newline; `is_error` prefixes `[tool error] `; images go into a user message right after |
//! | `thinking`, `redacted_thinking` blocks | dropped | signed reasoning only Anthropic can read back |
//! | `document` blocks, `file` image sources, server tools | refused, 400 | no equivalent in the hub format |
//! | `max_tokens` (required) | `max_completion_tokens` | |
//! | `stop_sequences` | `stop` | |
//! | `temperature`, `top_p` | same | |
//! | `top_k` | dropped | OpenAI has no equivalent, and OpenAI-family servers refuse unknown fields |
//! | `tools[]` (`name`, `description`, `input_schema`) | function tools | |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / function / `none` | `disable_parallel_tool_use` → `parallel_tool_calls: false` |
//! | `metadata.user_id` | `user` | |
//! | `stream` | `stream` + `stream_options.include_usage` | the usage is needed for `message_delta` |
//! | `thinking` | dropped | extended thinking is not available through the hub format; the answer simply has no thinking blocks |
//! | `cache_control`, `citations`, other fields (`service_tier`, …) | ignored | |
//!
//! Answers: `finish_reason` `stop` → `end_turn`, `length` → `max_tokens`, `tool_calls` →
//! `tool_use` (also when a provider says `stop` but called tools), `content_filter` → `refusal`.
//! `stop_sequence` is never reported: OpenAI-format answers do not say whether a stop sequence
//! matched, so a stop on one is reported as `end_turn` with `stop_sequence: null`. Usage:
//! `input_tokens` = prompt tokens minus cache reads and writes (Anthropic counts those apart),
//! `cache_read_input_tokens` from `prompt_tokens_details.cached_tokens`.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

/// The header every Anthropic SDK request carries (`anthropic-version: 2023-06-01`).
pub const VERSION_HEADER: &str = "anthropic-version";

/// Whether the request comes from an Anthropic client: it sent [`VERSION_HEADER`]. Used on the
/// paths both APIs share (`/v1/models`) to pick the answer's shape.
pub fn is_anthropic_client(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(VERSION_HEADER)
}

/// The usage event's `endpoint` for `/v1/messages`.
pub const ENDPOINT: &str = "messages";

/// The Anthropic message id for a request: `msg_` and the request id (also the usage event's
/// id), so a message can be traced to its usage row and log lines.
pub fn message_id(request_id: uuid::Uuid) -> String {
    format!("msg_{}", request_id.simple())
}
