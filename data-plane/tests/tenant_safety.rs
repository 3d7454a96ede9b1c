//! One tenant must never take the gateway down or reach inside it: request loops, the egress
//! (SSRF) policy at connection time, bounded upstream errors, admission caps and fairness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use data_plane::config::Settings;
use serde_json::{Value, json};
use shared::config::ProviderKind;
use testkit::fake_openai::{self, FakeOpenAi};
use uuid::Uuid;

fn allowing(cidrs: &str) -> Settings {
    Settings {
        upstream_allow_cidrs: Some(cidrs.to_owned()),
        ..Settings::default()
    }
}

/// Polls `check` until it holds or [`WAIT`] passes.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === loops ===

#[tokio::test]
async fn a_provider_pointing_at_the_gateway_gets_one_loop_error_and_one_usage_event() {
    let mut gw = Gateway::start().await;
    let key = gw.key();
    // The exact setup of the report: an OpenAI-compatible provider whose base URL is the gateway
    // and whose key is one of the tenant's own; and llama.cpp, whose default port is ours.
    let selfish = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(gw.url("/v1")),
        Some(&key),
    );
    let keyless = gw.provider(ProviderKind::LlamaCpp, Some(gw.url("/v1")), None);
    gw.set_tenant(
        vec![selfish.clone(), keyless.clone()],
        vec![
            deployment("self", &selfish, "self"),
            deployment("local", &keyless, "local"),
        ],
    );

    let response = gw.chat(&key, user_message("self", "hi")).await;
    let error = assert_error(response, 508, "loop_detected").await;
    assert!(
        error["message"].as_str().unwrap().contains("base URL"),
        "{error}"
    );
    let event = gw.next_usage().await;
    assert_eq!(event.status, 508);
    assert_eq!(event.error_code.as_deref(), Some("loop_detected"));
    assert_eq!(event.model, "self");
    // The inner request was refused before authentication: it left no usage event.
    gw.assert_no_usage_queued();

    // Without a key the inner request would be a 401: the loop guard answers first.
    let response = gw.chat(&key, user_message("local", "hi")).await;
    assert_error(response, 508, "loop_detected").await;
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("loop_detected")
    );

    // Streaming and embeddings take the same path.
    let response = gw
        .chat(&key, streaming(user_message("self", "hi"), true))
        .await;
    assert_error(response, 508, "loop_detected").await;
    gw.next_usage().await;
    let response = gw
        .embeddings(&key, json!({"model": "self", "input": "hi"}))
        .await;
    assert_error(response, 508, "loop_detected").await;
    gw.next_usage().await;
    gw.assert_no_usage_queued();

    // The gateway is still healthy.
    let health = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_loop_through_two_organizations_is_refused_at_the_first_repeated_hop() {
    let mut gw = Gateway::start().await;
    let org_a = gw.tenant_id;
    let org_b = Uuid::new_v4();
    let key_a = gw.key();
    let key_b = gw.add_key_for(org_b, KeyOptions::default());
    // A's "to-b" calls the gateway as B for "from-a"; B's "from-a" calls it as A for "to-b".
    let to_b = gw.provider(ProviderKind::OpenAi, Some(gw.url("/v1")), Some(&key_b));
    let to_a = gw.provider(ProviderKind::OpenAi, Some(gw.url("/v1")), Some(&key_a));
    gw.set_tenant_for(
        org_a,
        vec![to_b.clone()],
        vec![deployment("to-b", &to_b, "from-a")],
    );
    gw.set_tenant_for(
        org_b,
        vec![to_a.clone()],
        vec![deployment("from-a", &to_a, "to-b")],
    );

    let response = gw.chat(&key_a, user_message("to-b", "hi")).await;
    assert_error(response, 508, "loop_detected").await;
    let event = gw.next_usage().await;
    assert_eq!(event.tenant_id, org_a);
    assert_eq!(event.status, 508);
    // B never served anything: the second arrival already carried our hop.
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn a_loop_between_two_gateways_is_refused_where_it_started() {
    // Two deployments with different master keys (two clusters), pointing at each other.
    let mut gw1 = Gateway::start().await;
    let mut gw2 = Gateway::start().await;
    let key1 = gw1.key();
    let key2 = gw2.key();
    let p1 = gw1.provider(ProviderKind::OpenAi, Some(gw2.url("/v1")), Some(&key2));
    gw1.set_tenant(vec![p1.clone()], vec![deployment("m1", &p1, "m2")]);
    let p2 = gw2.provider(ProviderKind::OpenAi, Some(gw1.url("/v1")), Some(&key1));
    gw2.set_tenant(vec![p2.clone()], vec![deployment("m2", &p2, "m1")]);

    let response = gw1.chat(&key1, user_message("m1", "hi")).await;
    assert_error(response, 508, "loop_detected").await;
    // gw1 → gw2 → gw1 (refused): one usage event on each gateway, no more.
    assert_eq!(gw1.next_usage().await.status, 508);
    assert_eq!(gw2.next_usage().await.status, 508);
    gw1.assert_no_usage_queued();
    gw2.assert_no_usage_queued();
}

#[tokio::test]
async fn upstream_calls_carry_the_hop_chain_and_a_client_cannot_remove_ours() {
    let gw = Gateway::start().await;
    let fake = FakeOpenAi::start().await.unwrap();
    let key = gw.key();
    let p = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant(vec![p.clone()], vec![deployment("gpt", &p, "gpt-4o-mini")]);

    let plain = gw.chat(&key, user_message("gpt", "hi")).await;
    assert_eq!(plain.status(), 200);
    let forged = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-switchyard-hop", "sy-forged, not a token!")
        .json(&user_message("gpt", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    let ours = requests[0]
        .header("x-switchyard-hop")
        .expect("hop header")
        .to_owned();
    assert!(ours.starts_with("sy-") && ours.len() == 35, "{ours}");
    assert_eq!(
        requests[1].header("x-switchyard-hop"),
        Some(format!("sy-forged, {ours}").as_str()),
        "foreign hops are kept, junk dropped, ours appended"
    );

    // A chain already too long is refused outright.
    let chain: Vec<String> = (0..=data_plane::egress::MAX_HOPS)
        .map(|i| format!("gw-{i}"))
        .collect();
    let deep = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-switchyard-hop", chain.join(", "))
        .json(&user_message("gpt", "hi"))
        .send()
        .await
        .unwrap();
    assert_error(deep, 508, "loop_detected").await;
    assert_eq!(fake.chat_requests().len(), 2);
}

// === egress ===

/// What a call through a provider at some address should give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Served,
    Refused(&'static str),
    /// Allowed by the policy; nothing listens there.
    Unreachable,
}

#[tokio::test]
async fn the_egress_policy_is_enforced_at_connection_time() {
    let fake = FakeOpenAi::start().await.unwrap();
    let port = fake.addr().port();
    let closed = closed_port();
    // (base URL, allow-list, expectation). Only loopback is ever connected to: every non-loopback
    // case is refused before a socket is opened.
    let cases: Vec<(String, &str, Expect)> = vec![
        (
            format!("http://127.0.0.1:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://127.0.0.1:{port}/v1"),
            "127.0.0.0/8",
            Expect::Served,
        ),
        (
            format!("http://127.0.0.1:{port}/v1"),
            "127.0.0.1",
            Expect::Served,
        ),
        (
            format!("http://127.0.0.1:{port}/v1"),
            "10.0.0.0/8",
            Expect::Refused("loopback"),
        ),
        // A host name goes through the resolver: refused after resolution.
        (
            format!("http://localhost:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://localhost:{port}/v1"),
            "127.0.0.0/8,::1/128",
            Expect::Served,
        ),
        // Decimal, octal and hex spellings of 127.0.0.1.
        (
            format!("http://2130706433:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://2130706433:{port}/v1"),
            "127.0.0.0/8",
            Expect::Served,
        ),
        (
            format!("http://0177.0.0.1:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://0x7f.1:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://0x7f.1:{port}/v1"),
            "127.0.0.0/8",
            Expect::Served,
        ),
        // IPv6 loopback, IPv4-mapped and IPv4-compatible IPv6.
        (
            format!("http://[::1]:{closed}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://[::1]:{closed}/v1"),
            "::1/128",
            Expect::Unreachable,
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/v1"),
            "",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://[::ffff:7f00:1]:{port}/v1"),
            "::1/128",
            Expect::Refused("loopback"),
        ),
        (
            format!("http://[::127.0.0.1]:{port}/v1"),
            "",
            Expect::Refused("reserved"),
        ),
        (
            format!("http://0.0.0.0:{port}/v1"),
            "",
            Expect::Refused("unspecified"),
        ),
        (
            format!("http://0.0.0.0:{port}/v1"),
            "127.0.0.0/8",
            Expect::Refused("unspecified"),
        ),
        // Private networks and cloud metadata.
        (
            "http://10.0.0.1/v1".to_owned(),
            "",
            Expect::Refused("private"),
        ),
        (
            "http://192.168.1.1:6379/v1".to_owned(),
            "",
            Expect::Refused("private"),
        ),
        (
            "http://100.64.0.1/v1".to_owned(),
            "",
            Expect::Refused("carrier-grade NAT"),
        ),
        (
            "http://[fd00::1]/v1".to_owned(),
            "",
            Expect::Refused("unique-local"),
        ),
        (
            "http://[fe80::1]/v1".to_owned(),
            "",
            Expect::Refused("link-local"),
        ),
        (
            "http://169.254.169.254/latest".to_owned(),
            "",
            Expect::Refused("cloud metadata"),
        ),
        (
            "http://169.254.169.254/latest".to_owned(),
            "169.254.0.0/16",
            Expect::Refused("cloud metadata"),
        ),
        (
            "http://[::ffff:169.254.169.254]/".to_owned(),
            "0.0.0.0/0",
            Expect::Refused("cloud metadata"),
        ),
        (
            "http://[fd00:ec2::254]/".to_owned(),
            "fd00::/8",
            Expect::Refused("cloud metadata"),
        ),
        (
            "http://100.100.100.200/".to_owned(),
            "100.64.0.0/10",
            Expect::Refused("cloud metadata"),
        ),
        (
            "http://224.0.0.1/v1".to_owned(),
            "",
            Expect::Refused("multicast"),
        ),
    ];
    let mut gateways: Vec<(&str, Gateway)> = Vec::new();
    for (base_url, policy, expect) in cases {
        if !gateways.iter().any(|(p, _)| *p == policy) {
            gateways.push((policy, Gateway::start_with(allowing(policy)).await));
        }
        let gw = &gateways
            .iter()
            .find(|(p, _)| *p == policy)
            .expect("started")
            .1;
        let key = gw.key();
        let p = gw.provider(ProviderKind::OpenAiCompatible, Some(base_url.clone()), None);
        gw.set_tenant(vec![p.clone()], vec![deployment("m", &p, "gpt-4o-mini")]);
        let response = gw.chat(&key, user_message("m", "hi")).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        let case = format!("{base_url} under {policy:?}: {status} {body}");
        match expect {
            Expect::Served => assert_eq!(status, 200, "{case}"),
            Expect::Refused(range) => {
                assert_eq!(status, 502, "{case}");
                assert_eq!(body["error"]["code"], "egress_refused", "{case}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(range), "{case}");
                assert!(
                    message.contains("SWITCHYARD_UPSTREAM_ALLOW_CIDRS"),
                    "{case}"
                );
            }
            Expect::Unreachable => {
                assert_eq!(status, 502, "{case}");
                assert_eq!(body["error"]["code"], "upstream_unreachable", "{case}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("refused"), "{case}");
            }
        }
    }
    // Only the allowed loopback cases reached the fake (the Served ones).
    assert_eq!(fake.chat_requests().len(), 5);
}

#[tokio::test]
async fn unreachable_upstreams_say_which_host_and_why() {
    let gw = Gateway::start().await;
    let key = gw.key();
    let closed = closed_port();
    let p = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!(
            "http://127.0.0.1:{closed}/secret-path?token=hunter2hunter2"
        )),
        None,
    );
    let dns = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some("http://no-such-host.invalid/v1".to_owned()),
        None,
    );
    gw.set_tenant(
        vec![p.clone(), dns.clone()],
        vec![deployment("closed", &p, "x"), deployment("dns", &dns, "x")],
    );
    let error = assert_error(
        gw.chat(&key, user_message("closed", "hi")).await,
        502,
        "upstream_unreachable",
    )
    .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("refused"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2") && !message.contains("secret-path"),
        "{message}"
    );

    let error = assert_error(
        gw.chat(&key, user_message("dns", "hi")).await,
        502,
        "upstream_unreachable",
    )
    .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("no-such-host.invalid") && message.contains("resolved"),
        "{message}"
    );
}

#[tokio::test]
async fn upstream_error_bodies_reach_the_client_only_as_a_bounded_parsed_message() {
    // An "internal service" answering with a huge JSON message, and one answering HTML.
    let huge = "x".repeat(100_000);
    let router = Router::new()
        .route(
            "/json/chat/completions",
            post(move || {
                let huge = huge.clone();
                async move {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"error": {"message": huge, "type": "server_error"}})),
                    )
                }
            }),
        )
        .route(
            "/html/chat/completions",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "<html>internal admin page: db=postgres://admin:pw@10.0.0.5</html>",
                )
            }),
        );
    let addr = serve(router).await;
    let gw = Gateway::start().await;
    let key = gw.key();
    let json_p = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("http://{addr}/json")),
        None,
    );
    let html_p = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("http://{addr}/html")),
        None,
    );
    gw.set_tenant(
        vec![json_p.clone(), html_p.clone()],
        vec![
            deployment("json", &json_p, "m"),
            deployment("html", &html_p, "m"),
        ],
    );

    let response = gw.chat(&key, user_message("json", "hi")).await;
    let error = assert_error(response, 502, "upstream_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.len() < 1200, "message of {} bytes", message.len());

    let response = gw.chat(&key, user_message("html", "hi")).await;
    let error = assert_error(response, 502, "upstream_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains("admin") && !message.contains("postgres"),
        "{message}"
    );
}

