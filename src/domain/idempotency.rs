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

/// A mutating call's request id with how its answer is recorded: `encode` turns what the work
/// produced into the exact response the caller gets (the API layer's encoding; opaque bytes
/// here). The store records it in the transaction that does the work, so a retry, even after a
/// crash between commit and answer, gets the first answer byte for byte.
pub struct Idempotent<'a, T> {
    pub key: IdempotencyKey,
    encode: Encoder<'a, T>,
}

/// Turns what the work produced into the response bytes to record.
type Encoder<'a, T> = Box<dyn Fn(&T) -> Vec<u8> + Send + Sync + 'a>;

impl<'a, T> Idempotent<'a, T> {
    pub fn new(key: IdempotencyKey, encode: impl Fn(&T) -> Vec<u8> + Send + Sync + 'a) -> Self {
        Idempotent {
            key,
            encode: Box::new(encode),
        }
    }

    /// For callers that answer no client (the demo, tests): a retry is recognised and does
    /// nothing, and its answer is empty.
    pub fn unanswered(key: IdempotencyKey) -> Self {
        Self::new(key, |_| Vec::new())
    }

    /// The response to record for `value`.
    pub fn encode(&self, value: &T) -> Vec<u8> {
        (self.encode)(value)
    }
}

/// What a call guarded by a request id answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// This call did the work (its response is recorded when it had a request id).
    Fresh(T),
    /// A retry of a recorded request id: the first call's response, as recorded; nothing was
    /// done.
    Replayed(Vec<u8>),
}

impl<T> Answer<T> {
    /// What the work produced, when this call did it.
    pub fn fresh(self) -> Option<T> {
        match self {
            Answer::Fresh(value) => Some(value),
            Answer::Replayed(_) => None,
        }
    }

    /// What the work produced, for calls made without a request id (which are never replays).
    pub fn unguarded(self) -> Result<T, Error> {
        self.fresh()
            .ok_or_else(|| Error::Internal("a call without a request id was replayed".into()))
    }
}

/// The error for a retry of a request id recorded before the gateway kept first answers (its
/// row has the resource it touched but no response).
pub fn unrecorded_answer(key: &IdempotencyKey, resource_id: &str) -> Error {
    Error::precondition(
        "request_id",
        format!(
            "{:?} was applied (to {resource_id}) before the gateway kept first answers, so its \
             answer cannot be repeated; read {resource_id}, or send a new request with a new request_id",
            key.request_id
        ),
    )
}

/// What a write produced, and whether it changed anything: what follows a change (a re-rate)
/// follows only fresh ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub fresh: bool,
}
