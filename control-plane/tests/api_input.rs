//! Hostile and careless input on the control API: unknown fields, oversized strings, wrong
//! types, credentials in URLs, internal upstream addresses (SSRF), oversized bodies and URIs,
//! on PostgreSQL and SQLite. Every answer must be a 4xx in our error shape that names the
//! field, never echoes more than a short preview of the input, and stores nothing.
//! Then the browser-facing protections: security headers and CORS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use control_plane::config::{Config, Secret};
use cp_support::{Answer, Cp, Session};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// The filler of oversized strings: a run of it in a message means input was echoed.
const FILL: char = 'Z';

fn big(n: usize) -> String {
    FILL.to_string().repeat(n)
}

/// Asserts a 4xx error in our shape whose message starts with `field_prefix` and repeats no
/// long run of the filler; returns the message.
#[track_caller]
fn refused(answer: Answer, status: u16, code: &str, field_prefix: &str) -> String {
    let ct = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let message = answer.expect_error(status, code);
    assert!(
        message.starts_with(field_prefix),
        "expected a message starting with {field_prefix:?}, got {message:?}"
    );
    assert!(
        !message.contains(&big(100)) && message.len() < 600,
        "the message echoes the input: {} bytes",
        message.len()
    );
    message
}

/// One bad request: method, path, body, and the expected status, code and message prefix.
struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: &'static str,
}

fn case(method: Method, path: &str, body: Option<Value>, field: &'static str) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body,
        status: 400,
        code: "validation_failed",
        field,
    }
}

async fn run(cp: &Cp, s: &Session, cases: Vec<Case>) {
    for c in cases {
        let answer = cp
            .call(c.method.clone(), &c.path, Some(&s.token), c.body.clone())
            .await;
        let shown: String = c.path.chars().take(60).collect();
        let message = refused(answer, c.status, c.code, c.field);
        eprintln!("{} {shown}: {message}", c.method);
    }
}

