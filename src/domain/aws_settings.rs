//! What an AWS partner account's poller asks Cost Explorer for: the width of the windows, which
//! cost metric becomes a line's cost, what a line's meter is, and how many billed requests one
//! poll may send. Chosen per partner account; the AWS connector (`vendors::aws`) carries them out.
use std::str::FromStr;

use super::error::FieldViolation;

/// Billed GetCostAndUsage requests one poll may send by default (USD 0.01 each).
pub const DEFAULT_REQUEST_BUDGET: u32 = 20;
/// The most a partner account may allow one poll (USD 10).
pub const MAX_REQUEST_BUDGET: u32 = 1000;
/// How far back Cost Explorer keeps hourly data.
pub const HOURLY_LOOKBACK_DAYS: i64 = 14;

/// The width of the windows Cost Explorer reports. HOURLY needs hourly data enabled in the
/// payer account and only reaches back [`HOURLY_LOOKBACK_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Granularity {
    Hourly,
    #[default]
    Daily,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hourly => "HOURLY",
            Granularity::Daily => "DAILY",
        }
    }
}

impl FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HOURLY" => Ok(Granularity::Hourly),
            "DAILY" => Ok(Granularity::Daily),
            other => Err(format!("granularity {other:?} is not HOURLY or DAILY")),
        }
    }
}

/// Which Cost Explorer metrics become a line's cost and list price; both are asked for in the
/// same request (GetCostAndUsage takes several metrics at no extra cost). UsageQuantity is
/// always asked for too.
///
/// Cost Explorer's plain metrics are before the partner's discounts (AWS's public rates), the
/// Net ones after them (Solution Provider or other partner discounts, EDP, private pricing):
/// what the MSP pays is the Net figure, and the plain one is the list a customer would pay
/// buying direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum CostMetric {
    /// cost = NetUnblendedCost, list = UnblendedCost: each usage as it happens.
    #[default]
    UnblendedCost,
    /// cost = NetAmortizedCost, list = AmortizedCost: upfront reservation and savings-plan fees
    /// spread over the usage they cover.
    AmortizedCost,
    /// cost = NetUnblendedCost and no list asked for: a LIST_MINUS_DISCOUNT rule recovers list
    /// from the partner account's discount rate.
    NetUnblendedCost,
}

impl CostMetric {
    /// The setting's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CostMetric::UnblendedCost => "UnblendedCost",
            CostMetric::AmortizedCost => "AmortizedCost",
            CostMetric::NetUnblendedCost => "NetUnblendedCost",
        }
    }

    /// The Cost Explorer metric that becomes a line's cost: what the MSP pays.
    pub fn cost_metric(self) -> &'static str {
        match self {
            CostMetric::UnblendedCost | CostMetric::NetUnblendedCost => "NetUnblendedCost",
            CostMetric::AmortizedCost => "NetAmortizedCost",
        }
    }

    /// The Cost Explorer metric that becomes a line's list price, if one is asked for.
    pub fn list_metric(self) -> Option<&'static str> {
        match self {
            CostMetric::UnblendedCost => Some("UnblendedCost"),
            CostMetric::AmortizedCost => Some("AmortizedCost"),
            CostMetric::NetUnblendedCost => None,
        }
    }
}

impl FromStr for CostMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            CostMetric::UnblendedCost,
            CostMetric::AmortizedCost,
            CostMetric::NetUnblendedCost,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| {
            format!("cost metric {s:?} is not UnblendedCost, AmortizedCost or NetUnblendedCost")
        })
    }
}

/// What a line's meter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum MeterMode {
    /// One line per linked account and service; meter = service. One query (plus pages).
    #[default]
    Service,
    /// One line per linked account, service and usage type (e.g. "EU-BoxUsage:t3.micro").
    /// Cost Explorer allows only two group-bys, so this costs one query for the services in the
    /// window and then one query per service, filtered to it and grouped by linked account and
    /// usage type (plus pages each).
    UsageType,
}

impl MeterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterMode::Service => "SERVICE",
            MeterMode::UsageType => "USAGE_TYPE",
        }
    }
}

