//! `rediss://` (Redis over TLS): the pool and the config store accept such URLs, and both the
//! pool's connections and the store's pub/sub connection verify the server's certificate against
//! the trusted roots (a server whose CA is not trusted is refused). The round trip through a
//! trusted TLS Redis, with both planes as processes, is in
//! control-plane/tests/e2e_redis_tls.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use data_plane::store::{ConfigStore, StoreOptions, redis_pool};
use shared::config::RedisKeys;
use shared::crypto::MasterKey;
use testkit::redis_tls::TlsRedis;

fn keys() -> RedisKeys {
    RedisKeys::new(testkit::redis_prefix::fresh_prefix())
}

#[tokio::test]
async fn rediss_urls_are_accepted_by_the_pool_and_the_store() {
    // A closed port: creating the pool and the store connects nothing yet (the store keeps
    // trying in the background and is simply not ready).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("rediss://127.0.0.1:{closed}"),
        format!("rediss://:secret@127.0.0.1:{closed}/0"),
        format!("rediss://default:secret@localhost:{closed}/2"),
    ] {
        let pool = redis_pool(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let options = StoreOptions {
            startup_wait: Duration::ZERO,
            ..StoreOptions::default()
        };
        let store =
            ConfigStore::redis_with_options(pool, &url, keys(), MasterKey::generate(), options)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(!store.is_ready());
    }
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let server = TlsRedis::start().await.expect("a TLS redis-server");
    // The test's own client, which trusts the throwaway CA, gets through...
    let mut trusted = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a client trusting the CA connects");
    let pong: String = redis::cmd("PING").query_async(&mut trusted).await.unwrap();
    assert_eq!(pong, "PONG");

    // ...but the gateway's pool and pub/sub connection use the OS trust store, which does not
    // know that CA: the handshake fails on the certificate, nothing is sent in clear.
    let pool = redis_pool(&server.url()).unwrap();
    let error = pool
        .get()
        .await
        .err()
        .expect("the pool must not accept an untrusted certificate")
        .to_string();
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error names the certificate: {error}"
    );
    let pubsub = redis::Client::open(server.url())
        .unwrap()
        .get_async_pubsub()
        .await;
    let error = pubsub
        .err()
        .expect("pub/sub must not accept an untrusted certificate")
        .to_string();
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error names the certificate: {error}"
    );
}
