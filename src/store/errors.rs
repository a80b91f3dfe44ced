//! How database failures become domain errors. Unique violations that mean something to a
//! caller (a taken external_ref, a vendor account already linked) are caught where they happen;
//! everything else lands here.
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::domain::error::Error;

impl From<DieselError> for Error {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                Error::Unavailable(
                    "database",
                    format!("transaction conflict, retry: {}", info.message()),
                )
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Error::Unavailable("database", info.message().to_string())
            }
            DieselError::DatabaseError(_, info)
                if info.message().contains("database is locked") =>
            {
                Error::Unavailable(
                    "database",
                    "SQLite is locked by another writer, retry".into(),
                )
            }
            _ => Error::Internal(format!("database: {error}")),
        }
    }
}

/// Whether `error` is a unique-constraint violation.
pub fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// The PostgreSQL ledger connection (`ledger::copy`) talks tokio-postgres directly.
impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if error.is_closed() {
            return Error::Unavailable("database", format!("connection lost: {error}"));
        }
        match error.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Error::Unavailable("database", format!("transaction conflict, retry: {error}"))
            }
            // Writers of one tenant insert new usage lines side by side (see ledger::tx);
            // two that bring the same new line at once: the later one retries and finds it.
            Some(code)
                if *code == SqlState::UNIQUE_VIOLATION
                    && error.as_db_error().and_then(|db| db.constraint())
                        == Some("usage_lines_pkey") =>
            {
                Error::Unavailable(
                    "database",
                    "another write recorded the same usage line at the same moment; retry".into(),
                )
            }
            // The server's message says what went wrong; the error's Display alone does not.
            _ => match error.as_db_error() {
                Some(db) => Error::Internal(format!("database: {db}")),
                None => Error::Internal(format!("database: {error}")),
            },
        }
    }
}
