//! `GET /analytics/timeseries` and `GET /analytics/breakdown` against a seeded dataset whose
//! expected values the test computes itself from the events: counts, tokens, costs, cost per
//! 1K tokens, success rates, error classes and nearest-rank percentiles (the API's within the
//! documented 1% relative error).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::collections::BTreeMap;

use control_plane::usage_store::DbUsageWriter;
use cp_support::Cp;
use serde_json::Value;
use shared::money::format_usd;
use shared::usage::{UsageEvent, UsageOutcome};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// A small deterministic generator (64-bit LCG), so the dataset is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("valid time")
}

fn ts(secs: i64) -> String {
    at(secs).format(&Rfc3339).expect("format")
}

/// The dimensions the dataset varies over.
struct Dims {
    models: [&'static str; 3],
    teams: [Uuid; 2],
    keys: [Uuid; 4],
}

fn dims() -> Dims {
    Dims {
        models: ["gpt-a", "gpt-b", "claude-c"],
        teams: [Uuid::new_v4(), Uuid::new_v4()],
        keys: [
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        ],
    }
}

/// `n` events of `tenant` spread over `[start, start + span)`, with chosen latencies, TTFTs,
/// costs, errors, cache hits and tags.
fn dataset(
    tenant_id: Uuid,
    d: &Dims,
    start: i64,
    span: i64,
    n: usize,
    seed: u64,
) -> Vec<UsageEvent> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| {
            let model_i = rng.below(3) as usize;
            let key_i = rng.below(4) as usize;
            let team = d.teams[key_i % 2];
            // Latencies differ by model so per-model percentiles differ.
            let base = [80, 300, 1200][model_i];
            let latency = base + rng.below(base * 3) + if rng.below(50) == 0 { 5000 } else { 0 };
            let stream = rng.below(2) == 0;
            let ttft = stream.then(|| 20 + rng.below(latency / 2 + 1));
            let prompt = 10 + rng.below(2000);
            let completion = rng.below(800);
            let roll = rng.below(100);
            let (status, outcome, class) = match roll {
                0..=3 => (500, UsageOutcome::Error, Some("upstream_error")),
                4..=6 => (429, UsageOutcome::Error, Some("rate_limited")),
                7 => (504, UsageOutcome::Error, Some("upstream_timeout")),
                _ => (200, UsageOutcome::Success, None),
            };
            let mut tags = BTreeMap::new();
            match rng.below(3) {
                0 => {
                    tags.insert("env".to_owned(), "prod".to_owned());
                }
                1 => {
                    tags.insert("env".to_owned(), "dev".to_owned());
                    tags.insert("feature".to_owned(), "search".to_owned());
                }
                _ => {}
            }
            let started = start + (span * i as i64) / n as i64;
            UsageEvent {
                id: Uuid::now_v7(),
                tenant_id,
                key_id: Some(d.keys[key_i]),
                team_id: Some(team),
                model: d.models[model_i].to_owned(),
                deployment_id: Some(Uuid::from_u128(model_i as u128 + 1)),
                provider_id: None,
                provider: Some(if model_i == 2 { "anthropic" } else { "openai" }.to_owned()),
                upstream_model: None,
                endpoint: "chat.completions".to_owned(),
                stream,
                status,
                outcome,
                error_code: class.map(str::to_owned),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                tokens_estimated: false,
                cost_micros: (prompt * 3 + completion * 11) as i64,
                latency_ms: latency,
                ttft_ms: ttft,
                started_at: at(started) + time::Duration::milliseconds((i % 1000) as i64),
                route: Some(if model_i == 0 { "fast" } else { "smart" }.to_owned()),
                failed_attempts: Vec::new(),
                tags,
                region: Some(if key_i < 2 { "eu" } else { "us" }.to_owned()),
                error_class: class.map(str::to_owned),
                cache_hit: rng.below(10) == 0,
                payload: None,
                guardrails: Vec::new(),
            }
        })
        .collect()
}

async fn write(cp: &Cp, events: &[UsageEvent]) {
    DbUsageWriter::new(cp.running.db().clone())
        .insert(events)
        .await
        .expect("seed usage");
}

