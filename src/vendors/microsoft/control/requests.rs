//! One Partner Center request with the retries that belong inside a call: 429 waits out
//! `Retry-After`, 5xx / 408 / network faults back off under the retry policy. Any other answer
//! is returned for the caller to judge.
use azure_core::http::{Method, StatusCode, Url};

use super::PartnerCenterControl;
use crate::domain::service_control::ControlError;
use crate::vendors::VendorError;
use crate::vendors::microsoft::http::{Answer, RequestCounter};
use crate::vendors::service_control::{ControlResult, back_off};

impl PartnerCenterControl {
    pub(super) async fn request(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        headers: &[(&'static str, String)],
        what: &str,
    ) -> ControlResult<Answer> {
        let counter = RequestCounter::default();
        let (mut failures, mut throttled) = (0u32, 0u32);
        loop {
            let sent = self
                .client
                .api_with_headers(&counter, method, url, body, headers, what)
                .await;
            let error = match sent {
                Ok(answer) if answer.status == StatusCode::TooManyRequests => {
                    let hint = answer.retry_after();
                    throttled += 1;
                    let too_long = hint.is_some_and(|h| h > self.config.max_wait);
                    if throttled > self.config.max_throttle_retries || too_long {
                        return Err(ControlError::Transient {
                            reason: format!("{what}: throttled by Partner Center (HTTP 429)"),
                            retry_after: hint,
                        });
                    }
                    let wait = hint.unwrap_or_else(|| self.config.retry.delay(throttled - 1));
                    tracing::debug!(?wait, throttled, "Partner Center throttled {what}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(answer) if is_transient(answer.status) => ControlError::transient(format!(
                    "{what}: HTTP {}: {}",
                    u16::from(answer.status),
                    vendor_reason(&answer)
                )),
                Ok(answer) => return Ok(answer),
                Err(VendorError::Unavailable(detail)) => ControlError::transient(detail),
                Err(VendorError::Credentials(detail)) => ControlError::permanent(format!(
                    "{what}: the partner's credentials were refused: {detail}"
                )),
                Err(other) => ControlError::permanent(other.to_string()),
            };
            failures += 1;
            back_off(&self.config.retry, failures, error, what).await?;
        }
    }
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::RequestTimeout || u16::from(status) >= 500
}

/// A non-success answer as a permanent error with Partner Center's own code and reason.
pub(super) fn refusal(answer: &Answer, what: &str) -> ControlError {
    let status = u16::from(answer.status);
    let reason = vendor_reason(answer);
    match status {
        401 | 403 => ControlError::permanent(format!(
            "{what}: Partner Center refused the partner's credentials or permissions (HTTP \
             {status}): {reason}"
        )),
        _ => {
            let code = vendor_code(answer)
                .map(|code| format!(" (code {code})"))
                .unwrap_or_default();
            ControlError::permanent(format!("{what}: HTTP {status}{code}: {reason}"))
        }
    }
}

/// Partner Center's explanation in an error body (`description`, `errorMessage`, or Graph's
/// `error.message`), else a short excerpt of the body.
pub(super) fn vendor_reason(answer: &Answer) -> String {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    [
        "/description",
        "/errorMessage",
        "/message",
        "/error/message",
    ]
    .iter()
    .find_map(|pointer| body.pointer(pointer).and_then(|v| v.as_str()))
    .map(str::to_string)
    .unwrap_or_else(|| answer.excerpt())
}

/// Partner Center's error code (`code`, or Graph's `error.code`), when the body states one.
pub(super) fn vendor_code(answer: &Answer) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    ["/code", "/error/code"]
        .iter()
        .find_map(|pointer| match body.pointer(pointer)? {
            serde_json::Value::String(code) => Some(code.clone()),
            serde_json::Value::Number(code) => Some(code.to_string()),
            _ => None,
        })
}
