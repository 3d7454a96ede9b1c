//! A fresh PostgreSQL database per test run, so tests never share state and can run in parallel.
//!
//! The database is created on the server named by `TEST_DATABASE_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) as `sy_test_<unix seconds>_<uuid>`. Dropping it
//! is best effort: a test that fails leaves its database behind for inspection, which is what one
//! wants. So that leftovers cannot pile up across runs on a long-lived machine, every
//! [`fresh_database`] call first drops test databases created more than [`STALE_AFTER_SECS`] ago
//! (no test run lasts that long; the creation time is read from the name).

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, Row};

/// Where databases are created and dropped from, overridable for CI machines.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test run.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Connection URL of the new database (the admin URL with the path replaced).
    pub url: String,
    /// `sy_test_<unix seconds>_<uuid>`.
    pub name: String,
}

/// Quotes an identifier for PostgreSQL. Our names come from the server's catalogue or from a
/// UUID, never from user input, but quoting keeps odd table names (and reviewers) safe.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Test databases older than this are dropped by the next [`fresh_database`] call.
pub const STALE_AFTER_SECS: u64 = 3 * 60 * 60;
const NAME_PREFIX: &str = "sy_test_";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The creation time encoded in a test database's name, if it has our format.
fn created_at(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (secs, _uuid) = rest.split_once('_')?;
    secs.parse().ok()
}

/// Drops test databases that earlier runs left behind. Best effort: a failure here must not fail
/// the test that is starting (a database still in use by a concurrent run is never stale).
async fn drop_stale(conn: &mut sqlx::PgConnection) {
    let names: Vec<String> = match sqlx::query_scalar(
        r"SELECT datname FROM pg_database WHERE datname LIKE 'sy\_test\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(names) => names,
        Err(_) => return,
    };
    let cutoff = unix_now().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        if created_at(&name).is_some_and(|t| t < cutoff) {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// Creates `sy_test_<unix seconds>_<uuid>` and returns its URL.
pub async fn fresh_database() -> anyhow::Result<TestDatabase> {
    let admin = admin_url();
    let name = format!(
        "{NAME_PREFIX}{}_{}",
        unix_now(),
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("connecting to the Postgres admin database at {admin}"))?;
    drop_stale(&mut conn).await;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        quote_ident(&name)
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("CREATE DATABASE {name}"))?;
    let _ = conn.close().await;
    let mut url = reqwest::Url::parse(&admin).context("TEST_DATABASE_ADMIN_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(TestDatabase {
        url: url.to_string(),
        name,
    })
}

impl TestDatabase {
    /// Drops the database, closing whatever connections are still open to it. Best effort:
    /// failures are ignored (a leftover test database harms nothing).
    pub async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }

    /// Every row of every table as text; see [`dump_text`].
    pub async fn dump_text(&self) -> anyhow::Result<Vec<TableRow>> {
        dump_text(&self.url).await
    }
}

/// One row of a table, rendered by PostgreSQL's row-to-text cast (every column, `bytea` as
/// `\x…` hex, JSON as its text).
#[derive(Debug, Clone)]
pub struct TableRow {
    /// `schema.table`.
    pub table: String,
    pub text: String,
}

/// Every row of every user table of the database at `url`, cast to text. Used to prove that a
/// secret is stored nowhere in plaintext: it reads whatever tables exist, so a column added
/// later is covered without changing the test.
pub async fn dump_text(url: &str) -> anyhow::Result<Vec<TableRow>> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to the test database")?;
    let tables = sqlx::query(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .context("listing tables")?;
    let mut rows = Vec::new();
    for t in tables {
        let schema: String = t.try_get(0)?;
        let table: String = t.try_get(1)?;
        let sql = format!(
            "SELECT t::text FROM {}.{} AS t",
            quote_ident(&schema),
            quote_ident(&table)
        );
        let texts: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("reading {schema}.{table}"))?;
        rows.extend(texts.into_iter().map(|text| TableRow {
            table: format!("{schema}.{table}"),
            text,
        }));
    }
    let _ = conn.close().await;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn creates_dumps_and_drops_a_database() {
        let db = fresh_database()
            .await
            .expect("Postgres at TEST_DATABASE_ADMIN_URL");
        assert!(db.name.starts_with("sy_test_"));
        assert!(db.url.ends_with(&db.name));
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("CREATE TABLE \"odd \"\"name\" (id int, secret text, blob bytea, doc jsonb)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO \"odd \"\"name\" VALUES (1, 'needle', 'raw', '{\"k\":\"v\"}')")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let rows = db.dump_text().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].table, "public.odd \"name");
        assert!(rows[0].text.contains("needle"), "{}", rows[0].text);
        assert!(
            rows[0].text.contains("\\\\x726177"),
            "bytea as hex: {}",
            rows[0].text
        );

        let name = db.name.clone();
        db.drop_database().await;
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn creation_time_is_read_back_from_the_name() {
        assert_eq!(
            created_at("sy_test_1795307601_0123abcd"),
            Some(1_795_307_601)
        );
        assert_eq!(created_at("sy_test_0123abcd"), None);
        assert_eq!(created_at("other_1795307601_x"), None);
    }
}
