//! AWS Cost Explorer connector: GetCostAndUsage for the payer (partner) account, one line per
//! linked account and service (or usage type) and Cost Explorer period.
//!
//! Every GetCostAndUsage request is billed (USD 0.01 a page), so each pull counts the requests
//! it sends, retries included, and refuses to send more than its budget. Throttling, 5xx and
//! network failures are retried here with exponential back-off and jitter; the SDK's own
//! retries are off so the budget sees every attempt.
//!
//! Cost Explorer groups by two dimensions at most. [`MeterMode::Service`] groups by
//! LINKED_ACCOUNT and SERVICE (meter = service). [`MeterMode::UsageType`] runs that query to
//! learn which services have data, then one query per service (by name, so the request sequence
//! is deterministic) filtered to it and grouped by LINKED_ACCOUNT and USAGE_TYPE (meter = usage
//! type); only the per-service lines are returned, so nothing is counted twice.
//! DataUnavailableException is an empty window, not an error.
//!
//! Each request asks for the cost and the list metric together (see [`CostMetric`]: by default
//! cost = NetUnblendedCost, what the MSP pays after its partner discounts, and list =
//! UnblendedCost, AWS's public rate) and leaves credits and refunds out (RECORD_TYPE Credit and
//! Refund): a credit marked up like usage would hand the customer more than AWS gave, and AWS
//! credits on a reseller's payer account are mostly the partner's own (promotions, programme
//! funding). The MSP passes one on deliberately, by pushing a negative line (IngestUsage).
#[doc(hidden)]
pub mod fuzz;
mod mapping;
pub mod organizations;
mod retry;
mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
use aws_sdk_costexplorer::types::{DateInterval, GroupDefinition, GroupDefinitionType};
use chrono::{DateTime, Utc};

pub use settings::{
    AwsCostExplorerConfig, AwsSettings, CostMetric, DEFAULT_REGION, DEFAULT_REQUEST_BUDGET,
    Granularity, MeterMode, RetryPolicy,
};

use self::mapping::Grouping;
use self::retry::Verdict;
use super::{Pull, PullOutcome, PullRequest, Pulled, RequestCount, UsageSource, VendorError};
use crate::domain::usage::UsageLine;
use crate::domain::vendor::Vendor;

/// Reads one payer account's costs through Cost Explorer.
#[derive(Debug)]
pub struct AwsCostExplorer {
    client: Client,
    config: AwsCostExplorerConfig,
    requests_sent: AtomicU64,
}

