//! Rate limits (issue 10): key, team and organization RPM/TPM across nodes sharing a real Redis
//! (fresh prefix per test), in memory (zero-setup), and with Redis unreachable; the
//! `x-ratelimit-*` headers; the Lua-free pieces (reset format, client address).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod governance_support;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use data_plane::config::Settings;
use data_plane::governance::limits::format_reset;
use data_plane::pipeline::authenticate::client_ip;
use futures::future::join_all;
use governance_support::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use shared::governance::RateLimits;
use uuid::Uuid;

fn rpm(limit: u32) -> RateLimits {
    RateLimits {
        rpm_limit: Some(limit),
        tpm_limit: None,
    }
}

fn tpm(limit: u64) -> RateLimits {
    RateLimits {
        rpm_limit: None,
        tpm_limit: Some(limit),
    }
}

/// Asserts a 429 `rate_limit_exceeded` of `kind` with `Retry-After` and the headers; returns
/// the error object.
async fn assert_limited(response: reqwest::Response, kind: &str) -> Value {
    assert_eq!(response.status(), 429);
    let retry: u64 = header(&response, "retry-after")
        .parse()
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(!header(&response, &format!("x-ratelimit-limit-{kind}")).is_empty());
    let remaining = header(&response, &format!("x-ratelimit-remaining-{kind}"));
    assert!(!remaining.is_empty());
    if kind == "requests" {
        assert_eq!(remaining, "0");
    }
    assert!(!header(&response, &format!("x-ratelimit-reset-{kind}")).is_empty());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_admit_exactly_the_rpm_limit_of_200_concurrent_requests() {
    let cluster = Cluster::start(2, Counting::Redis, Settings::default()).await;
    // Each node opens its rate-limit connection first, as a node in service already has.
    let (warm, _) = cluster.add_key(|k| k.limits = rpm(1000));
    for node in 0..2 {
        assert_eq!(
            cluster.chat(node, &warm, &hello(Some(8))).await.status(),
            200
        );
    }
    let (key, _) = cluster.add_key(|k| k.limits = rpm(100));
    let requests = (0..200).map(|i| {
        let cluster = &cluster;
        let key = &key;
        async move { cluster.chat(i % 2, key, &hello(Some(16))).await }
    });
    let responses = join_all(requests).await;
    let mut ok = 0;
    let mut limited = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                assert_eq!(header(&response, "x-ratelimit-limit-requests"), "100");
                assert!(!header(&response, "x-ratelimit-remaining-requests").is_empty());
                assert!(header(&response, "x-ratelimit-reset-requests").ends_with('s'));
                ok += 1;
            }
            429 => {
                let error = assert_limited(response, "requests").await;
                let message = error["message"].as_str().unwrap();
                assert!(message.contains("API key"), "{message}");
                assert!(message.contains("Limit 100"), "{message}");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (100, 100));
}

#[tokio::test]
async fn team_and_organization_limits_cover_every_key_of_theirs() {
    let team = Uuid::new_v4();
    let cluster = Cluster::start(2, Counting::Redis, Settings::default()).await;
    cluster.set_tenant(|t| {
        t.team_limits.insert(team, rpm(3));
        t.limits = rpm(5);
    });
    let (a, _) = cluster.add_key(|k| k.team_id = Some(team));
    let (b, _) = cluster.add_key(|k| k.team_id = Some(team));
    let (other, _) = cluster.add_key(|_| {});

    // The team's 3 requests, from two keys on two nodes.
    for (node, key) in [(0, &a), (1, &b), (0, &b)] {
        let response = cluster.chat(node, key, &hello(Some(8))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "3");
    }
    let error = assert_limited(cluster.chat(1, &a, &hello(Some(8))).await, "requests").await;
    assert!(
        error["message"].as_str().unwrap().contains("team"),
        "{error}"
    );

    // The organization's limit (5) still has 2 for a key outside the team; its headers show
    // the organization's numbers, the only limit it is under.
    for node in [0, 1] {
        let response = cluster.chat(node, &other, &hello(Some(8))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "5");
    }
    let error = assert_limited(cluster.chat(0, &other, &hello(Some(8))).await, "requests").await;
    assert!(
        error["message"].as_str().unwrap().contains("organization"),
        "{error}"
    );
}

