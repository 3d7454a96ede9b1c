//! The web console served by the control plane (`control_plane::http::console`): the SPA's
//! `index.html` for its paths, hashed assets with long-lived caching and ETags, JSON 404s for
//! API paths and missing files, the console's own CSP, and the zero-setup gateway untouched.
//! Asset names are discovered from the embedded bundle (a new build renames them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use control_plane::http::console::Dist;
use control_plane::http::security::{API_CSP, CONSOLE_CSP};
use cp_support::Cp;
use reqwest::Method;

async fn get(cp: &Cp, method: Method, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = cp.client.request(method, format!("{}{path}", cp.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", resp.headers()))
}

#[track_caller]
fn assert_console_headers(resp: &reqwest::Response, csp: &str) {
    assert_eq!(header(resp, "content-security-policy"), csp);
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(header(resp, "x-content-type-options"), "nosniff");
    assert_eq!(header(resp, "x-frame-options"), "DENY");
    assert_eq!(header(resp, "referrer-policy"), "same-origin");
}

/// A file under `assets/` in the embedded bundle.
fn some_asset() -> String {
    Dist::iter()
        .find(|name| name.starts_with("assets/"))
        .expect("the bundle has at least one asset")
        .into_owned()
}

#[tokio::test]
async fn spa_paths_get_index_html_uncached_under_the_console_csp() {
    let cp = Cp::start().await;
    let index = Dist::get("index.html").expect("index.html is embedded");
    for path in ["/", "/keys/abc", "/settings/members?tab=invites"] {
        let resp = get(&cp, Method::GET, path, &[]).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&resp, "cache-control"), "no-cache", "{path}");
        assert_console_headers(&resp, CONSOLE_CSP);
        assert!(resp.headers().contains_key("x-switchyard-request-id"));
        let etag = header(&resp, "etag").to_owned();
        assert_eq!(resp.bytes().await.unwrap(), index.data.as_ref(), "{path}");
        // Revalidation by ETag.
        let again = get(&cp, Method::GET, path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), 304, "{path}");
    }
    // HEAD: the headers, no body.
    let head = get(&cp, Method::HEAD, "/keys", &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "content-length"),
        index.data.len().to_string()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn assets_are_immutable_with_etags_and_missing_ones_are_json_404s() {
    let cp = Cp::start().await;
    let name = some_asset();
    let file = Dist::get(&name).unwrap();
    let path = format!("/{name}");
    let resp = get(&cp, Method::GET, &path, &[]).await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(
        header(&resp, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let mime = file.metadata.mimetype().to_owned();
    assert!(header(&resp, "content-type").starts_with(&mime), "{mime}");
    assert_console_headers(&resp, CONSOLE_CSP);
    let etag = header(&resp, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(resp.bytes().await.unwrap(), file.data.as_ref());

    let cached = get(&cp, Method::GET, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
    assert!(cached.bytes().await.unwrap().is_empty());
    let stale = get(&cp, Method::GET, &path, &[("if-none-match", "\"old\"")]).await;
    assert_eq!(stale.status(), 200);

    let head = get(&cp, Method::HEAD, &path, &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), file.data.len().to_string());

    for missing in ["/assets/index-doesnotexist.js", "/nope.txt", "/keys/x.png"] {
        let answer = cp.call(Method::GET, missing, None, None).await;
        answer.expect_error(404, "not_found");
    }
    // Only GET and HEAD reach the console.
    cp.call(Method::POST, "/keys", None, Some(serde_json::json!({})))
        .await
        .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn api_paths_keep_their_json_404s_and_the_gateway_is_untouched() {
    let cp = Cp::start().await;
    for path in ["/api/v1/nope", "/api", "/v1", "/docsx"] {
        let answer = cp.call(Method::GET, path, None, None).await;
        assert_eq!(answer.headers["content-security-policy"], API_CSP, "{path}");
        assert_eq!(answer.headers["cache-control"], "no-store", "{path}");
        answer.expect_error(404, "not_found");
    }
    // The embedded gateway answers /v1 in OpenAI's shape, as before.
    let models = cp.call(Method::GET, "/v1/models", None, None).await;
    assert_eq!(models.status, 401, "{}", models.body);
    assert!(models.body["error"]["type"].is_string(), "{}", models.body);
    let unknown = cp.call(Method::GET, "/v1/nope", None, None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown.body["error"]["type"].is_string(),
        "{}",
        unknown.body
    );
    // /docs is still the Swagger UI.
    let docs = get(&cp, Method::GET, "/docs/", &[]).await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
    cp.stop().await;
}

#[tokio::test]
async fn the_public_gateway_origin_joins_connect_src() {
    let cp = Cp::start_configured(Some(cp_support::database_url().await), |c| {
        c.public_gateway_url = Some("https://gateway.example.com/base".to_owned());
    })
    .await;
    let resp = get(&cp, Method::GET, "/", &[]).await;
    let csp = header(&resp, "content-security-policy");
    assert!(
        csp.contains("connect-src 'self' https://gateway.example.com;"),
        "{csp}"
    );
    assert_console_headers(&resp, csp);
    cp.stop().await;
}