/// Nearest-rank quantile: the value of rank ⌈q·n⌉.
fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// Asserts the API's metrics object equals what `events` give.
#[track_caller]
fn check(what: &str, m: &Value, events: &[&UsageEvent]) {
    let n = events.len() as i64;
    assert_eq!(m["requests"], n, "{what}: requests");
    let successes = events
        .iter()
        .filter(|e| e.outcome == UsageOutcome::Success)
        .count() as i64;
    assert_eq!(m["successes"], successes, "{what}: successes");
    if n > 0 {
        let rate = m["success_rate"].as_f64().expect("success_rate");
        assert!(
            (rate - successes as f64 / n as f64).abs() < 1e-9,
            "{what}: success_rate {rate}"
        );
    } else {
        assert!(m["success_rate"].is_null());
    }
    let mut classes: BTreeMap<String, i64> = BTreeMap::new();
    for e in events {
        if let Some(c) = &e.error_class {
            *classes.entry(c.clone()).or_default() += 1;
        }
    }
    let got: BTreeMap<String, i64> =
        serde_json::from_value(m["error_classes"].clone()).expect("error_classes");
    assert_eq!(got, classes, "{what}: error_classes");
    let prompt: u64 = events.iter().map(|e| e.prompt_tokens).sum();
    let completion: u64 = events.iter().map(|e| e.completion_tokens).sum();
    assert_eq!(m["prompt_tokens"], prompt, "{what}");
    assert_eq!(m["completion_tokens"], completion, "{what}");
    assert_eq!(m["total_tokens"], prompt + completion, "{what}");
    let cost: i64 = events.iter().map(|e| e.cost_micros).sum();
    assert_eq!(m["cost_usd"], format_usd(cost), "{what}: cost_usd");
    assert_eq!(m["cost_micros"], cost, "{what}");
    let tokens = (prompt + completion) as i128;
    if tokens > 0 {
        // Cost per 1000 tokens, rounded half up to the µ$.
        let per_1k = ((cost as i128 * 1000 * 2 + tokens) / (2 * tokens)) as i64;
        assert_eq!(
            m["cost_per_1k_tokens_usd"],
            format_usd(per_1k),
            "{what}: per 1k"
        );
    } else {
        assert!(m["cost_per_1k_tokens_usd"].is_null(), "{what}");
    }
    let hits = events.iter().filter(|e| e.cache_hit).count() as i64;
    assert_eq!(m["cache_hits"], hits, "{what}: cache_hits");

    let mut lat: Vec<u64> = events.iter().map(|e| e.latency_ms).collect();
    lat.sort_unstable();
    let mut ttft: Vec<u64> = events.iter().filter_map(|e| e.ttft_ms).collect();
    ttft.sort_unstable();
    for (name, values, qs) in [
        (
            "latency_ms",
            &lat,
            &[("p50", 0.5), ("p95", 0.95), ("p99", 0.99)][..],
        ),
        ("ttft_ms", &ttft, &[("p50", 0.5), ("p95", 0.95)][..]),
    ] {
        for (p, q) in qs {
            let got = &m[name][p];
            if values.is_empty() {
                assert!(got.is_null(), "{what}: {name}.{p} {got}");
                continue;
            }
            let want = nearest_rank(values, *q);
            let got = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {name}.{p} missing"));
            // 1% relative (the sketch) plus the API's rounding to 0.01 ms.
            assert!(
                (got - want).abs() <= want * 0.01 + 0.01,
                "{what}: {name}.{p} = {got}, nearest rank {want}"
            );
        }
    }
}

fn group<'a>(body: &'a Value, value: Option<&str>) -> &'a Value {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|g| g["group"].as_str() == value)
        .unwrap_or_else(|| panic!("group {value:?} missing in {body}"))
}

fn in_range(events: &[UsageEvent], from: i64, to: i64) -> Vec<&UsageEvent> {
    events
        .iter()
        .filter(|e| {
            let t = e.started_at.unix_timestamp();
            t >= from && t < to
        })
        .collect()
}

/// The start of the current hour minus `hours` hours.
fn hours_ago(hours: i64) -> i64 {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    now - now.rem_euclid(HOUR) - hours * HOUR
}

