//! Budgets exact under concurrency: several independent [`Ledger`]s (one per simulated node) on
//! one real Redis key prefix, and the budget stage end to end through the gateway (zero-setup
//! ledger): 429 `budget_exceeded` in OpenAI's and Anthropic's formats, settles on every path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{Gateway, KeyOptions, deployment};
use data_plane::governance::ledger::{Claim, Ledger, LedgerOptions, Refusal, WindowKey};
use serde_json::{Value, json};
use shared::config::{ProviderKind, RedisKeys};
use shared::governance::{BudgetPeriod, BudgetRecord, BudgetScope};
use testkit::fake_openai::FakeOpenAi;
use testkit::redis_prefix::{PrefixGuard, redis_url};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn options() -> LedgerOptions {
    LedgerOptions {
        lease_ttl: Duration::from_secs(30),
        flush_interval: Duration::from_millis(20),
        idle_return: Duration::from_millis(100),
        // Generous: the test machine's CPUs are shared.
        redis_wait: Duration::from_secs(2),
    }
}

fn node(keys: &RedisKeys, options: LedgerOptions) -> Ledger {
    node_at(&redis_url(), keys, options)
}

fn node_at(url: &str, keys: &RedisKeys, options: LedgerOptions) -> Ledger {
    let pool = data_plane::store::redis_pool(url).expect("pool");
    Ledger::redis(pool, keys.clone(), options)
}

fn claim(limit: i64) -> Claim {
    Claim {
        window: WindowKey {
            tenant_id: Uuid::new_v4(),
            budget_id: Uuid::new_v4(),
            window_id: 1_764_979_200,
        },
        limit_micros: limit,
        hard: true,
        expire_at: Some(time::OffsetDateTime::now_utc().unix_timestamp() + 86_400),
    }
}