impl AwsCostExplorer {
    /// Resolves the credentials now, so a bad reference fails when the connector is built.
    /// A rotated secret takes effect when the connector is built again.
    pub fn new(config: AwsCostExplorerConfig) -> Result<Self, VendorError> {
        if config.retry.max_attempts == 0 {
            return Err(VendorError::Failed(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        let sdk = settings::sdk_config(
            &config.credentials_ref,
            &config.region,
            config.endpoint_url.as_deref(),
            config.attempt_timeout,
        )?;
        Ok(AwsCostExplorer {
            client: Client::new(&sdk),
            config,
            requests_sent: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &AwsCostExplorerConfig {
        &self.config
    }

    /// Billed requests sent since the connector was built, failed pulls included.
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Every line in the request's window, sorted by key.
    async fn lines(
        &self,
        meter: &mut BudgetMeter,
        request: &PullRequest,
    ) -> Result<Vec<UsageLine>, VendorError> {
        let Some(window) =
            mapping::query_window(self.config.granularity, request.start, request.end)
        else {
            return Ok(Vec::new());
        };
        let by_service = self.query(meter, window, Grouping::AccountService).await?;
        let lines = match self.config.meter_mode {
            MeterMode::Service => by_service,
            MeterMode::UsageType => {
                // The service pass only tells which services to break down.
                let services: BTreeSet<String> =
                    by_service.into_iter().map(|l| l.key.service).collect();
                let mut detailed = Vec::new();
                for service in &services {
                    let grouping = Grouping::AccountUsageType { service };
                    detailed.extend(self.query(meter, window, grouping).await?);
                }
                detailed
            }
        };
        unique_by_key(lines)
    }

    /// All pages of one query.
    async fn query(
        &self,
        meter: &mut BudgetMeter,
        window: (DateTime<Utc>, DateTime<Utc>),
        grouping: Grouping<'_>,
    ) -> Result<Vec<UsageLine>, VendorError> {
        let mut lines = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let Some(page) = self.page(meter, window, grouping, token.as_deref()).await? else {
                if token.is_none() {
                    return Ok(Vec::new());
                }
                // Half an answer is not the full truth for the window.
                return Err(VendorError::Unavailable(
                    "Cost Explorer reported its data unavailable between pages".into(),
                ));
            };
            lines.extend(mapping::lines_from_results(
                page.results_by_time(),
                grouping,
                self.config.cost_metric,
            )?);
            match page.next_page_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(lines),
            }
        }
    }

    /// One page, retried; None when Cost Explorer has no data for it.
    async fn page(
        &self,
        meter: &mut BudgetMeter,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        grouping: Grouping<'_>,
        token: Option<&str>,
    ) -> Result<Option<GetCostAndUsageOutput>, VendorError> {
        let granularity = self.config.granularity;
        let period = DateInterval::builder()
            .start(mapping::format_bound(granularity, start))
            .end(mapping::format_bound(granularity, end))
            .build()
            .map_err(|e| VendorError::Failed(e.to_string()))?;
        let mut request = self
            .client
            .get_cost_and_usage()
            .time_period(period)
            .granularity(granularity.to_sdk())
            .set_metrics(Some(mapping::metrics(self.config.cost_metric)))
            .filter(mapping::usage_filter(grouping))
            .set_next_page_token(token.map(str::to_string));
        for key in grouping.dimensions() {
            request = request.group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Dimension)
                    .key(key)
                    .build(),
            );
        }

        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            meter.spend()?;
            attempt += 1;
            let error = match request.clone().send().await {
                Ok(output) => return Ok(Some(output)),
                Err(error) => error,
            };
            let failure = match retry::classify(&error) {
                Verdict::NoData => return Ok(None),
                Verdict::Fatal(e) => return Err(e),
                Verdict::Throttled if attempt >= policy.max_attempts => {
                    return Err(VendorError::Throttled { retry_after: None });
                }
                Verdict::Transient(what) if attempt >= policy.max_attempts => {
                    return Err(VendorError::Unavailable(format!(
                        "{what}, after {attempt} attempts"
                    )));
                }
                Verdict::Throttled => "throttled".to_string(),
                Verdict::Transient(what) => what,
            };
            let delay = retry::backoff(&policy, attempt - 1);
            tracing::warn!(attempt, ?delay, %failure, "Cost Explorer request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait::async_trait]
impl UsageSource for AwsCostExplorer {
    fn vendor(&self) -> Vendor {
        Vendor::Aws
    }

    async fn pull(&self, request: &PullRequest) -> Pulled {
        let mut meter = BudgetMeter::new(self.config.request_budget);
        let result = self.lines(&mut meter, request).await;
        self.requests_sent
            .fetch_add(u64::from(meter.sent), Ordering::Relaxed);
        let outcome = result.map(|lines| {
            tracing::debug!(
                lines = lines.len(),
                requests = meter.sent,
                "pulled Cost Explorer usage"
            );
            PullOutcome::Data(Pull {
                start: request.start,
                end: request.end,
                lines,
                version: None,
            })
        });
        Pulled {
            outcome,
            requests: RequestCount(meter.sent),
        }
    }
}

/// Sorted by key; a key twice means the pages overlapped, and summing could double-count.
fn unique_by_key(lines: Vec<UsageLine>) -> Result<Vec<UsageLine>, VendorError> {
    let mut by_key = BTreeMap::new();
    for line in lines {
        if let Some(previous) = by_key.insert(line.key.clone(), line) {
            return Err(VendorError::Malformed(format!(
                "Cost Explorer returned {:?} twice",
                previous.key
            )));
        }
    }
    Ok(by_key.into_values().collect())
}

/// Counts billed requests and refuses the one past the budget.
struct BudgetMeter {
    sent: u32,
    budget: u32,
}

impl BudgetMeter {
    fn new(budget: u32) -> Self {
        BudgetMeter { sent: 0, budget }
    }

    fn spend(&mut self) -> Result<(), VendorError> {
        if self.sent >= self.budget {
            return Err(VendorError::BudgetExhausted(format!(
                "this pull needs more than its {} billed Cost Explorer requests (USD 0.01 each); \
                 raise request_budget or pull a shorter window",
                self.budget
            )));
        }
        self.sent += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_refuses_the_request_past_the_budget() {
        let mut meter = BudgetMeter::new(2);
        assert!(meter.spend().is_ok() && meter.spend().is_ok());
        assert!(matches!(
            meter.spend(),
            Err(VendorError::BudgetExhausted(_))
        ));
        assert_eq!(meter.sent, 2);
    }

    #[test]
    fn building_never_needs_the_network_and_checks_credentials() {
        let mut config = AwsCostExplorerConfig::new("env:MSPGW_TEST_AWS_SURELY_UNSET");
        assert!(matches!(
            AwsCostExplorer::new(config.clone()),
            Err(VendorError::Credentials(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws.json");
        std::fs::write(
            &path,
            r#"{"access_key_id":"AKID","secret_access_key":"s3cr3t"}"#,
        )
        .unwrap();
        config.credentials_ref = format!("file:{}", path.display());
        let connector = AwsCostExplorer::new(config).unwrap();
        assert!(!format!("{connector:?}").contains("s3cr3t"));
    }
}
