//! The request log (`GET /requests`, `GET /requests/{id}`), the CSV export
//! (`GET /usage/export`) and the budget forecast, over usage written through the usage writer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::collections::{BTreeMap, HashSet};

use control_plane::usage_store::DbUsageWriter;
use cp_support::Cp;
use serde_json::{Value, json};
use shared::money::format_usd;
use shared::usage::{FailedAttempt, UsageEvent, UsageOutcome, UsagePayload};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn event(tenant_id: Uuid, started_at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        tenant_id,
        key_id: None,
        team_id: None,
        model: "m".to_owned(),
        deployment_id: Some(Uuid::new_v4()),
        provider_id: Some(Uuid::new_v4()),
        provider: Some("mock".to_owned()),
        upstream_model: Some("mock-1".to_owned()),
        endpoint: "chat.completions".to_owned(),
        stream: false,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: 10,
        completion_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: 100,
        latency_ms: 12,
        ttft_ms: None,
        started_at,
        route: None,
        failed_attempts: Vec::new(),
        tags: BTreeMap::new(),
        region: Some("eu".to_owned()),
        error_class: None,
        cache_hit: false,
        payload: None,
        guardrails: Vec::new(),
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// `t` truncated to whole microseconds (what PostgreSQL keeps).
fn micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .expect("valid")
}

/// The seeded log of one organization: 230 events over the last 3 hours, some sharing a
/// timestamp, with two keys, three models, errors and tags.
struct Seeded {
    events: Vec<UsageEvent>,
    key_a: Uuid,
    key_b: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
}

async fn seed(cp: &Cp, tenant: &str) -> Seeded {
    let tenant_id: Uuid = tenant.parse().expect("tenant id");
    let now = micros(OffsetDateTime::now_utc());
    let from = now - time::Duration::hours(3);
    let key_a = Uuid::new_v4();
    let key_b = Uuid::new_v4();
    let mut events = Vec::new();
    for i in 0..230i64 {
        // Every 5 consecutive events share a timestamp, to exercise the id tie-break.
        let at =
            from + time::Duration::seconds((i / 5) * 200 + 1) + time::Duration::microseconds(7);
        let mut e = event(tenant_id, at);
        e.key_id = Some(if i % 2 == 0 { key_a } else { key_b });
        e.model = ["alpha", "beta", "gamma"][(i % 3) as usize].to_owned();
        if i % 7 == 0 {
            e.status = 502;
            e.outcome = UsageOutcome::Error;
            e.error_code = Some("upstream_error".to_owned());
            e.error_class = Some("upstream_error".to_owned());
        }
        if i % 4 == 0 {
            e.tags.insert("env".to_owned(), "prod".to_owned());
        } else if i % 4 == 1 {
            e.tags.insert("env".to_owned(), "dev".to_owned());
        }
        e.cost_micros = 1000 + i;
        events.push(e);
    }
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&events)
        .await
        .expect("seed usage");
    Seeded {
        events,
        key_a,
        key_b,
        from: from - time::Duration::minutes(1),
        to: now + time::Duration::minutes(1),
    }
}

