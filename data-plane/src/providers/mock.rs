//! The built-in mock provider: deterministic, no network, useful for trying the gateway and for
//! tests that do not need an upstream.
//!
//! It answers with the text of the last `user` message (a string content, or its text parts
//! concatenated). Non-streaming it returns a `chat.completion`; streaming it returns
//! `chat.completion.chunk`s exactly as OpenAI frames them: a role chunk, one chunk per word
//! (whitespace kept with the word that follows it, so the deltas concatenate to the exact text),
//! a finish chunk, a usage chunk, then `[DONE]`. The usage chunk is always produced; the meter
//! drops it when the client did not ask for it, as it does for real providers.
//!
//! Usage: prompt tokens are the tokens of every message's text, completion tokens those of the
//! reply, both counted with the gateway's tokenizer (see [`crate::tokens`]).

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Call, Completion, Event, Reply, Usage};
use crate::tokens;

/// Answers `call` without any IO.
pub fn call(call: &Call<'_>) -> Reply {
    let text = call.request.last_user_text();
    let usage = Usage::new(
        tokens::message_text_tokens(call.request),
        tokens::count(&text),
    );
    let id = format!("chatcmpl-mock{}", call.request_id.simple());
    let created = time::OffsetDateTime::now_utc().unix_timestamp();
    let model = call.upstream_model;
    if call.request.is_stream() {
        let events = stream_events(&id, created, model, &text, usage);
        Reply::Stream(futures::stream::iter(events.into_iter().map(Ok)).boxed())
    } else {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage_json(usage),
        });
        Reply::Complete(Completion {
            body: Bytes::from(body.to_string()),
            usage: Some(usage),
        })
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

fn stream_events(id: &str, created: i64, model: &str, text: &str, usage: Usage) -> Vec<Event> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null,
        })
    };
    let mut data = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for word in split_words(text) {
        data.push(chunk(json!({"content": word}), Value::Null));
    }
    data.push(chunk(json!({}), json!("stop")));
    data.push(json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    }));
    let mut events: Vec<Event> = data
        .into_iter()
        .map(|d| Event {
            name: None,
            data: d.to_string(),
        })
        .collect();
    events.push(Event {
        name: None,
        data: "[DONE]".to_owned(),
    });
    events
}

/// Splits `text` into words, each carrying the whitespace before it: "Hello from  me" →
/// ["Hello", " from", "  me"]. Leading whitespace stays with the first word.
fn split_words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut prev_is_space = true;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        let is_space = c.is_whitespace();
        if is_space && !prev_is_space && seen_word {
            words.push(&text[start..i]);
            start = i;
        }
        if !is_space {
            seen_word = true;
        }
        prev_is_space = is_space;
    }
    if start < text.len() {
        words.push(&text[start..]);
    }
    words
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn words_keep_their_whitespace_and_concatenate_exactly() {
        let check = |text: &str, want: &[&str]| {
            let words = split_words(text);
            assert_eq!(words, want, "{text:?}");
            assert_eq!(words.concat(), text);
        };
        check("Hello from the mock", &["Hello", " from", " the", " mock"]);
        check(
            "  lead\n and  trail  ",
            &["  lead", "\n and", "  trail", "  "],
        );
        check("one", &["one"]);
        check("", &[]);
        check("   ", &["   "]);
    }

    #[test]
    fn stream_ends_with_usage_then_done() {
        let events = stream_events("id", 1, "m", "a b", Usage::new(2, 2));
        let datas: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(datas.len(), 1 + 2 + 1 + 1 + 1);
        assert_eq!(*datas.last().expect("done"), "[DONE]");
        let usage: Value = serde_json::from_str(datas[datas.len() - 2]).expect("json");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 4);
        let second: Value = serde_json::from_str(datas[2]).expect("json");
        assert_eq!(second["choices"][0]["delta"]["content"], " b");
    }
}
