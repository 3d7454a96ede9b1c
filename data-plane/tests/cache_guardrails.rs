//! The response cache and guardrails through the HTTP API, on the in-process store (the
//! zero-setup path; the Redis path and the official SDKs are covered by
//! `control-plane/tests/sdk_cache_guardrails.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use shared::cache::{CacheMode, CacheSettings};
use shared::config::{DeploymentMode, ProviderKind};
use shared::guardrails::{GuardrailRecord, GuardrailScope, PiiMode, PiiPolicy};
use testkit::fake_openai::{self, FakeOpenAi};
use uuid::Uuid;

fn cache(mode: CacheMode) -> Option<CacheSettings> {
    Some(CacheSettings {
        mode,
        ttl_seconds: 3600,
        min_similarity: 0.9,
        embedding_model: None,
    })
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// A gateway whose tenant has `chat` on the fake OpenAI, an echoing mock deployment `echo`
/// and the word-embedding deployment `words`.
async fn gateway(fake: &FakeOpenAi) -> Gateway {
    let gw = Gateway::start().await;
    let openai = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some("sk-up"));
    let mock = gw.provider(ProviderKind::Mock, None, None);
    let mut words = deployment("words", &openai, fake_openai::MODEL_EMBED_WORDS);
    words.mode = DeploymentMode::Embedding;
    let mut embed = deployment("embed", &openai, "text-embedding-3-small");
    embed.mode = DeploymentMode::Embedding;
    gw.set_tenant(
        vec![openai.clone(), mock.clone()],
        vec![
            deployment("chat", &openai, "gpt-4o-mini"),
            deployment("echo", &mock, "mock-echo"),
            words,
            embed,
        ],
    );
    gw
}

#[tokio::test]
async fn exact_cache_hit_miss_and_bypass() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = gateway(&fake).await;
    let key = gw.add_key(KeyOptions {
        cache: cache(CacheMode::Exact),
        ..Default::default()
    });
    let body = user_message("chat", "What is the capital of France?");

    let first = gw.chat(&key, body.clone()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    let miss = gw.next_usage().await;
    assert!(!miss.cache_hit);
    assert!(miss.cost_micros > 0);

    let second = gw.chat(&key, body.clone()).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second, first, "the stored answer, unchanged");
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "the hit never reached the provider"
    );
    let hit = gw.next_usage().await;
    assert!(hit.cache_hit);
    assert_eq!(
        (hit.cost_micros, hit.prompt_tokens, hit.deployment_id),
        (0, 0, None)
    );
    assert_eq!(hit.route.as_deref(), Some("chat"));

    // A streamed request is served from the same entry, as a stream.
    let streamed = gw.chat(&key, streaming(body.clone(), true)).await;
    assert_eq!(header(&streamed, "x-switchyard-cache"), "hit");
    assert_event_stream(&streamed);
    let events = sse_data(&streamed.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], fake_openai::TOTAL_TOKENS);
    gw.next_usage().await;

    // no-cache: upstream, refreshed; no-store: upstream, nothing read.
    for directive in ["no-cache", "no-store", "max-age=0, No-Store"] {
        let r = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("cache-control", directive)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "x-switchyard-cache"), "bypass", "{directive}");
        assert!(!gw.next_usage().await.cache_hit);
    }
    assert_eq!(fake.chat_requests().len(), 4);

    // A key without caching bypasses it; so does an unknown model's error.
    let plain = gw.key();
    let r = gw.chat(&plain, body.clone()).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "bypass");
    gw.next_usage().await;
    let r = gw.chat(&key, user_message("nope", "hi")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "x-switchyard-cache"), "bypass");
    gw.next_usage().await;
}

