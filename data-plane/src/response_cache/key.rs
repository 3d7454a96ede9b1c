//! The cache key: a SHA-256 digest over the organization and a canonical form of the request.
//!
//! The canonical form is the parsed request serialized with every object's keys sorted (the
//! `serde_json` map is ordered), so two bodies that differ only in key order or whitespace are
//! the same request. It holds the model name the client asked for (a route or a deployment
//! name), the messages, tools, `tool_choice`, `response_format` and every sampling parameter,
//! and leaves out what does not change the answer: `stream`, `stream_options` (usage is
//! replayed when asked for), `user`, `metadata`, `store`. The endpoint kind is part of it, so a
//! chat request and an embeddings request never share an entry.
//!
//! For the semantic cache, a second digest (the *bucket*) covers the same canonical form with
//! only the system (and developer) messages in place of the conversation: two requests may
//! share a semantic answer only within one bucket, i.e. for the same organization, model, system
//! prompt, tools and parameters. The conversation's text is what gets embedded.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::wire::{ChatRequest, EmbeddingsRequest};

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What the cache stage looks up and stores under.
#[derive(Debug, Clone)]
pub struct CacheKey {
    pub digest: Digest,
    /// Semantic mode only: the bucket and the text to embed.
    pub semantic: Option<SemanticKey>,
}

#[derive(Debug, Clone)]
pub struct SemanticKey {
    pub bucket: Digest,
    pub text: String,
}

/// Fields that never change an answer.
const IGNORED: [&str; 5] = ["stream", "stream_options", "user", "metadata", "store"];
/// Roles whose messages are part of the semantic bucket rather than the embedded text.
const SYSTEM_ROLES: [&str; 2] = ["system", "developer"];

/// The key of a chat request of `tenant`; with `semantic`, also its bucket and text.
pub fn chat(tenant: Uuid, request: &ChatRequest, semantic: bool) -> CacheKey {
    let mut canonical = match serde_json::to_value(request) {
        Ok(Value::Object(map)) => map,
        // A parsed request always serializes to an object.
        _ => serde_json::Map::new(),
    };
    for field in IGNORED {
        canonical.remove(field);
    }
    let digest = digest_of(tenant, "chat", &request.model, &canonical);
    let semantic = semantic.then(|| {
        let mut text = String::new();
        let mut system = Vec::new();
        for message in &request.messages {
            if SYSTEM_ROLES.contains(&message.role.as_str()) {
                system.push(message.text());
            } else {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&message.role);
                text.push_str(": ");
                message.push_text(&mut text);
            }
        }
        canonical.insert(
            "messages".to_owned(),
            Value::Array(system.into_iter().map(Value::String).collect()),
        );
        SemanticKey {
            bucket: digest_of(tenant, "chat-semantic", &request.model, &canonical),
            text,
        }
    });
    CacheKey { digest, semantic }
}

/// The key of an embeddings request of `tenant` (exact only: there is nothing to be similar to).
pub fn embeddings(tenant: Uuid, request: &EmbeddingsRequest) -> CacheKey {
    let mut canonical = match serde_json::to_value(request) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    canonical.remove("user");
    CacheKey {
        digest: digest_of(tenant, "embeddings", &request.model, &canonical),
        semantic: None,
    }
}

fn digest_of(
    tenant: Uuid,
    kind: &str,
    model: &str,
    canonical: &serde_json::Map<String, Value>,
) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"switchyard-cache-v1\0");
    hasher.update(tenant.as_bytes());
    // Length-prefixed, so no field can run into the next.
    for part in [kind, model] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut writer = HashWriter(hasher);
    // Writing into a hasher cannot fail; a map of JSON values always serializes.
    let _ = serde_json::to_writer(&mut writer, canonical);
    Digest(writer.0.finalize().into())
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn req(body: &str) -> ChatRequest {
        ChatRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn key_order_whitespace_stream_and_user_do_not_matter() {
        let t = Uuid::new_v4();
        let a =
            req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#);
        let b = req(
            r#"{ "temperature": 0.5, "stream": true, "user": "u1", "stream_options": {"include_usage": true},
                       "messages": [ {"content": "hi", "role": "user"} ], "model": "m" }"#,
        );
        assert_eq!(chat(t, &a, false).digest, chat(t, &b, false).digest);
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let t = Uuid::new_v4();
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let k = chat(t, &req(base), false).digest;
        for other in [
            r#"{"model":"m2","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
        ] {
            assert_ne!(chat(t, &req(other), false).digest, k, "{other}");
        }
        assert_ne!(
            chat(Uuid::new_v4(), &req(base), false).digest,
            k,
            "another organization"
        );
    }

    #[test]
    fn the_semantic_bucket_holds_the_system_prompt_not_the_conversation() {
        let t = Uuid::new_v4();
        let a = chat(
            t,
            &req(
                r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"what is the capital of France?"}]}"#,
            ),
            true,
        );
        let b = chat(
            t,
            &req(
                r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"capital of France?"}]}"#,
            ),
            true,
        );
        let c = chat(
            t,
            &req(
                r#"{"model":"m","messages":[{"role":"system","content":"T"},{"role":"user","content":"capital of France?"}]}"#,
            ),
            true,
        );
        let (sa, sb, sc) = (
            a.semantic.unwrap(),
            b.semantic.unwrap(),
            c.semantic.unwrap(),
        );
        assert_eq!(sa.bucket, sb.bucket);
        assert_ne!(sb.bucket, sc.bucket, "another system prompt");
        assert_eq!(sb.text, "user: capital of France?");
        assert_ne!(a.digest, b.digest);
    }
}