/// The bad-input table against the resources; nothing may be stored by any of it.
async fn bad_input_table(cp: &Cp) {
    let s = cp.signup().await;
    let (provider_id, _) = cp.mock_model(&s, "echo").await;
    let post =
        |path: &str, body: Value, field: &'static str| case(Method::POST, path, Some(body), field);
    let get = |path: &str, field: &'static str| case(Method::GET, path, None, field);
    let model = |over: Value| {
        let mut m = json!({"name": "m2", "provider_id": provider_id, "upstream_model": "mock-1",
            "input_price_per_mtok": 1, "output_price_per_mtok": 2});
        for (k, v) in over.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases = vec![
        // No silent acceptance: unknown fields are named, all of them.
        post(
            "/api/v1/keys",
            json!({"name": "k", "max_budget": 10, "rpm": 5}),
            "max_budget, rpm: unknown fields; accepted: name, team_id, models, expires_at, rpm_limit",
        ),
        post(
            "/api/v1/teams",
            json!({"name": "t", "budget": 1}),
            "budget: unknown field",
        ),
        post(
            "/api/v1/models",
            model(json!({"rpm": 5})),
            "rpm: unknown field",
        ),
        post(
            "/api/v1/providers",
            json!({"name": "p", "kind": "mock", "timeout": 5}),
            "timeout: unknown field",
        ),
        post(
            "/api/v1/catalog",
            json!({"id": "acme/x", "provider": "mock", "upstream_model": "x", "context_window": 8,
                "input_price_per_mtok": 1, "output_price_per_mtok": 1,
                "capabilities": {"tools": true, "telepathy": true}}),
            "capabilities.telepathy: unknown field",
        ),
        post(
            "/api/v1/keys",
            {
                let mut body = json!({"name": "k"});
                body[big(5000)] = json!(1);
                body
            },
            "ZZZZ",
        ),
        // Wrong types name the field.
        post(
            "/api/v1/keys",
            json!({"name": 5}),
            "name: must be a string, not integer",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "models": "gpt"}),
            "models: must be an array, not string",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "models": ["a", 7]}),
            "models[1]: must be a string",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "expires_at": 123}),
            "expires_at: must be a string",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "team_id": "nope"}),
            "team_id: must be a UUID",
        ),
        post(
            "/api/v1/models",
            model(json!({"max_output_tokens": -1})),
            "max_output_tokens: must be a non-negative integer",
        ),
        post(
            "/api/v1/models",
            model(json!({"mode": big(10_000)})),
            "mode: must be one of chat, embedding",
        ),
        post(
            "/api/v1/keys",
            json!(["name", "k"]),
            "body: must be a JSON object",
        ),
        // Oversized strings: refused at the cap, not echoed.
        post(
            "/api/v1/keys",
            json!({"name": big(201)}),
            "name: must be at most 200 characters",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "models": [big(300_000)]}),
            "models: must be at most 200 characters",
        ),
        post(
            "/api/v1/teams",
            json!({"name": big(100_000)}),
            "name: must be at most 200",
        ),
        post(
            "/api/v1/models",
            model(json!({"name": big(300_000)})),
            "name: must be at most 200",
        ),
        post(
            "/api/v1/models",
            model(json!({"upstream_model": big(300_000)})),
            "upstream_model: must be at most 200",
        ),
        post(
            "/api/v1/models",
            model(json!({"region": big(1000)})),
            "region: must be at most 200",
        ),
        post(
            "/api/v1/models",
            model(json!({"catalog_id": big(1000)})),
            "catalog_id: must be at most 200",
        ),
        post(
            "/api/v1/keys",
            json!({"name": "k", "expires_at": big(10_000)}),
            "expires_at: must be at most 64 bytes",
        ),
        post(
            "/api/v1/providers",
            json!({"name": "p", "kind": "openai_compatible", "base_url": format!("http://a.example/{}", big(3000))}),
            "base_url: must be at most 2048 bytes",
        ),
        post(
            "/api/v1/providers",
            json!({"name": "p", "kind": big(100_000)}),
            "kind: unknown provider kind",
        ),
        post(
            "/api/v1/providers",
            json!({"name": big(100_000), "kind": "mock"}),
            "name: must be at most 200",
        ),
        post(
            "/api/v1/catalog",
            json!({"id": "acme/x", "provider": big(50_000)}),
            "provider: unknown provider kind",
        ),
        post(
            "/api/v1/catalog",
            json!({"id": "acme/x", "provider": "mock", "upstream_model": "x", "context_window": 8,
                "input_price_per_mtok": 1, "output_price_per_mtok": 1, "source": format!("https://a.example/{}", big(5000))}),
            "source: must be at most 2048 bytes",
        ),
        // Credentials in a URL belong in the sealed fields.
        post(
            "/api/v1/providers",
            json!({"name": "p", "kind": "openai_compatible", "base_url": "https://admin:hunter2@api.example.com/v1"}),
            "base_url: must not contain credentials",
        ),
        post(
            "/api/v1/providers",
            json!({"name": "p", "kind": "openai_compatible", "base_url": "ftp://files.example.com"}),
            "base_url: must be an http:// or https:// URL",
        ),
        // Path segments and query strings.
        get(
            "/api/v1/keys/not-a-uuid",
            "id: the path parameter must be a UUID",
        ),
        get(
            &format!("/api/v1/providers/{}", big(4000)),
            "id: the path parameter must be a UUID",
        ),
        get(
            &format!("/api/v1/catalog/acme/{}", big(300)),
            "id: must be at most 200 characters",
        ),
        get(
            &format!("/api/v1/catalog?provider={}", big(5000)),
            "provider: unknown provider kind",
        ),
        get(
            "/api/v1/catalog?mode=turbo",
            "mode: must be chat or embedding",
        ),
        get(
            "/api/v1/catalog?providr=openai",
            "providr: unknown query parameter; accepted: provider, mode",
        ),
        get("/api/v1/usage?limit=ten", "limit:"),
        get(
            "/api/v1/usage?limit=5&max_budget=1",
            "max_budget: unknown query parameter",
        ),
        get(
            &format!("/api/v1/usage?since={}", big(3000)),
            "since: must be at most 64 bytes",
        ),
        Case {
            status: 414,
            code: "uri_too_long",
            ..get(
                &format!("/api/v1/keys?{}", big(20_000)),
                "the path and query string must be at most 8192 bytes",
            )
        },
        Case {
            status: 414,
            code: "uri_too_long",
            ..get(&format!("/{}", big(20_000)), "the path and query string")
        },
        Case {
            status: 404,
            code: "not_found",
            ..get("/api/v1/no-such-thing", "route not found")
        },
        Case {
            status: 405,
            code: "method_not_allowed",
            ..case(
                Method::PATCH,
                "/api/v1/keys",
                None,
                "this route does not support",
            )
        },
    ];
    run(cp, &s, cases).await;

    // A body over the cap: 413 in our shape, before any parsing.
    let answer = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "k", "models": [big(2 * 1024 * 1024)]}),
        )
        .await;
    refused(
        answer,
        413,
        "payload_too_large",
        "body: must be at most 1048576 bytes",
    );

    // A body that is not JSON at all, and one sent without a JSON content type.
    let resp = cp
        .client
        .post(format!("{}/api/v1/keys", cp.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"name\": \"k\",}")
        .send()
        .await
        .unwrap();
    let message = refused(
        into_answer(resp).await,
        400,
        "validation_failed",
        "body: is not valid JSON",
    );
    assert!(message.contains("line 1"), "{message}");
    let resp = cp
        .client
        .post(format!("{}/api/v1/keys", cp.base))
        .bearer_auth(&s.token)
        .body("name=k")
        .send()
        .await
        .unwrap();
    refused(
        into_answer(resp).await,
        400,
        "validation_failed",
        "body: must be JSON",
    );

    // None of it was stored.
    assert_eq!(
        cp.get("/api/v1/keys", &s.token).await.expect(200)["data"],
        json!([])
    );
    assert_eq!(
        cp.get("/api/v1/teams", &s.token).await.expect(200)["data"],
        json!([])
    );
    let providers = cp.get("/api/v1/providers", &s.token).await.expect(200);
    assert_eq!(
        providers["data"].as_array().unwrap().len(),
        1,
        "{providers}"
    );
    let models = cp.get("/api/v1/models", &s.token).await.expect(200);
    assert_eq!(models["data"].as_array().unwrap().len(), 1, "{models}");
}

