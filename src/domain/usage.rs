//! Usage lines: a vendor's statement of cost for one key over one window, normalized across
//! vendors. Each pull of a window restates the full truth for it.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// What identifies one usage line across pulls: a re-pull of the same key restates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// The vendor's id of the account that used the service: an AWS linked account, a Microsoft
    /// customer tenant or subscription, a simulator account.
    pub vendor_account_id: String,
    /// e.g. "Amazon Elastic Compute Cloud - Compute", "Virtual Machines".
    pub service: String,
    /// The meter or usage type, e.g. "EU-BoxUsage:t3.micro" or a Microsoft MeterId.
    pub meter: String,
    /// Region or location; empty when the vendor does not say.
    pub region: String,
    pub window_start: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    pub key: UsageKey,
    pub window_end: DateTime<Utc>,
    /// Human-readable meter name where the vendor gives one.
    pub meter_name: String,
    pub quantity: Decimal,
    pub unit: String,
    /// What the vendor charges the MSP (after the partner discount), in `currency`.
    pub cost: Decimal,
    /// The list (retail) price total, where the vendor states it; rules priced off list use it.
    pub list_cost: Option<Decimal>,
    /// ISO 4217 code of `cost` and `list_cost`, as the vendor sent it.
    pub currency: String,
    /// The vendor may still revise this figure (AWS's Estimated flag, Microsoft's unbilled usage).
    pub estimated: bool,
    /// The vendor tenant the account belongs to, where the vendor says (Microsoft's
    /// `CustomerId`, the customer's Entra tenant): a customer linked by tenant is charged for
    /// every account of it that has no link of its own. Not part of the key.
    pub vendor_tenant_id: Option<String>,
}

/// Which of the vendor's billing periods a window is. Partner Center exports the current and
/// the last period separately; Cost Explorer and the simulator read any window and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VendorPeriod {
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
    pub period: VendorPeriod,
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
            period: VendorPeriod::Current,
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
