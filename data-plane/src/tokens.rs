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
//! The tables are embedded in the binary (no download); building the encoder takes a moment,
//! so [`warm_up`] does it off the request path at start.

use tiktoken_rs::CoreBPE;

use crate::wire::{ChatRequest, EmbeddingInput};

/// Tokens OpenAI's chat format adds per message (role and separators) and per reply priming,
/// from OpenAI's published counting recipe for current models.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

fn encoder() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Builds the encoder now, on a blocking thread, so the first request does not pay for it.
pub fn warm_up() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn_blocking(|| {
            let _ = encoder();
        });
    }
}

/// Number of tokens in `text`.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    encoder().count_ordinary(text) as u64
}

/// Sum of the tokens of every message's text: what the mock provider reports as prompt tokens.
pub fn message_text_tokens(request: &ChatRequest) -> u64 {
    request.message_texts().map(|t| count(&t)).sum()
}

/// Estimated prompt tokens of a request sent to a real model: message texts plus the chat
/// format's per-message overhead.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    message_text_tokens(request)
        + TOKENS_PER_MESSAGE * request.messages.len() as u64
        + TOKENS_PER_REPLY
}

/// Tokens of an embeddings input: the text's tokens for strings, the number of ids for token
/// arrays (exact: the client did the tokenizing).
pub fn embedding_input_tokens(input: &EmbeddingInput) -> u64 {
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
