//! Account abuse, against a real control plane on PostgreSQL: login throttling (per account and
//! per client IP, with a hand-driven clock instead of sleeps), sign-up throttling, the password
//! policy, logout revoking access tokens, invitation consent, and no email enumeration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::Arc;
use std::time::Duration;

use control_plane::throttle::ManualClock;
use cp_support::{Answer, Cp, PASSWORD, Session};
use serde_json::{Value, json};

async fn clocked(
    adjust: impl FnOnce(&mut control_plane::config::Config),
) -> (Cp, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let cp = Cp::start_clocked(
        Some(cp_support::database_url().await),
        adjust,
        clock.clone(),
    )
    .await;
    (cp, clock)
}

async fn login(cp: &Cp, email: &str, password: &str) -> Answer {
    cp.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

fn retry_after(a: &Answer) -> u64 {
    a.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {}", a.body))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn unique_email() -> String {
    format!("someone-{}@example.com", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn failed_logins_lock_the_account_even_for_the_right_password() {
    let (cp, clock) = clocked(|_| {}).await;
    let s = cp.signup().await;
    let unknown = unique_email();

    // Five failures each: 401, and a registered and an unregistered email answer alike.
    for _ in 0..5 {
        let known = login(&cp, &s.email, "not the password").await;
        let missing = login(&cp, &unknown, "not the password").await;
        assert_eq!(known.status, 401, "{}", known.body);
        assert_eq!((known.status, &known.body), (missing.status, &missing.body));
    }
    // Locked: 429 with Retry-After, the right password included, and still no difference.
    let locked = login(&cp, &s.email, PASSWORD).await;
    let locked_unknown = login(&cp, &unknown, PASSWORD).await;
    assert_eq!(
        (locked.status, &locked.body),
        (locked_unknown.status, &locked_unknown.body)
    );
    assert_eq!(retry_after(&locked), 60);
    assert_eq!(retry_after(&locked_unknown), 60);
    let msg = locked.expect_error(429, "rate_limited");
    assert!(msg.contains("try again later"), "{msg}");
    // The email is normalized: case and spaces do not make a new account key.
    login(&cp, &format!("  {}  ", s.email.to_uppercase()), PASSWORD)
        .await
        .expect_error(429, "rate_limited");

    // Once the wait has passed the right password works, and success clears the count.
    clock.advance(Duration::from_secs(59));
    login(&cp, &s.email, PASSWORD)
        .await
        .expect_error(429, "rate_limited");
    clock.advance(Duration::from_secs(1));
    login(&cp, &s.email, PASSWORD).await.expect(200);
    for _ in 0..4 {
        login(&cp, &s.email, "not the password")
            .await
            .expect_error(401, "unauthorized");
    }
    login(&cp, &s.email, PASSWORD).await.expect(200);

    // A failure past the limit doubles the wait.
    clock.advance(Duration::from_secs(60));
    login(&cp, &unknown, "not the password")
        .await
        .expect_error(401, "unauthorized");
    let again = login(&cp, &unknown, "not the password").await;
    assert_eq!(again.status, 429);
    assert_eq!(retry_after(&again), 120);
    cp.stop().await;
}

#[tokio::test]
async fn failed_logins_from_one_address_lock_it_across_emails() {
    let (cp, clock) = clocked(|c| c.login_max_failures_per_ip = 6).await;
    let s = cp.signup().await;
    // One failure each for six different emails: no account reaches its limit, the IP does.
    for _ in 0..6 {
        login(&cp, &unique_email(), "not the password")
            .await
            .expect_error(401, "unauthorized");
    }
    let locked = login(&cp, &s.email, PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(retry_after(&locked), 60);
    clock.advance(Duration::from_secs(60));
    login(&cp, &s.email, PASSWORD).await.expect(200);
    cp.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_used_only_when_trusted() {
    let (cp, _clock) = clocked(|c| {
        c.login_max_failures_per_ip = 2;
        c.trust_forwarded_for = true;
    })
    .await;
    let attempt = |ip: &'static str| {
        let cp = &cp;
        async move {
            cp.client
                .post(format!("{}/api/v1/auth/login", cp.base))
                .header("x-forwarded-for", format!("203.0.113.50, {ip}"))
                .json(&json!({"email": unique_email(), "password": "nope nope nope"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(attempt("198.51.100.1").await, 401);
    assert_eq!(attempt("198.51.100.1").await, 401);
    assert_eq!(attempt("198.51.100.1").await, 429);
    // Another client behind the same proxy is counted on its own.
    assert_eq!(attempt("198.51.100.2").await, 401);
    cp.stop().await;

    // Untrusted (the default): the header is ignored, the TCP peer counts.
    let (cp, _clock) = clocked(|c| c.login_max_failures_per_ip = 2).await;
    for (ip, want) in [
        ("198.51.100.1", 401),
        ("198.51.100.2", 401),
        ("198.51.100.3", 429),
    ] {
        let status = cp
            .client
            .post(format!("{}/api/v1/auth/login", cp.base))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": unique_email(), "password": "nope nope nope"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), want, "{ip}");
    }
    cp.stop().await;
}

#[tokio::test]
async fn signups_are_limited_per_address() {
    let (cp, clock) = clocked(|c| c.signups_per_ip_per_hour = 3).await;
    let first = cp.signup().await;
    cp.signup().await;
    cp.signup().await;
    let body = |email: &str| json!({"email": email, "password": PASSWORD, "organization": "Org"});
    let refused = cp
        .post("/api/v1/auth/signup", None, body(&unique_email()))
        .await;
    assert_eq!(retry_after(&refused), 1200);
    refused.expect_error(429, "rate_limited");
    // The "email taken" answer cannot be used to probe emails past the limit either.
    cp.post("/api/v1/auth/signup", None, body(&first.email))
        .await
        .expect_error(429, "rate_limited");
    // Invalid input is answered (and costs no allowance).
    cp.post(
        "/api/v1/auth/signup",
        None,
        json!({"email": unique_email(), "password": "password", "organization": "Org"}),
    )
    .await
    .expect_error(400, "validation_failed");
    clock.advance(Duration::from_secs(1200));
    cp.post("/api/v1/auth/signup", None, body(&first.email))
        .await
        .expect_error(409, "conflict");
    cp.post("/api/v1/auth/signup", None, body(&unique_email()))
        .await
        .expect_error(429, "rate_limited");
    clock.advance(Duration::from_secs(1200));
    cp.post("/api/v1/auth/signup", None, body(&unique_email()))
        .await
        .expect(201);
    cp.stop().await;
}

#[tokio::test]
async fn weak_passwords_are_refused_with_the_reason() {
    let cp = Cp::start().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("ada-{tag}@example.com");
    // (password, what the message must mention)
    let refused = [
        ("12345678", "too easy to guess"),
        ("password", "common password"),
        ("        ", "too easy to guess"),
        ("P@ssw0rd!", "too easy to guess"),
        ("short", "at least 8 characters"),
        (&*"x".repeat(129), "at most 128 bytes"),
        // The account's own words count as known.
        (&*format!("ada-{tag}"), "too easy to guess"),
        ("Analytical Engines", "too easy to guess"),
    ];
    for (password, why) in refused {
        let msg = cp
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": password, "organization": "Analytical Engines"}),
            )
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with("password: "), "{password:?}: {msg}");
        assert!(msg.contains(why), "{password:?}: {msg}");
    }
    // The README's example and the tests' password pass.
    for (i, password) in ["correct horse battery", PASSWORD].into_iter().enumerate() {
        cp.post(
            "/api/v1/auth/signup",
            None,
            json!({"email": format!("ada{i}-{tag}@example.com"), "password": password, "organization": "Acme"}),
        )
        .await
        .expect(201);
    }
    cp.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_at_once() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    cp.get("/api/v1/me", &s.token).await.expect(200);
    // A second session of the same user is not affected by the first one's logout.
    let other = login(&cp, &s.email, PASSWORD).await.expect(200);
    let other_token = other["access_token"].as_str().unwrap();

    // Rotate once: the session (and its older access token) survives refreshes.
    let rotated = cp
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await
        .expect(200);
    cp.get("/api/v1/me", &s.token).await.expect(200);
    let rotated_token = rotated["access_token"].as_str().unwrap();

    cp.post(
        "/api/v1/auth/logout",
        None,
        json!({"refresh_token": rotated["refresh_token"]}),
    )
    .await
    .expect(204);
    for token in [&s.token, rotated_token] {
        cp.get("/api/v1/me", token)
            .await
            .expect_error(401, "unauthorized");
        cp.get("/api/v1/keys", token)
            .await
            .expect_error(401, "unauthorized");
    }
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": rotated["refresh_token"]}),
    )
    .await
    .expect_error(401, "unauthorized");
    cp.get("/api/v1/me", other_token).await.expect(200);
    cp.stop().await;
}

/// Creates an invitation; returns the answer.
async fn invite(cp: &Cp, by: &Session, email: &str, role: &str) -> Answer {
    cp.post(
        "/api/v1/invitations",
        Some(&by.token),
        json!({"email": email, "role": role}),
    )
    .await
}

fn member_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn nobody_joins_without_accepting() {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};

    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let bob = cp.signup().await;
    let mallory = cp.signup().await;

    let inv = invite(&cp, &owner, &bob.email.to_uppercase(), "member")
        .await
        .expect(201);
    assert_eq!(inv["email"], bob.email.as_str(), "stored lowercased");
    assert_eq!(inv["role"], "member");
    let token = inv["token"].as_str().unwrap();
    assert_eq!(
        inv["accept_path"],
        format!("/api/v1/invitations/{token}/accept")
    );
    // Only the token's SHA-256 is stored.
    let id: uuid::Uuid = inv["id"].as_str().unwrap().parse().unwrap();
    let stored = control_plane::entities::invitation::Entity::find_by_id(id)
        .one(cp.running.db())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.token_hash, token);
    assert_eq!(
        stored.token_hash,
        control_plane::auth::hash_refresh_token(token)
    );
    // Not a member yet; the invitation is pending.
    let members = cp.get("/api/v1/members", &owner.token).await.expect(200);
    assert!(!member_ids(&members).contains(&bob.user_id));
    let pending = cp
        .get("/api/v1/invitations", &owner.token)
        .await
        .expect(200);
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);
    assert_eq!(pending["data"][0]["id"], inv["id"]);
    assert!(pending["data"][0].get("token").is_none(), "shown once");
    // Bob cannot sign in to the organization before accepting.
    cp.post(
        "/api/v1/auth/login",
        None,
        json!({"email": bob.email, "password": PASSWORD, "organization_id": owner.tenant_id}),
    )
    .await
    .expect_error(404, "not_found");

    // Someone else holding the token cannot use it, and trying does not use it up.
    let accept = inv["accept_path"].as_str().unwrap();
    cp.post(accept, Some(&mallory.token), json!({}))
        .await
        .expect_error(403, "forbidden");
    cp.post(accept, None, json!({}))
        .await
        .expect_error(401, "unauthorized");
    // Bob accepts: a session in the organization.
    let joined = cp
        .post(accept, Some(&bob.token), json!({}))
        .await
        .expect(200);
    assert_eq!(joined["tenant"]["id"], owner.tenant_id.as_str());
    assert_eq!(joined["role"], "member");
    let me = cp
        .get("/api/v1/me", joined["access_token"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(me["tenant"]["id"], owner.tenant_id.as_str());
    assert_eq!(me["organizations"].as_array().unwrap().len(), 2);
    assert!(
        member_ids(&cp.get("/api/v1/members", &owner.token).await.expect(200))
            .contains(&bob.user_id)
    );
    // Single use.
    cp.post(accept, Some(&bob.token), json!({}))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        cp.get("/api/v1/invitations", &owner.token)
            .await
            .expect(200)["data"],
        json!([])
    );
    // Login still defaults to Bob's own (oldest) organization; organization_id picks this one.
    let own = login(&cp, &bob.email, PASSWORD).await.expect(200);
    assert_eq!(own["tenant"]["id"], bob.tenant_id.as_str());
    let here = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": bob.email, "password": PASSWORD, "organization_id": owner.tenant_id}),
        )
        .await
        .expect(200);
    assert_eq!(here["role"], "member");

    // Revoked: refused.
    let carol = cp.signup().await;
    let inv = invite(&cp, &owner, &carol.email, "viewer")
        .await
        .expect(201);
    cp.delete(
        &format!("/api/v1/invitations/{}", inv["id"].as_str().unwrap()),
        &owner.token,
    )
    .await
    .expect(204);
    cp.post(
        inv["accept_path"].as_str().unwrap(),
        Some(&carol.token),
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    cp.delete(
        &format!("/api/v1/invitations/{}", inv["id"].as_str().unwrap()),
        &owner.token,
    )
    .await
    .expect_error(404, "not_found");

    // Expired: refused.
    let inv = invite(&cp, &owner, &carol.email, "viewer")
        .await
        .expect(201);
    let id: uuid::Uuid = inv["id"].as_str().unwrap().parse().unwrap();
    let row = control_plane::entities::invitation::Entity::find_by_id(id)
        .one(cp.running.db())
        .await
        .unwrap()
        .unwrap();
    let mut row: control_plane::entities::invitation::ActiveModel = row.into();
    row.expires_at = Set(time::OffsetDateTime::now_utc() - time::Duration::minutes(1));
    row.update(cp.running.db()).await.unwrap();
    cp.post(
        inv["accept_path"].as_str().unwrap(),
        Some(&carol.token),
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    assert!(
        !member_ids(&cp.get("/api/v1/members", &owner.token).await.expect(200))
            .contains(&carol.user_id)
    );

    // A new user signs up, then accepts.
    let dave_email = unique_email();
    let inv = invite(&cp, &owner, &dave_email, "viewer").await.expect(201);
    let dave = cp
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": dave_email, "password": PASSWORD, "organization": "Dave's"}),
        )
        .await
        .expect(201);
    cp.post(
        inv["accept_path"].as_str().unwrap(),
        Some(dave["access_token"].as_str().unwrap()),
        json!({}),
    )
    .await
    .expect(200);
    cp.stop().await;
}

#[tokio::test]
async fn invitation_roles_and_teams() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let a = cp.signup().await;
    let admin = cp.join(&owner, &a, "admin").await;
    let v = cp.signup().await;
    let viewer = cp.join(&owner, &v, "viewer").await;
    let target = unique_email();

    // Admins invite, but not owners; only owners invite owners; viewers and members neither.
    invite(&cp, &admin, &target, "owner")
        .await
        .expect_error(403, "forbidden");
    let by_owner = invite(&cp, &owner, &target, "owner").await.expect(201);
    cp.delete(
        &format!("/api/v1/invitations/{}", by_owner["id"].as_str().unwrap()),
        &admin.token,
    )
    .await
    .expect_error(403, "forbidden");
    invite(&cp, &admin, &target, "admin").await.expect(201);
    invite(&cp, &viewer, &target, "viewer")
        .await
        .expect_error(403, "forbidden");
    cp.get("/api/v1/invitations", &viewer.token)
        .await
        .expect_error(403, "forbidden");
    // Re-inviting replaced the owner invitation: one pending invitation for the email.
    let pending = cp
        .get("/api/v1/invitations", &admin.token)
        .await
        .expect(200);
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);
    assert_eq!(pending["data"][0]["role"], "admin");

    // A team of this organization is recorded; another organization's team is missing.
    let team = cp
        .post(
            "/api/v1/teams",
            Some(&owner.token),
            json!({"name": "search"}),
        )
        .await
        .expect(201);
    let inv = cp
        .post(
            "/api/v1/invitations",
            Some(&admin.token),
            json!({"email": unique_email(), "role": "member", "team_id": team["id"]}),
        )
        .await
        .expect(201);
    assert_eq!(inv["team_id"], team["id"]);
    let foreign = cp
        .post(
            "/api/v1/teams",
            Some(&a.token),
            json!({"name": "elsewhere"}),
        )
        .await
        .expect(201);
    cp.post(
        "/api/v1/invitations",
        Some(&admin.token),
        json!({"email": unique_email(), "role": "member", "team_id": foreign["id"]}),
    )
    .await
    .expect_error(404, "not_found");
    // Unknown fields are refused, naming the field.
    let msg = cp
        .post(
            "/api/v1/invitations",
            Some(&admin.token),
            json!({"email": unique_email(), "role": "member", "rpm_limit": 5}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.contains("rpm_limit"), "{msg}");
    cp.stop().await;
}

/// The keys of an object, sorted, with the type of each value.
fn shape(v: &Value) -> Vec<(String, &'static str)> {
    let mut out: Vec<_> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            (k.clone(), kind)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn members_and_invitations_do_not_tell_whether_an_email_is_registered() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let registered = cp.signup().await;
    let unregistered = unique_email();

    for path in ["/api/v1/members", "/api/v1/invitations"] {
        let a = cp
            .post(
                path,
                Some(&owner.token),
                json!({"email": registered.email, "role": "viewer"}),
            )
            .await;
        let b = cp
            .post(
                path,
                Some(&owner.token),
                json!({"email": unregistered, "role": "viewer"}),
            )
            .await;
        let want = if path == "/api/v1/members" { 202 } else { 201 };
        assert_eq!(a.status, want, "{path}: {}", a.body);
        assert_eq!(a.status, b.status, "{path}");
        assert_eq!(shape(&a.body), shape(&b.body), "{path}");
        for same in ["role", "team_id", "invited_by"] {
            assert_eq!(a.body[same], b.body[same], "{path} {same}");
        }
    }
    // Nobody was added by either call.
    assert_eq!(
        member_ids(&cp.get("/api/v1/members", &owner.token).await.expect(200)),
        vec![owner.user_id.clone()]
    );
    // Wrong passwords for both kinds of email answer alike (also covered with the lock above).
    let a = login(&cp, &registered.email, "wrong wrong wrong").await;
    let b = login(&cp, &unregistered, "wrong wrong wrong").await;
    assert_eq!((a.status, &a.body), (b.status, &b.body));
    cp.stop().await;
}