/// Reserves `need` and settles `actual` on `ledger` until refused; returns how many passed.
async fn drain(ledger: &Ledger, claims: &[Claim], need: i64, actual: i64) -> i64 {
    let mut admitted = 0;
    loop {
        match ledger.reserve(claims, need).await {
            Ok(hold) => {
                hold.settle(actual);
                admitted += 1;
            }
            Err(Refusal::Exceeded(_)) => return admitted,
            Err(Refusal::Unavailable) => panic!("Redis is up"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_hammering_one_budget_never_pass_the_cap() {
    let guard = PrefixGuard::new();
    let nodes: Vec<Ledger> = (0..4).map(|_| node(&guard.keys, options())).collect();
    // Worst case 1000 µ$, actual between 400 and 1000: a cap of 200 worst cases.
    let need = 1_000;
    let cap = 200 * need;
    let c = claim(cap);
    let admitted = Arc::new(AtomicI64::new(0));
    let spent = Arc::new(AtomicI64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..600 {
        let ledger = nodes[i % nodes.len()].clone();
        let (admitted, spent) = (Arc::clone(&admitted), Arc::clone(&spent));
        tasks.spawn(async move {
            if let Ok(hold) = ledger.reserve(&[c], need).await {
                tokio::task::yield_now().await;
                let actual = 400 + (i as i64 * 37) % 601;
                hold.settle(actual);
                admitted.fetch_add(1, Ordering::SeqCst);
                spent.fetch_add(actual, Ordering::SeqCst);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Every lease comes back (idle return), and everything is reported.
    testkit::poll::eventually("leases returned", WAIT, || async {
        let u = nodes[0].window_usage(c.window).await.unwrap();
        u.held_micros == 0 && u.spent_micros == spent.load(Ordering::SeqCst)
    })
    .await;
    // Then each node in turn spends what is left, until none can.
    let mut extra = 0;
    for ledger in &nodes {
        extra += drain(ledger, &[c], need, need).await;
    }
    for ledger in &nodes {
        assert!(ledger.shutdown().await);
    }
    let u = nodes[0].window_usage(c.window).await.unwrap();
    let total = spent.load(Ordering::SeqCst) + extra * need;
    assert_eq!(u.spent_micros, total, "every settle is recorded");
    assert_eq!(u.held_micros, 0);
    assert!(total <= cap, "spent {total} > cap {cap}");
    assert!(
        total > cap - need,
        "the cap allows more: spent {total}, cap {cap}"
    );
    assert!(admitted.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn far_from_the_cap_a_node_spends_a_lease_without_round_trips() {
    let guard = PrefixGuard::new();
    let ledger = node(&guard.keys, options());
    let need = 1_000;
    let c = claim(1_600 * need);
    let hold = ledger.reserve(&[c], need).await.unwrap();
    // Lease mode: a slice of avail / 16 is held in Redis for this node.
    let u = ledger.window_usage(c.window).await.unwrap();
    assert_eq!(u.held_micros, 100 * need);
    assert_eq!(ledger.local_free(c.window), 99 * need);
    hold.settle(need);
    // 98 more fit in the lease: no new grant.
    for _ in 0..98 {
        ledger.reserve(&[c], need).await.unwrap().settle(need);
    }
    assert_eq!(ledger.local_free(c.window), need);
    // The control plane's reconciliation with what the database recorded (all 99) while part
    // of it is still unreported inside the lease: nothing is counted twice.
    ledger.raise_spent(c.window, 99 * need).await.unwrap();
    ledger.flush().await;
    let u = ledger.window_usage(c.window).await.unwrap();
    assert_eq!(u.spent_micros, 99 * need);
    assert_eq!(u.held_micros, need, "only the unused part stays held");
    assert!(ledger.shutdown().await);
    let u = ledger.window_usage(c.window).await.unwrap();
    assert_eq!((u.spent_micros, u.held_micros), (99 * need, 0));
}

#[tokio::test]
async fn a_lowered_cap_applies_to_the_next_request_despite_a_held_lease() {
    let guard = PrefixGuard::new();
    let ledger = node(&guard.keys, options());
    let need = 1_000;
    let mut c = claim(1_600 * need);
    ledger.reserve(&[c], need).await.unwrap().settle(need);
    assert_eq!(ledger.local_free(c.window), 99 * need, "a lease is held");
    // The administrator lowers the cap below what was spent plus one request.
    c.limit_micros = 2 * need - 1;
    assert!(matches!(
        ledger.reserve(&[c], need).await,
        Err(Refusal::Exceeded(0))
    ));
    // The lease went back; the window holds only what was spent.
    ledger.flush().await;
    let u = ledger.window_usage(c.window).await.unwrap();
    assert_eq!((u.spent_micros, u.held_micros), (need, 0));
    // Raised again, it admits exactly what fits.
    c.limit_micros = 3 * need;
    assert_eq!(drain(&ledger, &[c], need, need).await, 2);
}

#[tokio::test]
async fn near_the_cap_a_node_reserves_exactly_and_returns_at_settle() {
    let guard = PrefixGuard::new();
    let ledger = node(&guard.keys, options());
    let need = 1_000;
    let c = claim(10 * need);
    let hold = ledger.reserve(&[c], need).await.unwrap();
    // Exact mode: nothing beyond the request's own need is held.
    assert_eq!(ledger.local_free(c.window), 0);
    assert_eq!(
        ledger.window_usage(c.window).await.unwrap().held_micros,
        need
    );
    hold.settle(300);
    // The unused 700 go back at once (the flusher is woken, not waiting for idleness).
    testkit::poll::eventually("remainder returned", WAIT, || async {
        let u = ledger.window_usage(c.window).await.unwrap();
        (u.spent_micros, u.held_micros) == (300, 0)
    })
    .await;
    // 9.7 worst cases left: 9 more pass.
    assert_eq!(drain(&ledger, &[c], need, need).await, 9);
}

#[tokio::test]
async fn all_budgets_of_a_request_or_none() {
    let guard = PrefixGuard::new();
    let ledger = node(&guard.keys, options());
    let roomy = claim(1_000_000);
    let mut tight = claim(1_500);
    tight.window.tenant_id = roomy.window.tenant_id;
    let first = ledger.reserve(&[roomy, tight], 1_000).await.unwrap();
    assert_eq!(
        ledger.reserve(&[roomy, tight], 1_000).await.unwrap_err(),
        Refusal::Exceeded(1)
    );
    first.settle(1_000);
    assert!(ledger.shutdown().await);
    let u = ledger.window_usage(roomy.window).await.unwrap();
    assert_eq!(
        (u.spent_micros, u.held_micros),
        (1_000, 0),
        "the refused request held nothing"
    );
    // Reconciliation raises the recorded spend, never lowers it.
    ledger.raise_spent(roomy.window, 5_000).await.unwrap();
    ledger.raise_spent(roomy.window, 10).await.unwrap();
    assert_eq!(
        ledger
            .window_usage(roomy.window)
            .await
            .unwrap()
            .spent_micros,
        5_000
    );
    // A soft budget never refuses, and counts.
    let mut soft = claim(10);
    soft.hard = false;
    soft.window.tenant_id = roomy.window.tenant_id;
    ledger.reserve(&[soft], 1_000).await.unwrap().settle(700);
    ledger.flush().await;
    assert_eq!(
        ledger.window_usage(soft.window).await.unwrap().spent_micros,
        700
    );
}

#[tokio::test]
async fn a_dead_nodes_leases_expire_and_the_budget_is_whole_again() {
    let guard = PrefixGuard::new();
    let short = LedgerOptions {
        lease_ttl: Duration::from_millis(400),
        idle_return: Duration::from_secs(60),
        ..options()
    };
    let need = 1_000;
    let c = claim(1_600 * need);
    let dead = node(&guard.keys, short.clone());
    let hold = dead.reserve(&[c], need).await.unwrap();
    let held = dead.window_usage(c.window).await.unwrap().held_micros;
    assert_eq!(held, 100 * need);
    // The node dies: nothing is returned to Redis (dropping the hold only releases it in the
    // node's own memory, which dies with it).
    drop(hold);
    drop(dead);
    let survivor = node(&guard.keys, short);
    testkit::poll::eventually("the dead lease reaped", WAIT, || async {
        survivor.window_usage(c.window).await.unwrap().held_micros == 0
    })
    .await;
    assert_eq!(drain(&survivor, &[c], need, need).await, 1_600);
}

#[tokio::test]
async fn redis_unreachable_serves_from_the_lease_then_refuses() {
    let guard = PrefixGuard::new();
    let redis = testkit::redis_prefix::redis_addr().unwrap();
    let proxy = testkit::tcp_proxy::Proxy::start(redis).await.unwrap();
    let ledger = node_at(&proxy.url(), &guard.keys, options());
    let observer = node(&guard.keys, options());
    let need = 1_000;
    let c = claim(1_600 * need);
    ledger.reserve(&[c], need).await.unwrap().settle(need);
    assert_eq!(ledger.local_free(c.window), 99 * need);

    proxy.set_up(false);
    // 99 more from the lease, without Redis; then refused (fail closed).
    for i in 0..99 {
        let hold = ledger
            .reserve(&[c], need)
            .await
            .unwrap_or_else(|e| panic!("request {i} within the lease: {e:?}"));
        hold.settle(need);
    }
    assert_eq!(
        ledger.reserve(&[c], need).await.unwrap_err(),
        Refusal::Unavailable
    );
    // Redis never saw the consumption yet.
    assert!(observer.window_usage(c.window).await.unwrap().spent_micros < 100 * need);

    proxy.set_up(true);
    testkit::poll::eventually("served again", WAIT, || async {
        match ledger.reserve(&[c], need).await {
            Ok(hold) => {
                hold.release_for_test();
                true
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(ledger.shutdown().await);
    let u = observer.window_usage(c.window).await.unwrap();
    assert_eq!(
        (u.spent_micros, u.held_micros),
        (100 * need, 0),
        "the outage's consumption reported"
    );
}

#[tokio::test]
async fn a_node_cut_off_past_its_lease_stops_spending_it_and_reports_later() {
    let guard = PrefixGuard::new();
    let redis = testkit::redis_prefix::redis_addr().unwrap();
    let proxy = testkit::tcp_proxy::Proxy::start(redis).await.unwrap();
    let short = LedgerOptions {
        lease_ttl: Duration::from_millis(400),
        idle_return: Duration::from_secs(60),
        ..options()
    };
    let stale = node_at(&proxy.url(), &guard.keys, short.clone());
    let observer = node(&guard.keys, short);
    let need = 1_000;
    let c = claim(1_600 * need);
    let hold = stale.reserve(&[c], need).await.unwrap();
    assert_eq!(stale.local_free(c.window), 99 * need);

    proxy.set_up(false);
    // Past the lease's expiry the node no longer spends its (reaped) lease.
    testkit::poll::eventually("the lease reaped", WAIT, || async {
        observer.window_usage(c.window).await.unwrap().held_micros == 0
    })
    .await;
    assert_eq!(
        stale.reserve(&[c], need).await.unwrap_err(),
        Refusal::Unavailable
    );
    // Its request finishes during the outage; the consumption is reported once Redis is back,
    // as spend only (the lease it came from is gone from `held` already).
    hold.settle(700);
    proxy.set_up(true);
    testkit::poll::eventually("the stale consumption reported", WAIT, || async {
        stale.flush().await;
        let u = observer.window_usage(c.window).await.unwrap();
        (u.spent_micros, u.held_micros) == (700, 0)
    })
    .await;
    // And the node works normally again, with a fresh lease.
    stale.reserve(&[c], need).await.unwrap().settle(need);
    assert!(stale.shutdown().await);
    let u = observer.window_usage(c.window).await.unwrap();
    assert_eq!((u.spent_micros, u.held_micros), (1_700, 0));
}

trait ReleaseForTest {
    fn release_for_test(self);
}

impl ReleaseForTest for data_plane::governance::ledger::Hold {
    fn release_for_test(self) {
        self.settle(0);
    }
}

// ---- End to end through the gateway (zero-setup, in-memory ledger) ----

struct Setup {
    gw: Gateway,
    _fake: FakeOpenAi,
    key: String,
}

/// A gateway whose team has a hard daily budget of `limit` µ$; deployments of `gpt-4o-mini`
/// cost 2.5 $/M in and 10 $/M out (the fake reports 12 prompt and 5 completion tokens: 80 µ$).
async fn setup(limit: i64) -> Setup {
    let fake = FakeOpenAi::start().await.expect("fake upstream");
    let gw = Gateway::start().await;
    let team = Uuid::new_v4();
    let key = gw.add_key(KeyOptions {
        team_id: Some(team),
        ..KeyOptions::default()
    });
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("{}/", fake.base_url())),
        Some("sk-provider-secret-0123456789"),
    );
    let d = deployment("gpt-4o-mini", &provider, "gpt-4o-mini");
    gw.set_tenant_with(vec![provider], vec![d], |config| {
        config.budgets.push(BudgetRecord {
            id: Uuid::new_v4(),
            scope: BudgetScope::Team,
            scope_id: team,
            limit_micros: limit,
            period: BudgetPeriod::Daily,
            timezone: "UTC".into(),
            hard: true,
            alert_thresholds: vec![],
        });
    });
    Setup {
        gw,
        _fake: fake,
        key,
    }
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 10,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

/// Sends chat requests until one is refused; returns the refusal and the costs of the
/// admitted ones (from their usage events).
async fn until_refused(s: &mut Setup) -> (reqwest::Response, Vec<i64>) {
    let mut costs = Vec::new();
    for _ in 0..100 {
        let response = s.gw.chat(&s.key, chat(false)).await;
        if response.status() != 200 {
            return (response, costs);
        }
        let _ = response.bytes().await;
        costs.push(s.gw.next_usage().await.cost_micros);
    }
    panic!("never refused");
}

#[tokio::test]
async fn over_budget_is_429_insufficient_quota_and_not_retried() {
    let mut s = setup(1_000).await;
    let (response, costs) = until_refused(&mut s).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["type"], "insufficient_quota", "{body}");
    assert_eq!(error["code"], "budget_exceeded", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("team budget"), "{message}");
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).date();
    assert!(
        message.contains(&format!("{tomorrow}T00:00:00Z")),
        "{message}"
    );
    // The refusal is metered as an error with its code.
    let event = s.gw.next_usage().await;
    assert_eq!(event.error_code.as_deref(), Some("budget_exceeded"));
    // Spent never passes the cap, and the cap is used up to within one worst case (each
    // request's worst case here: ~10 prompt tokens × 2.5 + 10 × 10 = ~125 µ$).
    let spent: i64 = costs.iter().sum();
    assert_eq!(costs.first(), Some(&80));
    assert!(spent <= 1_000, "{spent}");
    assert!(spent > 1_000 - 200, "{spent}");

    // Anthropic's format on /v1/messages.
    let response =
        s.gw.http
            .post(s.gw.url("/v1/messages"))
            .header("x-api-key", &s.key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({
                "model": "gpt-4o-mini",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "Say hello"}],
            }))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team budget"),
        "{body}"
    );
}

#[tokio::test]
async fn streams_whose_client_disconnects_still_settle() {
    let mut s = setup(1_000).await;
    let mut streamed = Vec::new();
    for _ in 0..5 {
        let mut response = s.gw.chat(&s.key, chat(true)).await;
        assert_eq!(response.status(), 200);
        // Read one chunk, then hang up.
        let _ = response.chunk().await;
        drop(response);
        streamed.push(s.gw.next_usage().await.cost_micros);
    }
    // Had the five holds leaked (~125 µ$ each), far less than the cap would be left.
    let (response, costs) = until_refused(&mut s).await;
    assert_eq!(response.status(), 429);
    let spent: i64 = streamed.iter().sum::<i64>() + costs.iter().sum::<i64>();
    assert!(spent <= 1_000, "{spent}");
    assert!(spent > 1_000 - 200, "{spent}");
}

#[tokio::test]
async fn requests_without_a_budget_are_not_limited() {
    let mut s = setup(1_000).await;
    // Another team's key: the team budget does not apply.
    let other = s.gw.add_key(KeyOptions::default());
    for _ in 0..20 {
        let response = s.gw.chat(&other, chat(false)).await;
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
        let _ = s.gw.next_usage().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_streamed_or_not_disconnecting_or_not_stay_under_the_cap() {
    let cap = 5_000;
    let mut s = setup(cap).await;
    let n = 120;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, url, key) = (
            s.gw.http.clone(),
            s.gw.url("/v1/chat/completions"),
            s.key.clone(),
        );
        tasks.spawn(async move {
            let stream = i % 2 == 0;
            let mut response = http
                .post(url)
                .bearer_auth(key)
                .json(&chat(stream))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status == 200 && i % 4 == 0 {
                // A client that hangs up after the first chunk.
                let _ = response.chunk().await;
                drop(response);
            } else {
                let _ = response.bytes().await;
            }
            status
        });
    }
    let mut admitted = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    let mut spent = 0;
    for _ in 0..n {
        spent += s.gw.next_usage().await.cost_micros;
    }
    assert!(admitted > 0 && admitted < n, "{admitted}");
    assert!(spent <= cap, "{spent}");
    // Every hold came back (none leaked by a disconnect): what is left is spendable.
    let (response, costs) = until_refused(&mut s).await;
    assert_eq!(response.status(), 429);
    let spent = spent + costs.iter().sum::<i64>();
    assert!(spent <= cap, "{spent}");
    assert!(spent > cap - 200, "{spent}");
}

// ---- Two gateway nodes on one Redis (distributed mode) ----

struct Node {
    addr: std::net::SocketAddr,
    state: data_plane::AppState,
    usage: tokio::sync::mpsc::Receiver<shared::usage::UsageEvent>,
}

async fn start_node(keys: &RedisKeys, master_key: &shared::crypto::MasterKey) -> Node {
    let url = redis_url();
    let pool = data_plane::store::redis_pool(&url).unwrap();
    let store = data_plane::store::ConfigStore::redis(pool, &url, keys.clone(), master_key.clone())
        .await
        .unwrap();
    let (tx, usage) = tokio::sync::mpsc::channel(1024);
    let state = data_plane::AppState::new(
        data_plane::config::Settings::default(),
        store,
        data_plane::usage_sink::UsageSink::in_memory(tx),
    )
    .unwrap();
    let addr = common::serve(data_plane::app(state.clone())).await;
    Node { addr, state, usage }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_redis_hold_a_team_budget_through_the_gateway() {
    let guard = PrefixGuard::new();
    let keys = &guard.keys;
    let master_key = shared::crypto::MasterKey::generate();
    let fake = FakeOpenAi::start().await.unwrap();

    // A key of a team with a hard daily budget of 20 000 µ$ (each request costs 80 µ$ and
    // reserves ~125 µ$).
    let cap = 20_000;
    let plaintext = shared::keys::generate_api_key();
    let mut record = bus_support::key_record(&shared::keys::hash_api_key(&plaintext), 1);
    let team = Uuid::new_v4();
    record.team_id = Some(team);
    let provider_id = Uuid::new_v4();
    let provider = shared::config::ProviderRecord {
        id: provider_id,
        name: "fake".into(),
        kind: ProviderKind::OpenAiCompatible,
        base_url: Some(format!("{}/", fake.base_url())),
        api_key_sealed: Some(
            master_key.seal("sk-provider-secret-0123456789", &provider_id.to_string()),
        ),
        options: Default::default(),
    };
    let d = deployment("gpt-4o-mini", &provider, "gpt-4o-mini");
    let budget_id = Uuid::new_v4();
    let config = shared::config::TenantConfig {
        tenant_id: record.tenant_id,
        version: 1,
        deployments: vec![d],
        providers: vec![provider],
        routes: Vec::new(),
        allowed_regions: None,
        team_regions: Default::default(),
        budgets: vec![BudgetRecord {
            id: budget_id,
            scope: BudgetScope::Team,
            scope_id: team,
            limit_micros: cap,
            period: BudgetPeriod::Daily,
            timezone: "Europe/Berlin".into(),
            hard: true,
            alert_thresholds: vec![],
        }],
        limits: Default::default(),
        team_limits: Default::default(),
        suspension: None,
        store_payloads: false,
        team_cache: Default::default(),
        guardrails: Vec::new(),
    };
    let mut c = bus_support::conn().await;
    bus_support::write_key(&mut c, keys, &record, true).await;
    bus_support::write_tenant(&mut c, keys, &config, true).await;

    let mut nodes = vec![
        start_node(keys, &master_key).await,
        start_node(keys, &master_key).await,
    ];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let n = 400;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = format!("http://{}/v1/chat/completions", nodes[i % 2].addr);
        let (http, key) = (http.clone(), plaintext.clone());
        tasks.spawn(async move {
            let mut response = http
                .post(url)
                .bearer_auth(key)
                .json(&chat(i % 3 != 0))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status == 200 && i % 5 == 0 {
                let _ = response.chunk().await;
                drop(response);
            } else {
                let _ = response.bytes().await;
            }
            status
        });
    }
    let mut admitted = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    let mut spent = 0;
    for (i, node) in nodes.iter_mut().enumerate() {
        for _ in 0..n / 2 {
            let event = tokio::time::timeout(WAIT, node.usage.recv())
                .await
                .unwrap_or_else(|_| panic!("node {i}: a usage event"))
                .unwrap();
            spent += event.cost_micros;
        }
    }
    assert!(admitted > 0 && admitted < n, "{admitted}");
    assert!(spent <= cap, "{spent}");

    // Then each node in turn until it is refused: nothing was leaked, the cap is reachable.
    for node in &mut nodes {
        loop {
            let response = http
                .post(format!("http://{}/v1/chat/completions", node.addr))
                .bearer_auth(&plaintext)
                .json(&chat(false))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            spent += tokio::time::timeout(WAIT, node.usage.recv())
                .await
                .unwrap()
                .unwrap()
                .cost_micros;
            if status == 429 {
                break;
            }
            assert_eq!(status, 200);
        }
    }
    assert!(spent <= cap, "{spent}");
    assert!(spent > cap - 200, "{spent}");

    // After both nodes return their leases, the ledger shows exactly what the events cost.
    for node in &nodes {
        assert!(node.state.ledger().shutdown().await);
    }
    let now = time::OffsetDateTime::now_utc();
    let window = config.budgets[0].window(now).unwrap();
    let u = nodes[0]
        .state
        .ledger()
        .window_usage(WindowKey {
            tenant_id: record.tenant_id,
            budget_id,
            window_id: window.id(),
        })
        .await
        .unwrap();
    assert_eq!((u.spent_micros, u.held_micros), (spent, 0));
}
