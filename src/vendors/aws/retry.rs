//! Which AWS failures (Cost Explorer's, Organizations') are worth another attempt, and how long to
//! wait before it.
use std::time::Duration;

use aws_sdk_costexplorer::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;

use super::settings::RetryPolicy;
use crate::vendors::VendorError;

/// What to do about one failed attempt.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Cost Explorer has no data for the query (DataUnavailableException): an empty answer.
    NoData,
    /// Throttled: back off and retry.
    Throttled,
    /// 5xx, timeout or network failure: back off and retry.
    Transient(String),
    /// Retrying cannot help.
    Fatal(VendorError),
}

const THROTTLE_CODES: &[&str] = &[
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

const CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
];

/// Classifies a failed call of any AWS SDK operation (Cost Explorer's, Organizations').
pub(crate) fn classify<E>(error: &SdkError<E>) -> Verdict
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            let status = context.raw().status().as_u16();
            classify_response(err.code(), status, err.message())
        }
        SdkError::TimeoutError(_) => Verdict::Transient("request timed out".into()),
        SdkError::DispatchFailure(failure) if !failure.is_user() => {
            Verdict::Transient(format!("{}", DisplayErrorContext(error)))
        }
        SdkError::ResponseError(context) if context.raw().status().is_server_error() => {
            Verdict::Transient(format!("HTTP {}", context.raw().status().as_u16()))
        }
        SdkError::ResponseError(_) => Verdict::Fatal(VendorError::Malformed(format!(
            "{}",
            DisplayErrorContext(error)
        ))),
        _ => Verdict::Fatal(VendorError::Failed(format!(
            "{}",
            DisplayErrorContext(error)
        ))),
    }
}

/// Classifies an error response by its AWS error code and HTTP status.
pub(crate) fn classify_response(code: Option<&str>, status: u16, message: Option<&str>) -> Verdict {
    let code_str = code.unwrap_or("");
    let described = format!(
        "{} (HTTP {status}): {}",
        if code_str.is_empty() {
            "error"
        } else {
            code_str
        },
        message.unwrap_or("no message")
    );
    match code_str {
        "DataUnavailableException" => Verdict::NoData,
        c if THROTTLE_CODES.contains(&c) || status == 429 => Verdict::Throttled,
        c if CREDENTIAL_CODES.contains(&c) || status == 401 || status == 403 => {
            Verdict::Fatal(VendorError::Credentials(described))
        }
        // The data moved between pages; a fresh pull (a later poll) starts over.
        "RequestChangedException" | "InvalidNextTokenException" => {
            Verdict::Fatal(VendorError::Unavailable(described))
        }
        _ if status >= 500 => Verdict::Transient(described),
        _ => Verdict::Fatal(VendorError::Failed(described)),
    }
}

/// Exponential back-off with jitter: before retry `n` (0-based) wait between half and all of
/// `min(max_delay, base_delay * 2^n)`, so clients throttled together spread out.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    policy
        .delay(retry)
        .mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_retry_others_do_not() {
        let verdict = |code: Option<&str>, status| classify_response(code, status, Some("m"));
        assert!(matches!(
            verdict(Some("LimitExceededException"), 400),
            Verdict::Throttled
        ));
        assert!(matches!(
            verdict(Some("ThrottlingException"), 400),
            Verdict::Throttled
        ));
        assert!(matches!(verdict(None, 429), Verdict::Throttled));
        assert!(matches!(
            verdict(Some("InternalFailure"), 500),
            Verdict::Transient(_)
        ));
        assert!(matches!(verdict(None, 503), Verdict::Transient(_)));
        assert!(matches!(
            verdict(Some("DataUnavailableException"), 400),
            Verdict::NoData
        ));
        assert!(matches!(
            verdict(Some("UnrecognizedClientException"), 400),
            Verdict::Fatal(VendorError::Credentials(_))
        ));
        assert!(matches!(
            verdict(Some("RequestChangedException"), 400),
            Verdict::Fatal(VendorError::Unavailable(_))
        ));
        assert!(matches!(
            verdict(Some("ValidationException"), 400),
            Verdict::Fatal(VendorError::Failed(_))
        ));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = backoff(&policy, 0);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = backoff(&policy, 2);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert!(backoff(&policy, 40) <= Duration::from_secs(1));
        }
    }
}