#[tokio::test]
async fn a_streamed_miss_is_stored_and_replayed_in_both_formats() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = gateway(&fake).await;
    let key = gw.add_key(KeyOptions {
        cache: cache(CacheMode::Exact),
        ..Default::default()
    });
    let body = user_message("chat", "Tell me a story");
    let first = gw.chat(&key, streaming(body.clone(), false)).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let events = sse_data(&first.text().await.unwrap());
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);
    gw.next_usage().await;

    // The assembled stream answers a whole-completion request.
    let r = gw.chat(&key, body.clone()).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let completion: Value = r.json().await.unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        fake_openai::CONTENT
    );
    assert_eq!(completion["object"], "chat.completion");
    gw.next_usage().await;

    // An Anthropic client asking the same gets Anthropic's events.
    let messages = json!({"model": "chat", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "Tell me a story"}]});
    let r = gw.post_json("/v1/messages", &key, &messages).await;
    assert_eq!(r.status(), 200);
    // /v1/messages carries its own parameters (max_tokens), so it is its own entry: a miss,
    // then a hit.
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
    r.text().await.unwrap();
    gw.next_usage().await;
    let r = gw.post_json("/v1/messages", &key, &messages).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let text = r.text().await.unwrap();
    assert!(text.contains("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(text.contains("Hello"), "{text}");
    assert!(gw.next_usage().await.cache_hit);
    assert_eq!(fake.chat_requests().len(), 2);
}

#[tokio::test]
async fn organizations_never_share_entries_and_cut_streams_are_not_stored() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = gateway(&fake).await;
    let key = gw.add_key(KeyOptions {
        cache: cache(CacheMode::Exact),
        ..Default::default()
    });
    let other_tenant = Uuid::new_v4();
    let openai = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some("sk-up"));
    gw.set_tenant_for(
        other_tenant,
        vec![openai.clone()],
        vec![
            deployment("chat", &openai, "gpt-4o-mini"),
            deployment("cut", &openai, fake_openai::MODEL_CUT_STREAM),
        ],
    );
    let other = gw.add_key_for(
        other_tenant,
        KeyOptions {
            cache: cache(CacheMode::Exact),
            ..Default::default()
        },
    );
    let body = user_message("chat", "same question");
    assert_eq!(
        header(&gw.chat(&key, body.clone()).await, "x-switchyard-cache"),
        "miss"
    );
    assert_eq!(
        header(&gw.chat(&other, body.clone()).await, "x-switchyard-cache"),
        "miss"
    );
    assert_eq!(
        header(&gw.chat(&other, body.clone()).await, "x-switchyard-cache"),
        "hit"
    );
    assert_eq!(fake.chat_requests().len(), 2);
    for _ in 0..3 {
        gw.next_usage().await;
    }
    // A stream cut upstream is never stored.
    for _ in 0..2 {
        let r = gw
            .chat(&other, streaming(user_message("cut", "x"), false))
            .await;
        assert_eq!(header(&r, "x-switchyard-cache"), "miss");
        r.text().await.unwrap();
        gw.next_usage().await;
    }
}

#[tokio::test]
async fn semantic_cache_answers_close_prompts_only_above_the_threshold() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = gateway(&fake).await;
    let semantic = |min_similarity: f64| {
        Some(CacheSettings {
            mode: CacheMode::Semantic,
            ttl_seconds: 600,
            min_similarity,
            embedding_model: Some("words".into()),
        })
    };
    let key = gw.add_key(KeyOptions {
        cache: semantic(0.8),
        ..Default::default()
    });
    let ask = |text: &str| user_message("chat", text);
    let r = gw
        .chat(&key, ask("What is the capital city of France?"))
        .await;
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
    let stored: Value = r.json().await.unwrap();
    // Two events: the request and the embedding (its own usage, tagged).
    let mut events = [gw.next_usage().await, gw.next_usage().await];
    events.sort_by_key(|e| e.endpoint.clone());
    assert_eq!(events[1].endpoint, "embeddings");
    assert_eq!(
        events[1].tags.get("switchyard.purpose").map(String::as_str),
        Some("semantic_cache")
    );

    // A paraphrase sharing most words is a hit, with its similarity.
    let r = gw
        .chat(&key, ask("what is the capital city of France"))
        .await;
    assert_eq!(header(&r, "x-switchyard-cache"), "hit");
    let similarity: f64 = header(&r, "x-switchyard-cache-similarity").parse().unwrap();
    assert!((0.8..=1.0).contains(&similarity), "{similarity}");
    assert_eq!(r.json::<Value>().await.unwrap(), stored);
    gw.next_usage().await;
    gw.next_usage().await;

    // An unrelated question is not.
    let r = gw
        .chat(&key, ask("How do I bake sourdough bread at home?"))
        .await;
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
    gw.next_usage().await;
    gw.next_usage().await;

    // The same paraphrase under a stricter threshold misses.
    let strict = gw.add_key(KeyOptions {
        cache: semantic(0.999),
        ..Default::default()
    });
    let r = gw
        .chat(&strict, ask("what is the capital of France please"))
        .await;
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
    gw.next_usage().await;
    gw.next_usage().await;

    // A different system prompt never shares an answer.
    let mut with_system = ask("What is the capital city of France?");
    with_system["messages"] = json!([{"role": "system", "content": "Answer in French"},
        {"role": "user", "content": "What is the capital city of France?"}]);
    let r = gw.chat(&key, with_system).await;
    assert_eq!(header(&r, "x-switchyard-cache"), "miss");
}

