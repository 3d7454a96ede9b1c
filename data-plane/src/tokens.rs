//! Local token counting, for the mock provider and for metering when an upstream reports no
//! usage (or a client disconnects before the usage chunk).
//!
//! # What the count is
//!
//! We count with tiktoken's `o200k_base` (via `tiktoken-rs`), the encoding of OpenAI's current
//! models (GPT-4o, GPT-4.1, o-series). For those models the text count is exact; the chat
//! format's framing is added with OpenAI's published per-message recipe
//! ([`estimate_prompt_tokens`]), so a prompt estimate is within a few tokens.
//!
//! For every other model family — Claude, Gemini, Llama, Mistral, Qwen, DeepSeek and whatever a
//! self-hosted server runs — **`o200k_base` is an approximation**: each of those models has its
//! own tokenizer, which we do not ship (some are not public). Modern tokenizers with large
//! vocabularies land close to `o200k_base` on English prose and code (typically within 10–20 %),
//! further on other scripts. An approximate count is far better than metering zero, and every
//! usage event computed here says `tokens_estimated = true`, so reports can tell measured from
//! estimated tokens. Providers that report usage (nearly all do) are always trusted over this.
//!
//! Where estimates are used:
//! - chat completions without upstream usage: prompt from the request's messages, completion
//!   from the returned text and tool-call arguments (`pipeline::meter`);
//! - streams that end without a usage chunk (cut, stalled, client gone): the same, from the
//!   text received so far;
//! - embeddings without upstream usage: [`embedding_input_tokens`] (exact for token-id inputs).
//!
//! The tables are embedded in the binary (no download). Built, the encoder holds about 35 MB,
//! so a node builds it on first need, not at start (an idle node stays small): [`warm_up`]
//! builds it on a blocking thread. Until it is ready, the estimates made *before* a call
//! ([`estimate_prompt_tokens_now`], [`embedding_input_tokens_now`]: rate limits, budgets,
//! routing) use the text's UTF-8 length, an upper bound (every `o200k_base` token is at least
//! one byte), and start the build; they never wait for it. Counts that end up in usage
//! ([`count`] and the functions built on it) wait for the encoder.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tiktoken_rs::CoreBPE;

use crate::wire::{ChatRequest, EmbeddingInput};

/// Tokens OpenAI's chat format adds per message (role and separators) and per reply priming,
/// from OpenAI's published counting recipe for current models.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

/// The encoder; `None` only if the embedded tables failed to load (then counts fall back to
/// the upper bound).
static ENCODER: OnceLock<Option<CoreBPE>> = OnceLock::new();
/// Whether [`warm_up`] has started a build.
static BUILDING: AtomicBool = AtomicBool::new(false);

/// The encoder, built now if it is not yet (blocking the caller for the build).
fn encoder() -> Option<&'static CoreBPE> {
    ENCODER
        .get_or_init(|| tiktoken_rs::o200k_base().ok())
        .as_ref()
}

/// The encoder if it is built; otherwise starts the build and answers `None` at once.
fn ready_encoder() -> Option<&'static CoreBPE> {
    match ENCODER.get() {
        Some(encoder) => encoder.as_ref(),
        None => {
            warm_up();
            None
        }
    }
}

/// Builds the encoder on a blocking thread (once; later calls do nothing).
pub fn warm_up() {
    if ENCODER.get().is_some() || BUILDING.swap(true, Ordering::AcqRel) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(|| {
                let _ = encoder();
            });
        }
        Err(_) => BUILDING.store(false, Ordering::Release),
    }
}

/// Number of tokens in `text`.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match encoder() {
        Some(encoder) => encoder.count_ordinary(text) as u64,
        None => text.len() as u64,
    }
}

/// Number of tokens in `text` if the encoder is ready, else its length in bytes (an upper
/// bound); never waits.
fn count_now(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match ready_encoder() {
        Some(encoder) => encoder.count_ordinary(text) as u64,
        None => text.len() as u64,
    }
}

/// Sum of the tokens of every message's text: what the mock provider reports as prompt tokens.
pub fn message_text_tokens(request: &ChatRequest) -> u64 {
    request.message_texts().map(|t| count(&t)).sum()
}

/// Estimated prompt tokens of a request sent to a real model: message texts plus the chat
/// format's per-message overhead.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    message_text_tokens(request) + format_overhead(request)
}

/// [`estimate_prompt_tokens`] without waiting for the encoder: an upper bound until it is
/// built (see the module docs). For estimates made before a call.
pub fn estimate_prompt_tokens_now(request: &ChatRequest) -> u64 {
    request.message_texts().map(|t| count_now(&t)).sum::<u64>() + format_overhead(request)
}

fn format_overhead(request: &ChatRequest) -> u64 {
    TOKENS_PER_MESSAGE * request.messages.len() as u64 + TOKENS_PER_REPLY
}

/// Tokens of an embeddings input: the text's tokens for strings, the number of ids for token
/// arrays (exact: the client did the tokenizing).
pub fn embedding_input_tokens(input: &EmbeddingInput) -> u64 {
    input_tokens(input, count)
}

/// [`embedding_input_tokens`] without waiting for the encoder (an upper bound until it is
/// built).
pub fn embedding_input_tokens_now(input: &EmbeddingInput) -> u64 {
    input_tokens(input, count_now)
}

fn input_tokens(input: &EmbeddingInput, count: fn(&str) -> u64) -> u64 {
    match input {
        EmbeddingInput::Text(text) => count(text),
        EmbeddingInput::Texts(texts) => texts.iter().map(|t| count(t)).sum(),
        EmbeddingInput::Tokens(ids) => ids.len() as u64,
        EmbeddingInput::TokenBatches(batches) => batches.iter().map(|b| b.len() as u64).sum(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn counts_are_deterministic_and_sensible() {
        assert_eq!(count(""), 0);
        assert_eq!(count("Hello"), 1);
        assert_eq!(
            count("Hello from the fake upstream"),
            count("Hello from the fake upstream")
        );
        let long = "word ".repeat(100);
        assert!((90..=110).contains(&count(&long)), "{}", count(&long));
    }

    #[test]
    fn estimates_before_a_call_never_undercount() {
        let req = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#,
        )
        .expect("parses");
        // Whether or not the encoder is built yet, the estimate is at least the exact count.
        assert!(estimate_prompt_tokens_now(&req) >= estimate_prompt_tokens(&req));
        // Once built (the exact count above built it), the two agree.
        assert_eq!(
            estimate_prompt_tokens_now(&req),
            estimate_prompt_tokens(&req)
        );
    }

    #[test]
    fn prompt_estimate_adds_format_overhead() {
        let req = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"system","content":"Hello"},{"role":"user","content":"Hello"}]}"#,
        )
        .expect("parses");
        assert_eq!(message_text_tokens(&req), 2);
        assert_eq!(estimate_prompt_tokens(&req), 2 + 2 * 3 + 3);
    }

    #[test]
    fn embedding_inputs_count_text_tokens_or_ids() {
        assert_eq!(
            embedding_input_tokens(&EmbeddingInput::Text("Hello".into())),
            1
        );
        assert_eq!(
            embedding_input_tokens(&EmbeddingInput::Texts(vec!["Hello".into(), "Hello".into()])),
            2
        );
        assert_eq!(
            embedding_input_tokens(&EmbeddingInput::Tokens(vec![1, 2, 3])),
            3
        );
        assert_eq!(
            embedding_input_tokens(&EmbeddingInput::TokenBatches(vec![vec![1], vec![2, 3]])),
            3
        );
    }
}
