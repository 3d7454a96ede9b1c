//! A stored `chat.completion` replayed as the stream a provider would have sent: a role chunk,
//! the content, tool calls, refusal, the finish chunk per choice, the usage chunk when the
//! client asked for it (`stream_options.include_usage`), then `[DONE]`. `/v1/messages` clients
//! get it translated into Anthropic's events by the same edge translation as any stream.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

/// The SSE body of the replayed stream, every event framed; `None` when `completion` is not a
/// chat completion object.
pub fn stream(completion: &[u8], wants_usage: bool) -> Option<Vec<Bytes>> {
    let body: Value = serde_json::from_slice(completion).ok()?;
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let created = body.get("created").cloned().unwrap_or(Value::Null);
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let fingerprint = body.get("system_fingerprint").cloned();
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        });
        if let (Some(fp), Some(map)) = (&fingerprint, c.as_object_mut()) {
            map.insert("system_fingerprint".into(), fp.clone());
        }
        c
    };
    let mut events = Vec::new();
    for choice in body.get("choices")?.as_array()? {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let message = choice.get("message")?;
        let role = message.get("role").cloned().unwrap_or(json!("assistant"));
        events.push(chunk(json!([{"index": index, "delta": {"role": role, "content": ""}, "finish_reason": null}])));
        if let Some(text) = message.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            events.push(chunk(
                json!([{"index": index, "delta": {"content": text}, "finish_reason": null}]),
            ));
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            events.push(chunk(
                json!([{"index": index, "delta": {"refusal": refusal}, "finish_reason": null}]),
            ));
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (i, call) in calls.iter().enumerate() {
                let mut call = call.clone();
                if let Some(map) = call.as_object_mut() {
                    map.insert("index".into(), json!(i));
                }
                events.push(chunk(json!([{"index": index, "delta": {"tool_calls": [call]}, "finish_reason": null}])));
            }
        }
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        events.push(chunk(
            json!([{"index": index, "delta": {}, "finish_reason": finish}]),
        ));
    }
    if wants_usage && let Some(usage) = body.get("usage") {
        let mut c = chunk(json!([]));
        if let Some(map) = c.as_object_mut() {
            map.insert("usage".into(), usage.clone());
        }
        events.push(c);
    }
    let mut out: Vec<Bytes> = events
        .iter()
        .map(|e| frame(e.to_string().as_bytes()))
        .collect();
    out.push(frame(b"[DONE]"));
    Some(out)
}

fn frame(data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 8);
    buf.put_slice(b"data: ");
    buf.put_slice(data);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::response_cache::assemble::Assembler;

    #[test]
    fn a_replayed_stream_assembles_back_to_the_same_completion() {
        let completion = json!({
            "id": "c1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        });
        let events = stream(completion.to_string().as_bytes(), true).unwrap();
        assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        let mut a = Assembler::default();
        for e in &events {
            let text = std::str::from_utf8(e).unwrap();
            a.observe(text.strip_prefix("data: ").unwrap().trim_end());
        }
        let back: Value = serde_json::from_slice(&a.finish().unwrap()).unwrap();
        assert_eq!(back, completion);
        // Without include_usage there is no usage chunk.
        let plain = stream(completion.to_string().as_bytes(), false).unwrap();
        assert!(
            plain
                .iter()
                .all(|e| !std::str::from_utf8(e).unwrap().contains("\"usage\""))
        );
    }
}