fn q(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn breakdowns_match_the_seeded_events() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant: Uuid = a.tenant_id.parse().expect("tenant");
    let d = dims();
    let start = hours_ago(8);
    let events = dataset(tenant, &d, start, 6 * HOUR, 3000, 7);
    write(&cp, &events).await;
    let range = format!("from={}&to={}", q(&ts(start)), q(&ts(start + 6 * HOUR)));
    let all = in_range(&events, start, start + 6 * HOUR);
    assert_eq!(all.len(), 3000);

    // By model.
    let body = cp
        .get(
            &format!("/api/v1/analytics/breakdown?{range}&group_by=model"),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["group_by"], "model");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    check("total", &body["total"], &all);
    for model in d.models {
        let want: Vec<&UsageEvent> = all.iter().copied().filter(|e| e.model == model).collect();
        check(model, group(&body, Some(model)), &want);
    }
    // Ordered by requests, most first.
    let counts: Vec<i64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["requests"].as_i64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");

    // Without grouping: one group, the total.
    let body = cp
        .get(&format!("/api/v1/analytics/breakdown?{range}"), &a.token)
        .await
        .expect(200);
    check("ungrouped", group(&body, None), &all);

    // By team, key, provider, deployment, route, region, endpoint.
    for (dim, value_of) in [
        (
            "team",
            Box::new(|e: &UsageEvent| e.team_id.map(|u| u.to_string()))
                as Box<dyn Fn(&UsageEvent) -> Option<String>>,
        ),
        (
            "key",
            Box::new(|e: &UsageEvent| e.key_id.map(|u| u.to_string())),
        ),
        ("provider", Box::new(|e: &UsageEvent| e.provider.clone())),
        (
            "deployment",
            Box::new(|e: &UsageEvent| e.deployment_id.map(|u| u.to_string())),
        ),
        ("route", Box::new(|e: &UsageEvent| e.route.clone())),
        ("region", Box::new(|e: &UsageEvent| e.region.clone())),
        (
            "endpoint",
            Box::new(|e: &UsageEvent| Some(e.endpoint.clone())),
        ),
    ] {
        let body = cp
            .get(
                &format!("/api/v1/analytics/breakdown?{range}&group_by={dim}"),
                &a.token,
            )
            .await
            .expect(200);
        let mut values: Vec<Option<String>> = all.iter().map(|e| value_of(e)).collect();
        values.sort();
        values.dedup();
        assert_eq!(
            body["data"].as_array().map(Vec::len),
            Some(values.len()),
            "{dim}"
        );
        for v in values {
            let want: Vec<&UsageEvent> = all.iter().copied().filter(|e| value_of(e) == v).collect();
            check(&format!("{dim}={v:?}"), group(&body, v.as_deref()), &want);
        }
    }

    // By tag: only tagged events count, once per value.
    let body = cp
        .get(
            &format!("/api/v1/analytics/breakdown?{range}&group_by=tag:env"),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["group_by"], "tag:env");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    for v in ["prod", "dev"] {
        let want: Vec<&UsageEvent> = all
            .iter()
            .copied()
            .filter(|e| e.tags.get("env").map(String::as_str) == Some(v))
            .collect();
        check(&format!("env={v}"), group(&body, Some(v)), &want);
    }

    // Filters: team + model, a tag filter with a grouping, and a key.
    let team = d.teams[1];
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/breakdown?{range}&group_by=region&team_id={team}&model=gpt-b"
            ),
            &a.token,
        )
        .await
        .expect(200);
    let want: Vec<&UsageEvent> = all
        .iter()
        .copied()
        .filter(|e| e.team_id == Some(team) && e.model == "gpt-b")
        .collect();
    check("team+model", &body["total"], &want);
    let body = cp
        .get(
            &format!("/api/v1/analytics/breakdown?{range}&group_by=model&tag=feature:search&provider=openai"),
            &a.token,
        )
        .await
        .expect(200);
    for model in ["gpt-a", "gpt-b"] {
        let want: Vec<&UsageEvent> = all
            .iter()
            .copied()
            .filter(|e| {
                e.model == model
                    && e.provider.as_deref() == Some("openai")
                    && e.tags.get("feature").map(String::as_str) == Some("search")
            })
            .collect();
        check(&format!("search/{model}"), group(&body, Some(model)), &want);
    }
    let key = d.keys[3];
    let body = cp
        .get(
            &format!("/api/v1/analytics/breakdown?{range}&key_id={key}&route=smart&region=us&deployment_id={}", Uuid::from_u128(2)),
            &a.token,
        )
        .await
        .expect(200);
    let want: Vec<&UsageEvent> = all
        .iter()
        .copied()
        .filter(|e| {
            e.key_id == Some(key)
                && e.route.as_deref() == Some("smart")
                && e.region.as_deref() == Some("us")
                && e.deployment_id == Some(Uuid::from_u128(2))
        })
        .collect();
    assert!(!want.is_empty());
    check("key+route+region+deployment", &body["total"], &want);

    // A range that is not hour-aligned: minute rows at the edges, hour rows between.
    let (f, t) = (start + 37 * 60, start + 4 * HOUR + 11 * 60);
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/breakdown?from={}&to={}&group_by=model",
                q(&ts(f)),
                q(&ts(t))
            ),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["from"], ts(f));
    assert_eq!(body["to"], ts(t));
    check("unaligned", &body["total"], &in_range(&events, f, t));

    // `limit` keeps the biggest groups and says so.
    let body = cp
        .get(
            &format!("/api/v1/analytics/breakdown?{range}&group_by=key&limit=2"),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["truncated"], true);
    check("total with limit", &body["total"], &all);
}

