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