// === admission and fairness ===

#[tokio::test]
async fn caps_refuse_at_once_instead_of_queueing() {
    let fake = FakeOpenAi::start().await.unwrap();
    let gw = Gateway::start_with(Settings {
        max_concurrent_requests: 3,
        max_concurrent_per_org: 2,
        max_concurrent_per_provider: 1,
        ..Settings::default()
    })
    .await;
    let org_b = Uuid::new_v4();
    let key_a = gw.key();
    let key_b = gw.add_key_for(org_b, KeyOptions::default());
    let pa1 = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    let pa2 = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant(
        vec![pa1.clone(), pa2.clone()],
        vec![
            deployment("hang1", &pa1, fake_openai::MODEL_HANG),
            deployment("hang1b", &pa1, fake_openai::MODEL_HANG),
            deployment("hang2", &pa2, fake_openai::MODEL_HANG),
        ],
    );
    let pb = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant_for(
        org_b,
        vec![pb.clone()],
        vec![
            deployment("hang", &pb, fake_openai::MODEL_HANG),
            deployment("ok", &pb, "gpt-4o-mini"),
        ],
    );
    let gw = Arc::new(gw);
    let spawn = |key: String, model: &'static str| {
        let gw = Arc::clone(&gw);
        tokio::spawn(async move { gw.chat(&key, user_message(model, "hi")).await.status() })
    };

    // One call in flight on provider pa1: a second one on it is refused (503), at once.
    let _held1 = spawn(key_a.clone(), "hang1");
    eventually("the first call to reach the fake", || {
        fake.chat_requests().len() == 1
    })
    .await;
    let busy = gw.chat(&key_a, user_message("hang1b", "hi")).await;
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_error(busy, 503, "provider_overloaded").await;

    // Org A's second slot on another provider, then A is at its cap of 2: 429.
    let _held2 = spawn(key_a.clone(), "hang2");
    eventually("the second call to reach the fake", || {
        fake.chat_requests().len() == 2
    })
    .await;
    let limited = gw.chat(&key_a, user_message("hang2", "hi")).await;
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_error(limited, 429, "concurrency_limit_exceeded").await;

    // Org B still gets in; with its request holding the node's third slot, the node is full.
    let _held3 = spawn(key_b.clone(), "hang");
    eventually("the third call to reach the fake", || {
        fake.chat_requests().len() == 3
    })
    .await;
    let full = gw.chat(&key_b, user_message("ok", "hi")).await;
    assert_eq!(full.headers()["retry-after"], "1");
    assert_error(full, 503, "overloaded").await;
    drop(fake);
}

