//! A suspended organization (`TenantConfig.suspension`, published by the control plane's
//! billing) is refused at authentication with 402 on every endpoint: OpenAI's error shape with
//! `code: "organization_suspended"` and the control plane's message, Anthropic's
//! `billing_error` on `/v1/messages`; other organizations on the node are untouched; publishing
//! the config without the suspension lets requests through again at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Gateway, deployment, user_message};
use serde_json::{Value, json};
use shared::config::{ProviderKind, Suspension, SuspensionReason};

const MESSAGE: &str =
    "This organization is suspended: a payment failed. Pay the open invoice in the billing portal.";

fn suspend(
    gw: &Gateway,
    providers: &[shared::config::ProviderRecord],
    deps: &[shared::config::DeploymentRecord],
    on: bool,
) {
    gw.set_tenant_with(providers.to_vec(), deps.to_vec(), |c| {
        c.suspension = on.then(|| Suspension {
            reason: SuspensionReason::PaymentFailed,
            message: MESSAGE.to_owned(),
        });
    });
}

#[tokio::test]
async fn suspended_organizations_get_402_in_both_formats_until_lifted() {
    let gw = Gateway::start().await;
    let mock = gw.provider(ProviderKind::Mock, None, None);
    let deps = vec![deployment("m", &mock, "mock-1")];
    let providers = vec![mock.clone()];
    suspend(&gw, &providers, &deps, false);
    let key = gw.key();
    assert_eq!(gw.chat(&key, user_message("m", "hi")).await.status(), 200);

    // Another organization on the same node.
    let other = uuid::Uuid::new_v4();
    gw.set_tenant_for(other, vec![mock.clone()], deps.clone());
    let other_key = gw.add_key_for(other, Default::default());

    suspend(&gw, &providers, &deps, true);

    // OpenAI format, every endpoint (chat, embeddings, models).
    let resp = gw.chat(&key, user_message("m", "hi")).await;
    assert_eq!(resp.status(), 402);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "organization_suspended", "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    assert_eq!(body["error"]["message"], MESSAGE, "{body}");
    let resp = gw
        .embeddings(&key, json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(resp.status(), 402);
    let resp = gw
        .http
        .get(gw.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);

    // Anthropic format on /v1/messages.
    let resp = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "billing_error", "{body}");
    assert_eq!(body["error"]["message"], MESSAGE, "{body}");

    // The other organization is not affected.
    assert_eq!(
        gw.chat(&other_key, user_message("m", "hi")).await.status(),
        200
    );

    // Lifted: the next request passes.
    suspend(&gw, &providers, &deps, false);
    assert_eq!(gw.chat(&key, user_message("m", "hi")).await.status(), 200);
}