async fn into_answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    }
}

#[tokio::test]
async fn bad_input_on_postgres() {
    let cp = Cp::start().await;
    bad_input_table(&cp).await;
    cp.stop().await;
}

#[tokio::test]
async fn bad_input_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    bad_input_table(&cp).await;
    cp.stop().await;
}

fn provider(base_url: &str) -> Value {
    json!({"name": format!("p-{}", uuid::Uuid::new_v4().simple()), "kind": "openai_compatible", "base_url": base_url})
}

/// Internal addresses in every spelling, refused when the policy allows none (what distributed
/// mode gets by default).
async fn ssrf_table(cp: &Cp, s: &Session) {
    for (url, what) in [
        (
            "http://169.254.169.254/latest/meta-data",
            "169.254.169.254 is a cloud metadata address",
        ),
        (
            "http://127.0.0.1:8080/v1",
            "127.0.0.1 is a loopback address",
        ),
        ("http://[::1]:6379", "::1 is a loopback address"),
        ("http://10.0.0.1/v1", "10.0.0.1 is a private address"),
        (
            "http://0.0.0.0:8081/v1",
            "0.0.0.0 is an unspecified address",
        ),
        ("http://2130706433/v1", "127.0.0.1 is a loopback address"),
        ("http://0177.0.0.1/v1", "127.0.0.1 is a loopback address"),
        (
            "http://[::ffff:127.0.0.1]/v1",
            "::ffff:127.0.0.1 is a loopback address",
        ),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "::ffff:169.254.169.254 is a cloud metadata address",
        ),
        (
            "http://100.64.1.1/v1",
            "100.64.1.1 is a carrier-grade NAT address",
        ),
        (
            "http://localhost:6379/v1",
            "host localhost resolves only to loopback addresses",
        ),
    ] {
        let answer = cp
            .post("/api/v1/providers", Some(&s.token), provider(url))
            .await;
        let message = refused(
            answer,
            400,
            "validation_failed",
            &format!("base_url: {what}"),
        );
        assert!(
            message.contains("SWITCHYARD_UPSTREAM_ALLOW_CIDRS"),
            "{message}"
        );
    }
    // A local kind without base_url: its default (localhost) is refused too, and says so.
    let answer = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "v", "kind": "vllm"}),
        )
        .await;
    refused(
        answer,
        400,
        "validation_failed",
        "base_url: is not set, and the default of kind vllm (http://localhost:8000/v1) is refused",
    );
    // A public address is fine; a name that does not resolve is accepted (checked again by the
    // data plane at connection time).
    for url in ["http://8.8.8.8/v1", "https://no-such-host.invalid/v1"] {
        cp.post("/api/v1/providers", Some(&s.token), provider(url))
            .await
            .expect(201);
    }
    let list = cp.get("/api/v1/providers", &s.token).await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn internal_addresses_are_refused_under_a_strict_policy_on_postgres() {
    let url = cp_support::database_url().await;
    let cp = Cp::start_configured(Some(url), |c| {
        c.settings.upstream_allow_cidrs = Some(String::new())
    })
    .await;
    let s = cp.signup().await;
    ssrf_table(&cp, &s).await;
    cp.stop().await;
}

