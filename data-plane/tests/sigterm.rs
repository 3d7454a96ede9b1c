//! A SIGTERM under load loses no request and no usage event: the real `data-plane` binary,
//! against the real Redis (a fresh key prefix) and a fake OpenAI upstream whose gate holds every
//! answer open until the test releases it, so the requests are provably in flight when the
//! signal arrives (see `data_plane::lifecycle` for the sequence under test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bus_support::{Prefix, conn, redis_url, write_key, write_tenant};
use futures::StreamExt;
use serde_json::{Value, json};
use shared::config::{KeyRecord, ProviderKind, ProviderRecord};
use shared::usage::{UsageEvent, UsageOutcome};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::{ChildGuard, command};
use uuid::Uuid;

/// Bound for anything that should happen promptly on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// A data-plane process serving one key whose tenant has two deployments on the fake: `gated`
/// (held at the fake's gate) and `plain` (answers at once).
struct Node {
    dp: ChildGuard,
    fake: FakeOpenAi,
    prefix: Prefix,
    key: String,
    _spool: tempfile::TempDir,
}

impl Node {
    async fn start(shutdown: [(&str, &str); 3]) -> Node {
        let fake = FakeOpenAi::start().await.unwrap();
        let prefix = Prefix::new();
        let key = shared::keys::generate_api_key();
        let mut record: KeyRecord =
            testkit::records::key_record(&shared::keys::hash_api_key(&key), 1);
        record.name = "sigterm test".into();
        let provider = ProviderRecord {
            id: Uuid::new_v4(),
            name: "fake".into(),
            kind: ProviderKind::OpenAiCompatible,
            base_url: Some(fake.base_url()),
            api_key_sealed: None,
            options: Default::default(),
        };
        let deployments = vec![
            common::deployment("gated", &provider, fake_openai::MODEL_GATED),
            common::deployment("plain", &provider, "gpt-4o-mini"),
        ];
        let tenant = common::tenant_config(record.tenant_id, 1, vec![provider], deployments);
        let mut c = conn().await;
        write_tenant(&mut c, &prefix.keys, &tenant, true).await;
        write_key(&mut c, &prefix.keys, &record, true).await;

        let spool = tempfile::tempdir().unwrap();
        let mut cmd = command(Path::new(env!("CARGO_BIN_EXE_data-plane")));
        cmd.env("REDIS_URL", redis_url())
            .env("SWITCHYARD_REDIS_PREFIX", prefix.keys.prefix())
            .env("SWITCHYARD_MASTER_KEY", testkit::e2e::random_master_key())
            .env("SWITCHYARD_NODE_ID", "dp-sigterm")
            .env(
                "SWITCHYARD_UPSTREAM_ALLOW_CIDRS",
                testkit::e2e::LOOPBACK_CIDRS,
            )
            .env("SWITCHYARD_USAGE_SPOOL_DIR", spool.path())
            .envs(shutdown);
        let dp = ChildGuard::spawn("data-plane", cmd).await.unwrap();
        dp.wait_healthy("/readyz", WAIT).await.unwrap();
        Node {
            dp,
            fake,
            prefix,
            key,
            _spool: spool,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.dp.base_url())
    }

    /// Every usage event in the node's Redis stream, by request id.
    async fn usage_events(&self) -> HashMap<Uuid, Vec<UsageEvent>> {
        let mut c = conn().await;
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.prefix.keys.usage())
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut by_id: HashMap<Uuid, Vec<UsageEvent>> = HashMap::new();
        for (_, fields) in entries {
            for (name, value) in fields {
                assert_eq!(name, "event");
                let event: UsageEvent = serde_json::from_str(&value).unwrap();
                by_id.entry(event.id).or_default().push(event);
            }
        }
        by_id
    }
}

fn chat_body(model: &str, stream: bool, include_usage: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if stream {
        body = common::streaming(body, include_usage);
    }
    body
}

/// What a client got: the request id, the status, the whole body (or the read error).
#[derive(Debug)]
struct Answer {
    id: Uuid,
    status: u16,
    retry_after: Option<String>,
    body: Result<String, String>,
}

