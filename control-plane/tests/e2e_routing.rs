//! End to end, on separate processes: deployments and a route created through the control API
//! are served by a `data-plane` process with failover (the client sees the fallback's answer
//! when the primary answers 500), and a team pinned to `eu` only ever reaches EU deployments,
//! on chat and embeddings, with a 403 `region_not_allowed` when none can serve it.
//!
//! Real Postgres (fresh database), real Redis (fresh prefix), the `control-plane` binary and a
//! `data-plane` process. Needs the workspace binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::{Deployment, chat, http_client, poll_until};
use testkit::fake_anthropic::{self, FakeAnthropic};
use testkit::fake_openai::{self, FakeOpenAi};

const LOG: &str = "info";

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Creates a deployment; returns its id.
async fn model(
    api: &ControlApi,
    name: &str,
    provider: &str,
    upstream: &str,
    region: &str,
) -> String {
    let created = api
        .create_model(&json!({
            "name": name,
            "provider_id": provider,
            "upstream_model": upstream,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
            "region": region,
        }))
        .await
        .unwrap_or_else(|e| panic!("create model {name}: {e}"));
    id_of(&created).unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A control plane, `nodes` data-plane processes, the OpenAI-compatible and Anthropic fakes,
/// and an organization with a provider on each fake (and a `plain` deployment, its key).
struct World {
    deployment: Deployment,
    nodes: Vec<testkit::proc::ChildGuard>,
    openai: FakeOpenAi,
    _anthropic: FakeAnthropic,
    api: ControlApi,
    /// The OpenAI-compatible provider's id.
    fam: String,
    /// The Anthropic provider's id.
    claude: String,
    key: String,
    _cp: testkit::proc::ChildGuard,
}

async fn world(nodes: usize) -> World {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    let cp = deployment
        .start_control_plane(LOG)
        .await
        .expect("control plane");
    let mut started = Vec::new();
    for i in 1..=nodes {
        started.push(
            deployment
                .start_data_plane(&format!("dp-{i}"), LOG)
                .await
                .expect("a data-plane node"),
        );
    }
    let openai = FakeOpenAi::start().await.unwrap();
    let anthropic = FakeAnthropic::start().await.unwrap();
    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&openai.base_url()),
            api_key: Some("sk-upstream"),
            model: "plain",
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .expect("provisioning");
    let claude = id_of(
        &api.create_provider(&json!({
            "name": "claude",
            "kind": "anthropic",
            "base_url": anthropic.base_url(),
            "api_key": "sk-ant-upstream",
        }))
        .await
        .unwrap(),
    )
    .unwrap();
    World {
        deployment,
        nodes: started,
        openai,
        _anthropic: anthropic,
        api,
        fam: setup.provider_id.clone(),
        claude,
        key: setup.key.key.clone(),
        _cp: cp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_fail_over_and_team_region_pins_hold_on_a_data_plane_process() {
    let w = world(1).await;
    let (api, fam, claude, openai) = (&w.api, &w.fam, &w.claude, &w.openai);
    let client = http_client();
    let origin = w.nodes[0].base_url();

    // Failover: a priority route whose primary answers 500.
    let primary = model(api, "primary", fam, fake_openai::MODEL_500, "us-east-1").await;
    let fallback = model(api, "fallback", claude, "claude-haiku-4-5", "eu-west-1").await;
    api.create_route(&json!({
        "name": "support",
        "strategy": "priority",
        "candidates": [{"model_id": primary}, {"model_id": fallback}],
    }))
    .await
    .expect("route");

    // Region pins: deployments of one name in two regions, embeddings too.
    model(api, "gpt", fam, "gpt-4o-mini", "us-east-1").await;
    let gpt_eu = model(api, "gpt", fam, "gpt-4o-mini", "eu-central-1").await;
    model(api, "us-only", fam, "gpt-4o-mini", "us-east-1").await;
    let team = api
        .create_team(&json!({"name": "eu-team"}))
        .await
        .expect("team");
    let team_id = id_of(&team).unwrap();
    api.set_team_regions(&team_id, Some(&["eu"]))
        .await
        .expect("team pin");
    let eu_key = api
        .create_key(&json!({"name": "eu key", "team_id": team_id}))
        .await
        .expect("team key")
        .key;
    let key = w.key.clone();

    // The route serves through the data plane once the config arrived; the client sees the
    // fallback's answer, never the primary's 500.
    let response = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(&client, &origin, &key, &body("support")).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .expect("the route answers");
    assert_eq!(header(&response, "x-switchyard-attempts"), "2");
    assert_eq!(header(&response, "x-switchyard-provider"), "anthropic");
    assert_eq!(header(&response, "x-switchyard-deployment"), fallback);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        fake_anthropic::CONTENT
    );

    // The EU team: always the EU deployment, and refused where none exists.
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(&client, &origin, &eu_key, &body("gpt")).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("the team key and its pin reached the data plane");
    for _ in 0..6 {
        let r = chat(&client, &origin, &eu_key, &body("gpt")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-deployment"), gpt_eu);
        assert_eq!(header(&r, "x-switchyard-region"), "eu-central-1");
    }
    let before = openai.chat_requests().len();
    let refused = chat(&client, &origin, &eu_key, &body("us-only"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "region_not_allowed", "{error}");
    assert_eq!(
        openai.chat_requests().len(),
        before,
        "refused before any upstream call"
    );
    // The organization's own key is not pinned.
    let r = chat(&client, &origin, &key, &body("us-only"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_data_plane_processes_share_a_deployments_rpm_quota() {
    let w = world(2).await;
    let (api, claude, openai) = (&w.api, &w.claude, &w.openai);
    let (dp1, dp2) = (&w.nodes[0], &w.nodes[1]);
    let client = http_client();

    let limited = id_of(
        &api.create_model(&json!({
            "name": "limited",
            "provider_id": w.fam,
            "upstream_model": "gpt-4o-mini",
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
            "rpm_limit": 4,
        }))
        .await
        .expect("a deployment with an RPM quota"),
    )
    .unwrap();
    let spare = model(api, "spare", claude, "claude-haiku-4-5", "eu-west-1").await;
    api.create_route(&json!({
        "name": "smooth",
        "strategy": "priority",
        "candidates": [{"model_id": limited}, {"model_id": spare}],
    }))
    .await
    .expect("route");
    let key = w.key.clone();

    // Both nodes know the route (answers come from the spare until then, which is fine: only
    // the limited deployment's count matters).
    for dp in [&dp1, &dp2] {
        let origin = dp.base_url();
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let r = chat(&client, &origin, &key, &body("plain")).await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                Ok(())
            },
        )
        .await
        .expect("the config reached the node");
    }
    let plain_calls = openai.chat_requests().len();

    // Twelve requests, alternating nodes: together they send the limited deployment at most
    // its 4 per minute, and every request is answered.
    let mut on_limited = 0;
    for i in 0..12 {
        let origin = if i % 2 == 0 {
            dp1.base_url()
        } else {
            dp2.base_url()
        };
        let r = poll_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let r = chat(&client, &origin, &key, &body("smooth")).await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                Ok(r)
            },
        )
        .await
        .expect("answered");
        if header(&r, "x-switchyard-deployment") == limited {
            on_limited += 1;
        }
    }
    assert_eq!(
        on_limited, 4,
        "the two nodes kept the deployment under its quota together"
    );
    assert_eq!(openai.chat_requests().len() - plain_calls, 4);

    w.deployment.cleanup().await;
}
