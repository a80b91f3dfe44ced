//! What an AWS Cost Explorer connector is built from, and the static credentials it reads.
use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_costexplorer::config::SharedCredentialsProvider;
use aws_sdk_costexplorer::types::Granularity as SdkGranularity;

pub use crate::domain::aws_settings::{
    AwsSettings, CostMetric, DEFAULT_REQUEST_BUDGET, Granularity, MeterMode,
};
use crate::domain::partner_account::PartnerAccountSpec;
pub use crate::domain::service_action::RetryPolicy;
use crate::vendors::{VendorError, credentials};

/// Cost Explorer's home region: the API is global and served from us-east-1.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How one connector reaches Cost Explorer and what it asks for.
///
/// `credentials_ref` (`env:NAME` or `file:PATH`, see [`crate::vendors::credentials`]) points at
/// one of two secret formats:
/// - a JSON object `{"access_key_id": "...", "secret_access_key": "...", "session_token": "..."}`
///   (`session_token` optional; the `AccessKeyId`/`SecretAccessKey`/`SessionToken` spelling of
///   `aws sts` output is accepted too), or
/// - one line `ACCESS_KEY_ID:SECRET_ACCESS_KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCostExplorerConfig {
    /// Overrides the AWS endpoint (an emulator, a VPC endpoint or a proxy).
    pub endpoint_url: Option<String>,
    pub region: String,
    pub credentials_ref: String,
    pub granularity: Granularity,
    pub cost_metric: CostMetric,
    pub meter_mode: MeterMode,
    /// Most billed requests one pull may send, retries included; the pull fails with
    /// `BudgetExhausted` rather than send more.
    pub request_budget: u32,
    pub retry: RetryPolicy,
    /// Limit for one HTTP attempt, so a hung connection becomes a retryable failure.
    pub attempt_timeout: Duration,
}

impl AwsCostExplorerConfig {
    /// Defaults: us-east-1, DAILY, UnblendedCost, one line per service, 20 requests a pull.
    pub fn new(credentials_ref: impl Into<String>) -> Self {
        AwsCostExplorerConfig {
            endpoint_url: None,
            region: DEFAULT_REGION.to_string(),
            credentials_ref: credentials_ref.into(),
            granularity: Granularity::default(),
            cost_metric: CostMetric::default(),
            meter_mode: MeterMode::default(),
            request_budget: DEFAULT_REQUEST_BUDGET,
            retry: DEFAULT_RETRY,
            attempt_timeout: Duration::from_secs(60),
        }
    }

    /// The partner account's credentials, endpoint override (empty = AWS) and AWS settings
    /// (granularity, cost metric, meter mode, request budget); the rest default.
    pub fn for_partner_account(spec: &PartnerAccountSpec) -> Self {
        let mut config = Self::new(spec.credentials_ref.clone());
        config.endpoint_url = Some(spec.endpoint_url.clone()).filter(|url| !url.is_empty());
        let aws = spec.aws.unwrap_or_default();
        config.granularity = aws.granularity;
        config.cost_metric = aws.cost_metric;
        config.meter_mode = aws.meter_mode;
        config.request_budget = aws.request_budget;
        config
    }
}

impl Granularity {
    pub(crate) fn to_sdk(self) -> SdkGranularity {
        match self {
            Granularity::Hourly => SdkGranularity::Hourly,
            Granularity::Daily => SdkGranularity::Daily,
        }
    }
}

/// The connector's own retries of throttling, 5xx and network failures (the SDK's retries are
/// off so this is the only one, and every attempt is counted against the budget): 5 attempts,
/// waits from 1 s doubling up to 30 s, with jitter.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(30),
};

/// What every AWS SDK client of the gateway is built from: the static credentials behind
/// `credentials_ref` (resolved and parsed now, so a bad reference fails when the client is
/// built), the SDK's own retries off (the callers retry, and count, themselves), a limit per
/// HTTP attempt, and an optional endpoint override.
pub(crate) fn sdk_config(
    credentials_ref: &str,
    region: &str,
    endpoint_url: Option<&str>,
    attempt_timeout: Duration,
) -> Result<aws_config::SdkConfig, VendorError> {
    let credentials = StaticCredentials::parse(&credentials::resolve(credentials_ref)?)?;
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(credentials.into_sdk()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        );
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(builder.build())
}

/// An access key pair. Debug never prints the secret parts.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct StaticCredentials {
    #[serde(alias = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(alias = "SecretAccessKey")]
    pub secret_access_key: String,
    #[serde(alias = "SessionToken", default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

