//! The one mapping from domain errors to gRPC statuses, with rich details
//! (google.rpc.BadRequest, ResourceInfo, PreconditionFailure, RetryInfo).
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation as ProtoFieldViolation, StatusExt};

use crate::domain::error::{Error, FieldViolation};

/// Most bytes of an error's message (`grpc-message`); the details carry the rest.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most field violations one error lists, and most bytes of their text; the last one listed then
/// says how many more there were. With the message (sent twice: in `grpc-message` and, base64
/// encoded, in `grpc-status-details-bin`) an error's trailers stay under 8 KiB, within every
/// client's default metadata limit (Java's is 8 KiB, grpcio's 16 KiB).
pub const MAX_VIOLATIONS: usize = 20;
pub const MAX_VIOLATION_BYTES: usize = 2048;
/// Most bytes of one violation's description.
const MAX_DESCRIPTION_BYTES: usize = 256;

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The violations an error lists: the first ones, within [`MAX_VIOLATIONS`] and
/// [`MAX_VIOLATION_BYTES`], then one saying how many more were left out.
fn listed(violations: Vec<FieldViolation>) -> Vec<ProtoFieldViolation> {
    let total = violations.len();
    let mut listed = Vec::new();
    let mut bytes = 0;
    for v in violations {
        let description = clipped(&v.description, MAX_DESCRIPTION_BYTES);
        let size = v.field.len() + description.len();
        if listed.len() + 1 == MAX_VIOLATIONS || bytes + size > MAX_VIOLATION_BYTES {
            break;
        }
        bytes += size;
        listed.push(ProtoFieldViolation::new(v.field, description));
    }
    let omitted = total - listed.len();
    if omitted > 0 {
        listed.push(ProtoFieldViolation::new(
            "",
            format!("{omitted} more violations not listed; fix the ones above and send again"),
        ));
    }
    listed
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = clipped(&error.to_string(), MAX_MESSAGE_BYTES);
        match error {
            Error::InvalidArgument(violations) => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(listed(violations)),
            ),
            Error::NotFound { kind, id } => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_resource_info(kind, id, "", "not found"),
            ),
            Error::AlreadyExists { kind, field, value } => {
                let mut details =
                    ErrorDetails::with_resource_info(kind, value, "", "already exists");
                details.add_bad_request_violation(field, "is already taken");
                Status::with_error_details(Code::AlreadyExists, message, details)
            }
            Error::FailedPrecondition {
                subject,
                description,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_precondition_failure_violation("STATE", subject, description),
            ),
            Error::EtagMismatch { kind, id, .. } => Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_resource_info(
                    kind,
                    id,
                    "",
                    "modified concurrently; read it again and retry with the new etag",
                ),
            ),
            Error::InProgress { kind, id, .. } => {
                let mut details = ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
                details.set_resource_info(kind, id, "", "a change is in progress; retry");
                Status::with_error_details(Code::Aborted, message, details)
            }
            Error::ResourceExhausted {
                limit, retry_after, ..
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(limit, message.clone());
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Unavailable(_, _) => {
                tracing::warn!(error = %message, "dependency unavailable");
                Status::with_error_details(
                    Code::Unavailable,
                    message,
                    ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
                )
            }
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error; the gateway's log has the details")
            }
        }
    }
}
