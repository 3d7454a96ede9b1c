//! Sign-up, sign-in and sessions against a real control plane on PostgreSQL, plus the
//! cross-cutting HTTP contract: error shape, request id, Swagger UI, health.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::{Cp, PASSWORD};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn signup_login_refresh_logout_me() {
    let cp = Cp::start().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("Alice-{tag}@Example.com");

    let signup = cp
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": PASSWORD, "organization": "  Acme  "}),
        )
        .await
        .expect(201);
    assert_eq!(
        signup["user"]["email"],
        email.to_lowercase(),
        "emails are stored lowercased"
    );
    assert_eq!(signup["tenant"]["name"], "Acme");
    assert_eq!(signup["role"], "owner");
    assert_eq!(signup["token_type"], "Bearer");
    assert_eq!(signup["expires_in"], 900);
    for field in ["id", "created_at"] {
        assert!(
            signup["user"][field].is_string() && signup["tenant"][field].is_string(),
            "{signup}"
        );
    }
    assert!(
        !signup.to_string().contains("password"),
        "no password material in {signup}"
    );

    // The token works, and /me says who we are.
    let token = signup["access_token"].as_str().unwrap();
    let me = cp.get("/api/v1/me", token).await.expect(200);
    assert_eq!(me["user"]["id"], signup["user"]["id"]);
    assert_eq!(me["tenant"]["id"], signup["tenant"]["id"]);
    assert_eq!(me["role"], "owner");

    // Login is case-insensitive on the email.
    let login = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email.to_uppercase(), "password": PASSWORD}),
        )
        .await
        .expect(200);
    assert_eq!(login["tenant"]["id"], signup["tenant"]["id"]);
    assert_eq!(login["token_type"], "Bearer");
    assert!(login["expires_in"].as_u64().unwrap() > 0);
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();

    // Refresh rotates: a new pair, and the old refresh token is dead.
    let rotated = cp
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await
        .expect(200);
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    cp.get("/api/v1/me", rotated["access_token"].as_str().unwrap())
        .await
        .expect(200);
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .expect_error(401, "unauthorized");
    // Reusing a rotated token ended every session of the user, the new one included.
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": new_refresh}),
    )
    .await
    .expect_error(401, "unauthorized");

    // Logout revokes a refresh token; logging out twice (or with junk) is still 204.
    let login = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    cp.post(
        "/api/v1/auth/logout",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .expect(204);
    cp.post(
        "/api/v1/auth/logout",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .expect(204);
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .expect_error(401, "unauthorized");
    cp.stop().await;
}

#[tokio::test]
async fn refresh_tokens_are_stored_hashed() {
    use sea_orm::EntityTrait;
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let rows = control_plane::entities::refresh_token::Entity::find()
        .all(cp.running.db())
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.token_hash != s.refresh && r.token_hash.len() == 64)
    );
    assert!(
        rows.iter()
            .any(|r| r.token_hash == control_plane::auth::hash_refresh_token(&s.refresh))
    );
    cp.stop().await;
}

#[tokio::test]
async fn duplicate_signup_is_409_and_bad_logins_are_401_alike() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let msg = cp
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": s.email.to_uppercase(), "password": PASSWORD, "organization": "Other"}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(msg.contains("email"), "{msg}");

    let wrong_password = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": s.email, "password": "wrong password"}),
        )
        .await
        .expect_error(401, "unauthorized");
    let unknown_email = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody-here@example.com", "password": PASSWORD}),
        )
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(wrong_password, unknown_email, "no user enumeration");
    cp.stop().await;
}

