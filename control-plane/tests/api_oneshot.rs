//! The router without a socket: `control_plane::app(state)` driven with `tower::ServiceExt::oneshot`,
//! on a SQLite database in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control_plane::auth::TokenService;
use control_plane::publish::Publisher;
use control_plane::state::AppState;
use control_plane::sync::ConfigSync;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    assert!(resp.headers().contains_key("x-switchyard-request-id"));
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        },
    )
}

#[tokio::test]
async fn signup_and_create_a_key_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("oneshot.db").display()
    );
    let db = control_plane::db::connect_and_migrate(&url).await.unwrap();
    let bus = shared::bus::MemoryBus::new();
    let sync = ConfigSync::new(db.clone(), Publisher::in_memory(bus.clone()));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = sync.spawn_worker(false, stop_rx);
    let state = AppState {
        db,
        tokens: Arc::new(TokenService::new(
            &[7u8; 32],
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )),
        master_key: shared::crypto::MasterKey::generate(),
        sync,
        catalog: Arc::new(control_plane::catalog::Catalog::builtin().expect("built-in catalog")),
        throttle: Arc::new(control_plane::throttle::Throttle::system(
            control_plane::throttle::ThrottleSettings::default(),
        )),
        security: Arc::new(control_plane::http::security::Security::default()),
        ledger: data_plane::governance::ledger::Ledger::memory(),
        billing: Arc::new(control_plane::billing::Billing::disabled()),
        meta: Arc::new(control_plane::http::meta::Meta::default()),
        observed: Default::default(),
        lifecycle: data_plane::lifecycle::Lifecycle::default(),
    };
    let lifecycle = state.lifecycle.clone();
    let app = control_plane::app(state);

    let (status, body) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));

    let signup = json!({"email": "oneshot@example.com", "password": "long enough passphrase, surely", "organization": "One"});
    let req = Request::post("/api/v1/auth/signup")
        .header("content-type", "application/json")
        .body(Body::from(signup.to_string()))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["access_token"].as_str().unwrap();

    let req = Request::post("/api/v1/keys")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(json!({"name": "k"}).to_string()))
        .unwrap();
    let (status, key) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let hash = shared::keys::hash_api_key(key["key"].as_str().unwrap());
    assert!(
        bus.get_key(&hash).is_some(),
        "published to the bus before the answer"
    );

    // The /v1 gateway is not part of the bare control-plane router.
    let (status, body) = send(
        &app,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    // The console is served by the bare control-plane router too (distributed mode).
    let resp = app
        .clone()
        .oneshot(Request::get("/keys").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(resp.headers()["cache-control"], "no-cache");

    // A stop begins: readiness turns 503 at once (the load balancer takes the process out),
    // liveness stays 200.
    lifecycle.begin_shutdown();
    let (status, body) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down"})
        )
    );
    let (status, _) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let _ = stop.send(true);
    worker.await.unwrap();
}