impl FromStr for MeterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SERVICE" => Ok(MeterMode::Service),
            "USAGE_TYPE" => Ok(MeterMode::UsageType),
            other => Err(format!("meter mode {other:?} is not SERVICE or USAGE_TYPE")),
        }
    }
}

/// An AWS partner account's Cost Explorer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AwsSettings {
    pub granularity: Granularity,
    pub cost_metric: CostMetric,
    pub meter_mode: MeterMode,
    /// Most billed requests one poll may send, retries included, 1 to [`MAX_REQUEST_BUDGET`].
    pub request_budget: u32,
}

impl Default for AwsSettings {
    /// DAILY, UnblendedCost, one line per service, 20 requests a poll.
    fn default() -> Self {
        AwsSettings {
            granularity: Granularity::default(),
            cost_metric: CostMetric::default(),
            meter_mode: MeterMode::default(),
            request_budget: DEFAULT_REQUEST_BUDGET,
        }
    }
}

/// Which AWS settings a request sets; each `Some` already validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AwsSettingsPatch {
    pub granularity: Option<Granularity>,
    pub cost_metric: Option<CostMetric>,
    pub meter_mode: Option<MeterMode>,
    pub request_budget: Option<u32>,
}

impl AwsSettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == AwsSettingsPatch::default()
    }

    pub fn apply(&self, current: AwsSettings) -> AwsSettings {
        AwsSettings {
            granularity: self.granularity.unwrap_or(current.granularity),
            cost_metric: self.cost_metric.unwrap_or(current.cost_metric),
            meter_mode: self.meter_mode.unwrap_or(current.meter_mode),
            request_budget: self.request_budget.unwrap_or(current.request_budget),
        }
    }
}

impl From<AwsSettings> for AwsSettingsPatch {
    /// A patch that replaces every setting.
    fn from(s: AwsSettings) -> Self {
        AwsSettingsPatch {
            granularity: Some(s.granularity),
            cost_metric: Some(s.cost_metric),
            meter_mode: Some(s.meter_mode),
            request_budget: Some(s.request_budget),
        }
    }
}

pub fn check_request_budget(field: &str, budget: u32) -> Result<u32, FieldViolation> {
    if (1..=MAX_REQUEST_BUDGET).contains(&budget) {
        Ok(budget)
    } else {
        Err(FieldViolation::new(
            field,
            format!(
                "{budget} is outside 1 to {MAX_REQUEST_BUDGET} billed requests a poll \
                 (USD 0.01 each)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in [Granularity::Hourly, Granularity::Daily] {
            assert_eq!(g.as_str().parse(), Ok(g));
        }
        for m in [
            CostMetric::UnblendedCost,
            CostMetric::AmortizedCost,
            CostMetric::NetUnblendedCost,
        ] {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        for m in [MeterMode::Service, MeterMode::UsageType] {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert!("hourly".parse::<Granularity>().is_err());
        assert!("BlendedCost".parse::<CostMetric>().is_err());
        assert!("LINKED_ACCOUNT".parse::<MeterMode>().is_err());
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let patch = AwsSettingsPatch {
            cost_metric: Some(CostMetric::AmortizedCost),
            ..Default::default()
        };
        let next = patch.apply(AwsSettings {
            granularity: Granularity::Hourly,
            ..Default::default()
        });
        assert_eq!(next.granularity, Granularity::Hourly);
        assert_eq!(next.cost_metric, CostMetric::AmortizedCost);
        assert_eq!(next.request_budget, DEFAULT_REQUEST_BUDGET);
        assert!(AwsSettingsPatch::default().is_empty() && !patch.is_empty());
    }

    #[test]
    fn budgets_are_bounded() {
        assert!(check_request_budget("f", 1).is_ok());
        assert!(check_request_budget("f", MAX_REQUEST_BUDGET).is_ok());
        assert!(check_request_budget("f", 0).is_err());
        assert!(check_request_budget("f", MAX_REQUEST_BUDGET + 1).is_err());
    }
}