/// Ids of `events` newest first, as the log orders them: `(started_at, id)` descending.
fn newest_first<'a>(events: impl Iterator<Item = &'a UsageEvent>) -> Vec<String> {
    let mut v: Vec<&UsageEvent> = events.collect();
    v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    v.iter().map(|e| e.id.to_string()).collect()
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every page of `query` (limit `page`), following `next_cursor`; asserts no repeats.
async fn all_pages(cp: &Cp, token: &str, query: &str, page: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/requests?{query}&limit={page}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let body = cp.get(&path, token).await.expect(200);
        for id in ids(&body) {
            assert!(seen.insert(id.clone()), "{id} repeated across pages");
            out.push(id);
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn request_log_searches_and_paginates_without_skips_or_repeats() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let s = seed(&cp, &a.tenant_id).await;
    let range = format!("from={}&to={}", ts(s.from), ts(s.to))
        .replace('+', "%2B")
        .replace(':', "%3A");

    // Everything, paged by 7: the seeded order exactly.
    let all = all_pages(&cp, &a.token, &range, 7).await;
    assert_eq!(all, newest_first(s.events.iter()));
    // The default range (last 24 hours) holds them too.
    let body = cp
        .get("/api/v1/requests?limit=200", &a.token)
        .await
        .expect(200);
    assert_eq!(
        ids(&body),
        newest_first(s.events.iter())
            .into_iter()
            .take(200)
            .collect::<Vec<_>>()
    );

    // By key, model, status, outcome, tag.
    let by_key = all_pages(&cp, &a.token, &format!("{range}&key_id={}", s.key_a), 13).await;
    assert_eq!(
        by_key,
        newest_first(s.events.iter().filter(|e| e.key_id == Some(s.key_a)))
    );
    let by_model = all_pages(&cp, &a.token, &format!("{range}&model=beta"), 50).await;
    assert_eq!(
        by_model,
        newest_first(s.events.iter().filter(|e| e.model == "beta"))
    );
    let by_status = all_pages(&cp, &a.token, &format!("{range}&status=502"), 50).await;
    assert_eq!(
        by_status,
        newest_first(s.events.iter().filter(|e| e.status == 502))
    );
    assert!(!by_status.is_empty());
    let by_outcome = all_pages(&cp, &a.token, &format!("{range}&outcome=error"), 50).await;
    assert_eq!(by_outcome, by_status);
    let by_tag = all_pages(&cp, &a.token, &format!("{range}&tag=env%3Aprod"), 9).await;
    assert_eq!(
        by_tag,
        newest_first(
            s.events
                .iter()
                .filter(|e| e.tags.get("env").map(String::as_str) == Some("prod"))
        )
    );
    let combined = all_pages(
        &cp,
        &a.token,
        &format!("{range}&key_id={}&model=alpha&tag=env%3Adev", s.key_b),
        50,
    )
    .await;
    assert_eq!(
        combined,
        newest_first(s.events.iter().filter(|e| e.key_id == Some(s.key_b)
            && e.model == "alpha"
            && e.tags.get("env").map(String::as_str) == Some("dev")))
    );

    // By id: exactly that row, with its fields.
    let target = &s.events[42];
    let body = cp
        .get(&format!("/api/v1/requests?id={}", target.id), &a.token)
        .await
        .expect(200);
    assert_eq!(ids(&body), vec![target.id.to_string()]);
    let row = &body["data"][0];
    assert_eq!(row["model"], target.model);
    assert_eq!(row["cost_usd"], format_usd(target.cost_micros));
    assert_eq!(row["status"], target.status);
    assert_eq!(row["region"], "eu");
    assert_eq!(row["attempt_count"], 1);
    assert!(body["next_cursor"].is_null());

    // A key of the range outside it: nothing.
    let body = cp
        .get(
            &format!(
                "/api/v1/requests?key_id={}&to={}",
                s.key_a,
                ts(s.from).replace('+', "%2B")
            ),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(ids(&body), Vec::<String>::new());

    // Another organization sees none of it, not even by id.
    let b = cp.signup().await;
    let body = cp
        .get(&format!("/api/v1/requests?{range}"), &b.token)
        .await
        .expect(200);
    assert_eq!(ids(&body), Vec::<String>::new());
    cp.get(&format!("/api/v1/requests/{}", target.id), &b.token)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn request_log_refuses_bad_parameters() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("id=nope", "id"),
        ("key_id=nope", "key_id"),
        ("status=42", "status"),
        ("outcome=maybe", "outcome"),
        ("tag=novalue", "tag"),
        ("cursor=garbage", "cursor"),
        ("from=yesterday", "from"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "to"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("colour=blue", "colour"),
    ] {
        let message = cp
            .get(&format!("/api/v1/requests?{query}"), &a.token)
            .await
            .expect_error(400, "validation_failed");
        assert!(message.contains(field), "{query}: {message}");
    }
    cp.get(&format!("/api/v1/requests/{}", Uuid::now_v7()), &a.token)
        .await
        .expect_error(404, "not_found");
    cp.get("/api/v1/requests/not-a-uuid", &a.token)
        .await
        .expect_error(400, "validation_failed");
}

#[tokio::test]
async fn request_detail_shows_every_attempt_and_the_payload_only_when_stored() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant_id: Uuid = a.tenant_id.parse().expect("tenant id");
    // Opt in to payload storage (the organization setting).
    cp.patch(
        "/api/v1/organization",
        &a.token,
        json!({"store_payloads": true}),
    )
    .await
    .expect(200);

    let now = micros(OffsetDateTime::now_utc());
    let first = Uuid::new_v4();
    let second = Uuid::new_v4();
    let mut retried = event(tenant_id, now - time::Duration::minutes(5));
    retried.failed_attempts = vec![
        FailedAttempt {
            deployment_id: first,
            error_code: "upstream_timeout".to_owned(),
            error_class: Some(shared::config::RetryClass::Timeout),
            latency_ms: 3000,
            region: Some("us".to_owned()),
            status: None,
        },
        FailedAttempt {
            deployment_id: second,
            error_code: "upstream_error".to_owned(),
            error_class: Some(shared::config::RetryClass::ServerError),
            latency_ms: 40,
            region: Some("eu".to_owned()),
            status: Some(503),
        },
    ];
    retried.tags.insert("env".to_owned(), "prod".to_owned());
    retried.tags.insert("team".to_owned(), "search".to_owned());
    retried.payload = Some(UsagePayload {
        request: r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
        response: "hello there".to_owned(),
        truncated: false,
    });
    let plain = event(tenant_id, now - time::Duration::minutes(4));
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[retried.clone(), plain.clone()])
        .await
        .expect("seed usage");

    let body = cp
        .get(&format!("/api/v1/requests/{}", retried.id), &a.token)
        .await
        .expect(200);
    assert_eq!(body["id"], retried.id.to_string());
    assert_eq!(body["attempt_count"], 3);
    assert_eq!(body["tags"], json!({"env": "prod", "team": "search"}));
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{body}");
    assert_eq!(attempts[0]["number"], 1);
    assert_eq!(attempts[0]["deployment_id"], first.to_string());
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["error_code"], "upstream_timeout");
    assert_eq!(attempts[0]["error_class"], "timeout");
    assert_eq!(attempts[0]["latency_ms"], 3000);
    assert_eq!(attempts[0]["region"], "us");
    assert!(attempts[0]["status"].is_null());
    assert_eq!(attempts[1]["deployment_id"], second.to_string());
    assert_eq!(attempts[1]["status"], 503);
    assert_eq!(attempts[1]["error_class"], "server_error");
    assert_eq!(attempts[2]["number"], 3);
    assert_eq!(
        attempts[2]["deployment_id"],
        retried.deployment_id.expect("deployment").to_string()
    );
    assert_eq!(attempts[2]["outcome"], "success");
    assert_eq!(attempts[2]["status"], 200);
    assert_eq!(
        body["payload"]["request"],
        retried.payload.as_ref().unwrap().request
    );
    assert_eq!(body["payload"]["response"], "hello there");
    assert_eq!(body["payload"]["truncated"], false);

    let body = cp
        .get(&format!("/api/v1/requests/{}", plain.id), &a.token)
        .await
        .expect(200);
    assert_eq!(body["attempts"].as_array().map(Vec::len), Some(1));
    assert!(body["payload"].is_null(), "{body}");
    assert_eq!(body["tags"], json!({}));
}

