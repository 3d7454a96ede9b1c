//! Databases for the usage storage tests (`usage_store.rs`, `retention.rs`): a fresh, migrated
//! PostgreSQL database from testkit, or a migrated SQLite file in a temp dir.

#![allow(dead_code, clippy::expect_used)]

use sea_orm::DatabaseConnection;

/// A database under test; keeps what must live as long as it.
pub(crate) struct TestDb {
    pub(crate) db: DatabaseConnection,
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn postgres() -> TestDb {
    let fresh = testkit::pg::fresh_database()
        .await
        .expect("a fresh test database");
    let db = control_plane::db::connect_and_migrate(&fresh.url)
        .await
        .expect("migrated postgres");
    TestDb {
        db,
        url: fresh.url,
        _dir: None,
    }
}

pub(crate) async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("usage.db").display()
    );
    let db = control_plane::db::connect_and_migrate(&url)
        .await
        .expect("migrated sqlite");
    TestDb {
        db,
        url,
        _dir: Some(dir),
    }
}
