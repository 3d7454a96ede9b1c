//! Local token counting, for the mock provider and for metering when an upstream reports no
//! usage (or a client disconnects before the usage chunk).
//!
//! We count with tiktoken's `o200k_base`, the encoding of OpenAI's current models. For other
//! model families the count is an estimate, which is why usage events computed here carry
//! `tokens_estimated = true`. The tables are embedded in the binary (no download); building the
//! encoder takes a moment, so [`warm_up`] does it off the request path at start.

use tiktoken_rs::CoreBPE;

use crate::wire::ChatRequest;

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
}
