//! Vendor connectors: one module per vendor, each turning the vendor's cost data into
//! normalized [`UsageLine`](crate::domain::usage::UsageLine)s behind the [`UsageSource`] trait,
//! and acting on customers' vendor accounts behind [`service_control::ServiceControl`].
pub mod aws;
pub mod credentials;
pub mod microsoft;
pub mod service_control;
pub mod simulator;

// The pull types are the ledger's too, so they live in the domain.
pub use crate::domain::usage::{Pull, PullOutcome, PullRequest};
use crate::domain::vendor::Vendor;

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

/// A source of usage for one partner account.
#[async_trait::async_trait]
pub trait UsageSource: Send + Sync {
    fn vendor(&self) -> Vendor;

    /// Reads every line in the window. Connectors retry transient failures themselves.
    async fn pull(&self, request: &PullRequest) -> Pulled;
}