fn guardrail(mode: PiiMode, restore: bool) -> GuardrailRecord {
    GuardrailRecord {
        id: Uuid::new_v4(),
        name: "pii".into(),
        scope: GuardrailScope::Organization,
        scope_id: None,
        pii: PiiPolicy {
            mode,
            restore,
            ..PiiPolicy::default()
        },
        blocked_terms: vec!["project falcon".into()],
        max_prompt_tokens: Some(2_000),
        allowed_tools: Some(vec!["get_weather".into()]),
    }
}

async fn guarded(record: GuardrailRecord) -> (FakeOpenAi, Gateway) {
    let fake = FakeOpenAi::start().await.unwrap();
    let gw = Gateway::start().await;
    let openai = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some("sk-up"));
    let mock = gw.provider(ProviderKind::Mock, None, None);
    gw.set_tenant_with(
        vec![openai.clone(), mock.clone()],
        vec![
            deployment("chat", &openai, "gpt-4o-mini"),
            deployment("echo", &mock, "mock-echo"),
        ],
        |config| config.guardrails = vec![record],
    );
    (fake, gw)
}

const PII: &str = "Mail jane.doe@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111.";

#[tokio::test]
async fn redaction_hides_pii_from_the_provider_and_restores_it_in_the_answer() {
    let (fake, mut gw) = guarded(guardrail(PiiMode::Redact, true)).await;
    let key = gw.key();
    let r = gw.chat(&key, user_message("chat", PII)).await;
    assert_eq!(r.status(), 200);
    let sent = &fake.chat_requests()[0].body;
    let prompt = sent["messages"][0]["content"].as_str().unwrap();
    assert_eq!(prompt, "Mail [EMAIL_1] or call [PHONE_1], card [CARD_1].");
    let event = gw.next_usage().await;
    let rules: Vec<(&str, &str)> = event
        .guardrails
        .iter()
        .map(|d| (d.rule.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("pii.card", "redacted"),
            ("pii.email", "redacted"),
            ("pii.phone", "redacted")
        ]
    );

    // The mock echoes the (redacted) prompt; the client reads the original values back, whole
    // and streamed.
    let r = gw.chat(&key, user_message("echo", PII)).await;
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], PII);
    let event = gw.next_usage().await;
    assert!(
        event
            .guardrails
            .iter()
            .any(|d| d.action.as_str() == "restored")
    );
    let r = gw
        .chat(&key, streaming(user_message("echo", PII), false))
        .await;
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(streamed_text(&events), PII);
    let serialized = serde_json::to_string(&gw.next_usage().await).unwrap();
    assert!(
        !serialized.contains("jane.doe"),
        "the matched text is never in the event"
    );
}