#[tokio::test]
async fn validation_errors_share_one_shape() {
    let cp = Cp::start().await;
    let signup = |body| cp.post("/api/v1/auth/signup", None, body);
    let msg = signup(json!({"email": "not-an-email", "password": PASSWORD, "organization": "x"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("email"), "{msg}");
    let msg = signup(json!({"email": "a@example.com", "password": "short", "organization": "x"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("password"), "{msg}");
    let msg = signup(json!({"email": "a@example.com", "password": PASSWORD, "organization": "  "}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("organization"), "{msg}");
    // A missing field, a wrong type, malformed JSON, and no JSON content type at all.
    let msg = signup(json!({"email": "a@example.com", "password": PASSWORD}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.contains("organization"), "{msg}");
    signup(json!({"email": 5, "password": PASSWORD, "organization": "x"}))
        .await
        .expect_error(400, "validation_failed");
    let resp = cp
        .client
        .post(format!("{}/api/v1/auth/signup", cp.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    let resp = cp
        .client
        .post(format!("{}/api/v1/auth/login", cp.base))
        .body("email=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");

    // A path id that is not a UUID, a bad query parameter, an unknown route.
    let s = cp.signup().await;
    let msg = cp
        .get("/api/v1/keys/not-a-uuid", &s.token)
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.contains("path"), "{msg}");
    cp.get("/api/v1/usage?limit=abc", &s.token)
        .await
        .expect_error(400, "validation_failed");
    cp.get("/api/v1/usage?limit=0", &s.token)
        .await
        .expect_error(400, "validation_failed");
    cp.get("/api/v1/nope", &s.token)
        .await
        .expect_error(404, "not_found");
    cp.get("/nope.txt", &s.token)
        .await
        .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn bad_expired_and_missing_tokens_are_401() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    cp.call(Method::GET, "/api/v1/me", None, None)
        .await
        .expect_error(401, "unauthorized");
    cp.get("/api/v1/me", "not.a.jwt")
        .await
        .expect_error(401, "unauthorized");
    // Tampered: flip a character of the signature.
    let mut tampered = s.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    cp.get("/api/v1/me", &tampered)
        .await
        .expect_error(401, "unauthorized");
    // Expired: signed with the right secret, but exp is in the past.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = cp
        .running
        .state()
        .tokens
        .sign(&control_plane::auth::Claims {
            sub: s.user_id.parse().unwrap(),
            tid: s.tenant_id.parse().unwrap(),
            sid: uuid::Uuid::new_v4(),
            role: control_plane::auth::Role::Owner,
            iat: now - 3600,
            exp: now - 60,
            iss: "switchyard-control-plane".to_owned(),
        })
        .unwrap();
    let msg = cp
        .get("/api/v1/me", &expired)
        .await
        .expect_error(401, "unauthorized");
    assert!(msg.contains("expired"), "{msg}");
    // Signed with another secret.
    let other = control_plane::auth::TokenService::new(
        b"some-other-secret-some-other-secret!",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(60),
    );
    let forged = other
        .issue_access(
            s.user_id.parse().unwrap(),
            s.tenant_id.parse().unwrap(),
            uuid::Uuid::new_v4(),
            control_plane::auth::Role::Owner,
        )
        .unwrap();
    cp.get("/api/v1/me", &forged.token)
        .await
        .expect_error(401, "unauthorized");
    cp.stop().await;
}

#[tokio::test]
async fn removed_members_lose_access_at_once() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let other = cp.signup().await;
    let member = cp.join(&owner, &other, "member").await;
    cp.get("/api/v1/keys", &member.token).await.expect(200);
    let members = cp.get("/api/v1/members", &owner.token).await.expect(200);
    assert_eq!(members["data"].as_array().unwrap().len(), 2);
    cp.delete(&format!("/api/v1/members/{}", member.user_id), &owner.token)
        .await
        .expect(204);
    // The access token is still unexpired, but the membership is gone.
    cp.get("/api/v1/keys", &member.token)
        .await
        .expect_error(401, "unauthorized");
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": member.refresh}),
    )
    .await
    .expect_error(401, "unauthorized");
    // The last owner cannot be removed.
    cp.delete(&format!("/api/v1/members/{}", owner.user_id), &owner.token)
        .await
        .expect_error(409, "conflict");
    cp.stop().await;
}

#[tokio::test]
async fn every_response_has_a_request_id_and_docs_are_served() {
    let cp = Cp::start().await;
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/api/v1/me", 401),
        ("/api/nope", 404),
        ("/", 200),
    ] {
        let resp = cp
            .client
            .get(format!("{}{path}", cp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let id = resp
            .headers()
            .get("x-switchyard-request-id")
            .unwrap_or_else(|| panic!("{path} has no request id"));
        uuid::Uuid::parse_str(id.to_str().unwrap()).expect("request id is a UUID");
    }
    let a = cp.post("/api/v1/auth/login", None, json!({})).await;
    let b = cp.post("/api/v1/auth/login", None, json!({})).await;
    assert_ne!(
        a.headers.get("x-switchyard-request-id"),
        b.headers.get("x-switchyard-request-id")
    );

    // Swagger UI (following the /docs → /docs/ redirect) and the spec.
    let resp = cp
        .client
        .get(format!("{}/docs", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let spec = cp
        .client
        .get(format!("{}/api/v1/openapi.json", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    let spec: serde_json::Value = spec.json().await.unwrap();
    assert!(spec["paths"]["/api/v1/keys"].is_object());
    // Every documented operation is routed (the reverse is checked by the operation count in
    // openapi_drift): without credentials each answers anything but "route not found".
    for (path, item) in spec["paths"].as_object().unwrap() {
        let url = format!(
            "{}{}",
            cp.base,
            path.replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{user_id}", &uuid::Uuid::new_v4().to_string())
        );
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let resp = cp
                .client
                .request(method.clone(), &url)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert!(
                !(status == 404 && body.contains("route not found")),
                "{method} {path} is documented but not routed"
            );
            assert_ne!(status, 405, "{method} {path}");
        }
    }
    cp.stop().await;
}