#[tokio::test]
async fn distributed_mode_refuses_loopback_by_default() {
    let url = cp_support::database_url().await;
    let prefix = testkit::redis_prefix::fresh_prefix();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path(), Some(url));
    config.redis_url = Some(Secret::new(testkit::redis_prefix::redis_url()));
    config.redis_prefix = prefix.clone();
    config.master_key = Some(Secret::new(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ));
    config.jwt_secret = Some(Secret::new("a-jwt-secret-for-the-input-tests-0123456789"));
    assert!(
        config.settings.upstream_allow_cidrs.is_none(),
        "the default is under test"
    );
    let running = control_plane::start(config)
        .await
        .expect("control plane starts");
    let cp = Cp {
        base: running.base_url(),
        running,
        client: reqwest::Client::new(),
        dir,
    };
    let s = cp.signup().await;
    ssrf_table(&cp, &s).await;
    cp.stop().await;
    testkit::redis_prefix::delete_prefix(&testkit::redis_prefix::redis_url(), &prefix).await;
}

/// The zero-setup default allows loopback (a local vLLM or Ollama), nothing else internal; the
/// answers show the effective base_url and the normalized stored one.
async fn zero_setup_addresses(cp: &Cp) {
    let s = cp.signup().await;
    for url in [
        "http://169.254.169.254/",
        "http://10.0.0.1/v1",
        "http://[fd00::1]/v1",
    ] {
        let answer = cp
            .post("/api/v1/providers", Some(&s.token), provider(url))
            .await;
        refused(answer, 400, "validation_failed", "base_url: ");
    }
    let p = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            provider("http://2130706433:8000/v1/"),
        )
        .await
        .expect(201);
    assert_eq!(p["base_url"], "http://127.0.0.1:8000/v1", "{p}");
    assert_eq!(p["effective_base_url"], "http://127.0.0.1:8000/v1", "{p}");
    let v = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "local", "kind": "ollama"}),
        )
        .await
        .expect(201);
    assert_eq!(v["base_url"], Value::Null, "{v}");
    assert_eq!(v["effective_base_url"], "http://localhost:11434/v1", "{v}");
    let o = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "oa", "kind": "openai", "api_key": "sk-test"}),
        )
        .await
        .expect(201);
    assert_eq!(o["base_url"], Value::Null, "{o}");
    assert_eq!(o["effective_base_url"], "https://api.openai.com/v1", "{o}");
    let b = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "br", "kind": "bedrock", "region": "eu-west-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s"}),
        )
        .await
        .expect(201);
    assert_eq!(
        b["effective_base_url"], "https://bedrock-runtime.eu-west-1.amazonaws.com",
        "{b}"
    );
    let got = cp
        .get(
            &format!("/api/v1/providers/{}", o["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .expect(200);
    assert_eq!(
        got["effective_base_url"], "https://api.openai.com/v1",
        "{got}"
    );
    let list = cp.get("/api/v1/providers", &s.token).await.expect(200);
    let effective: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["effective_base_url"])
        .collect();
    assert_eq!(effective.len(), 4, "{list}");
    assert!(effective.iter().all(|e| e.is_string()), "{list}");
}

#[tokio::test]
async fn zero_setup_allows_loopback_only_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    zero_setup_addresses(&cp).await;
    cp.stop().await;
}

#[tokio::test]
async fn zero_setup_allows_loopback_only_on_postgres() {
    let cp = Cp::start().await;
    zero_setup_addresses(&cp).await;
    cp.stop().await;
}

// === Security headers and CORS ===

const CONSOLE: &str = "https://console.example.com";

#[track_caller]
fn assert_security_headers(h: &HeaderMap, what: &str) {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
}

