//! Routes, fallback and region policies through the whole pipeline, for every endpoint:
//! a route's candidates tried in order, failover across providers (OpenAI-compatible →
//! Anthropic) plain and streamed, implicit groups of a shared deployment name, no retry of a
//! client error, circuit breakers skipping a dead deployment, and region pins refusing before
//! any upstream call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use shared::config::{DeploymentRecord, ProviderRecord, RetryClass, RouteStrategy};
use testkit::fake_anthropic::{self, FakeAnthropic};
use testkit::fake_openai::{self, FakeOpenAi};
use uuid::Uuid;

fn in_region(mut d: DeploymentRecord, region: &str) -> DeploymentRecord {
    d.region = Some(region.to_owned());
    d
}

struct Setup {
    gw: Gateway,
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
    key: String,
    providers: Vec<ProviderRecord>,
}

async fn setup() -> Setup {
    let gw = Gateway::start().await;
    let openai = FakeOpenAi::start().await.unwrap();
    let anthropic = FakeAnthropic::start().await.unwrap();
    let key = gw.key();
    let providers = vec![
        gw.provider(
            ProviderKind::OpenAiCompatible,
            Some(openai.base_url()),
            None,
        ),
        gw.provider(
            ProviderKind::Anthropic,
            Some(anthropic.base_url()),
            Some("sk-ant-test"),
        ),
    ];
    Setup {
        gw,
        openai,
        anthropic,
        key,
        providers,
    }
}

use shared::config::ProviderKind;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failing_primary_falls_back_to_another_provider_plain_and_streamed() {
    let mut s = setup().await;
    let primary = deployment("primary", &s.providers[0], fake_openai::MODEL_500);
    let secondary = deployment("secondary", &s.providers[1], "claude-haiku-4-5");
    let r = route("support", RouteStrategy::Priority, &[&primary, &secondary]);
    let (p, d) = (primary.clone(), secondary.clone());
    s.gw.set_tenant_with(s.providers.clone(), vec![p, d], |c| c.routes = vec![r]);

    let response = s.gw.chat(&s.key, user_message("support", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-switchyard-route"), "support");
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        secondary.id.to_string()
    );
    assert_eq!(header(&response, "x-switchyard-provider"), "anthropic");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["object"], "chat.completion",
        "the client's format: {body}"
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        fake_anthropic::CONTENT
    );

    // Metered once, for the attempt that served, with the failure recorded.
    let event = s.gw.next_usage().await;
    assert_eq!(event.status, 200);
    assert_eq!(event.deployment_id, Some(secondary.id));
    assert_eq!(event.provider.as_deref(), Some("anthropic"));
    assert_eq!(event.route.as_deref(), Some("support"));
    assert_eq!(event.failed_attempts.len(), 1, "{event:?}");
    assert_eq!(event.failed_attempts[0].deployment_id, primary.id);
    assert_eq!(
        event.failed_attempts[0].error_class,
        Some(RetryClass::ServerError)
    );
    assert!(event.cost_micros > 0);
    s.gw.assert_no_usage_queued();

    // Streamed: the fallback happens before the first byte, so the stream is whole.
    let response =
        s.gw.chat(&s.key, streaming(user_message("support", "hi"), true))
            .await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), fake_anthropic::CONTENT);
    let event = s.gw.next_usage().await;
    assert_eq!(event.deployment_id, Some(secondary.id));
    assert_eq!(event.failed_attempts.len(), 1);
    assert_eq!(s.anthropic.requests().len(), 2);
    drop(s.openai);
}

