//! Cookie sessions for the web console (`x-switchyard-session: cookie`, see the module docs of
//! `control_plane::http::auth`) and `GET /api/v1/meta`, against a real control plane on
//! PostgreSQL. Cookies are handled by hand (no cookie store), so each test sees exactly what
//! the server set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::{Cp, PASSWORD};
use serde_json::{Value, json};

/// A raw answer: status, `Set-Cookie` lines and JSON body.
struct Raw {
    status: u16,
    set_cookies: Vec<String>,
    body: Value,
}

impl Raw {
    /// The `Set-Cookie` line of cookie `name`.
    fn set_cookie(&self, name: &str) -> &str {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", self.set_cookies))
    }

    /// The value the answer set for cookie `name`.
    fn cookie_value(&self, name: &str) -> String {
        let line = self.set_cookie(name);
        line[name.len() + 1..].split(';').next().unwrap().to_owned()
    }

    /// Asserts both session cookies are cleared (empty, `Max-Age=0`).
    #[track_caller]
    fn assert_cleared(&self) {
        for name in ["switchyard_refresh", "switchyard_csrf"] {
            let line = self.set_cookie(name);
            assert!(
                line.starts_with(&format!("{name}=;")) && line.contains("Max-Age=0"),
                "{line}"
            );
        }
    }
}