#[tokio::test]
async fn timeseries_buckets_match_the_seeded_events() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant: Uuid = a.tenant_id.parse().expect("tenant");
    let d = dims();
    let start = hours_ago(7);
    let events = dataset(tenant, &d, start, 5 * HOUR, 2000, 11);
    write(&cp, &events).await;

    // By hour: 5 points, each bucket its own events.
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&interval=hour",
                q(&ts(start)),
                q(&ts(start + 5 * HOUR))
            ),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["interval"], "hour");
    let series = body["series"].as_array().expect("series");
    assert_eq!(series.len(), 1);
    assert!(series[0]["group"].is_null());
    let points = series[0]["points"].as_array().expect("points");
    assert_eq!(points.len(), 5);
    for (i, p) in points.iter().enumerate() {
        let b = start + i as i64 * HOUR;
        assert_eq!(p["timestamp"], ts(b));
        check(&format!("hour {i}"), p, &in_range(&events, b, b + HOUR));
    }
    check(
        "total",
        &body["total"],
        &in_range(&events, start, start + 5 * HOUR),
    );

    // By minute over 30 minutes, grouped by model.
    let f = start + HOUR + 10 * 60;
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&interval=minute&group_by=model",
                q(&ts(f)),
                q(&ts(f + 30 * 60))
            ),
            &a.token,
        )
        .await
        .expect(200);
    let series = body["series"].as_array().expect("series");
    assert_eq!(series.len(), 3);
    for s in series {
        let model = s["group"].as_str().expect("model");
        let points = s["points"].as_array().expect("points");
        assert_eq!(points.len(), 30);
        for (i, p) in points.iter().enumerate() {
            let b = f + i as i64 * 60;
            let want: Vec<&UsageEvent> = in_range(&events, b, b + 60)
                .into_iter()
                .filter(|e| e.model == model)
                .collect();
            check(&format!("{model} minute {i}"), p, &want);
        }
    }

    // Default interval for a 5-hour range is the minute; empty buckets are zeros.
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&group_by=tag:env&tag=env:prod",
                q(&ts(start - HOUR)),
                q(&ts(start + 4 * HOUR))
            ),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(body["interval"], "minute");
    let points = body["series"][0]["points"].as_array().expect("points");
    assert_eq!(points.len(), 300);
    assert_eq!(body["series"][0]["group"], "prod");
    assert_eq!(points[0]["requests"], 0);
    assert!(points[0]["latency_ms"]["p50"].is_null());
    let prod: Vec<&UsageEvent> = in_range(&events, start - HOUR, start + 4 * HOUR)
        .into_iter()
        .filter(|e| e.tags.get("env").map(String::as_str) == Some("prod"))
        .collect();
    check("prod total", &body["total"], &prod);

    // Another organization sees nothing of it.
    let b = cp.signup().await;
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&interval=hour",
                q(&ts(start)),
                q(&ts(start + 5 * HOUR))
            ),
            &b.token,
        )
        .await
        .expect(200);
    assert_eq!(body["total"]["requests"], 0);
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/breakdown?from={}&to={}&group_by=model",
                q(&ts(start)),
                q(&ts(start + 5 * HOUR))
            ),
            &b.token,
        )
        .await
        .expect(200);
    assert_eq!(body["data"], serde_json::json!([]));
    assert_eq!(body["total"]["requests"], 0);
}

