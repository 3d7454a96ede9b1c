//! The migrations apply, roll back and re-apply on both backends we support.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use migrations::Migrator;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn round_trip(db: &DatabaseConnection) {
    Migrator::up(db, None).await.expect("migrations apply");
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .expect("status")
            .is_empty()
    );
    Migrator::down(db, None)
        .await
        .expect("migrations roll back");
    Migrator::up(db, None).await.expect("migrations re-apply");
    let applied = Migrator::get_applied_migrations(db).await.expect("status");
    assert_eq!(applied.len(), Migrator::migrations().len());
}

#[tokio::test]
async fn sqlite_up_down_up() {
    let dir = std::env::temp_dir().join(format!("sy-migrations-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    let db = Database::connect(&url).await.expect("sqlite opens");
    round_trip(&db).await;
    db.close().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_up_down_up() {
    let admin_url =
        std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| ADMIN_URL.to_owned());
    let admin = Database::connect(&admin_url)
        .await
        .expect("postgres admin connection");
    let name = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("admin url has no database part"),
    };
    let db = Database::connect(&url).await.expect("test database");
    round_trip(&db).await;
    db.close().await.expect("close");
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