async fn post(cp: &Cp, path: &str, headers: &[(&str, &str)], body: Value) -> Raw {
    let mut req = cp.client.post(format!("{}{path}", cp.base)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let set_cookies = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Raw {
        status,
        set_cookies,
        body,
    }
}

/// Signs up a fresh user (body tokens) and logs in with a cookie session.
async fn cookie_login(cp: &Cp) -> (String, Raw) {
    let session = cp.signup().await;
    let login = post(
        cp,
        "/api/v1/auth/login",
        &[("x-switchyard-session", "cookie")],
        json!({"email": session.email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    (session.email, login)
}

fn cookie_header(refresh: &str, csrf: &str) -> String {
    format!("switchyard_refresh={refresh}; switchyard_csrf={csrf}")
}

#[tokio::test]
async fn cookie_login_sets_http_only_refresh_and_readable_csrf_cookies() {
    let cp = Cp::start().await;
    let (_, login) = cookie_login(&cp).await;
    assert_eq!(login.body["refresh_token"], "", "{}", login.body);
    assert!(login.body["access_token"].as_str().unwrap().len() > 20);

    let refresh = login.set_cookie("switchyard_refresh");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/v1/auth",
        "Max-Age=2592000",
    ] {
        assert!(refresh.contains(attr), "{attr} in {refresh}");
    }
    // Plain http, no HSTS, SWITCHYARD_COOKIE_SECURE=auto: no Secure.
    assert!(!refresh.contains("Secure"), "{refresh}");
    assert!(login.cookie_value("switchyard_refresh").len() >= 43);

    let csrf = login.set_cookie("switchyard_csrf");
    for attr in ["SameSite=Strict", "Path=/;", "Max-Age=2592000"] {
        assert!(csrf.contains(attr), "{attr} in {csrf}");
    }
    assert!(!csrf.contains("HttpOnly"), "{csrf}");
    assert_eq!(
        login.cookie_value("switchyard_csrf").len(),
        43,
        "32 bytes, base64url"
    );

    // Behind a TLS proxy (auto): Secure on both.
    let session = cp.signup().await;
    let tls = post(
        &cp,
        "/api/v1/auth/login",
        &[
            ("x-switchyard-session", "cookie"),
            ("x-forwarded-proto", "https"),
        ],
        json!({"email": session.email, "password": PASSWORD}),
    )
    .await;
    assert!(tls.set_cookie("switchyard_refresh").ends_with("; Secure"));
    assert!(tls.set_cookie("switchyard_csrf").ends_with("; Secure"));

    // Signup in cookie mode too.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let signup = post(
        &cp,
        "/api/v1/auth/signup",
        &[("x-switchyard-session", "cookie")],
        json!({"email": format!("c-{tag}@example.com"), "password": PASSWORD, "organization": "Cookie org"}),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    assert_eq!(signup.body["refresh_token"], "");
    signup.set_cookie("switchyard_refresh");
    signup.set_cookie("switchyard_csrf");
    cp.stop().await;
}

#[tokio::test]
async fn cookie_secure_can_be_forced() {
    let cp = Cp::start_configured(Some(cp_support::database_url().await), |c| {
        c.cookie_secure = control_plane::config::CookieSecure::True;
    })
    .await;
    let (_, login) = cookie_login(&cp).await;
    assert!(login.set_cookie("switchyard_refresh").ends_with("; Secure"));
    cp.stop().await;
}

#[tokio::test]
async fn cookie_refresh_needs_the_csrf_header_and_rotates_the_cookie() {
    let cp = Cp::start().await;
    let (_, login) = cookie_login(&cp).await;
    let refresh = login.cookie_value("switchyard_refresh");
    let csrf = login.cookie_value("switchyard_csrf");
    let cookies = cookie_header(&refresh, &csrf);

    // Missing and wrong CSRF header, or no CSRF cookie: 403 csrf_failed, the token untouched.
    let refresh_only = format!("switchyard_refresh={refresh}");
    for headers in [
        vec![("cookie", cookies.as_str())],
        vec![("cookie", cookies.as_str()), ("x-switchyard-csrf", "wrong")],
        vec![
            ("cookie", refresh_only.as_str()),
            ("x-switchyard-csrf", csrf.as_str()),
        ],
    ] {
        let refused = post(&cp, "/api/v1/auth/refresh", &headers, json!({})).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "csrf_failed");
    }

    let rotated = post(
        &cp,
        "/api/v1/auth/refresh",
        &[("cookie", &cookies), ("x-switchyard-csrf", &csrf)],
        json!({}),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["refresh_token"], "");
    let token = rotated.body["access_token"].as_str().unwrap();
    cp.get("/api/v1/me", token).await.expect(200);
    let new_refresh = rotated.cookie_value("switchyard_refresh");
    let new_csrf = rotated.cookie_value("switchyard_csrf");
    assert_ne!(new_refresh, refresh, "the refresh cookie rotates");
    assert_ne!(new_csrf, csrf, "a new CSRF token");
    assert!(
        rotated
            .set_cookie("switchyard_refresh")
            .contains("HttpOnly")
    );

    // The new pair works once more.
    let again = post(
        &cp,
        "/api/v1/auth/refresh",
        &[
            ("cookie", &cookie_header(&new_refresh, &new_csrf)),
            ("x-switchyard-csrf", &new_csrf),
        ],
        json!({}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    cp.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_cookie_is_refused_clears_the_cookies_and_ends_the_sessions() {
    let cp = Cp::start().await;
    let (_, login) = cookie_login(&cp).await;
    let refresh = login.cookie_value("switchyard_refresh");
    let csrf = login.cookie_value("switchyard_csrf");
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let headers = [
        ("cookie", cookie_header(&refresh, &csrf)),
        ("x-switchyard-csrf", csrf.clone()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = post(&cp, "/api/v1/auth/refresh", &headers, json!({})).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let successor_access = first.body["access_token"].as_str().unwrap().to_owned();

    // The rotated-away cookie again: reuse.
    let reused = post(&cp, "/api/v1/auth/refresh", &headers, json!({})).await;
    assert_eq!(reused.status, 401, "{}", reused.body);
    assert_eq!(reused.body["error"]["code"], "unauthorized");
    reused.assert_cleared();
    // Reuse ends the session: both access tokens are cut off.
    for token in [&access, &successor_access] {
        cp.get("/api/v1/me", token).await.expect(401);
    }
    // And the successor refresh cookie no longer works either.
    let successor_refresh = first.cookie_value("switchyard_refresh");
    let successor_csrf = first.cookie_value("switchyard_csrf");
    let late = post(
        &cp,
        "/api/v1/auth/refresh",
        &[
            (
                "cookie",
                &cookie_header(&successor_refresh, &successor_csrf),
            ),
            ("x-switchyard-csrf", &successor_csrf),
        ],
        json!({}),
    )
    .await;
    assert_eq!(late.status, 401, "{}", late.body);
    late.assert_cleared();

    // No cookie at all and no body token: 401, cookies cleared.
    let none = post(&cp, "/api/v1/auth/refresh", &[], json!({})).await;
    assert_eq!(none.status, 401, "{}", none.body);
    none.assert_cleared();
    cp.stop().await;
}

#[tokio::test]
async fn logout_clears_the_cookies_and_closes_the_cookie_session() {
    let cp = Cp::start().await;
    let (_, login) = cookie_login(&cp).await;
    let refresh = login.cookie_value("switchyard_refresh");
    let csrf = login.cookie_value("switchyard_csrf");
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let out = post(
        &cp,
        "/api/v1/auth/logout",
        &[("cookie", &cookie_header(&refresh, &csrf))],
        json!({}),
    )
    .await;
    assert_eq!(out.status, 204);
    out.assert_cleared();
    cp.get("/api/v1/me", &access).await.expect(401);

    // A bearer client's logout clears them too (harmless), and works as before.
    let session = cp.signup().await;
    let out = post(
        &cp,
        "/api/v1/auth/logout",
        &[],
        json!({"refresh_token": session.refresh}),
    )
    .await;
    assert_eq!(out.status, 204);
    out.assert_cleared();
    cp.get("/api/v1/me", &session.token).await.expect(401);
    cp.stop().await;
}

#[tokio::test]
async fn body_token_clients_are_unchanged() {
    let cp = Cp::start().await;
    let session = cp.signup().await;
    assert!(!session.refresh.is_empty());
    let login = post(
        &cp,
        "/api/v1/auth/login",
        &[],
        json!({"email": session.email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(login.status, 200);
    assert!(login.set_cookies.is_empty(), "{:?}", login.set_cookies);
    let body_refresh = login.body["refresh_token"].as_str().unwrap().to_owned();
    assert!(!body_refresh.is_empty());
    // A body token is used as given, even with stray cookies and no CSRF header.
    let refreshed = post(
        &cp,
        "/api/v1/auth/refresh",
        &[("cookie", "switchyard_refresh=bogus; switchyard_csrf=x")],
        json!({"refresh_token": body_refresh}),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert!(refreshed.set_cookies.is_empty());
    assert!(!refreshed.body["refresh_token"].as_str().unwrap().is_empty());
    // A reused body token: 401 without Set-Cookie.
    let reused = post(
        &cp,
        "/api/v1/auth/refresh",
        &[],
        json!({"refresh_token": body_refresh}),
    )
    .await;
    assert_eq!(reused.status, 401);
    assert!(reused.set_cookies.is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn switch_and_invitation_accept_answer_cookie_sessions() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let member = cp.signup().await;
    let invitation = cp
        .post(
            "/api/v1/invitations",
            Some(&owner.token),
            json!({"email": member.email, "role": "viewer"}),
        )
        .await
        .expect(201);
    let accept = post(
        &cp,
        invitation["accept_path"].as_str().unwrap(),
        &[
            ("authorization", &format!("Bearer {}", member.token)),
            ("x-switchyard-session", "cookie"),
        ],
        json!({}),
    )
    .await;
    assert_eq!(accept.status, 200, "{}", accept.body);
    assert_eq!(accept.body["refresh_token"], "");
    accept.set_cookie("switchyard_refresh");
    // The session whose cookie the accepted one replaced is closed.
    cp.get("/api/v1/me", &member.token).await.expect(401);
    let joined = accept.body["access_token"].as_str().unwrap().to_owned();

    let switched = post(
        &cp,
        "/api/v1/auth/switch",
        &[
            ("authorization", &format!("Bearer {joined}")),
            ("x-switchyard-session", "cookie"),
        ],
        json!({"tenant_id": owner.tenant_id}),
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(switched.body["refresh_token"], "");
    assert_eq!(switched.body["tenant"]["id"], owner.tenant_id.as_str());
    switched.set_cookie("switchyard_csrf");
    // In cookie mode the session switched away from is closed (its cookie was replaced).
    cp.get("/api/v1/me", &joined).await.expect(401);
    let new_token = switched.body["access_token"].as_str().unwrap();
    cp.get("/api/v1/me", new_token).await.expect(200);
    cp.stop().await;
}

#[tokio::test]
async fn meta_answers_without_credentials() {
    let cp = Cp::start_configured(Some(cp_support::database_url().await), |c| {
        c.public_gateway_url = Some("https://gateway.example.com".to_owned());
    })
    .await;
    let resp = cp
        .client
        .get(format!("{}/api/v1/meta", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let meta: Value = resp.json().await.unwrap();
    assert_eq!(
        meta,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "gateway_base_url": "https://gateway.example.com",
            "billing_enabled": false,
            "embedded_gateway": true,
        })
    );
    cp.stop().await;

    let cp = Cp::start().await;
    let meta = cp
        .call(reqwest::Method::GET, "/api/v1/meta", None, None)
        .await
        .expect(200);
    assert_eq!(meta["gateway_base_url"], Value::Null, "{meta}");
    assert!(meta.as_object().unwrap().contains_key("gateway_base_url"));
    cp.stop().await;
}
