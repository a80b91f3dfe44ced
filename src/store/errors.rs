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
            // The connection is gone (a restart, a failover, a terminated backend), or the
            // server is going away or not yet back: the caller's retry gets a new connection.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction,
                info,
            ) => Error::Unavailable("database", info.message().to_string()),
            DieselError::DatabaseError(_, info) if is_connection_failure(info.message()) => {
                Error::Unavailable("database", info.message().to_string())
            }
            // A transaction whose connection died part-way.
            DieselError::BrokenTransactionManager => {
                Error::Unavailable("database", "the connection broke mid-transaction".into())
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

/// Whether a PostgreSQL message is one of a connection's end (SQLSTATE class 57P: terminated by
/// an administrator, a crash, an idle timeout; the server starting up, shutting down or in
/// recovery). Diesel keeps the message but not the SQLSTATE.
fn is_connection_failure(message: &str) -> bool {
    message.starts_with("terminating connection")
        || message.starts_with("the database system is")
        || message.contains("connection closed")
}

/// Whether a tokio-postgres error is a connection's failure rather than the statement's: SQLSTATE
/// classes 08 (connection exception) and 57P (operator intervention), read-only transactions
/// (a failover in progress), or no server error at all but an I/O failure.
fn is_postgres_connection_failure(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == "25006"
        }
        None => error
            .source()
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
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
        if error.is_closed() || is_postgres_connection_failure(&error) {
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
