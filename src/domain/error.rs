//! The one error type of the gateway. Every layer returns it; the API layer maps it to a gRPC
//! status in exactly one place (`api::status`).
use std::fmt;

/// One field of a request that is wrong, and why. `field` is the path in the request message,
/// e.g. `customer.credit_limit` or `enrollments[1].vendor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),

    /// The object does not exist, or belongs to another tenant (indistinguishable by design).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },

    /// A unique property is already taken.
    #[error("{kind} with {field} {value:?} already exists")]
    AlreadyExists {
        kind: &'static str,
        field: String,
        value: String,
    },

    /// The request is valid but the system is not in a state that allows it.
    #[error("{subject}: {description}")]
    FailedPrecondition {
        subject: String,
        description: String,
    },

    /// Optimistic concurrency: the caller's etag is stale.
    #[error("{kind} {id:?} was modified since it was read (etag {sent:?}, current {current:?})")]
    EtagMismatch {
        kind: &'static str,
        id: String,
        sent: String,
        current: String,
    },

    /// Another request is changing the same object right now: retrying (with the same
    /// request_id) once it has finished may succeed.
    #[error("{kind} {id:?}: {description}")]
    InProgress {
        kind: &'static str,
        id: String,
        description: String,
    },

    /// No credentials, or credentials that do not authenticate.
    #[error("{0}")]
    Unauthenticated(String),

    /// Authenticated, but the key's scope does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),

    /// The caller holds as much of a limited resource as it may (e.g. open streams); retrying
    /// after `retry_after`, or after releasing some, may succeed.
    #[error("{limit} reached: {description}")]
    ResourceExhausted {
        limit: &'static str,
        description: String,
        retry_after: std::time::Duration,
    },

    /// A dependency (the database, a vendor) is unreachable or overloaded; retrying may succeed.
    #[error("{0} is unavailable: {1}")]
    Unavailable(&'static str, String),

    /// A bug or a broken invariant. The detail is logged, not shown to callers.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn precondition(subject: impl Into<String>, description: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            subject: subject.into(),
            description: description.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Collects field violations so a request reports all its problems at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Runs a check and records its violation, yielding the value when it passed.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// Like [`Violations::check`] for checks that report several violations at once.
    pub fn check_all<T>(&mut self, result: Result<T, Vec<FieldViolation>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violations) => {
                self.0.extend(violations);
                None
            }
        }
    }

    /// Collects an `InvalidArgument` error's violations; any other error is returned.
    pub fn check_error<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(Error::InvalidArgument(violations)) => {
                self.0.extend(violations);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}
