//! The one mapping from domain errors to gRPC statuses, with rich details
//! (google.rpc.BadRequest, ResourceInfo, PreconditionFailure, RetryInfo).
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation as ProtoFieldViolation, StatusExt};

use crate::domain::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(violations) => {
                let violations: Vec<ProtoFieldViolation> = violations
                    .into_iter()
                    .map(|v| ProtoFieldViolation::new(v.field, v.description))
                    .collect();
                Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request(violations),
                )
            }
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