#[tokio::test]
async fn client_errors_are_never_retried_and_the_last_real_error_is_returned() {
    let mut s = setup().await;
    let bad = deployment("bad", &s.providers[0], fake_openai::MODEL_400_CONTEXT);
    let other = deployment("other", &s.providers[0], "gpt-4o-mini");
    let down_a = deployment("down-a", &s.providers[0], fake_openai::MODEL_500);
    let down_b = deployment("down-b", &s.providers[0], fake_openai::MODEL_500);
    let mut no_context_retry = route("strict", RouteStrategy::Priority, &[&bad, &other]);
    no_context_retry.retry_on = Some(vec![RetryClass::ServerError]);
    let both_down = route("down", RouteStrategy::Priority, &[&down_a, &down_b]);
    s.gw.set_tenant_with(s.providers.clone(), vec![bad, other, down_a, down_b], |c| {
        c.routes = vec![no_context_retry, both_down]
    });

    let response = s.gw.chat(&s.key, user_message("strict", "hi")).await;
    assert_error(response, 400, "context_length_exceeded").await;
    assert!(s.gw.next_usage().await.failed_attempts.is_empty());

    let response = s.gw.chat(&s.key, user_message("down", "hi")).await;
    assert_error(response, 502, "upstream_error").await;
    let event = s.gw.next_usage().await;
    assert_eq!(
        event.failed_attempts.len(),
        1,
        "the second failure is the answer"
    );
    assert_eq!(s.openai.chat_requests().len(), 3);
}

