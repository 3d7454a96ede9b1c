//! End to end: revoking a key through the control API is enforced by every data-plane node
//! within a second, including nodes that already cached the key.
//!
//! Real Postgres (fresh database), real Redis (fresh prefix), the `control-plane` binary and two
//! `data-plane` processes. Needs the workspace binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{Deployment, chat, http_client, poll_until};
use testkit::fake_openai::FakeOpenAi;

const LOG: &str = "info";

fn body() -> Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_node_within_one_second() {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    let cp = deployment
        .start_control_plane(LOG)
        .await
        .expect("control plane");
    let dp1 = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane 1");
    let dp2 = deployment
        .start_data_plane("dp-2", LOG)
        .await
        .expect("data plane 2");
    let upstream_key = format!("sk-upstream-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeOpenAi::start_with_key(&upstream_key).await.unwrap();

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: Some(&upstream_key),
            model: "gpt-test",
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .expect("provisioning");
    let key = setup.key.key.clone();
    let client = http_client();

    // One successful request through each node, so both hold the key in their cache.
    for dp in [&dp1, &dp2] {
        let origin = dp.base_url();
        poll_until(
            Duration::from_secs(5),
            Duration::from_millis(25),
            || async {
                let r = chat(&client, &origin, &key, &body()).await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                Ok(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the key works on {origin}: {e:#}"));
    }

    api.revoke_key(&setup.key.id)
        .await
        .expect("DELETE /api/v1/keys/{id}");
    let revoked_at = Instant::now();

    // Poll both nodes at the same time; each must refuse the key within a second.
    let refused_within = |origin: String| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            loop {
                let r = chat(&client, &origin, &key, &body()).await.unwrap();
                let status = r.status();
                if status == 401 {
                    let elapsed = revoked_at.elapsed();
                    let err: Value = r.json().await.unwrap();
                    return (elapsed, err);
                }
                assert_eq!(
                    status, 200,
                    "{origin}: before revocation lands, the key still works"
                );
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(3),
                    "{origin} still accepts the revoked key after 3 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let ((t1, e1), (t2, e2)) = tokio::join!(
        refused_within(dp1.base_url()),
        refused_within(dp2.base_url())
    );
    eprintln!("revocation enforced after {t1:?} (dp-1) and {t2:?} (dp-2)");
    for (node, elapsed, err) in [("dp-1", t1, &e1), ("dp-2", t2, &e2)] {
        assert!(
            elapsed <= Duration::from_secs(1),
            "{node} refused the revoked key only after {elapsed:?}"
        );
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains("revoked"),
            "{node}: the 401 says the key was revoked: {err}"
        );
    }

    drop((dp1, dp2, cp));
    deployment.cleanup().await;
}