#[tokio::test]
async fn security_headers_on_answers_and_errors() {
    let cp = Cp::start_configured(None, |c| {
        c.cors_origins = Some(CONSOLE.to_owned());
        c.hsts_max_age_secs = 31_536_000;
    })
    .await;
    let s = cp.signup().await;
    let ok = cp.get("/api/v1/keys", &s.token).await;
    let unauthorized = cp.call(Method::GET, "/api/v1/keys", None, None).await;
    let not_found = cp.call(Method::GET, "/api/nope", None, None).await;
    let health = cp.call(Method::GET, "/healthz", None, None).await;
    for (what, answer, status) in [
        ("json answer", &ok, 200),
        ("401", &unauthorized, 401),
        ("404", &not_found, 404),
        ("healthz", &health, 200),
    ] {
        assert_eq!(answer.status.as_u16(), status, "{what}: {}", answer.body);
        assert_security_headers(&answer.headers, what);
        assert_eq!(answer.headers["cache-control"], "no-store", "{what}");
        assert_eq!(
            answer.headers["content-security-policy"],
            control_plane::http::security::API_CSP,
            "{what}"
        );
        assert_eq!(
            answer.headers["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{what}"
        );
    }
    cp.stop().await;

    // Without HSTS configured (the default), none is sent.
    let cp = Cp::start_sqlite().await;
    let health = cp.call(Method::GET, "/healthz", None, None).await;
    assert_security_headers(&health.headers, "default config");
    assert!(health.headers.get("strict-transport-security").is_none());
    cp.stop().await;
}

/// The Swagger UI still loads under its CSP: every script and stylesheet index.html names is
/// served from the same origin (the CSP allows 'self' only), and the spec it fetches too.
#[tokio::test]
async fn swagger_ui_loads_under_its_csp() {
    let cp = Cp::start_sqlite().await;
    let resp = cp
        .client
        .get(format!("{}/docs/", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_security_headers(&headers, "/docs/");
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, control_plane::http::security::DOCS_CSP);
    for needed in [
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
    ] {
        assert!(csp.contains(needed), "{csp}");
    }
    let html = resp.text().await.unwrap();
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap();
            assert!(
                !target.contains("//"),
                "/docs/ loads {target} from another origin, which its CSP blocks"
            );
            assets.push(target.trim_start_matches("./").to_owned());
        }
    }
    assert!(html.contains("<script"), "{html}");
    assert!(
        !html.contains("<script>"),
        "no inline script (the CSP forbids it): {html}"
    );
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in &assets {
        let resp = cp
            .client
            .get(format!("{}/docs/{asset}", cp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
    let init = cp
        .client
        .get(format!("{}/docs/swagger-initializer.js", cp.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
    let spec = cp
        .client
        .get(format!("{}/api/v1/openapi.json", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    cp.stop().await;
}

async fn preflight(cp: &Cp, origin: &str) -> reqwest::Response {
    cp.client
        .request(Method::OPTIONS, format!("{}/api/v1/keys", cp.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn has_cors(h: &HeaderMap) -> bool {
    h.keys()
        .any(|k| k.as_str().starts_with("access-control-allow"))
}

#[tokio::test]
async fn cors_is_locked_to_the_configured_origins() {
    let cp = Cp::start_configured(None, |c| c.cors_origins = Some(CONSOLE.to_owned())).await;

    let ok = preflight(&cp, CONSOLE).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], CONSOLE);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    // The console's cookie-session headers.
    assert!(
        allowed.contains("x-switchyard-session") && allowed.contains("x-switchyard-csrf"),
        "{allowed}"
    );
    assert_security_headers(h, "preflight");

    let other = preflight(&cp, "https://evil.example").await;
    assert!(!has_cors(other.headers()), "{:?}", other.headers());

    // An actual request from the console: allowed, with the request id readable by its JS.
    let s = cp.signup().await;
    let resp = cp
        .client
        .get(format!("{}/api/v1/keys", cp.base))
        .bearer_auth(&s.token)
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], CONSOLE);
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-switchyard-request-id"), "{exposed}");
    let resp = cp
        .client
        .get(format!("{}/api/v1/keys", cp.base))
        .bearer_auth(&s.token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!has_cors(resp.headers()));
    cp.stop().await;

    // The default: same-origin only, no CORS header for anyone.
    let cp = Cp::start_sqlite().await;
    let resp = preflight(&cp, CONSOLE).await;
    assert!(!has_cors(resp.headers()), "{:?}", resp.headers());
    assert_eq!(
        HeaderValue::from_static("application/json"),
        resp.headers()["content-type"],
        "an OPTIONS without CORS configured is our JSON 405"
    );
    cp.stop().await;
}