#[tokio::test]
async fn deployments_sharing_a_name_fail_over_among_themselves() {
    let mut s = setup().await;
    // Two deployments named "gpt": one always fails. Whichever is tried first, every request
    // is answered.
    let broken = deployment("gpt", &s.providers[0], fake_openai::MODEL_500);
    let working = deployment("gpt", &s.providers[1], "claude-haiku-4-5");
    s.gw.set_tenant(s.providers.clone(), vec![broken, working.clone()]);
    for _ in 0..8 {
        let response = s.gw.chat(&s.key, user_message("gpt", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-switchyard-deployment"),
            working.id.to_string()
        );
        let event = s.gw.next_usage().await;
        assert_eq!(event.deployment_id, Some(working.id));
    }
}

#[tokio::test]
async fn an_open_breaker_takes_a_dead_deployment_out_of_the_path() {
    let mut s = setup().await;
    let closed = closed_port();
    let dead_provider = s.gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("http://127.0.0.1:{closed}/v1")),
        None,
    );
    let dead = deployment("dead", &dead_provider, "gpt-4o-mini");
    let dead_id = dead.id;
    let alive = deployment("alive", &s.providers[0], "gpt-4o-mini");
    let r = route("copilot", RouteStrategy::Priority, &[&dead, &alive]);
    let mut providers = s.providers.clone();
    providers.push(dead_provider);
    s.gw.set_tenant_with(providers, vec![dead, alive], |c| c.routes = vec![r]);

    // The breaker opens after 5 consecutive failures; until then each request tries the dead
    // deployment first and falls back.
    for _ in 0..5 {
        let response = s.gw.chat(&s.key, user_message("copilot", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-switchyard-attempts"), "2");
        s.gw.next_usage().await;
    }
    // Open: the dead deployment is skipped, one attempt per request.
    for _ in 0..3 {
        let response = s.gw.chat(&s.key, user_message("copilot", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-switchyard-attempts"), "1");
        assert!(s.gw.next_usage().await.failed_attempts.is_empty());
    }
    // Prometheus shows the breaker, the fallbacks and the failures by class.
    let metrics =
        s.gw.http
            .get(s.gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let open = format!(
        "switchyard_breaker_state{{deployment=\"{}\",state=\"open\"}} 1",
        dead_id
    );
    assert!(metrics.contains(&open), "{open} in:\n{metrics}");
    assert!(metrics.contains("switchyard_fallbacks_total"), "{metrics}");
    assert!(metrics.contains("class=\"connection\""), "{metrics}");
}

#[tokio::test]
async fn region_pins_hold_for_chat_messages_and_embeddings() {
    let mut s = setup().await;
    let team = Uuid::new_v4();
    let us = in_region(
        deployment("gpt", &s.providers[0], "gpt-4o-mini"),
        "us-east-1",
    );
    let eu = in_region(
        deployment("gpt", &s.providers[0], "gpt-4o-mini"),
        "eu-west-1",
    );
    let us_only = in_region(
        deployment("us-only", &s.providers[0], "gpt-4o-mini"),
        "us-east-1",
    );
    let no_region = deployment("anywhere", &s.providers[0], "gpt-4o-mini");
    let emb_us = in_region(
        deployment("embed", &s.providers[0], "text-embedding-3-small"),
        "us-east-1",
    );
    let emb_eu = in_region(
        deployment("embed", &s.providers[0], "text-embedding-3-small"),
        "eu-central-1",
    );
    let deployments = vec![us, eu.clone(), us_only, no_region, emb_us, emb_eu.clone()];
    s.gw.set_tenant_with(s.providers.clone(), deployments, |c| {
        c.team_regions.insert(team, vec!["eu".to_owned()]);
    });
    let eu_key = s.gw.add_key(KeyOptions {
        team_id: Some(team),
        ..KeyOptions::default()
    });
    let other_key = s.key.clone();

    // The team's key only ever reaches EU deployments.
    for _ in 0..6 {
        let response = s.gw.chat(&eu_key, user_message("gpt", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-switchyard-region"), "eu-west-1");
        s.gw.next_usage().await;
    }
    let response =
        s.gw.embeddings(&eu_key, json!({"model": "embed", "input": "hi"}))
            .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        emb_eu.id.to_string()
    );
    s.gw.next_usage().await;
    let response = s
        .gw
        .http
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", &eu_key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-switchyard-region"), "eu-west-1");
    s.gw.next_usage().await;

    // Nothing compliant: refused before any upstream call, naming the policy.
    let before = s.openai.requests().len();
    for model in ["us-only", "anywhere"] {
        let response = s.gw.chat(&eu_key, user_message(model, "hi")).await;
        let error = assert_error(response, 403, "region_not_allowed").await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("the team allows eu"),
            "{error}"
        );
        s.gw.next_usage().await;
    }
    let response = s
        .gw
        .http
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", &eu_key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "us-only", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic's format: {body}");
    s.gw.next_usage().await;
    assert_eq!(
        s.openai.requests().len(),
        before,
        "no upstream call for a refusal"
    );

    // A key without the team is not pinned.
    let response = s.gw.chat(&other_key, user_message("us-only", "hi")).await;
    assert_eq!(response.status(), 200);
    s.gw.next_usage().await;
}

#[tokio::test]
async fn organization_and_route_pins_intersect_and_fallback_stays_inside() {
    let mut s = setup().await;
    // An EU organization with a route limited further to eu-west; the first candidate (in
    // eu-central) is outside the route's pin, the second (eu-west, broken) and third (eu-west,
    // working) inside. Fallback never reaches the US deployment listed last.
    let central = in_region(
        deployment("c", &s.providers[0], "gpt-4o-mini"),
        "eu-central-1",
    );
    let west_broken = in_region(
        deployment("wb", &s.providers[0], fake_openai::MODEL_500),
        "eu-west-1",
    );
    let west_ok = in_region(
        deployment("wo", &s.providers[1], "claude-haiku-4-5"),
        "eu-west-2",
    );
    let us = in_region(deployment("u", &s.providers[0], "gpt-4o-mini"), "us-east-1");
    let mut r = route(
        "eu-chat",
        RouteStrategy::Priority,
        &[&central, &west_broken, &west_ok, &us],
    );
    r.allowed_regions = Some(vec!["eu-west".to_owned()]);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![central, west_broken.clone(), west_ok.clone(), us],
        |c| {
            c.allowed_regions = Some(vec!["eu".to_owned()]);
            c.routes = vec![r];
        },
    );
    let response = s.gw.chat(&s.key, user_message("eu-chat", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        west_ok.id.to_string()
    );
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    let event = s.gw.next_usage().await;
    assert_eq!(event.failed_attempts[0].deployment_id, west_broken.id);
}

#[tokio::test]
async fn an_anthropic_base_url_without_the_version_works() {
    let mut s = setup().await;
    // What ANTHROPIC_BASE_URL holds: scheme and host, no `/v1`.
    let host_only = s.anthropic.base_url().trim_end_matches("/v1").to_owned();
    let p = s.gw.provider(
        ProviderKind::Anthropic,
        Some(host_only),
        Some("sk-ant-test"),
    );
    s.gw.set_tenant(
        vec![p.clone()],
        vec![deployment("claude", &p, "claude-haiku-4-5")],
    );
    let response = s.gw.chat(&s.key, user_message("claude", "hi")).await;
    assert_eq!(response.status(), 200);
    s.gw.next_usage().await;
    assert_eq!(s.anthropic.requests()[0].path, "/v1/messages");
}

#[tokio::test]
async fn a_routes_first_token_timeout_fires_at_its_bound_and_falls_back() {
    let mut s = setup().await;
    let hangs = deployment("hangs", &s.providers[0], fake_openai::MODEL_HANG);
    let works = deployment("works", &s.providers[0], "gpt-4o-mini");
    let mut r = route("bounded", RouteStrategy::Priority, &[&hangs, &works]);
    r.timeouts.first_token_ms = Some(300);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![hangs.clone(), works.clone()],
        |c| c.routes = vec![r],
    );
    // The node's own headers timeout is two minutes: only the route's bound can end the wait.
    let response = s.gw.chat(&s.key, user_message("bounded", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        works.id.to_string()
    );
    let event = s.gw.next_usage().await;
    let failed = &event.failed_attempts[0];
    assert_eq!(failed.deployment_id, hangs.id);
    assert_eq!(failed.error_class, Some(RetryClass::Timeout));
    assert!(
        (300..60_000).contains(&failed.latency_ms),
        "the attempt ended at the route's bound, not the node's: {failed:?}"
    );
}

#[tokio::test]
async fn candidates_that_cannot_do_what_the_request_needs_are_passed_over() {
    use shared::config::Capability;
    let mut s = setup().await;
    let mut plain = deployment("plain", &s.providers[0], "gpt-4o-mini");
    plain.capabilities = Some(vec![]);
    plain.context_window = Some(50);
    let mut capable = deployment("capable", &s.providers[0], "gpt-4o-mini");
    capable.capabilities = Some(vec![Capability::Tools, Capability::JsonMode]);
    let r = route("any", RouteStrategy::Priority, &[&plain, &capable]);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![plain.clone(), capable.clone()],
        |c| c.routes = vec![r],
    );

    let tools = json!({"model": "any", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    let json_mode = json!({"model": "any", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"}});
    let long = user_message("any", &"word ".repeat(200));
    for body in [tools, json_mode, long] {
        let response = s.gw.chat(&s.key, body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-switchyard-deployment"),
            capable.id.to_string()
        );
        assert_eq!(header(&response, "x-switchyard-attempts"), "1");
        s.gw.next_usage().await;
    }
    // A plain short request goes to the first candidate.
    let response = s.gw.chat(&s.key, user_message("any", "hi")).await;
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        plain.id.to_string()
    );
    s.gw.next_usage().await;
    // Nobody supports images: a 400 naming the field, before any upstream call.
    let vision = json!({"model": "any", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let mut no_vision = capable.clone();
    no_vision.capabilities = Some(vec![Capability::Tools]);
    let r = route("any", RouteStrategy::Priority, &[&no_vision]);
    s.gw.set_tenant_with(s.providers.clone(), vec![no_vision], |c| c.routes = vec![r]);
    let error = assert_error(s.gw.chat(&s.key, vision).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "messages");
}

#[tokio::test]
async fn a_sticky_weighted_route_keeps_a_user_on_one_deployment() {
    let mut s = setup().await;
    let a = deployment("a", &s.providers[0], "gpt-4o-mini");
    let b = deployment("b", &s.providers[0], "gpt-4o-mini");
    let mut r = route("ab", RouteStrategy::Weighted, &[&a, &b]);
    r.sticky = true;
    s.gw.set_tenant_with(s.providers.clone(), vec![a, b], |c| c.routes = vec![r]);

    let mut seen = std::collections::HashSet::new();
    // Deployment ids are random, so which deployment a user hashes to is too: with 16 users,
    // all on one deployment by chance is a 1-in-32768 event (with 6 it was 1 in 32).
    for i in 0..16 {
        let user = format!("user-{i}");
        let user = user.as_str();
        let mut picks = std::collections::HashSet::new();
        for _ in 0..3 {
            // By header, and by the request's `user` field.
            let by_header =
                s.gw.http
                    .post(s.gw.url("/v1/chat/completions"))
                    .bearer_auth(&s.key)
                    .header("x-switchyard-sticky-key", user)
                    .json(&user_message("ab", "hi"))
                    .send()
                    .await
                    .unwrap();
            picks.insert(header(&by_header, "x-switchyard-deployment"));
            s.gw.next_usage().await;
        }
        let mut body = user_message("ab", "hi");
        body["user"] = json!(user);
        let by_field = s.gw.chat(&s.key, body).await;
        picks.insert(header(&by_field, "x-switchyard-deployment"));
        s.gw.next_usage().await;
        assert_eq!(picks.len(), 1, "{user} stays on one deployment: {picks:?}");
        seen.extend(picks);
    }
    assert_eq!(
        seen.len(),
        2,
        "different users spread over both deployments"
    );
}

/// Property test over random routes, deployments and pins (seeded, so a failure reproduces):
/// a routed answer is always from a compliant deployment, and a request is refused exactly when
/// no compliant candidate exists.
#[tokio::test]
async fn region_pins_never_choose_a_non_compliant_deployment() {
    use rand::{RngExt, SeedableRng};
    const REGIONS: [Option<&str>; 5] = [
        Some("eu-west-1"),
        Some("eu-central-1"),
        Some("us-east-1"),
        Some("ap-south-1"),
        None,
    ];
    const ENTRIES: [&str; 5] = ["eu", "us", "eu-west", "ap-south-1", "europe"];
    let allows = |policy: &Option<Vec<String>>, region: Option<&str>| match policy {
        None => true,
        Some(entries) => region.is_some_and(|r| {
            entries
                .iter()
                .any(|e| r == e || r.starts_with(&format!("{e}-")))
        }),
    };
    let policy = |rng: &mut rand::rngs::StdRng| -> Option<Vec<String>> {
        rng.random_bool(0.5)
            .then(|| {
                ENTRIES
                    .iter()
                    .filter(|_| rng.random_bool(0.4))
                    .map(|e| (*e).to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty())
    };

    let mut gw = Gateway::start().await;
    let mock = gw.provider(ProviderKind::Mock, None, None);
    let team = Uuid::new_v4();
    let key = gw.add_key(KeyOptions {
        team_id: Some(team),
        ..KeyOptions::default()
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let (mut served, mut refused) = (0, 0);
    for case in 0..200 {
        let deployments: Vec<DeploymentRecord> = (0..rng.random_range(1..=4))
            .map(|_| {
                let mut d = deployment("m", &mock, "mock-1");
                d.region = REGIONS[rng.random_range(0..REGIONS.len())].map(str::to_owned);
                d
            })
            .collect();
        let (org, team_policy, route_policy) =
            (policy(&mut rng), policy(&mut rng), policy(&mut rng));
        let explicit = rng.random_bool(0.5);
        let mut r = route(
            "m",
            RouteStrategy::Weighted,
            &deployments.iter().collect::<Vec<_>>(),
        );
        r.allowed_regions = route_policy.clone().filter(|_| explicit);
        let compliant: Vec<Uuid> = deployments
            .iter()
            .filter(|d| {
                let region = d.region.as_deref();
                allows(&org, region)
                    && allows(&team_policy, region)
                    && (!explicit || allows(&route_policy, region))
            })
            .map(|d| d.id)
            .collect();
        gw.set_tenant_with(vec![mock.clone()], deployments, |c| {
            c.allowed_regions = org.clone();
            if let Some(p) = &team_policy {
                c.team_regions.insert(team, p.clone());
            }
            if explicit {
                c.routes = vec![r];
            }
        });
        let response = gw.chat(&key, user_message("m", "hi")).await;
        let status = response.status().as_u16();
        let chosen = header(&response, "x-switchyard-deployment");
        gw.next_usage().await;
        if compliant.is_empty() {
            assert_eq!(
                status, 403,
                "case {case}: nothing compliant must be refused"
            );
            refused += 1;
        } else {
            assert_eq!(status, 200, "case {case}: a compliant deployment exists");
            assert!(
                compliant.iter().any(|id| id.to_string() == chosen),
                "case {case}: {chosen} is not compliant"
            );
            served += 1;
        }
    }
    // The generator exercises both outcomes.
    assert!(
        served > 20 && refused > 20,
        "served {served}, refused {refused}"
    );
}

#[tokio::test]
async fn a_deployment_is_retried_with_backoff_and_retry_after_is_honoured() {
    let mut s = setup().await;
    let flaky = deployment("flaky", &s.providers[0], fake_openai::MODEL_500);
    let limited = deployment("limited", &s.providers[0], fake_openai::MODEL_429);
    let mut again = route("again", RouteStrategy::Priority, &[&flaky]);
    again.max_attempts = Some(3);
    // The fake's 429 asks for `retry-after: 7`; the route's whole budget is 2 s, so waiting
    // would not fit: the gateway answers the 429 at once instead of sleeping past the deadline.
    let mut patient = route("patient", RouteStrategy::Priority, &[&limited]);
    patient.max_attempts = Some(3);
    patient.timeouts.total_ms = Some(2_000);
    s.gw.set_tenant_with(s.providers.clone(), vec![flaky, limited], |c| {
        c.routes = vec![again, patient]
    });

    let response = s.gw.chat(&s.key, user_message("again", "hi")).await;
    assert_error(response, 502, "upstream_error").await;
    let event = s.gw.next_usage().await;
    assert_eq!(
        event.failed_attempts.len(),
        2,
        "three tries of one deployment"
    );
    assert_eq!(s.openai.chat_requests().len(), 3);

    let response = s.gw.chat(&s.key, user_message("patient", "hi")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    s.gw.next_usage().await;
    assert_eq!(
        s.openai.chat_requests().len(),
        4,
        "no retry inside the Retry-After"
    );
}

#[tokio::test]
async fn a_context_overflow_moves_on_to_a_larger_window() {
    let mut s = setup().await;
    let mut small = deployment("small", &s.providers[0], fake_openai::MODEL_400_CONTEXT);
    small.context_window = Some(8_192);
    let mut also_small = deployment("also-small", &s.providers[0], "gpt-4o-mini");
    also_small.context_window = Some(4_096);
    let mut large = deployment("large", &s.providers[1], "claude-haiku-4-5");
    large.context_window = Some(200_000);
    let mut r = route(
        "ctx",
        RouteStrategy::Priority,
        &[&small, &also_small, &large],
    );
    r.retry_on = Some(vec![RetryClass::ContextLengthExceeded]);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![small, also_small, large.clone()],
        |c| c.routes = vec![r],
    );
    let response = s.gw.chat(&s.key, user_message("ctx", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        large.id.to_string()
    );
    assert_eq!(
        header(&response, "x-switchyard-attempts"),
        "2",
        "the smaller window was skipped"
    );
    let event = s.gw.next_usage().await;
    assert_eq!(
        event.failed_attempts[0].error_class,
        Some(RetryClass::ContextLengthExceeded)
    );
}

#[tokio::test]
async fn a_deployment_at_its_provider_quota_is_passed_over_before_the_provider_says_429() {
    let mut s = setup().await;
    let mut limited = deployment("limited", &s.providers[0], "gpt-4o-mini");
    limited.rpm_limit = Some(3);
    let spare = deployment("spare", &s.providers[1], "claude-haiku-4-5");
    let mut alone = deployment("alone", &s.providers[0], "gpt-4o-mini");
    alone.rpm_limit = Some(1);
    let r = route("smooth", RouteStrategy::Priority, &[&limited, &spare]);
    let single = route("single", RouteStrategy::Priority, &[&alone]);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![limited.clone(), spare, alone],
        |c| c.routes = vec![r, single],
    );
    let mut on_limited = 0;
    for _ in 0..8 {
        let response = s.gw.chat(&s.key, user_message("smooth", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-switchyard-attempts"),
            "1",
            "no failed attempt"
        );
        if header(&response, "x-switchyard-deployment") == limited.id.to_string() {
            on_limited += 1;
        }
        s.gw.next_usage().await;
    }
    assert_eq!(on_limited, 3, "the quota holds; the rest went to the spare");
    assert_eq!(s.openai.chat_requests().len(), 3);

    // With nowhere else to go: 429 with Retry-After, and no upstream call.
    assert_eq!(
        s.gw.chat(&s.key, user_message("single", "hi"))
            .await
            .status(),
        200
    );
    s.gw.next_usage().await;
    let response = s.gw.chat(&s.key, user_message("single", "hi")).await;
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_error(response, 429, "provider_quota_exhausted").await;
    s.gw.next_usage().await;
    assert_eq!(s.openai.chat_requests().len(), 4);
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_is_reported_cut_not_retried() {
    let mut s = setup().await;
    let cut = deployment("cut", &s.providers[0], fake_openai::MODEL_CUT_STREAM);
    let spare = deployment("spare", &s.providers[1], "claude-haiku-4-5");
    let r = route("r", RouteStrategy::Priority, &[&cut, &spare]);
    s.gw.set_tenant_with(s.providers.clone(), vec![cut.clone(), spare], |c| {
        c.routes = vec![r]
    });
    let response =
        s.gw.chat(&s.key, streaming(user_message("r", "hi"), true))
            .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        cut.id.to_string()
    );
    let events = sse_data(&response.text().await.unwrap());
    let last = last_event_without_done(&events);
    assert_eq!(last["error"]["code"], "stream_truncated", "{events:?}");
    let event = s.gw.next_usage().await;
    assert_eq!(event.deployment_id, Some(cut.id));
    assert!(event.failed_attempts.is_empty());
    assert!(
        s.anthropic.requests().is_empty(),
        "no fallback after the first byte"
    );
}

#[tokio::test]
async fn with_the_primary_hard_down_latency_stays_near_the_fallbacks_once_its_breaker_opens() {
    let mut s = setup().await;
    let closed = closed_port();
    let dead_provider = s.gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("http://127.0.0.1:{closed}/v1")),
        None,
    );
    let dead = deployment("dead", &dead_provider, "gpt-4o-mini");
    let alive = deployment("alive", &s.providers[0], fake_openai::MODEL_SLOW);
    let via_route = route("copilot", RouteStrategy::Priority, &[&dead, &alive]);
    let direct = route("direct", RouteStrategy::Priority, &[&alive]);
    let mut providers = s.providers.clone();
    providers.push(dead_provider);
    s.gw.set_tenant_with(providers, vec![dead, alive], |c| {
        c.routes = vec![via_route, direct]
    });
    async fn p95(s: &mut Setup, model: &str) -> std::time::Duration {
        let mut latencies = Vec::new();
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let response = s.gw.chat(&s.key, user_message(model, "hi")).await;
            assert_eq!(response.status(), 200);
            latencies.push(started.elapsed());
            s.gw.next_usage().await;
        }
        latencies.sort();
        latencies[18]
    }
    // Open the primary's breaker (5 consecutive failures).
    for _ in 0..5 {
        assert_eq!(
            s.gw.chat(&s.key, user_message("copilot", "hi"))
                .await
                .status(),
            200
        );
        s.gw.next_usage().await;
    }
    let direct_p95 = p95(&mut s, "direct").await;
    let routed_p95 = p95(&mut s, "copilot").await;
    // The bound of the issue: no more than one connect timeout (the node's, 5 s by default)
    // above the fallback's own p95. With the breaker open the dead primary is not even tried.
    let connect = data_plane::config::Settings::default().connect_timeout();
    assert!(
        routed_p95 <= direct_p95 + connect,
        "p95 {routed_p95:?} through the route vs {direct_p95:?} direct"
    );
}

#[tokio::test]
async fn a_hedged_route_answers_from_the_faster_candidate_and_cancels_the_other() {
    let mut s = setup().await;
    let hangs = deployment("hangs", &s.providers[0], fake_openai::MODEL_HANG);
    let quick = deployment("quick", &s.providers[1], "claude-haiku-4-5");
    let mut r = route("hedged", RouteStrategy::Priority, &[&hangs, &quick]);
    r.hedge_after_ms = Some(100);
    let unhedged_primary = deployment("fast-primary", &s.providers[0], "gpt-4o-mini");
    let mut calm = route(
        "calm",
        RouteStrategy::Priority,
        &[&unhedged_primary, &quick],
    );
    calm.hedge_after_ms = Some(5_000);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![hangs, quick.clone(), unhedged_primary.clone()],
        |c| c.routes = vec![r, calm],
    );

    // The primary never answers: after 100 ms the hedge goes to the next candidate and wins.
    let response = s.gw.chat(&s.key, user_message("hedged", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        quick.id.to_string()
    );
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    let event = s.gw.next_usage().await;
    assert_eq!(
        event.deployment_id,
        Some(quick.id),
        "metered once, for the answer kept"
    );
    assert!(
        event.failed_attempts.is_empty(),
        "the cancelled call is not a failure"
    );
    assert_eq!(s.anthropic.requests().len(), 1);

    // A primary that answers before the hedge delay: no second call.
    let response = s.gw.chat(&s.key, user_message("calm", "hi")).await;
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        unhedged_primary.id.to_string()
    );
    assert_eq!(header(&response, "x-switchyard-attempts"), "1");
    s.gw.next_usage().await;
    assert_eq!(s.anthropic.requests().len(), 1);
}

#[tokio::test]
async fn routes_apply_to_messages_and_embeddings_too() {
    let mut s = setup().await;
    let broken = deployment("broken", &s.providers[0], fake_openai::MODEL_500);
    let working = deployment("working", &s.providers[1], "claude-haiku-4-5");
    let e_broken = deployment("e-broken", &s.providers[0], fake_openai::MODEL_500);
    let e_working = deployment("e-working", &s.providers[0], "text-embedding-3-small");
    let chat_route = route("assistant", RouteStrategy::Priority, &[&broken, &working]);
    let embed_route = route("vectors", RouteStrategy::Priority, &[&e_broken, &e_working]);
    s.gw.set_tenant_with(
        s.providers.clone(),
        vec![broken, working.clone(), e_broken, e_working.clone()],
        |c| c.routes = vec![chat_route, embed_route],
    );

    let response = s
        .gw
        .http
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", &s.key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "assistant", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-switchyard-route"), "assistant");
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        working.id.to_string()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message", "Anthropic's format: {body}");
    assert_eq!(s.gw.next_usage().await.failed_attempts.len(), 1);

    let response =
        s.gw.embeddings(&s.key, json!({"model": "vectors", "input": "hi"}))
            .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        e_working.id.to_string()
    );
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    let event = s.gw.next_usage().await;
    assert_eq!(event.endpoint, "embeddings");
    assert_eq!(event.deployment_id, Some(e_working.id));
}

#[tokio::test]
async fn a_routes_connect_timeout_fires_at_its_bound() {
    let mut s = setup().await;
    // A listener whose accept queue is full: the kernel drops further connection attempts, so
    // connecting hangs until the client gives up (loopback only).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let stuck_provider = s.gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("http://{addr}/v1")),
        None,
    );
    let stuck = deployment("stuck", &stuck_provider, "gpt-4o-mini");
    let spare = deployment("spare", &s.providers[0], "gpt-4o-mini");
    let mut r = route("connect", RouteStrategy::Priority, &[&stuck, &spare]);
    r.timeouts.connect_ms = Some(300);
    let mut providers = s.providers.clone();
    providers.push(stuck_provider);
    s.gw.set_tenant_with(providers, vec![stuck.clone(), spare.clone()], |c| {
        c.routes = vec![r]
    });
    let response = s.gw.chat(&s.key, user_message("connect", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-switchyard-deployment"),
        spare.id.to_string()
    );
    let event = s.gw.next_usage().await;
    let failed = &event.failed_attempts[0];
    assert_eq!(failed.deployment_id, stuck.id);
    assert_eq!(failed.error_code, "upstream_unreachable");
    assert!(
        (300..4_000).contains(&failed.latency_ms),
        "cut at the route's 300 ms, not the node's 5 s: {failed:?}"
    );
    drop((fillers, full));
}

#[tokio::test]
async fn a_routes_total_timeout_ends_a_stalled_stream_at_its_bound() {
    let mut s = setup().await;
    let stalls = deployment("stalls", &s.providers[0], fake_openai::MODEL_STALL_STREAM);
    let mut r = route("bounded-total", RouteStrategy::Priority, &[&stalls]);
    r.timeouts.total_ms = Some(500);
    s.gw.set_tenant_with(s.providers.clone(), vec![stalls], |c| c.routes = vec![r]);
    // The node's idle timeout is two minutes: only the route's total bound ends this stream.
    let response =
        s.gw.chat(&s.key, streaming(user_message("bounded-total", "hi"), true))
            .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    let last = last_event_without_done(&events);
    assert_eq!(last["error"]["code"], "stream_truncated", "{events:?}");
    let event = s.gw.next_usage().await;
    assert_eq!(event.error_code.as_deref(), Some("upstream_timeout"));
    assert!(
        (500..60_000).contains(&event.latency_ms),
        "{}",
        event.latency_ms
    );
}