/// Days ago, the minute rows are gone: the range is aligned to hours and read from day and
/// hour rows.
#[tokio::test]
async fn older_ranges_are_read_from_day_and_hour_rollups() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant: Uuid = a.tenant_id.parse().expect("tenant");
    let d = dims();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let day = now - now.rem_euclid(DAY) - 4 * DAY;
    let events = dataset(tenant, &d, day - 5 * HOUR, 34 * HOUR, 1500, 23);
    write(&cp, &events).await;

    let (f, t) = (day - 3 * HOUR, day + DAY + 2 * HOUR);
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/breakdown?from={}&to={}&group_by=team",
                q(&ts(f + 120)),
                q(&ts(t - 120))
            ),
            &a.token,
        )
        .await
        .expect(200);
    // Minute edges older than 48 hours are rounded out to the hour.
    assert_eq!(body["from"], ts(f));
    assert_eq!(body["to"], ts(t));
    let all = in_range(&events, f, t);
    check("days", &body["total"], &all);
    for team in d.teams {
        let want: Vec<&UsageEvent> = all
            .iter()
            .copied()
            .filter(|e| e.team_id == Some(team))
            .collect();
        check("team", group(&body, Some(&team.to_string())), &want);
    }

    // By day: two points (the range is aligned to whole days).
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&interval=day",
                q(&ts(day)),
                q(&ts(day + 2 * DAY))
            ),
            &a.token,
        )
        .await
        .expect(200);
    let points = body["series"][0]["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    check("day 0", &points[0], &in_range(&events, day, day + DAY));
    check(
        "day 1",
        &points[1],
        &in_range(&events, day + DAY, day + 2 * DAY),
    );
}

#[tokio::test]
async fn bad_analytics_parameters_are_400_naming_the_parameter() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let old = q(&ts(OffsetDateTime::now_utc().unix_timestamp() - 10 * DAY));
    let cases: Vec<(String, &str)> = vec![
        ("group_by=colour".into(), "group_by"),
        ("group_by=tag:".into(), "group_by"),
        ("interval=week".into(), "interval"),
        ("from=yesterday".into(), "from"),
        ("to=2026-13-01T00:00:00Z".into(), "to"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            "from",
        ),
        (
            "from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            "to",
        ),
        (format!("from={old}&interval=minute"), "interval"),
        (
            "from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z&interval=hour".into(),
            "interval",
        ),
        ("team_id=nope".into(), "team_id"),
        ("key_id=1234".into(), "key_id"),
        ("deployment_id=x".into(), "deployment_id"),
        ("tag=nocolon".into(), "tag"),
        ("tag=:v".into(), "tag"),
        ("group_by=tag:env&tag=team:x".into(), "tag"),
        ("limit=0".into(), "limit"),
        ("limit=51".into(), "limit"),
        ("colour=blue".into(), "colour"),
    ];
    for (query, field) in &cases {
        let message = cp
            .get(&format!("/api/v1/analytics/timeseries?{query}"), &a.token)
            .await
            .expect_error(400, "validation_failed");
        assert!(message.starts_with(field), "{query}: {message}");
    }
    for (query, field) in [
        ("interval=hour", "interval"),
        ("limit=1001", "limit"),
        ("group_by=nope", "group_by"),
    ] {
        let message = cp
            .get(&format!("/api/v1/analytics/breakdown?{query}"), &a.token)
            .await
            .expect_error(400, "validation_failed");
        assert!(message.contains(field), "{query}: {message}");
    }
    // Unauthenticated: 401.
    let answer = cp
        .call(
            reqwest::Method::GET,
            "/api/v1/analytics/breakdown",
            None,
            None,
        )
        .await;
    assert_eq!(answer.status.as_u16(), 401);
}

#[tokio::test]
async fn analytics_work_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let a = cp.signup().await;
    let tenant: Uuid = a.tenant_id.parse().expect("tenant");
    let d = dims();
    let start = hours_ago(5);
    let events = dataset(tenant, &d, start, 3 * HOUR, 600, 5);
    write(&cp, &events).await;
    let (f, t) = (start + 20 * 60, start + 3 * HOUR);
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/breakdown?from={}&to={}&group_by=key",
                q(&ts(f)),
                q(&ts(t))
            ),
            &a.token,
        )
        .await
        .expect(200);
    let all = in_range(&events, f, t);
    check("sqlite total", &body["total"], &all);
    for key in d.keys {
        let want: Vec<&UsageEvent> = all
            .iter()
            .copied()
            .filter(|e| e.key_id == Some(key))
            .collect();
        check("sqlite key", group(&body, Some(&key.to_string())), &want);
    }
    let body = cp
        .get(
            &format!(
                "/api/v1/analytics/timeseries?from={}&to={}&interval=hour&tag=env:dev",
                q(&ts(start)),
                q(&ts(t))
            ),
            &a.token,
        )
        .await
        .expect(200);
    let points = body["series"][0]["points"].as_array().expect("points");
    assert_eq!(points.len(), 3);
    for (i, p) in points.iter().enumerate() {
        let b = start + i as i64 * HOUR;
        let want: Vec<&UsageEvent> = in_range(&events, b, b + HOUR)
            .into_iter()
            .filter(|e| e.tags.get("env").map(String::as_str) == Some("dev"))
            .collect();
        check(&format!("sqlite hour {i}"), p, &want);
    }
}
