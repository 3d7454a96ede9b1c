//! Key scopes (issue 10): `endpoints` on every endpoint, `allowed_cidrs` with and without a
//! trusted proxy, `max_tokens_per_request` on chat and messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod governance_support;

use data_plane::config::Settings;
use governance_support::*;
use serde_json::{Value, json};
use shared::governance::KeyEndpoint;

fn messages_body(max_tokens: u32) -> Value {
    json!({"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Hi"}]})
}

async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    response.json().await.expect("JSON error")
}

#[tokio::test]
async fn endpoint_scopes_hold_on_every_endpoint() {
    let cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (chat_only, _) = cluster.add_key(|k| k.endpoints = Some(vec![KeyEndpoint::Chat]));
    let (messages_only, _) = cluster.add_key(|k| k.endpoints = Some(vec![KeyEndpoint::Messages]));
    let (embeddings_only, _) =
        cluster.add_key(|k| k.endpoints = Some(vec![KeyEndpoint::Embeddings]));
    let embeddings = json!({"model": MODEL, "input": "hello"});
    let count = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]});

    // Allowed.
    assert_eq!(
        cluster.chat(0, &chat_only, &hello(Some(8))).await.status(),
        200
    );
    let r = cluster
        .post(0, "/v1/messages", &messages_only, &messages_body(8))
        .await;
    assert_eq!(r.status(), 200);
    let r = cluster
        .post(0, "/v1/messages/count_tokens", &messages_only, &count)
        .await;
    assert_eq!(r.status(), 200);
    let r = cluster
        .post(0, "/v1/embeddings", &embeddings_only, &embeddings)
        .await;
    assert_ne!(r.status(), 403, "embeddings is in scope");
    // /v1/models is always allowed.
    for key in [&chat_only, &messages_only, &embeddings_only] {
        let r = cluster
            .http
            .get(cluster.url(0, "/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Refused, naming the endpoint: OpenAI's format...
    let body = error_of(
        cluster
            .post(0, "/v1/embeddings", &chat_only, &embeddings)
            .await,
        403,
    )
    .await;
    assert_eq!(body["error"]["code"], "endpoint_not_allowed", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/embeddings")
    );
    let body = error_of(cluster.chat(0, &messages_only, &hello(Some(8))).await, 403).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions")
    );
    // ...and Anthropic's on /v1/messages paths.
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let body = error_of(
            cluster
                .post(0, path, &embeddings_only, &messages_body(8))
                .await,
            403,
        )
        .await;
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(path),
            "{body}"
        );
    }
}

#[tokio::test]
async fn ip_allowlists_use_the_peer_address_without_a_trusted_proxy() {
    let cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (local, _) =
        cluster.add_key(|k| k.allowed_cidrs = Some(vec!["127.0.0.0/8".parse().unwrap()]));
    let (elsewhere, _) = cluster.add_key(|k| {
        k.allowed_cidrs = Some(vec!["198.51.100.0/24".parse().unwrap()]);
        k.name = "secret-key-name".into();
    });
    assert_eq!(cluster.chat(0, &local, &hello(Some(8))).await.status(), 200);

    // The test client is 127.0.0.1: refused, and X-Forwarded-For is not believed from it.
    let r = cluster
        .http
        .post(cluster.url(0, "/v1/chat/completions"))
        .bearer_auth(&elsewhere)
        .header("x-forwarded-for", "198.51.100.7")
        .json(&hello(Some(8)))
        .send()
        .await
        .unwrap();
    let body = error_of(r, 403).await;
    assert_eq!(body["error"]["code"], "ip_not_allowed", "{body}");
    let text = body.to_string();
    assert!(!text.contains("198.51.100"), "names the allowlist: {text}");
    assert!(!text.contains("secret-key-name"), "names the key: {text}");
    assert!(!text.contains(&elsewhere), "echoes the key: {text}");

    // Anthropic's format on /v1/messages.
    let r = cluster
        .post(0, "/v1/messages", &elsewhere, &messages_body(8))
        .await;
    let body = error_of(r, 403).await;
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let settings = Settings {
        trusted_proxies: Some("127.0.0.1, 10.0.0.0/8".into()),
        ..Settings::default()
    };
    let cluster = Cluster::start(1, Counting::Memory, settings).await;
    let (key, _) =
        cluster.add_key(|k| k.allowed_cidrs = Some(vec!["198.51.100.0/24".parse().unwrap()]));
    let send = |xff: Option<&'static str>| {
        let mut request = cluster
            .http
            .post(cluster.url(0, "/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&hello(Some(8)));
        if let Some(xff) = xff {
            request = request.header("x-forwarded-for", xff);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // The client, then a second trusted proxy: the right-most untrusted address is the client.
    assert_eq!(send(Some("198.51.100.7, 10.1.1.1")).await, 200);
    // A spoofed left-most entry does not help: the proxy appended the real address.
    assert_eq!(send(Some("198.51.100.7, 203.0.113.9")).await, 403);
    // No header: the proxy itself is the client.
    assert_eq!(send(None).await, 403);
}

#[tokio::test]
async fn max_tokens_per_request_refuses_more_and_caps_requests_asking_for_none() {
    let mut cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (key, _) = cluster.add_key(|k| k.max_tokens_per_request = Some(100));

    for field in ["max_tokens", "max_completion_tokens"] {
        let mut body = hello(None);
        body[field] = json!(200);
        let body = error_of(cluster.chat(0, &key, &body).await, 400).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], field, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains("100"),
            "{message}"
        );
        let _ = cluster.next_usage(0).await;
    }

    // Within the cap: passed through as asked.
    assert_eq!(cluster.chat(0, &key, &hello(Some(100))).await.status(), 200);
    let sent = cluster.upstream.chat_requests();
    assert_eq!(sent.last().unwrap().body["max_tokens"], 100);

    // Asking for none: the cap is applied.
    assert_eq!(cluster.chat(0, &key, &hello(None)).await.status(), 200);
    let sent = cluster.upstream.chat_requests();
    let last = &sent.last().unwrap().body;
    let asked = last
        .get("max_completion_tokens")
        .or_else(|| last.get("max_tokens"))
        .cloned();
    assert_eq!(asked, Some(json!(100)), "{last}");

    // /v1/messages: Anthropic's max_tokens, named as such.
    let r = cluster
        .post(0, "/v1/messages", &key, &messages_body(500))
        .await;
    let body = error_of(r, 400).await;
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_tokens") && message.contains("100"),
        "{message}"
    );
    let r = cluster
        .post(0, "/v1/messages", &key, &messages_body(50))
        .await;
    assert_eq!(r.status(), 200);
}