async fn call(client: reqwest::Client, url: String, key: String, body: Value) -> Answer {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("the request reaches the node");
    let id = response.headers()[common::REQUEST_ID]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    // Read chunk by chunk: a cut connection is an error here, not a panic.
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    let body = loop {
        match stream.next().await {
            Some(Ok(chunk)) => bytes.extend_from_slice(&chunk),
            Some(Err(e)) => break Err(format!("{e:?}")),
            None => break Ok(String::from_utf8(bytes).unwrap()),
        }
    };
    Answer {
        id,
        status,
        retry_after,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_under_load_loses_no_request_and_no_usage_event() {
    const STREAMS: usize = 20;
    const COMPLETIONS: usize = 20;
    let node = Node::start([
        ("SWITCHYARD_SHUTDOWN_DELAY_SECONDS", "3"),
        ("SWITCHYARD_SHUTDOWN_GRACE_SECONDS", "30"),
        ("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS", "10"),
    ])
    .await;
    let client = testkit::e2e::fresh_connection_client();
    let chat = node.url("/v1/chat/completions");

    // 40 requests held at the upstream: half streams (half of those asking for the usage
    // chunk), half plain completions.
    let mut requests = Vec::new();
    for i in 0..STREAMS + COMPLETIONS {
        let body = chat_body("gated", i < STREAMS, i % 2 == 0);
        requests.push(tokio::spawn(call(
            client.clone(),
            chat.clone(),
            node.key.clone(),
            body,
        )));
    }
    node.fake
        .wait_gated(STREAMS + COMPLETIONS, WAIT)
        .await
        .unwrap();

    node.dp.send_sigterm().await;
    let started = Instant::now();

    // The pre-stop delay: readiness fails at once, while the node still serves new connections.
    testkit::poll::eventually("/readyz turns 503 shutting_down", WAIT, || async {
        match client.get(node.url("/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                r.json::<Value>().await.ok() == Some(json!({"status": "shutting_down"}))
            }
            _ => false,
        }
    })
    .await;
    let during_delay = call(
        client.clone(),
        chat.clone(),
        node.key.clone(),
        chat_body("plain", false, false),
    )
    .await;
    assert_eq!(during_delay.status, 200, "{during_delay:?}");
    let health = client.get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the checks above must run within the 3 s delay"
    );

    // Then the listener closes while the 40 are still held open.
    testkit::proc::wait_refused(node.dp.addr(), WAIT)
        .await
        .unwrap();
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "every request is still in flight when the node stops accepting"
    );

    // Released: every one of them completes, in full.
    node.fake.open_gate();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "{answer:?}");
        let body = answer.body.as_ref().expect("the whole body arrives");
        if i < STREAMS {
            let events = common::sse_data(body);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
            assert_eq!(common::streamed_text(&events), fake_openai::CONTENT);
        } else {
            let completion: Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                completion["choices"][0]["message"]["content"],
                fake_openai::CONTENT
            );
        }
    }

    let mut dp = node.dp;
    let status = dp
        .wait_exit(Duration::from_secs(3 + 30 + 10 + 10))
        .await
        .expect("the node exits within delay + grace + drain");
    assert!(status.success(), "{status:?}\n{}", dp.logs_text());
    let logs = dp.logs_text();
    assert!(!logs.contains("lost"), "{logs}");

    // Exactly one usage event per request, all successes.
    let node = Node { dp, ..node };
    let events = node.usage_events().await;
    let mut expected: Vec<Uuid> = answers.iter().map(|a| a.id).collect();
    expected.push(during_delay.id);
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for id in expected {
        let found = events.get(&id).map_or(0, Vec::len);
        assert_eq!(found, 1, "usage events for request {id}");
        let event = &events[&id][0];
        assert_eq!(event.outcome, UsageOutcome::Success, "{event:?}");
        assert!(event.prompt_tokens > 0, "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_still_open_after_the_grace_period_are_cut_and_still_metered() {
    let node = Node::start([
        ("SWITCHYARD_SHUTDOWN_DELAY_SECONDS", "0"),
        ("SWITCHYARD_SHUTDOWN_GRACE_SECONDS", "1"),
        ("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS", "5"),
    ])
    .await;
    let client = testkit::e2e::fresh_connection_client();
    let chat = node.url("/v1/chat/completions");

    // A stream that has started (the client holds its first delta) and a completion, both
    // held at the upstream past the grace period.
    let response = client
        .post(&chat)
        .bearer_auth(&node.key)
        .json(&chat_body("gated", true, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stream_id: Uuid = response.headers()[common::REQUEST_ID]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    while !received.contains(fake_openai::STREAM_DELTAS[0]) {
        let chunk = stream.next().await.expect("more").expect("a chunk");
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let completion = tokio::spawn(call(
        client.clone(),
        chat.clone(),
        node.key.clone(),
        chat_body("gated", false, false),
    ));
    node.fake.wait_gated(2, WAIT).await.unwrap();

    node.dp.send_sigterm().await;
    let rest = async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => received.push_str(std::str::from_utf8(&chunk).unwrap()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    .await;

    // The stream is cut, visibly: an error event and no [DONE].
    assert!(
        rest.is_ok(),
        "the body ends cleanly after the error event: {rest:?}"
    );
    let events = common::sse_data(&received);
    let last = common::last_event_without_done(&events);
    assert_eq!(last["error"]["code"], "shutting_down", "{received}");
    // The completion still waiting for its provider gets a 503 it can retry elsewhere.
    let completion = completion.await.unwrap();
    assert_eq!(completion.status, 503, "{completion:?}");
    assert_eq!(completion.retry_after.as_deref(), Some("1"));
    let body: Value = serde_json::from_str(completion.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");

    let mut dp = node.dp;
    let status = dp
        .wait_exit(Duration::from_secs(1 + 5 + 10))
        .await
        .expect("the node exits within grace + drain");
    assert!(status.success(), "{status:?}\n{}", dp.logs_text());
    let node = Node { dp, ..node };

    // Both are metered, with the cut as their outcome.
    let events = node.usage_events().await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let stream_event = &events[&stream_id];
    assert_eq!(stream_event.len(), 1);
    assert_eq!(stream_event[0].outcome, UsageOutcome::Truncated);
    assert_eq!(stream_event[0].error_code.as_deref(), Some("shutting_down"));
    assert_eq!(stream_event[0].error_class.as_deref(), Some("shutdown"));
    assert!(stream_event[0].stream);
    // What it streamed before the cut is metered (the fake's usage chunk never came).
    assert!(stream_event[0].tokens_estimated);
    assert!(stream_event[0].completion_tokens > 0, "{stream_event:?}");
    let completion_event = &events[&completion.id];
    assert_eq!(completion_event.len(), 1);
    assert_eq!(completion_event[0].outcome, UsageOutcome::Error);
    assert_eq!(completion_event[0].status, 503);
    assert_eq!(
        completion_event[0].error_code.as_deref(),
        Some("shutting_down")
    );
    assert_eq!(completion_event[0].error_class.as_deref(), Some("shutdown"));
}