impl StaticCredentials {
    /// Parses the secret text; error messages never quote it.
    pub(crate) fn parse(text: &str) -> Result<Self, VendorError> {
        let text = text.trim();
        let credentials = if text.starts_with('{') {
            // serde_json's messages can quote values: report the position only.
            serde_json::from_str::<StaticCredentials>(text).map_err(|e| {
                VendorError::Credentials(format!(
                    "the AWS credentials JSON is not an object with string fields access_key_id \
                     and secret_access_key (error at line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?
        } else {
            let (id, secret) = text.split_once(':').ok_or_else(|| {
                VendorError::Credentials(
                    "AWS credentials are neither a JSON object nor ACCESS_KEY_ID:SECRET".into(),
                )
            })?;
            StaticCredentials {
                access_key_id: id.to_string(),
                secret_access_key: secret.to_string(),
                session_token: None,
            }
        };
        let blank = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
        if blank(&credentials.access_key_id) || blank(&credentials.secret_access_key) {
            return Err(VendorError::Credentials(
                "the AWS access key id and secret must be non-empty and contain no whitespace"
                    .into(),
            ));
        }
        Ok(StaticCredentials {
            session_token: credentials.session_token.filter(|t| !t.is_empty()),
            ..credentials
        })
    }

    pub(crate) fn into_sdk(self) -> aws_sdk_costexplorer::config::Credentials {
        aws_sdk_costexplorer::config::Credentials::new(
            self.access_key_id,
            self.secret_access_key,
            self.session_token,
            None,
            "msp-gateway",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_json_and_colon_forms() {
        let json = StaticCredentials::parse(
            r#"{"access_key_id":"AKIDEXAMPLE","secret_access_key":"wJal/rXU+tn","session_token":"tok"}"#,
        )
        .unwrap();
        assert_eq!(json.access_key_id, "AKIDEXAMPLE");
        assert_eq!(json.secret_access_key, "wJal/rXU+tn");
        assert_eq!(json.session_token.as_deref(), Some("tok"));

        let sts = StaticCredentials::parse(r#"{"AccessKeyId":"A","SecretAccessKey":"S"}"#).unwrap();
        assert_eq!((sts.access_key_id.as_str(), sts.session_token), ("A", None));

        let colon = StaticCredentials::parse("AKIDEXAMPLE:wJal/rXU+tn\n").unwrap();
        assert_eq!(colon.access_key_id, "AKIDEXAMPLE");
        assert_eq!(colon.secret_access_key, "wJal/rXU+tn");
    }

    #[test]
    fn bad_credentials_never_echo_the_secret() {
        for text in [
            "justasecretvalue",
            ":secretvalue",
            "AKID:",
            r#"{"access_key_id":"AKID","secret_access_key":12345678}"#,
            r#"{"access_key_id":"AKID"}"#,
        ] {
            let message = StaticCredentials::parse(text).unwrap_err().to_string();
            assert!(!message.contains("secretvalue"), "{message}");
            assert!(!message.contains("12345678"), "{message}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = StaticCredentials::parse("AKID:topsecret").unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("AKID") && !shown.contains("topsecret"),
            "{shown}"
        );
    }

    #[test]
    fn partner_accounts_supply_the_reference_and_endpoint() {
        let mut spec = PartnerAccountSpec {
            vendor: crate::domain::vendor::Vendor::Aws,
            display_name: "payer".into(),
            vendor_account_id: "111122223333".into(),
            partner_discount_rate: rust_decimal::Decimal::ZERO,
            credentials_ref: "env:AWS_PAYER".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: None,
            microsoft: None,
        };
        let config = AwsCostExplorerConfig::for_partner_account(&spec);
        assert_eq!(config.credentials_ref, "env:AWS_PAYER");
        assert_eq!(
            (config.endpoint_url, config.region.as_str()),
            (None, "us-east-1")
        );
        assert_eq!(
            (config.granularity, config.cost_metric, config.meter_mode),
            (
                Granularity::Daily,
                CostMetric::UnblendedCost,
                MeterMode::Service
            )
        );
        assert_eq!(config.request_budget, DEFAULT_REQUEST_BUDGET);
        spec.aws = Some(AwsSettings {
            granularity: Granularity::Hourly,
            cost_metric: CostMetric::NetUnblendedCost,
            meter_mode: MeterMode::UsageType,
            request_budget: 7,
        });
        let config = AwsCostExplorerConfig::for_partner_account(&spec);
        assert_eq!(
            (config.granularity, config.cost_metric, config.meter_mode),
            (
                Granularity::Hourly,
                CostMetric::NetUnblendedCost,
                MeterMode::UsageType
            )
        );
        assert_eq!(config.request_budget, 7);
        spec.endpoint_url = "http://127.0.0.1:5000".into();
        let config = AwsCostExplorerConfig::for_partner_account(&spec);
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
    }
}