/// A minimal RFC 4180 reader: records of fields, quotes handled.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' => {}
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[tokio::test]
async fn usage_export_is_csv_with_every_request_of_the_range() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant_id: Uuid = a.tenant_id.parse().expect("tenant id");
    let now = micros(OffsetDateTime::now_utc());
    let from = now - time::Duration::hours(2);
    // 2500 rows (more than one export page), one with text that needs escaping.
    let mut events: Vec<UsageEvent> = (0..2500)
        .map(|i| {
            let mut e = event(tenant_id, from + time::Duration::milliseconds(i * 2000 + 1));
            e.cost_micros = 1_234_567 + i;
            e
        })
        .collect();
    events[10].model = "odd, \"quoted\" model".to_owned();
    events[11].tags.insert("note".to_owned(), "a,b".to_owned());
    events[12].model = "=cmd".to_owned();
    let before = event(tenant_id, from - time::Duration::minutes(10));
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&events)
        .await
        .expect("seed usage");
    DbUsageWriter::new(cp.running.db().clone())
        .insert(std::slice::from_ref(&before))
        .await
        .expect("seed usage");

    let url = format!(
        "{}/api/v1/usage/export?from={}&to={}",
        cp.base,
        ts(from).replace('+', "%2B"),
        ts(now).replace('+', "%2B")
    );
    let resp = cp
        .client
        .get(&url)
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().expect("ascii");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .expect("ascii");
    assert!(cd.starts_with("attachment"), "{cd}");
    let text = resp.text().await.expect("body");
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        control_plane::http::usage::EXPORT_COLUMNS
            .map(str::to_owned)
            .to_vec()
    );
    let data = &rows[1..];
    assert_eq!(
        data.len(),
        events.len(),
        "one row per request, none outside the range"
    );
    let col = |name: &str| {
        control_plane::http::usage::EXPORT_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column")
    };
    // Oldest first, each row with its values.
    for (row, e) in data.iter().zip(&events) {
        assert_eq!(row.len(), control_plane::http::usage::EXPORT_COLUMNS.len());
        assert_eq!(row[col("id")], e.id.to_string());
        assert_eq!(row[col("cost_usd")], format_usd(e.cost_micros));
        assert_eq!(row[col("status")], e.status.to_string());
        assert_eq!(row[col("region")], "eu");
        assert_eq!(row[col("ttft_ms")], "");
    }
    assert_eq!(data[10][col("model")], "odd, \"quoted\" model");
    let tags: Value = serde_json::from_str(&data[11][col("tags")]).expect("tags are JSON");
    assert_eq!(tags, json!({"note": "a,b"}));
    assert_eq!(data[12][col("model")], "'=cmd", "formula guarded");
    assert!(!text.contains(&before.id.to_string()));

    // Another organization's export is only the header.
    let b = cp.signup().await;
    let text = cp
        .client
        .get(&url)
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    assert_eq!(parse_csv(&text).len(), 1);
    // A bad range is a 400 in the error format.
    cp.get("/api/v1/usage/export?from=nope", &a.token)
        .await
        .expect_error(400, "validation_failed");
}

