//! End to end: secrets are never stored or logged in plaintext.
//!
//! After creating a key and a provider with a known secret and sending traffic through two
//! data-plane nodes, the test reads every row of every table of the (fresh) Postgres database,
//! every Redis key under the (fresh) prefix, and everything the control-plane and data-plane
//! processes wrote to stdout and stderr, and asserts that neither the plaintext API key nor the
//! provider secret appears anywhere, that the key is stored as its SHA-256 hex and the provider
//! secret sealed (`v1:`). Needs the workspace binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{Deployment, chat, http_client, poll_until, usage_row};
use testkit::fake_openai::FakeOpenAi;

/// Our own crates log at debug so as much as possible is scanned; dependencies at info.
const LOG: &str = "info,control_plane=debug,data_plane=debug,shared=debug";

/// The forms a leaked secret could take in a dump: as is, and hex-encoded (a `bytea` column
/// renders as `\x…`).
fn forms(secret: &str) -> [String; 2] {
    [secret.to_owned(), hex::encode(secret.as_bytes())]
}

fn assert_absent(haystack: &str, secret: &str, what: &str, where_: &str) {
    for form in forms(secret) {
        assert!(!haystack.contains(&form), "the {what} appears in {where_}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_hashed_or_sealed_and_never_logged() {
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
    let provider_secret = format!("sk-provider-secret-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeOpenAi::start_with_key(&provider_secret).await.unwrap();

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: Some(&provider_secret),
            model: "gpt-test",
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .expect("provisioning");
    let key = setup.key.key.clone();
    let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
    let client = http_client();

    // Traffic through both nodes, streaming and not, plus refused requests (a wrong key, an
    // upstream error), so every code path that might log has run.
    let mut request_ids = Vec::new();
    for (dp, stream) in [(&dp1, false), (&dp2, true)] {
        let origin = dp.base_url();
        let body = json!({
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        });
        let resp = poll_until(
            Duration::from_secs(5),
            Duration::from_millis(25),
            || async {
                let r = chat(&client, &origin, &key, &body).await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                Ok(r)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the key works on {origin}: {e:#}"));
        request_ids.push(
            resp.headers()["x-switchyard-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let text = resp.text().await.unwrap();
        assert!(!text.contains(&provider_secret));
    }
    let wrong = chat(
        &client,
        &dp1.base_url(),
        &format!("{key}x"),
        &json!({"model": "gpt-test", "messages": []}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_absent(&wrong.text().await.unwrap(), &key, "API key", "a 401 body");

    // Wait until the usage of both requests is stored, so the usage path has written too.
    poll_until(
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async {
            let u = api.usage().await?;
            anyhow::ensure!(
                request_ids.iter().all(|id| usage_row(&u, id).is_some()),
                "usage not there yet: {u}"
            );
            Ok(())
        },
    )
    .await
    .expect("usage rows appear");

    // Postgres: every row of every table.
    let rows = deployment.db.dump_text().await.expect("dump the database");
    assert!(!rows.is_empty());
    for row in &rows {
        let where_ = format!("table {}", row.table);
        assert_absent(&row.text, &key, "plaintext API key", &where_);
        assert_absent(&row.text, &provider_secret, "provider secret", &where_);
    }
    assert!(
        rows.iter()
            .any(|r| r.table.ends_with(".api_keys") && r.text.contains(&key_hash)),
        "the key is stored as its SHA-256 hex in api_keys"
    );
    assert!(
        rows.iter()
            .any(|r| r.table.ends_with(".provider_credentials") && r.text.contains("v1:")),
        "the provider secret is stored sealed (v1:…) in provider_credentials"
    );

    // Redis: every key under the prefix (records, change log, usage stream).
    let entries = testkit::redis_prefix::dump_prefix(&deployment.redis_url, &deployment.prefix)
        .await
        .expect("dump Redis");
    assert!(!entries.is_empty());
    for e in &entries {
        let where_ = format!("Redis key {} ({})", e.key, e.kind);
        assert_absent(&e.text, &key, "plaintext API key", &where_);
        assert_absent(&e.text, &provider_secret, "provider secret", &where_);
        assert_absent(&e.key, &key, "plaintext API key", "a Redis key name");
    }
    assert!(
        entries.iter().any(|e| e.text.contains("v1:")),
        "the provider secret is published sealed"
    );

    eprintln!(
        "scanned {} database rows in {} tables and {} Redis keys",
        rows.len(),
        rows.iter()
            .map(|r| r.table.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        entries.len()
    );

    // Logs of every process.
    for (name, proc_) in [("control-plane", &cp), ("dp-1", &dp1), ("dp-2", &dp2)] {
        let logs = proc_.logs_text();
        assert!(!logs.is_empty(), "{name} logged something");
        eprintln!("scanned {} log lines of {name}", proc_.logs().len());
        assert_absent(
            &logs,
            &key,
            "plaintext API key",
            &format!("the {name} logs"),
        );
        assert_absent(
            &logs,
            &provider_secret,
            "provider secret",
            &format!("the {name} logs"),
        );
    }

    // And the upstream received the secret only where it belongs: the Authorization header.
    for r in fake.chat_requests() {
        assert_eq!(r.bearer(), Some(provider_secret.as_str()));
        assert_absent(
            &r.body.to_string(),
            &provider_secret,
            "provider secret",
            "the upstream body",
        );
        assert_absent(
            &r.body.to_string(),
            &key,
            "plaintext API key",
            "the upstream body",
        );
        for (name, value) in &r.headers {
            assert_absent(
                value,
                &key,
                "plaintext API key",
                &format!("upstream header {name}"),
            );
        }
    }

    drop((dp1, dp2, cp));
    deployment.cleanup().await;
}
