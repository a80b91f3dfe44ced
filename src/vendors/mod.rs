//! Vendor connectors: one module per vendor, each turning the vendor's cost data into
//! normalized [`UsageLine`]s behind the [`UsageSource`] trait.
pub mod aws;
pub mod credentials;
pub mod microsoft;
pub mod simulator;

use chrono::{DateTime, Utc};

use crate::domain::usage::UsageLine;
use crate::domain::vendor::Vendor;

/// Which of the vendor's billing periods a window is. Partner Center exports the current and
/// the last period separately; Cost Explorer and the simulator read any window and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    #[default]
    Current,
    /// The previous period, while the vendor still revises it.
    Previous,
}

/// A window to pull: every line whose window starts in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub period: Period,
    /// The version tag the previous pull of this window returned (e.g. Partner Center's
    /// manifest eTag), so a source can answer "unchanged" without re-reading the data.
    pub previous_version: Option<String>,
}

impl PullRequest {
    /// The current period's window `[start, end)`, with no version seen yet.
    pub fn current(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        PullRequest {
            start,
            end,
            period: Period::Current,
            previous_version: None,
        }
    }
}

/// The full truth for a window: lines absent from it no longer exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub lines: Vec<UsageLine>,
    /// The source's version tag for this data, if it has one.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullOutcome {
    /// The data changed (or the source cannot tell): here is all of it.
    Data(Pull),
    /// The source's version tag matches `previous_version`: nothing to do.
    Unchanged,
}

/// What a pull cost: vendors bill some API requests (AWS Cost Explorer: USD 0.01 a page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCount(pub u32);

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// Throttled after the connector's own retries; try again after the hint, if any.
    #[error("throttled by the vendor{}", .retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    Throttled {
        retry_after: Option<std::time::Duration>,
    },
    /// Credentials missing, unreadable or refused.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The vendor's request budget for this account is spent.
    #[error("request budget exhausted: {0}")]
    BudgetExhausted(String),
    /// The vendor answered with something we cannot parse.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Network failure or a 5xx that survived retries.
    #[error("vendor unavailable: {0}")]
    Unavailable(String),
    /// The vendor reported a failed operation (e.g. an export that ended in "failed").
    #[error("vendor error: {0}")]
    Failed(String),
}

/// What a pull brought back and what it cost. The cost stands whether or not the pull succeeded:
/// the requests a failed pull sent were billed too.
#[derive(Debug)]
pub struct Pulled {
    pub outcome: Result<PullOutcome, VendorError>,
    pub requests: RequestCount,
}

impl Pulled {
    /// The outcome with its cost, or the error (whose cost is then dropped).
    pub fn into_result(self) -> Result<(PullOutcome, RequestCount), VendorError> {
        self.outcome.map(|outcome| (outcome, self.requests))
    }
}

/// Checks that `pem` holds at least one certificate, as a trusted root CA must.
pub fn check_ca_bundle(pem: &str) -> Result<(), VendorError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| VendorError::Credentials(format!("extra root CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(VendorError::Credentials(
            "extra root CA PEM holds no certificate".into(),
        ));
    }
    Ok(())
}

/// A source of usage for one partner account.
#[async_trait::async_trait]
pub trait UsageSource: Send + Sync {
    fn vendor(&self) -> Vendor;

    /// Reads every line in the window. Connectors retry transient failures themselves.
    async fn pull(&self, request: &PullRequest) -> Pulled;
}
