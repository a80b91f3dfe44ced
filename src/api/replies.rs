//! How mutating calls answer: the response recorded with their request id (so a retry gets the
//! first answer byte for byte) is the one they send. A new mutating RPC builds its guard with
//! [`guard`] and answers with [`reply`], giving both the same conversion to its response.
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status};

use crate::domain::error::Error;
use crate::domain::idempotency::{Answer, IdempotencyKey, Idempotent};

/// Response metadata set on the answer to a retry of a recorded request id.
pub const REPLAYED_HEADER: &str = "mspgw-replayed";

/// A request id's guard whose recorded answer is the encoding of `to_response` of what the
/// work produced.
pub fn guard<'a, T, M: Message>(
    key: IdempotencyKey,
    to_response: impl Fn(&T) -> M + Send + Sync + 'a,
) -> Idempotent<'a, T> {
    Idempotent::new(key, move |value| to_response(value).encode_to_vec())
}

/// The answer: `to_response` of what a fresh call produced, or the first call's recorded
/// response, marked with [`REPLAYED_HEADER`].
pub fn reply<T, M: Message + Default>(
    answer: Answer<T>,
    to_response: impl FnOnce(&T) -> M,
) -> Result<Response<M>, Status> {
    match answer {
        Answer::Fresh(value) => Ok(Response::new(to_response(&value))),
        Answer::Replayed(recorded) => {
            let message = M::decode(recorded.as_slice()).map_err(|e| {
                Error::Internal(format!("a recorded response does not decode: {e}"))
            })?;
            let mut response = Response::new(message);
            response
                .metadata_mut()
                .insert(REPLAYED_HEADER, MetadataValue::from_static("true"));
            Ok(response)
        }
    }
}