/// Forecast as documented: spent × period / max(elapsed, 1 h), rounded half up.
fn expected_forecast(
    spent: i64,
    start: OffsetDateTime,
    end: OffsetDateTime,
    now: OffsetDateTime,
) -> i64 {
    let total = (end - start).whole_seconds() as i128;
    let elapsed = ((now - start).whole_seconds().max(3600) as i128).min(total);
    let f = (2 * spent as i128 * total + elapsed) / (2 * elapsed);
    (f as i64).max(spent)
}

fn usd_micros(v: &Value) -> i64 {
    shared::money::parse_usd(v.as_str().expect("decimal string")).expect("usd")
}

#[tokio::test]
async fn budgets_show_spend_and_a_linear_forecast() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let tenant_id: Uuid = a.tenant_id.parse().expect("tenant id");
    let monthly = cp
        .post(
            "/api/v1/budgets",
            Some(&a.token),
            json!({"scope": "tenant", "limit_usd": "100", "period": "monthly"}),
        )
        .await
        .expect(201);
    let lifetime = cp
        .post(
            "/api/v1/budgets",
            Some(&a.token),
            json!({"scope": "tenant", "limit_usd": "100", "period": "lifetime"}),
        )
        .await
        .expect(201);
    assert_eq!(monthly["forecast_method"], "linear_extrapolation");
    let start = OffsetDateTime::parse(monthly["period_start"].as_str().unwrap(), &Rfc3339).unwrap();
    let end = OffsetDateTime::parse(monthly["period_end"].as_str().unwrap(), &Rfc3339).unwrap();

    // $2.50 spent in this period (a minute ago, so inside the window).
    let mut e = event(
        tenant_id,
        micros(OffsetDateTime::now_utc()) - time::Duration::seconds(1),
    );
    if e.started_at < start {
        e.started_at = start;
    }
    e.cost_micros = 2_500_000;
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[e])
        .await
        .expect("seed usage");

    let t1 = OffsetDateTime::now_utc();
    let body = cp
        .get(
            &format!("/api/v1/budgets/{}", monthly["id"].as_str().unwrap()),
            &a.token,
        )
        .await
        .expect(200);
    let t2 = OffsetDateTime::now_utc();
    assert_eq!(body["spent_usd"], "2.5");
    let forecast = usd_micros(&body["forecast_usd"]);
    // The forecast falls as time passes at the same spend: it lies between the two bounds.
    let high = expected_forecast(2_500_000, start, end, t1 - time::Duration::seconds(1));
    let low = expected_forecast(2_500_000, start, end, t2 + time::Duration::seconds(1));
    assert!(
        (low..=high).contains(&forecast),
        "{low} <= {forecast} <= {high}"
    );
    assert!(forecast >= 2_500_000);

    let list = cp.get("/api/v1/budgets", &a.token).await.expect(200);
    let lt = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == lifetime["id"])
        .expect("lifetime budget listed");
    assert!(lt["forecast_usd"].is_null());
    assert_eq!(lt["forecast_method"], "linear_extrapolation");
    assert_eq!(lt["spent_usd"], "2.5");
}

