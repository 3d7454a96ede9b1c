//! Gateway CORS (`SWITCHYARD_GATEWAY_CORS_ORIGINS`, `data_plane::http::cors`): preflights from
//! a listed origin are answered, other origins get no `access-control-*` header, and the
//! default sends none at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use data_plane::config::Settings;
use reqwest::Method;

const CONSOLE: &str = "https://console.example.com";

async fn preflight(gw: &Gateway, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-switchyard-tags",
        )
        .send()
        .await
        .unwrap()
}

fn access_control_headers(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn preflights_are_answered_for_listed_origins_only() {
    let gw = Gateway::start_with(Settings {
        gateway_cors_origins: Some(format!("{CONSOLE}, http://localhost:5173")),
        ..Settings::default()
    })
    .await;

    let ok = preflight(&gw, CONSOLE).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], CONSOLE);
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "authorization",
        "content-type",
        "x-api-key",
        "anthropic-version",
        "x-switchyard-tags",
        "x-switchyard-route",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(h.get("access-control-allow-credentials").is_none());

    // Another origin: nothing that would let a browser through, nor describe the API.
    let other = preflight(&gw, "https://evil.example").await;
    assert!(
        access_control_headers(&other).is_empty(),
        "{:?}",
        other.headers()
    );

    // A real call from the listed origin (unauthenticated here: the 401 still carries CORS
    // headers, so the browser shows the app the error) exposes the gateway's headers.
    let resp = reqwest::Client::new()
        .get(gw.url("/v1/models"))
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], CONSOLE);
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in [
        "x-switchyard-request-id",
        "x-switchyard-provider",
        "x-switchyard-deployment",
        "x-switchyard-route",
        "x-switchyard-region",
        "x-switchyard-attempts",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    // Paths outside /v1 are not covered.
    let health = reqwest::Client::new()
        .get(gw.url("/healthz"))
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert!(access_control_headers(&health).is_empty());
}

#[tokio::test]
async fn star_allows_any_origin_and_the_default_sends_no_cors_headers() {
    let gw = Gateway::start_with(Settings {
        gateway_cors_origins: Some("*".to_owned()),
        ..Settings::default()
    })
    .await;
    let any = preflight(&gw, "https://anyone.example").await;
    assert_eq!(any.headers()["access-control-allow-origin"], "*");

    let gw = Gateway::start().await;
    let off = preflight(&gw, CONSOLE).await;
    assert!(
        access_control_headers(&off).is_empty(),
        "{:?}",
        off.headers()
    );
}