// === bounded input ===

#[tokio::test]
async fn oversized_and_mistyped_input_gets_a_json_400_that_echoes_nothing() {
    let mut gw = Gateway::start().await;
    let key = gw.key();
    let mock = gw.provider(ProviderKind::Mock, None, None);
    gw.set_tenant(vec![mock.clone()], vec![deployment("echo", &mock, "echo")]);
    let long_model = "m".repeat(3 * 1024 * 1024);
    let over = "m".repeat(257);

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/chat/completions",
            user_message(&long_model, "hi"),
            "model",
        ),
        ("/v1/chat/completions", user_message(&over, "hi"), "model"),
        (
            "/v1/embeddings",
            json!({"model": over, "input": "hi"}),
            "model",
        ),
        (
            "/v1/chat/completions",
            json!({"model": 5, "messages": []}),
            "model",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo", "messages": "hi"}),
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream",
        ),
        // The mock follows the same field rules as every non-OpenAI provider.
        (
            "/v1/chat/completions",
            json!({"model": "echo", "n": 5, "messages": [{"role": "user", "content": "hi"}]}),
            "n",
        ),
    ];
    for (path, body, param) in cases {
        let response = gw.post_json(path, &key, &body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{path} {param}: {text:.300}");
        assert!(text.len() < 1024, "{path} {param}: {} bytes", text.len());
        assert!(
            !text.contains("mmmmmmmmmm"),
            "{path} echoes the model: {text:.300}"
        );
        let json: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(json["error"]["param"], param, "{text}");
        let event = gw.next_usage().await;
        assert!(
            event.model.len() <= 256,
            "stored model of {} bytes",
            event.model.len()
        );
    }

    // Anthropic's API and the model routes refuse the same way, in their own format.
    let response = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": over, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("invalid_request_error") && !text.contains("mmmmmmmmmm"),
        "{text}"
    );
    let response = gw
        .http
        .get(gw.url(&format!("/v1/models/{over}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(!response.text().await.unwrap().contains("mmmmmmmmmm"));
}

/// Sends raw bytes and reads the whole answer (the connection is closed after an error).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = tcp.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

#[tokio::test]
async fn long_urls_and_large_headers_get_json_errors_at_every_size() {
    let gw = Gateway::start().await;
    let key = gw.key();
    let cases: Vec<(String, u16, &str)> = vec![
        // Over our cap, under the parser's: answered by the app.
        (
            format!(
                "GET /v1/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                "a".repeat(10_000)
            ),
            414,
            "uri_too_long",
        ),
        // Over the parser's 64 KiB: answered by the listener.
        (
            format!(
                "GET /v1/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                "a".repeat(100_000)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {key}\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
                "b".repeat(20_000)
            ),
            431,
            "header_too_large",
        ),
        (
            format!(
                "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}\r\n",
                (0..40)
                    .map(|i| format!("x-h{i}: {}\r\n", "c".repeat(15_000)))
                    .collect::<String>()
            ),
            431,
            "header_too_large",
        ),
        ("GARBAGE\r\n\r\n".to_owned(), 400, "invalid_request"),
    ];
    for (request, status, code) in cases {
        let (got, head, json) = raw_exchange(gw.addr, request.as_bytes()).await;
        let case = format!("{code} ({} bytes): {head:.200} {json}", request.len());
        assert_eq!(got, status, "{case}");
        assert!(head.contains("content-type: application/json"), "{case}");
        assert_eq!(json["error"]["code"], code, "{case}");
        assert!(json["error"]["message"].is_string(), "{case}");
        assert!(!json.to_string().contains("aaaaaaaaaa"), "{case}");
    }
    // The header cap names the header.
    let (_, _, json) = raw_exchange(
        gw.addr,
        format!(
            "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
            "b".repeat(20_000)
        )
        .as_bytes(),
    )
    .await;
    assert!(
        json["error"]["message"].as_str().unwrap().contains("x-big"),
        "{json}"
    );
}

/// Deny by default: every `/v1` API route answers 401 without a key, unknown `/v1` paths 404,
/// and only the explicit public routes answer without one.
#[tokio::test]
async fn every_api_route_needs_a_key_and_only_the_allow_list_is_public() {
    let gw = Gateway::start().await;
    let api_routes = [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/some-model"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
    ];
    for (method, path) in api_routes {
        let response = gw
            .http
            .request(method.parse().unwrap(), gw.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} without a key");
    }
    let unknown = gw.http.get(gw.url("/v1/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    for path in data_plane::PUBLIC_ROUTES {
        let response = gw.http.get(gw.url(path)).send().await.unwrap();
        assert!(response.status().is_success(), "{path} is public");
    }
}