#[tokio::test]
async fn redaction_without_restore_leaves_placeholders() {
    let (_fake, mut gw) = guarded(guardrail(PiiMode::Redact, false)).await;
    let key = gw.key();
    let r = gw
        .chat(&key, user_message("echo", "write to jane.doe@example.com"))
        .await;
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "write to [EMAIL_1]"
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn block_mode_and_policy_filters_refuse_naming_the_rule_never_the_text() {
    let (fake, mut gw) = guarded(guardrail(PiiMode::Block, false)).await;
    let key = gw.key();
    let cases = [
        (user_message("chat", PII), "pii.card"),
        (
            user_message("chat", "Status of Project  FALCON?"),
            "blocked_terms",
        ),
        (
            user_message("chat", &"word ".repeat(5_000)),
            "max_prompt_tokens",
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "delete_everything"}}]}),
            "allowed_tools",
        ),
    ];
    for (body, rule) in cases {
        let r = gw.chat(&key, body).await;
        let error = assert_error(r, 400, "guardrail_blocked").await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(rule), "{message}");
        assert!(
            !message.contains("4111") && !message.to_lowercase().contains("falcon"),
            "{message}"
        );
        let event = gw.next_usage().await;
        assert_eq!(event.error_code.as_deref(), Some("guardrail_blocked"));
        assert!(
            event
                .guardrails
                .iter()
                .any(|d| d.rule == rule && d.action.as_str() == "blocked")
        );
    }
    // Allowed tools and clean prompts pass.
    let r = gw
        .chat(
            &key,
            json!({"model": "chat", "messages": [{"role": "user", "content": "weather in Paris"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "nothing refused reached the provider"
    );

    // Anthropic's format carries the code too.
    let r = gw
        .post_json(
            "/v1/messages",
            &key,
            &json!({"model": "chat", "max_tokens": 10,
            "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "guardrail_blocked");
}

#[tokio::test]
async fn the_most_specific_policy_applies_and_off_lets_pii_through() {
    let fake = FakeOpenAi::start().await.unwrap();
    let gw = Gateway::start().await;
    let openai = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some("sk-up"));
    let team = Uuid::new_v4();
    let off_key = gw.add_key(KeyOptions {
        team_id: Some(team),
        ..Default::default()
    });
    let redacted_key = gw.key();
    let mut team_policy = guardrail(PiiMode::Off, false);
    team_policy.scope = GuardrailScope::Team;
    team_policy.scope_id = Some(team);
    team_policy.blocked_terms.clear();
    gw.set_tenant_with(
        vec![openai.clone()],
        vec![deployment("chat", &openai, "gpt-4o-mini")],
        |config| config.guardrails = vec![guardrail(PiiMode::Redact, false), team_policy],
    );
    gw.chat(&off_key, user_message("chat", "jane.doe@example.com"))
        .await;
    gw.chat(&redacted_key, user_message("chat", "jane.doe@example.com"))
        .await;
    let sent: Vec<String> = fake
        .chat_requests()
        .iter()
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(sent, ["jane.doe@example.com", "[EMAIL_1]"]);
}

#[tokio::test]
async fn embeddings_are_cached_and_guarded() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = gateway(&fake).await;
    let key = gw.add_key(KeyOptions {
        cache: cache(CacheMode::Exact),
        ..Default::default()
    });
    let body = json!({"model": "embed", "input": ["one", "two"]});
    let first = gw.embeddings(&key, body.clone()).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    gw.next_usage().await;
    let second = gw.embeddings(&key, body).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert!(gw.next_usage().await.cache_hit);
    assert_eq!(fake.embedding_requests().len(), 1);
}

#[tokio::test]
async fn embeddings_inputs_are_redacted_and_token_ids_refused() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = Gateway::start().await;
    let openai = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some("sk-up"));
    let mut embed = deployment("embed", &openai, "text-embedding-3-small");
    embed.mode = DeploymentMode::Embedding;
    gw.set_tenant_with(vec![openai.clone()], vec![embed], |config| {
        config.guardrails = vec![guardrail(PiiMode::Redact, true)];
    });
    let key = gw.key();
    let r = gw
        .embeddings(
            &key,
            json!({"model": "embed", "input": ["mail jane.doe@example.com", "plain"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        fake.embedding_requests()[0].body["input"],
        json!(["mail [EMAIL_1]", "plain"]),
        "the provider never sees the address"
    );
    let event = gw.next_usage().await;
    assert!(
        event
            .guardrails
            .iter()
            .all(|d| d.action.as_str() == "redacted"),
        "nothing to restore in a vector"
    );

    // Token ids cannot be scanned: refused, naming the rule.
    let r = gw
        .embeddings(&key, json!({"model": "embed", "input": [1, 2, 3]}))
        .await;
    let error = assert_error(r, 400, "guardrail_blocked").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unscannable_input"),
        "{error}"
    );
    gw.next_usage().await;
    assert_eq!(fake.embedding_requests().len(), 1);
}

#[tokio::test]
async fn a_policy_that_does_not_compile_on_the_node_refuses_rather_than_lets_through() {
    let (fake, mut gw) = guarded(GuardrailRecord {
        pii: PiiPolicy {
            mode: PiiMode::Redact,
            // Published by a newer or broken control plane: a back-reference this node refuses.
            custom: vec![shared::guardrails::CustomPattern {
                name: "twice".into(),
                pattern: r"(a)\1".into(),
            }],
            ..PiiPolicy::default()
        },
        ..guardrail(PiiMode::Redact, false)
    })
    .await;
    let key = gw.key();
    let r = gw
        .chat(&key, user_message("chat", "jane.doe@example.com"))
        .await;
    let error = assert_error(r, 503, "guardrail_unavailable").await;
    assert!(
        error["message"].as_str().unwrap().contains("`pii`"),
        "{error}"
    );
    assert!(
        !error["message"].as_str().unwrap().contains("jane"),
        "{error}"
    );
    gw.next_usage().await;
    assert!(fake.chat_requests().is_empty(), "nothing left unchecked");
}
