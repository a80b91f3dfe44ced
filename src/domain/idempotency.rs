//! Request ids make mutating calls safe to retry: the first call's outcome is recorded with a
//! fingerprint of the request, a retry with the same id and the same request gets that outcome,
//! and the same id with a different request is refused.
use sha2::{Digest, Sha256};

use super::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub request_id: String,
    /// The operation, e.g. "CreateCustomer"; a request id names one operation only.
    pub operation: &'static str,
    /// SHA-256 of the operation and the validated request.
    pub fingerprint: String,
}

impl IdempotencyKey {
    pub fn new(
        request_id: String,
        operation: &'static str,
        request: &impl serde::Serialize,
    ) -> Self {
        let body = serde_json::to_vec(request).expect("domain requests serialize");
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0]);
        hasher.update(&body);
        IdempotencyKey {
            request_id,
            operation,
            fingerprint: hex::encode(hasher.finalize()),
        }
    }

    /// A key for a request given as bytes (e.g. an encoded message stream).
    pub fn from_bytes(request_id: String, operation: &'static str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        IdempotencyKey {
            request_id,
            operation,
            fingerprint: hex::encode(hasher.finalize()),
        }
    }

    /// The error for a request id reused with a different request.
    pub fn mismatch(&self) -> Error {
        Error::invalid(
            "request_id",
            format!(
                "{:?} was already used for a different request; use a new request_id for a new request",
                self.request_id
            ),
        )
    }
}

/// What a recorded request id says about the current call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// First time: do the work.
    Fresh,
    /// A retry of a finished call: answer with this resource.
    Done { resource_id: String },
}

/// What a write guarded by a request id produced, and whether this call did the work (false
/// when it replayed an earlier call): what follows a write (a re-rate) follows only fresh ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub fresh: bool,
}