#[tokio::test]
async fn tokens_are_estimated_before_the_call_and_corrected_after() {
    let cluster = Cluster::start(1, Counting::Redis, Settings::default()).await;
    let (key, key_id) = cluster.add_key(|k| k.limits = tpm(1000));

    // More than the limit could ever hold: refused as `tokens`, nothing taken.
    let error = assert_limited(cluster.chat(0, &key, &hello(Some(2000))).await, "tokens").await;
    assert!(
        error["message"].as_str().unwrap().contains("tokens"),
        "{error}"
    );

    // Prompt (a few tokens) + max_tokens 500 are taken before the call.
    let response = cluster.chat(0, &key, &hello(Some(500))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "1000");
    let remaining: u64 = header(&response, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!((450..500).contains(&remaining), "{remaining}");
    assert!(header(&response, "x-ratelimit-remaining-requests").is_empty());

    // The fake reports 17 tokens in all: the meter puts the difference back.
    let keys = &cluster.prefix.as_ref().unwrap().keys;
    let hash = keys.rate(cluster.tenant_id, "key", key_id, "tpm");
    let mut conn = testkit::redis_prefix::connect().await.unwrap();
    testkit::poll::eventually("the estimate corrected to 17", WAIT, || {
        let mut conn = conn.clone();
        let hash = hash.clone();
        async move {
            let total: Option<u64> = conn.hget(&hash, "t").await.unwrap();
            total == Some(testkit::fake_openai::TOTAL_TOKENS)
        }
    })
    .await;
    let ttl: i64 = conn.ttl(&hash).await.unwrap();
    assert!((1..=70).contains(&ttl), "{ttl}");

    // With the room given back, a request that would not have fit before passes.
    let response = cluster.chat(0, &key, &hello(Some(900))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn without_a_client_max_the_deployments_output_limit_is_the_estimate() {
    let cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let provider = cluster.provider.clone();
    cluster.set_tenant(|t| {
        let mut d = deployment(&provider, MODEL);
        d.max_output_tokens = Some(300);
        t.deployments = vec![d];
    });
    let (key, _) = cluster.add_key(|k| k.limits = tpm(10_000));
    let response = cluster.chat(0, &key, &hello(None)).await;
    assert_eq!(response.status(), 200);
    let remaining: u64 = header(&response, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!((9_650..9_700).contains(&remaining), "{remaining}");

    // The key's max_tokens_per_request comes before the deployment's.
    let (capped, _) = cluster.add_key(|k| {
        k.limits = tpm(10_000);
        k.max_tokens_per_request = Some(50);
    });
    let response = cluster.chat(0, &capped, &hello(None)).await;
    let remaining: u64 = header(&response, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!((9_900..9_950).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn headers_come_on_streams_errors_and_anthropic_refusals() {
    let cluster = Cluster::start(1, Counting::Redis, Settings::default()).await;
    let (key, _) = cluster.add_key(|k| {
        k.limits = RateLimits {
            rpm_limit: Some(3),
            tpm_limit: Some(100_000),
        }
    });
    let mut body = hello(Some(16));
    body["stream"] = json!(true);
    let response = cluster.chat(0, &key, &body).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&response, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "2");
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "100000");
    assert!(header(&response, "x-ratelimit-reset-requests").ends_with('s'));
    let _ = response.text().await.unwrap();

    // An error after the limit stage (unknown model) carries them too.
    let response = cluster
        .chat(
            0,
            &key,
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "1");

    // /v1/messages: the same limit, Anthropic's format.
    let messages =
        json!({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]});
    let response = cluster.post(0, "/v1/messages", &key, &messages).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "0");
    let response = cluster.post(0, "/v1/messages", &key, &messages).await;
    assert_eq!(response.status(), 429);
    assert!(!header(&response, "retry-after").is_empty());
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "0");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    // A key under no limit gets no headers.
    let (free, _) = cluster.add_key(|_| {});
    let response = cluster.chat(0, &free, &hello(Some(8))).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "x-ratelimit-limit-requests").is_empty());
}

