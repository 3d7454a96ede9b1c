//! The usage event's issue-11 fields through the whole pipeline: the serving (or last tried)
//! deployment's region, each failed attempt's region and upstream status, the error class of a
//! failure, `cache_hit`, bounded tags, and the payload only for organizations that opted in
//! (plain and streamed, each side capped at `MAX_PAYLOAD_BYTES`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use shared::config::{DeploymentRecord, ProviderKind, RouteRecord, RouteStrategy};
use shared::usage::{MAX_PAYLOAD_BYTES, UsageOutcome};
use testkit::fake_openai::{self, FakeOpenAi};
use uuid::Uuid;

fn route(name: &str, deployments: &[&DeploymentRecord]) -> RouteRecord {
    RouteRecord {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        strategy: RouteStrategy::Priority,
        candidates: deployments
            .iter()
            .map(|d| shared::config::RouteCandidate {
                deployment_id: d.id,
                weight: None,
                priority: None,
            })
            .collect(),
        allowed_regions: None,
        max_attempts: None,
        retry_on: None,
        timeouts: Default::default(),
        hedge_after_ms: None,
        sticky: false,
        cache: None,
    }
}

fn in_region(mut d: DeploymentRecord, region: &str) -> DeploymentRecord {
    d.region = Some(region.to_owned());
    d
}

#[tokio::test]
async fn regions_statuses_and_error_classes_are_recorded() {
    let mut gw = Gateway::start().await;
    let openai = FakeOpenAi::start().await.unwrap();
    let key = gw.key();
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(openai.base_url()),
        None,
    );
    let broken = in_region(
        deployment("broken", &provider, fake_openai::MODEL_500),
        "us-east-1",
    );
    let good = in_region(deployment("good", &provider, "gpt-4o-mini"), "eu-west-1");
    let down = in_region(
        deployment("down", &provider, fake_openai::MODEL_500),
        "eu-west-1",
    );
    let fallback = route("fallback", &[&broken, &good]);
    let failing = route("failing", &[&broken, &down]);
    gw.set_tenant_with(
        vec![provider],
        vec![broken.clone(), good.clone(), down.clone()],
        |c| c.routes = vec![fallback, failing],
    );

    let response = gw.chat(&key, user_message("fallback", "hi")).await;
    assert_eq!(response.status(), 200);
    let event = gw.next_usage().await;
    assert_eq!(
        event.region.as_deref(),
        Some("eu-west-1"),
        "the serving one"
    );
    assert_eq!(event.error_class, None, "a success has no error class");
    assert!(!event.cache_hit);
    assert_eq!(event.payload, None, "the organization did not opt in");
    assert_eq!(event.failed_attempts.len(), 1);
    assert_eq!(
        event.failed_attempts[0].region.as_deref(),
        Some("us-east-1")
    );
    assert_eq!(event.failed_attempts[0].status, Some(500));

    let response = gw.chat(&key, user_message("failing", "hi")).await;
    assert_eq!(response.status(), 502);
    let event = gw.next_usage().await;
    assert_eq!(event.outcome, UsageOutcome::Error);
    assert_eq!(event.error_class.as_deref(), Some("upstream_error"));
    assert_eq!(event.region.as_deref(), Some("eu-west-1"), "the last tried");

    // Refused before any attempt: no region, a class all the same.
    let response = gw.chat(&key, user_message("no-such-model", "hi")).await;
    assert_eq!(response.status(), 404);
    let event = gw.next_usage().await;
    assert_eq!(event.region, None);
    assert_eq!(event.error_class.as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn payloads_are_stored_only_when_the_organization_opted_in() {
    let mut gw = Gateway::start().await;
    let openai = FakeOpenAi::start().await.unwrap();
    let key = gw.key();
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(openai.base_url()),
        None,
    );
    let d = deployment("gpt", &provider, "gpt-4o-mini");
    gw.set_tenant_with(vec![provider.clone()], vec![d.clone()], |c| {
        c.store_payloads = true;
    });

    let response = gw.chat(&key, user_message("gpt", "the secret plan")).await;
    assert_eq!(response.status(), 200);
    let payload = gw.next_usage().await.payload.expect("opted in");
    assert!(payload.request.contains("the secret plan"), "{payload:?}");
    assert_eq!(payload.response, fake_openai::CONTENT);
    assert!(!payload.truncated);

    // Streamed: the answer is assembled from the chunks.
    let response = gw
        .chat(&key, streaming(user_message("gpt", "stream it"), false))
        .await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    let payload = gw.next_usage().await.payload.expect("opted in");
    assert!(payload.request.contains("stream it"));
    assert_eq!(payload.response, fake_openai::STREAM_DELTAS.concat());

    // A request over the cap is cut and flagged.
    let long = "x".repeat(MAX_PAYLOAD_BYTES + 10);
    let response = gw.chat(&key, user_message("gpt", &long)).await;
    assert_eq!(response.status(), 200);
    let payload = gw.next_usage().await.payload.expect("opted in");
    assert_eq!(payload.request.len(), MAX_PAYLOAD_BYTES);
    assert!(payload.truncated);

    // Opted out again: nothing stored.
    gw.set_tenant_with(vec![provider], vec![d], |c| c.store_payloads = false);
    let response = gw
        .chat(
            &key,
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(gw.next_usage().await.payload, None);
}
