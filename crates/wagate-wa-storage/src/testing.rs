//! A throwaway PostgreSQL database for tests, shared by every crate that tests on
//! PostgreSQL (this one, and the main PostgreSQL store next).
//!
//! The server comes from `WAGATE_TEST_DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`.
//! Each call creates its own database (`wagate_test_<ulid>`) and drops it when the handle
//! is dropped, so parallel test runs never see each other's rows. Without a reachable
//! server the tests skip with a printed notice, except under `CI=true`, where a missing
//! database is a failure: CI must not go green by testing nothing.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Where tests look for PostgreSQL when `WAGATE_TEST_DATABASE_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty database; dropped (with any connections left) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the fresh database, for code that opens its own pool.
    pub url: String,
    /// A pool on the fresh database.
    pub pool: PgPool,
    admin_url: String,
    name: String,
}

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("WAGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A fresh database, or `None` (after printing why) when no PostgreSQL can be reached
/// outside CI. Under `CI=true` an unreachable server panics, failing the test.
pub async fn pg_database() -> Option<TestDatabase> {
    database_on(server_url(), in_ci()).await
}

/// A fresh database on the server at `admin_url` (benchmarks name their server): like
/// [`pg_database`] under `CI=true`, an unreachable server panics.
pub async fn database_at(admin_url: &str) -> Option<TestDatabase> {
    database_on(admin_url.to_owned(), true).await
}

#[allow(clippy::print_stdout)] // the skip notice is for whoever runs the tests
async fn database_on(admin_url: String, ci: bool) -> Option<TestDatabase> {
    let admin = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&admin_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            let why = format!(
                "no PostgreSQL at {} ({e}); set WAGATE_TEST_DATABASE_URL to a server the tests may create databases on",
                redact(&admin_url)
            );
            if ci {
                panic!("CI=true and {why}");
            }
            println!("skipping a PostgreSQL test: {why}");
            return None;
        }
    };
    let name = format!(
        "wagate_test_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
    {
        panic!(
            "PostgreSQL at {} answers but CREATE DATABASE failed: {e}",
            redact(&admin_url)
        );
    }
    admin.close().await;
    let url = with_database(&admin_url, &name);
    let pool = match PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => panic!("cannot open the fresh test database {name}: {e}"),
    };
    Some(TestDatabase {
        url,
        pool,
        admin_url,
        name,
    })
}

/// `url` pointing at database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await and may run inside (or after) a runtime, so the DROP DATABASE
        // runs on its own thread with its own small runtime. Best effort: a leftover
        // database only costs disk, and its name says where it came from.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&admin_url)
                    .await
                    .ok()?;
                // WITH (FORCE) ends the connections the test's pool may still hold.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await
                .ok()?;
                admin.close().await;
                Some(())
            })
        });
        let _ = dropped.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1.
    const NOWHERE: &str = "postgres://postgres@127.0.0.1:1/postgres";

    #[tokio::test]
    async fn without_a_server_tests_skip_outside_ci() {
        assert!(database_on(NOWHERE.to_owned(), false).await.is_none());
    }

    #[tokio::test]
    #[should_panic(expected = "CI=true and no PostgreSQL")]
    async fn without_a_server_tests_fail_in_ci() {
        let _ = database_on(NOWHERE.to_owned(), true).await;
    }

    #[test]
    fn the_fresh_database_keeps_server_and_credentials() {
        assert_eq!(
            with_database(
                "postgres://u:pw@db.example:6543/postgres?sslmode=disable",
                "wagate_test_x"
            ),
            "postgres://u:pw@db.example:6543/wagate_test_x?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://u:pw@db.example/postgres"),
            "postgres://u:***@db.example/postgres"
        );
    }
}