#[tokio::test]
async fn zero_setup_counts_in_memory() {
    let cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (key, _) = cluster.add_key(|k| k.limits = rpm(2));
    for _ in 0..2 {
        assert_eq!(cluster.chat(0, &key, &hello(Some(8))).await.status(), 200);
    }
    assert_limited(cluster.chat(0, &key, &hello(Some(8))).await, "requests").await;
}

#[tokio::test]
async fn with_redis_unreachable_each_node_counts_its_share() {
    let settings = Settings {
        node_count: 2,
        ..Settings::default()
    };
    let cluster = Cluster::start(1, Counting::Unreachable, settings).await;
    let (key, _) = cluster.add_key(|k| k.limits = rpm(10));
    let mut ok = 0;
    for _ in 0..8 {
        let response = cluster.chat(0, &key, &hello(Some(8))).await;
        match response.status().as_u16() {
            200 => {
                // The local share is what the headers say.
                assert_eq!(header(&response, "x-ratelimit-limit-requests"), "5");
                ok += 1;
            }
            429 => {
                assert_limited(response, "requests").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        ok, 5,
        "10 / 2 nodes, neither failing open nor refusing everything"
    );
}

#[tokio::test]
async fn usage_events_carry_the_keys_metadata_as_tags() {
    let mut cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (key, _) = cluster.add_key(|k| {
        k.metadata.insert("project".into(), "search".into());
    });
    assert_eq!(cluster.chat(0, &key, &hello(Some(8))).await.status(), 200);
    let event = cluster.next_usage(0).await;
    assert_eq!(
        event.tags.get("project").map(String::as_str),
        Some("search")
    );
}

#[tokio::test]
async fn request_tags_join_the_keys_metadata_which_wins_on_a_shared_name() {
    let mut cluster = Cluster::start(1, Counting::Memory, Settings::default()).await;
    let (key, _) = cluster.add_key(|k| {
        k.metadata.insert("project".into(), "search".into());
    });
    let response = cluster
        .http
        .post(cluster.url(0, "/v1/chat/completions"))
        .bearer_auth(&key)
        .header(
            "x-switchyard-tags",
            "feature=autocomplete, cohort=beta, project=spoofed",
        )
        .json(&hello(Some(8)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = cluster.next_usage(0).await;
    let tags: Vec<(&str, &str)> = event
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("cohort", "beta"),
            ("feature", "autocomplete"),
            ("project", "search")
        ]
    );

    // A malformed header is a 400 naming the header (and never echoing a value).
    let response = cluster
        .http
        .post(cluster.url(0, "/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-switchyard-tags", "just-a-word")
        .json(&hello(Some(8)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "x-switchyard-tags", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

#[test]
fn resets_are_formatted_like_openais() {
    assert_eq!(format_reset(20), "20ms");
    assert_eq!(format_reset(1_000), "1s");
    assert_eq!(format_reset(59_500), "59.5s");
    assert_eq!(format_reset(360_000), "6m0s");
    assert_eq!(format_reset(0), "0s");
    assert_eq!(
        format_reset(Duration::from_secs(3_723).as_millis() as u64),
        "1h2m3s"
    );
}

#[test]
fn the_client_address_is_the_peer_or_what_trusted_proxies_forwarded() {
    let trusted = vec![
        "10.0.0.0/8".parse().unwrap(),
        "192.168.1.1/32".parse().unwrap(),
    ];
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let mut headers = HeaderMap::new();
    headers.append(
        "x-forwarded-for",
        HeaderValue::from_static("1.1.1.1, 203.0.113.5"),
    );
    headers.append("x-forwarded-for", HeaderValue::from_static("192.168.1.1"));
    // Through two trusted proxies: the right-most untrusted address.
    assert_eq!(
        client_ip(ip("10.1.2.3"), &headers, &trusted),
        ip("203.0.113.5")
    );
    // From an untrusted peer the header is ignored.
    assert_eq!(
        client_ip(ip("198.51.100.1"), &headers, &trusted),
        ip("198.51.100.1")
    );
    // A malformed header: the peer.
    let mut bad = HeaderMap::new();
    bad.insert("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
    assert_eq!(client_ip(ip("10.1.2.3"), &bad, &trusted), ip("10.1.2.3"));
}

#[tokio::test]
async fn a_redis_outage_counts_the_local_share_until_redis_answers_again() {
    use data_plane::governance::limits::{Level, Limit, Metric, RateLimiter};
    let prefix = testkit::redis_prefix::PrefixGuard::new();
    let proxy = testkit::tcp_proxy::Proxy::start(testkit::redis_prefix::redis_addr().unwrap())
        .await
        .unwrap();
    let pool = data_plane::store::redis_pool(&proxy.url()).unwrap();
    let limiter = RateLimiter::new(Some((pool, prefix.keys.clone())), 4);
    let tenant = Uuid::new_v4();
    let limits = [Limit {
        level: Level::Key,
        id: Uuid::new_v4(),
        metric: Metric::Requests,
        limit: 1000,
        cost: 1,
    }];
    let shared = limiter.check(tenant, &limits).await;
    assert!(shared.admitted && !shared.local);
    assert_eq!(shared.standings[0].limit, 1000);

    proxy.set_up(false);
    // The lease the node already holds is spent first (it was taken in Redis); then the node
    // counts alone. A lease here is at most 1000 / (20 × 4) = 12.
    let mut alone = limiter.check(tenant, &limits).await;
    for _ in 0..12 {
        if alone.local {
            break;
        }
        alone = limiter.check(tenant, &limits).await;
    }
    assert!(alone.admitted && alone.local, "{alone:?}");
    assert_eq!(
        alone.standings[0].limit, 250,
        "1000 / SWITCHYARD_NODE_COUNT"
    );

    proxy.set_up(true);
    testkit::poll::eventually("counting in Redis again", WAIT, || {
        let limiter = limiter.clone();
        async move { !limiter.check(tenant, &limits).await.local }
    })
    .await;
}

/// A limiter on the shared test Redis (under `prefix`) for `nodes` nodes, and one RPM limit of
/// `limit` on a fresh key.
fn rpm_on_redis(
    prefix: &testkit::redis_prefix::PrefixGuard,
    nodes: u32,
    limit: u64,
) -> (
    data_plane::governance::limits::RateLimiter,
    [data_plane::governance::limits::Limit; 1],
) {
    use data_plane::governance::limits::{Level, Limit, Metric, RateLimiter};
    let pool = data_plane::store::redis_pool(&testkit::redis_prefix::redis_url()).unwrap();
    let limiter = RateLimiter::new(Some((pool, prefix.keys.clone())), nodes);
    let limits = [Limit {
        level: Level::Key,
        id: Uuid::new_v4(),
        metric: Metric::Requests,
        limit,
        cost: 1,
    }];
    (limiter, limits)
}

/// A limit far from its cap, checked 1,000 times on one node: the node's leases answer nearly
/// every check (sizes double from 4 up to limit / 20), and Redis's count never falls behind
/// what was admitted.
#[tokio::test]
async fn leases_answer_the_steady_state_without_a_redis_call_per_request() {
    let prefix = testkit::redis_prefix::PrefixGuard::new();
    let (limiter, limits) = rpm_on_redis(&prefix, 1, 100_000);
    let (tenant, key) = (Uuid::new_v4(), limits[0].id);
    for i in 0..1000 {
        let d = limiter.check(tenant, &limits).await;
        assert!(d.admitted && !d.local, "check {i}: {d:?}");
    }
    let calls = limiter.round_trips();
    assert!(calls <= 20, "{calls} script calls for 1000 checks");
    let mut redis = testkit::redis_prefix::connect().await.unwrap();
    let total: u64 = redis
        .hget(prefix.keys.rate(tenant, "key", key, "rpm"), "t")
        .await
        .unwrap();
    // Admitted plus what the node holds ahead: at most one lease (100_000 / 20) more.
    assert!(
        (1000..=1000 + 5000).contains(&total),
        "Redis counts {total}"
    );
}

/// Two nodes (two limiters on one Redis) and 1,000 concurrent checks against a limit of 400:
/// together they never admit more than the limit, and their leases leave next to nothing
/// unused while both still have demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_with_leases_never_admit_more_than_the_limit() {
    use data_plane::governance::limits::{Level, Limit, Metric, RateLimiter};
    let prefix = testkit::redis_prefix::PrefixGuard::new();
    let url = testkit::redis_prefix::redis_url();
    let nodes = [
        RateLimiter::new(
            Some((
                data_plane::store::redis_pool(&url).unwrap(),
                prefix.keys.clone(),
            )),
            2,
        ),
        RateLimiter::new(
            Some((
                data_plane::store::redis_pool(&url).unwrap(),
                prefix.keys.clone(),
            )),
            2,
        ),
    ];
    let tenant = Uuid::new_v4();
    let limits = [Limit {
        level: Level::Key,
        id: Uuid::new_v4(),
        metric: Metric::Requests,
        limit: 400,
        cost: 1,
    }];
    let checks = (0..1000).map(|i| {
        let node = nodes[i % 2].clone();
        async move { node.check(tenant, &limits).await }
    });
    let decisions = join_all(checks).await;
    assert!(
        decisions.iter().all(|d| !d.local),
        "Redis answered throughout"
    );
    let admitted = decisions.iter().filter(|d| d.admitted).count();
    assert!(admitted <= 400, "{admitted} admitted over a limit of 400");
    // Each node may still hold one lease (at most 400 / (20 × 2) = 10) when the other is refused.
    assert!(admitted >= 380, "only {admitted} of 400 admitted");
    let refused = decisions.iter().find(|d| !d.admitted).unwrap();
    assert!(refused.standings[0].retry_ms > 0);
}

/// What a node has leased and not spent goes back to the shared window after the lease's time.
#[tokio::test]
async fn an_unspent_lease_goes_back_to_the_window() {
    let prefix = testkit::redis_prefix::PrefixGuard::new();
    let (limiter, limits) = rpm_on_redis(&prefix, 1, 1000);
    let (tenant, key) = (Uuid::new_v4(), limits[0].id);
    let d = limiter.check(tenant, &limits).await;
    assert!(d.admitted);
    assert_eq!(
        d.standings[0].remaining, 999,
        "the lease counts as remaining"
    );
    let hash = prefix.keys.rate(tenant, "key", key, "rpm");
    let mut redis = testkit::redis_prefix::connect().await.unwrap();
    let taken: u64 = redis.hget(&hash, "t").await.unwrap();
    assert_eq!(taken, 5, "the request and a lease of four");
    testkit::poll::eventually("the unspent lease is given back", WAIT, || {
        let (mut redis, hash) = (redis.clone(), hash.clone());
        async move { redis.hget::<_, _, u64>(&hash, "t").await.unwrap() == 1 }
    })
    .await;
}

/// A check dropped while its lease grant is in flight (a shutdown cutting the request) ends
/// that grant: the next check does not wait for a call that will never answer.
#[tokio::test]
async fn a_dropped_check_does_not_leave_its_grant_in_flight() {
    use data_plane::governance::limits::RateLimiter;
    let prefix = testkit::redis_prefix::PrefixGuard::new();
    let (_, limits) = rpm_on_redis(&prefix, 1, 100_000);
    let pool = data_plane::store::redis_pool(&testkit::redis_prefix::redis_url()).unwrap();
    // Waiting for a grant would take this long: far beyond the bound below.
    let limiter = RateLimiter::with_redis_wait(
        Some((pool, prefix.keys.clone())),
        1,
        Duration::from_secs(30),
    );
    let tenant = Uuid::new_v4();
    // Polled once (the grant call starts and waits on the network), then dropped.
    let cut = tokio::time::timeout(Duration::ZERO, limiter.check(tenant, &limits)).await;
    assert!(cut.is_err(), "the check could not finish in one poll");
    let next = tokio::time::timeout(Duration::from_secs(5), limiter.check(tenant, &limits))
        .await
        .expect("the next check does not wait for the dropped grant");
    assert!(next.admitted && !next.local, "{next:?}");
}
