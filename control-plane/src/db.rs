//! Opening the database and bringing its schema up to date.
//!
//! SQLite (the zero-setup default) gets a single pooled connection in WAL mode with a busy
//! timeout: SQLite allows one writer at a time, and with several connections a transaction that
//! starts by reading and then writes can fail with `SQLITE_BUSY` instead of waiting. One
//! connection serializes statements in-process, which is plenty for a single-node setup; use
//! PostgreSQL for anything larger.

use std::time::Duration;

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Connections for PostgreSQL.
const PG_MAX_CONNECTIONS: u32 = 16;
/// How long a query may wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` (`postgres://…` or `sqlite://…`) and runs pending migrations.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = connect(url).await?;
    Migrator::up(&db, None)
        .await
        .context("running database migrations")?;
    Ok(db)
}

/// Connects without migrating. The error never contains the URL (it may hold a password).
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        // sqlx logs every statement at info level; that is noise at our default level.
        .sqlx_logging(false);
    if is_sqlite(url) {
        opts.max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
    } else {
        opts.max_connections(PG_MAX_CONNECTIONS);
    }
    // sqlx errors name the failure (refused, auth failed, no such database) but not the URL.
    Database::connect(opts)
        .await
        .context("cannot connect to the database")
}

/// Whether the URL names a SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// For /readyz: one round trip, bounded.
/// The pool's connections now, idle ones among them, and its limit (for `/metrics`).
pub fn pool_status(db: &DatabaseConnection) -> (u32, u32, u32) {
    // The getters panic for another backend, so the backend is checked first.
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                idle(pool.num_idle()),
                pool.options().get_max_connections(),
            )
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                idle(pool.num_idle()),
                pool.options().get_max_connections(),
            )
        }
        _ => (0, 0, 0),
    }
}

fn idle(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub async fn ping(db: &DatabaseConnection) -> bool {
    tokio::time::timeout(Duration::from_secs(2), db.execute_unprepared("SELECT 1"))
        .await
        .is_ok_and(|r| r.is_ok())
}
