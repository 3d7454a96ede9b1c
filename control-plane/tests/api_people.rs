//! People through the control API, against a real control plane on PostgreSQL: team
//! membership and what it means for members' keys, invitations naming a team, role changes
//! with last-owner protection, switching organizations, and the audit log (every change, with
//! before/after and never a secret; filters and cursor pagination).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::{Cp, Session};
use serde_json::{Value, json};

async fn team(cp: &Cp, s: &Session, name: &str) -> String {
    cp.post("/api/v1/teams", Some(&s.token), json!({"name": name}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn add_to_team(cp: &Cp, s: &Session, team: &str, user: &str) -> Value {
    cp.post(
        &format!("/api/v1/teams/{team}/members"),
        Some(&s.token),
        json!({"user_id": user}),
    )
    .await
    .expect(201)
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn members_see_and_manage_only_their_teams_keys() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let alice = cp.join(&owner, &cp.signup().await, "member").await;
    let viewer = cp.join(&owner, &cp.signup().await, "viewer").await;
    let (search, billing) = (
        team(&cp, &owner, "search").await,
        team(&cp, &owner, "billing").await,
    );

    // Team membership: only members of the organization, once.
    let added = add_to_team(&cp, &owner, &search, &alice.user_id).await;
    assert_eq!(added["email"], alice.email.as_str());
    assert_eq!(added["role"], "member");
    cp.post(
        &format!("/api/v1/teams/{search}/members"),
        Some(&owner.token),
        json!({"user_id": alice.user_id}),
    )
    .await
    .expect_error(409, "conflict");
    let stranger = cp.signup().await;
    cp.post(
        &format!("/api/v1/teams/{search}/members"),
        Some(&owner.token),
        json!({"user_id": stranger.user_id}),
    )
    .await
    .expect_error(404, "not_found");
    let listed = cp
        .get(&format!("/api/v1/teams/{search}/members"), &viewer.token)
        .await
        .expect(200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["user_id"], alice.user_id.as_str());

    // Keys: the owner makes one per team; alice only for her team, and team_id is required.
    let k = |team: &str| json!({"name": "k", "team_id": team});
    let search_key = cp
        .post("/api/v1/keys", Some(&owner.token), k(&search))
        .await
        .expect(201);
    let billing_key = cp
        .post("/api/v1/keys", Some(&owner.token), k(&billing))
        .await
        .expect(201);
    let own = cp
        .post("/api/v1/keys", Some(&alice.token), k(&search))
        .await
        .expect(201);
    cp.post("/api/v1/keys", Some(&alice.token), k(&billing))
        .await
        .expect_error(403, "forbidden");
    let msg = cp
        .post(
            "/api/v1/keys",
            Some(&alice.token),
            json!({"name": "personal"}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.contains("team_id"), "{msg}");
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let mut mine = vec![id(&search_key), id(&own)];
    mine.sort();
    assert_eq!(
        ids(&cp.get("/api/v1/keys", &alice.token).await.expect(200)),
        mine
    );
    assert_eq!(
        ids(&cp.get("/api/v1/keys", &viewer.token).await.expect(200)).len(),
        3,
        "viewers see every key"
    );
    let other = format!("/api/v1/keys/{}", id(&billing_key));
    cp.get(&other, &alice.token)
        .await
        .expect_error(404, "not_found");
    cp.patch(&other, &alice.token, json!({"name": "x"}))
        .await
        .expect_error(404, "not_found");
    cp.post(&format!("{other}/rotate"), Some(&alice.token), json!({}))
        .await
        .expect_error(404, "not_found");
    cp.delete(&other, &alice.token)
        .await
        .expect_error(404, "not_found");
    cp.patch(
        &format!("/api/v1/keys/{}", id(&search_key)),
        &alice.token,
        json!({"rpm_limit": 5}),
    )
    .await
    .expect(200);
    cp.patch(&other, &viewer.token, json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");

    // Out of the team: she keeps seeing the key she created, not the team's.
    cp.delete(
        &format!("/api/v1/teams/{search}/members/{}", alice.user_id),
        &owner.token,
    )
    .await
    .expect(204);
    assert_eq!(
        ids(&cp.get("/api/v1/keys", &alice.token).await.expect(200)),
        vec![id(&own)]
    );
    cp.delete(
        &format!("/api/v1/teams/{search}/members/{}", alice.user_id),
        &owner.token,
    )
    .await
    .expect_error(404, "not_found");

    // Removing someone from the organization removes them from its teams.
    add_to_team(&cp, &owner, &billing, &alice.user_id).await;
    cp.delete(&format!("/api/v1/members/{}", alice.user_id), &owner.token)
        .await
        .expect(204);
    let left = cp
        .get(&format!("/api/v1/teams/{billing}/members"), &owner.token)
        .await
        .expect(200);
    assert!(left["data"].as_array().unwrap().is_empty(), "{left}");
    cp.stop().await;
}

#[tokio::test]
async fn invitations_naming_a_team_add_the_invitee_to_it() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let t = team(&cp, &owner, "platform").await;
    let bob = cp.signup().await;
    let inv = cp
        .post(
            "/api/v1/invitations",
            Some(&owner.token),
            json!({"email": bob.email, "role": "member", "team_id": t}),
        )
        .await
        .expect(201);
    let joined = cp
        .post(
            inv["accept_path"].as_str().unwrap(),
            Some(&bob.token),
            json!({}),
        )
        .await
        .expect(200);
    let members = cp
        .get(&format!("/api/v1/teams/{t}/members"), &owner.token)
        .await
        .expect(200);
    assert_eq!(members["data"][0]["user_id"], bob.user_id.as_str());
    // Bob can now create keys for that team.
    let token = joined["access_token"].as_str().unwrap();
    cp.post(
        "/api/v1/keys",
        Some(token),
        json!({"name": "b", "team_id": t}),
    )
    .await
    .expect(201);
    // The join is audited in the organization, by bob.
    let audit = cp
        .get(
            "/api/v1/audit?object_kind=member&action=create",
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(audit["data"][0]["actor_user_id"], bob.user_id.as_str());
    assert_eq!(audit["data"][0]["after"]["team_id"], t.as_str());
    assert_eq!(audit["data"][0]["after"]["role"], "member");
    cp.stop().await;
}

#[tokio::test]
async fn roles_change_and_the_last_owner_stays() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let admin = cp.join(&owner, &cp.signup().await, "admin").await;
    let carol = cp.join(&owner, &cp.signup().await, "member").await;
    let member_path = |s: &Session| format!("/api/v1/members/{}", s.user_id);

    // The last owner can be neither demoted nor removed.
    cp.patch(&member_path(&owner), &owner.token, json!({"role": "admin"}))
        .await
        .expect_error(409, "conflict");
    cp.delete(&member_path(&owner), &owner.token)
        .await
        .expect_error(409, "conflict");
    // Only owners grant or change the owner role.
    cp.patch(&member_path(&carol), &admin.token, json!({"role": "owner"}))
        .await
        .expect_error(403, "forbidden");
    cp.patch(
        &member_path(&owner),
        &admin.token,
        json!({"role": "viewer"}),
    )
    .await
    .expect_error(403, "forbidden");
    cp.patch(&member_path(&carol), &admin.token, json!({"role": "bogus"}))
        .await
        .expect_error(400, "validation_failed");

    // A change applies to the member's next request.
    cp.post("/api/v1/keys", Some(&carol.token), json!({"name": "x"}))
        .await
        .expect_error(400, "validation_failed");
    let changed = cp
        .patch(
            &member_path(&carol),
            &admin.token,
            json!({"role": "viewer"}),
        )
        .await
        .expect(200);
    assert_eq!(changed["role"], "viewer");
    cp.post("/api/v1/keys", Some(&carol.token), json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    cp.patch(&member_path(&carol), &admin.token, json!({"role": "admin"}))
        .await
        .expect(200);
    cp.get("/api/v1/audit", &carol.token).await.expect(200);

    // With a second owner, the first can step down.
    cp.patch(&member_path(&admin), &owner.token, json!({"role": "owner"}))
        .await
        .expect(200);
    cp.patch(&member_path(&owner), &admin.token, json!({"role": "admin"}))
        .await
        .expect(200);
    cp.patch(
        &member_path(&admin),
        &admin.token,
        json!({"role": "member"}),
    )
    .await
    .expect_error(409, "conflict");

    let audit = cp
        .get(
            &format!(
                "/api/v1/audit?object_kind=member&object_id={}",
                carol.user_id
            ),
            &admin.token,
        )
        .await
        .expect(200);
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 3, "joined, then two role changes: {audit}");
    assert_eq!(events[0]["before"]["role"], "viewer");
    assert_eq!(events[0]["after"]["role"], "admin");
    assert_eq!(events[1]["before"]["role"], "member");
    assert_eq!(events[1]["actor_role"], "admin");
    assert_eq!(events[2]["action"], "create");
    assert_eq!(events[2]["after"]["role"], "member");
    assert!(events[2]["after"]["created_at"].is_string());
    cp.stop().await;
}

#[tokio::test]
async fn users_switch_between_their_organizations() {
    let cp = Cp::start().await;
    let acme = cp.signup().await;
    let globex = cp.signup().await;
    let in_acme = cp.join(&acme, &globex, "viewer").await;
    // globex's own session lists both organizations.
    let me = cp.get("/api/v1/me", &globex.token).await.expect(200);
    let orgs: Vec<&str> = me["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(orgs.len(), 2);
    assert!(orgs.contains(&acme.tenant_id.as_str()) && orgs.contains(&globex.tenant_id.as_str()));

    let switched = cp
        .post(
            "/api/v1/auth/switch",
            Some(&globex.token),
            json!({"tenant_id": acme.tenant_id}),
        )
        .await
        .expect(200);
    assert_eq!(switched["tenant"]["id"], acme.tenant_id.as_str());
    assert_eq!(switched["role"], "viewer");
    let token = switched["access_token"].as_str().unwrap();
    let me = cp.get("/api/v1/me", token).await.expect(200);
    assert_eq!(me["tenant"]["id"], acme.tenant_id.as_str());
    // And back, from the acme session; the old session still works.
    let back = cp
        .post(
            "/api/v1/auth/switch",
            Some(&in_acme.token),
            json!({"tenant_id": globex.tenant_id}),
        )
        .await
        .expect(200);
    assert_eq!(back["role"], "owner");
    cp.get("/api/v1/me", &globex.token).await.expect(200);
    // Not a member: 403, the same for an organization that does not exist.
    let other = cp.signup().await;
    for tenant in [other.tenant_id.clone(), uuid::Uuid::new_v4().to_string()] {
        cp.post(
            "/api/v1/auth/switch",
            Some(&globex.token),
            json!({"tenant_id": tenant}),
        )
        .await
        .expect_error(403, "forbidden");
    }
    cp.stop().await;
}

#[tokio::test]
async fn every_change_is_audited_without_secrets() {
    audit_trail(Cp::start().await).await;
}

#[tokio::test]
async fn every_change_is_audited_on_sqlite_too() {
    audit_trail(Cp::start_sqlite().await).await;
}

async fn audit_trail(cp: Cp) {
    let owner = cp.signup().await;
    let member = cp.join(&owner, &cp.signup().await, "member").await;
    let viewer = cp.join(&owner, &cp.signup().await, "viewer").await;
    let secret = format!("sk-provider-secret-{}", uuid::Uuid::new_v4().simple());
    let provider = cp
        .post(
            "/api/v1/providers",
            Some(&owner.token),
            json!({"name": "openai", "kind": "openai", "api_key": secret}),
        )
        .await
        .expect(201);
    let provider_id = provider["id"].as_str().unwrap();
    let t = team(&cp, &owner, "audited").await;
    add_to_team(&cp, &owner, &t, &member.user_id).await;
    let key = cp
        .post(
            "/api/v1/keys",
            Some(&owner.token),
            json!({"name": "k", "team_id": t}),
        )
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap();
    let plaintext = key["key"].as_str().unwrap();
    cp.patch(
        &format!("/api/v1/keys/{key_id}"),
        &owner.token,
        json!({"name": "k2", "metadata": {"env": "prod"}}),
    )
    .await
    .expect(200);
    let rotated = cp
        .post(
            &format!("/api/v1/keys/{key_id}/rotate"),
            Some(&owner.token),
            json!({}),
        )
        .await
        .expect(200);
    let inv = cp
        .post(
            "/api/v1/invitations",
            Some(&owner.token),
            json!({"email": "someone@example.com", "role": "viewer"}),
        )
        .await
        .expect(201);
    cp.delete(
        &format!("/api/v1/invitations/{}", inv["id"].as_str().unwrap()),
        &owner.token,
    )
    .await
    .expect(204);
    cp.delete(
        &format!("/api/v1/teams/{t}/members/{}", member.user_id),
        &owner.token,
    )
    .await
    .expect(204);
    cp.delete(&format!("/api/v1/providers/{provider_id}"), &owner.token)
        .await
        .expect(204);
    cp.delete(&format!("/api/v1/members/{}", viewer.user_id), &owner.token)
        .await
        .expect(204);

    // Only owners and admins read it.
    cp.get("/api/v1/audit", &member.token)
        .await
        .expect_error(403, "forbidden");
    let all = cp
        .get("/api/v1/audit?limit=200", &owner.token)
        .await
        .expect(200);
    let text = all.to_string();
    for s in [secret.as_str(), plaintext, rotated["key"].as_str().unwrap()] {
        assert!(!text.contains(s), "a secret reached the audit log");
    }
    assert!(!text.contains(&shared::keys::hash_api_key(plaintext)));
    let events = all["data"].as_array().unwrap();
    let find = |action: &str, kind: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["object_kind"] == kind)
            .unwrap_or_else(|| panic!("no {action} {kind} event in {all}"))
    };
    let created = find("create", "provider");
    assert_eq!(created["after"]["has_api_key"], true);
    assert_eq!(created["after"]["id"], provider_id);
    assert_eq!(created["actor_user_id"], owner.user_id.as_str());
    assert_eq!(created["actor_role"], "owner");
    assert_eq!(find("delete", "provider")["before"]["name"], "openai");
    let patched = find("update", "api_key");
    assert_eq!(patched["before"]["name"], "k");
    assert_eq!(patched["after"]["name"], "k2");
    assert_eq!(patched["after"]["metadata"]["env"], "prod");
    assert!(find("rotate", "api_key")["after"]["previous_expires_at"].is_string());
    assert_eq!(find("create", "team")["after"]["name"], "audited");
    find("create", "team_member");
    find("delete", "team_member");
    find("create", "invitation");
    find("revoke", "invitation");
    assert_eq!(find("delete", "member")["before"]["role"], "viewer");
    for e in events {
        assert!(e["object_kind"].is_string());
        assert!(e["created_at"].is_string() && e["id"].is_i64());
    }

    // Newest first; pages by cursor neither skip nor repeat; filters narrow.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=3&cursor={c}"),
            None => "/api/v1/audit?limit=3".to_owned(),
        };
        let page = cp.get(&path, &owner.token).await.expect(200);
        for e in page["data"].as_array().unwrap() {
            seen.push(e["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let all_ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(seen, all_ids);
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let keys_only = cp
        .get(
            &format!("/api/v1/audit?object_kind=api_key&object_id={key_id}"),
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(
        keys_only["data"].as_array().unwrap().len(),
        3,
        "create, update, rotate"
    );
    let by_actor = cp
        .get(
            &format!("/api/v1/audit?actor_user_id={}", member.user_id),
            &owner.token,
        )
        .await
        .expect(200);
    // The member's one change: joining (accepting the invitation).
    let theirs = by_actor["data"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{by_actor}");
    assert_eq!(theirs[0]["object_kind"], "member");
    let future = cp
        .get("/api/v1/audit?since=2999-01-01T00:00:00Z", &owner.token)
        .await
        .expect(200);
    assert!(future["data"].as_array().unwrap().is_empty());
    let past = cp
        .get("/api/v1/audit?until=2000-01-01T00:00:00Z", &owner.token)
        .await
        .expect(200);
    assert!(past["data"].as_array().unwrap().is_empty());
    let window = cp
        .get(
            "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&limit=200",
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(window["data"].as_array().unwrap().len(), events.len());
    for bad in [
        "limit=201",
        "limit=0",
        "cursor=abc",
        "since=yesterday",
        "unknown=1",
    ] {
        cp.get(&format!("/api/v1/audit?{bad}"), &owner.token)
            .await
            .expect_error(400, "validation_failed");
    }
    // Another organization's log is its own.
    let other = cp.signup().await;
    let theirs = cp.get("/api/v1/audit", &other.token).await.expect(200);
    assert!(theirs["data"].as_array().unwrap().is_empty(), "{theirs}");
    cp.stop().await;
}