/// SQLite: timestamps are text there (compared through `julianday`) and tags are matched
/// with `json_each`; the log, its cursor, the tag search, the payload rule and the export
/// behave the same.
#[tokio::test]
async fn request_log_and_export_work_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let a = cp.signup().await;
    let s = seed(&cp, &a.tenant_id).await;
    let range = format!("from={}&to={}", ts(s.from), ts(s.to))
        .replace('+', "%2B")
        .replace(':', "%3A");
    let all = all_pages(&cp, &a.token, &range, 11).await;
    assert_eq!(all, newest_first(s.events.iter()));
    let by_tag = all_pages(
        &cp,
        &a.token,
        &format!("{range}&tag=env%3Adev&key_id={}", s.key_b),
        4,
    )
    .await;
    assert_eq!(
        by_tag,
        newest_first(
            s.events.iter().filter(|e| e.key_id == Some(s.key_b)
                && e.tags.get("env").map(String::as_str) == Some("dev"))
        )
    );
    assert!(!by_tag.is_empty());

    let text = cp
        .client
        .get(format!("{}/api/v1/usage/export?{range}", cp.base))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 1 + s.events.len());
    let mut exported: Vec<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
    let mut want: Vec<String> = newest_first(s.events.iter());
    want.reverse();
    assert_eq!(exported.len(), want.len());
    exported.dedup();
    assert_eq!(exported, want, "oldest first, once each");

    // A payload sent for an organization that did not opt in is not shown.
    let tenant_id: Uuid = a.tenant_id.parse().expect("tenant id");
    let mut e = event(
        tenant_id,
        micros(OffsetDateTime::now_utc()) - time::Duration::minutes(1),
    );
    e.payload = Some(UsagePayload {
        request: "{}".to_owned(),
        response: "secret".to_owned(),
        truncated: false,
    });
    DbUsageWriter::new(cp.running.db().clone())
        .insert(std::slice::from_ref(&e))
        .await
        .expect("seed usage");
    let body = cp
        .get(&format!("/api/v1/requests/{}", e.id), &a.token)
        .await
        .expect(200);
    assert!(body["payload"].is_null(), "{body}");
}
