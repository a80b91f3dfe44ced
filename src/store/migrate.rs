//! Embedded migrations, one set per dialect, run under a lock so replicas can start together:
//! a session advisory lock on PostgreSQL, an exclusive transaction on SQLite.
use diesel::migration::MigrationVersion;
use diesel::{Connection, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{BackendKind, sqlite_path};
use crate::domain::error::{Error, Result};

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Key of the PostgreSQL advisory lock held while migrating ("mspgw" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6d_73_70_67_77;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Apply every pending migration.
    Up,
    /// Revert every applied migration (tests and `migrate --revert-all`).
    RevertAll,
    /// Revert only the newest applied migration (tests of a data-carrying migration).
    RevertLast,
}

/// Applies (or reverts) migrations and returns the versions touched, oldest first.
pub async fn run(url: &str, direction: Direction) -> Result<Vec<String>> {
    match BackendKind::of_url(url) {
        BackendKind::Postgres => run_postgres(url, direction).await,
        BackendKind::Sqlite => {
            let path = sqlite_path(url).to_string();
            if let Some(dir) = std::path::Path::new(&path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Unavailable("database", format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            tokio::task::spawn_blocking(move || run_sqlite(&path, direction))
                .await
                .map_err(|e| Error::Internal(format!("migration task failed: {e}")))?
        }
    }
}

/// The versions this binary carries for `kind` that `applied` lacks, oldest first.
pub fn pending(kind: BackendKind, applied: &[String]) -> Vec<String> {
    fn embedded<DB: diesel::backend::Backend>(source: &EmbeddedMigrations) -> Vec<String> {
        diesel::migration::MigrationSource::<DB>::migrations(source)
            .map(|all| all.iter().map(|m| m.name().version().to_string()).collect())
            .unwrap_or_default()
    }
    let carried = match kind {
        BackendKind::Postgres => embedded::<diesel::pg::Pg>(&POSTGRES),
        BackendKind::Sqlite => embedded::<diesel::sqlite::Sqlite>(&SQLITE),
    };
    carried
        .into_iter()
        .filter(|version| !applied.contains(version))
        .collect()
}

fn versions(applied: Vec<MigrationVersion<'_>>) -> Vec<String> {
    applied.into_iter().map(|v| v.to_string()).collect()
}

fn migration_error(error: impl std::fmt::Display) -> Error {
    Error::Internal(format!("migration failed: {error}"))
}

/// A PostgreSQL migration's failure. A connection lost under it (a failover, a terminated
/// backend) is UNAVAILABLE like any statement's, so a starting gateway tries again (each
/// migration runs in a transaction); anything else is the migration's own failure.
fn postgres_migration_error(error: Box<dyn std::error::Error + Send + Sync>) -> Error {
    let statement_error = match error.downcast::<diesel::result::Error>() {
        Ok(error) => *error,
        Err(error) => return migration_error(error),
    };
    let text = statement_error.to_string();
    match Error::from(statement_error) {
        unavailable @ Error::Unavailable(..) => unavailable,
        _ => migration_error(text),
    }
}

async fn run_postgres(url: &str, direction: Direction) -> Result<Vec<String>> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| Error::Unavailable("database", e.to_string()))?;
    // Held until this session ends, so a concurrent replica waits here and then finds nothing to do.
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await?;
    // The harness drives sync Diesel through block_in_place; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let result = match direction {
            Direction::Up => harness.run_pending_migrations(POSTGRES).map(versions),
            Direction::RevertAll => harness.revert_all_migrations(POSTGRES).map(versions),
            Direction::RevertLast => harness
                .revert_last_migration(POSTGRES)
                .map(|v| versions(vec![v])),
        };
        drop(harness); // closes the session, releasing the advisory lock
        result.map_err(postgres_migration_error)
    })
    .await
    .map_err(|e| Error::Internal(format!("migration task failed: {e}")))?
}

fn run_sqlite(path: &str, direction: Direction) -> Result<Vec<String>> {
    let mut conn = SqliteConnection::establish(path)
        .map_err(|e| Error::Unavailable("database", e.to_string()))?;
    diesel::connection::SimpleConnection::batch_execute(&mut conn, "PRAGMA busy_timeout = 10000;")?;
    // Switching a new database to WAL needs it to itself; a replica starting at the same moment
    // can get SQLITE_BUSY here without the busy timeout being waited, so wait here instead.
    let mut attempts = 0;
    while let Err(error) =
        diesel::connection::SimpleConnection::batch_execute(&mut conn, "PRAGMA journal_mode = WAL;")
    {
        attempts += 1;
        if attempts >= 100 || !error.to_string().contains("database is locked") {
            return Err(error.into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    super::sqlite_functions::register(&mut conn)?;
    // EXCLUSIVE keeps other processes out for the whole run; each migration nests as a savepoint.
    conn.exclusive_transaction(|conn| {
        let result = match direction {
            Direction::Up => conn.run_pending_migrations(SQLITE).map(versions),
            Direction::RevertAll => conn.revert_all_migrations(SQLITE).map(versions),
            Direction::RevertLast => conn
                .revert_last_migration(SQLITE)
                .map(|v| versions(vec![v])),
        };
        result.map_err(|e| MigrationFailed(e.to_string()))
    })
    .map_err(migration_error)
}

/// Lets a migration error roll back the enclosing transaction.
#[derive(Debug)]
struct MigrationFailed(String);

impl From<diesel::result::Error> for MigrationFailed {
    fn from(error: diesel::result::Error) -> Self {
        MigrationFailed(error.to_string())
    }
}

impl std::fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn failed(kind: DatabaseErrorKind, message: &str) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(DieselError::DatabaseError(
            kind,
            Box::new(message.to_string()),
        ))
    }

    /// A connection lost under a migration (the chaos test terminates the connections of a
    /// gateway starting up) is UNAVAILABLE, so the gateway tries again; a migration's own
    /// failure stays an internal error.
    #[test]
    fn a_connection_lost_under_a_migration_is_unavailable() {
        for lost in [
            failed(DatabaseErrorKind::Unknown, "connection closed"),
            failed(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection",
            ),
            failed(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
        ] {
            assert!(
                matches!(postgres_migration_error(lost), Error::Unavailable(..)),
                "a lost connection"
            );
        }
        let own = postgres_migration_error(failed(
            DatabaseErrorKind::Unknown,
            "syntax error at or near \"TABEL\"",
        ));
        assert!(
            matches!(&own, Error::Internal(m) if m.contains("migration failed: syntax error")),
            "{own:?}"
        );
        let other = postgres_migration_error("no such migration".into());
        assert!(matches!(other, Error::Internal(..)), "{other:?}");
    }
}
