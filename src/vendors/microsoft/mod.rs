//! Microsoft Partner Center (CSP) connector: Azure-plan usage through the asynchronous
//! "unbilled daily rated usage reconciliation" export (API v2).
//!
//! The flow, as Microsoft documents it:
//! 1. `POST {api}/reports/partners/billing/usage/unbilled/export` with
//!    `{"currencyCode","billingPeriod","attributeSet"}` answers `202 Accepted` and a `Location`
//!    header naming the long-running operation.
//! 2. `GET` the operation until its `status` is `succeeded` or `failed`, honouring `Retry-After`.
//! 3. The succeeded operation names the manifest (`resourceLocation@odata.navigationLink`, or the
//!    manifest inline as `resourceLocation`): `rootDirectory`, `sasToken`, `blobs[].name`, and an
//!    `eTag` that changes only when the data does.
//! 4. Each blob (`{rootDirectory}/{name}?{sasToken}`) is gzipped JSON lines, one rated usage row
//!    a line.
//!
//! If the manifest's eTag equals [`PullRequest::previous_version`] the pull answers
//! [`PullOutcome::Unchanged`] without downloading a blob.
//!
//! Where the API lives: Microsoft moved the GA version of this API from the Partner Center host to
//! Microsoft Graph (`https://graph.microsoft.com/v1.0`, token scope
//! `https://graph.microsoft.com/.default`, permission `PartnerBilling.Read.All`). Both the base URL
//! and the scope are configuration; the defaults follow Microsoft's current documentation.
//! `https://api.partnercenter.microsoft.com/v1` with scope
//! `https://api.partnercenter.microsoft.com/.default` is the older (beta) placement.
//!
//! All HTTP goes through azure_core pipelines (the bearer-token policy for the API, a plain
//! pipeline for the SAS-signed blob downloads so the API token never reaches blob storage), and
//! tokens come from azure_identity's `ClientSecretCredential`. [`RequestCount`] counts the API
//! and blob requests actually sent, 429s and pipeline retries included; Entra ID token requests
//! are not counted (they cost nothing). A token is reused by every pull of the same
//! [`PartnerCenterSource`] until five minutes before it expires (azure_core's bearer policy and
//! azure_identity's cache both refresh then), so the poller keeps one source per account.
//!
//! A pull's window is one billing period (calendar month, UTC), exported as `current` or `last`
//! per [`PullRequest::period`]. Every row of every blob is parsed: a malformed row fails the pull
//! with [`VendorError::Malformed`] naming the blob, line and field, since a half-read export is
//! not the full truth the ledger needs. Rows are merged per usage key (one Azure-plan
//! subscription can use a meter through several Azure subscriptions and resources on one day);
//! latent rows dated before the period are charged on its first day (see
//! [`rows::place_in_period`]).
//!
//! What each charge field is made of (the README has the table): cost = `BillingPreTaxTotal` in
//! `BillingCurrency` (what Microsoft charges the partner, after its discounts); list =
//! `UnitPrice` × `Quantity` × `PCToBCExchangeRate` (the price-list price of the quantity, from
//! the pricing currency into the billing currency); quantity = `Quantity`, unit =
//! `UnitOfMeasure`; meter = `MeterId`; service = `MeterCategory` (else `ProductName`); region =
//! `ResourceLocation` (else `MeterRegion`); the day = `UsageDate`.
pub mod control;
mod export;
#[doc(hidden)]
pub mod fuzz;
mod http;
mod rows;

use std::time::Duration;

use serde::Deserialize;

pub use rows::{AccountKey, RatedUsageRow};

use super::credentials;
use super::{
    Pull, PullOutcome, PullRequest, Pulled, RequestCount, UsageSource, VendorError, VendorPeriod,
};
use crate::domain::partner_account::PartnerAccountSpec;
use crate::domain::vendor::Vendor;

/// The unbilled billing period to export; Partner Center offers the current and the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingPeriod {
    #[default]
    Current,
    Last,
}

impl BillingPeriod {
    pub fn of(period: VendorPeriod) -> Self {
        match period {
            VendorPeriod::Current => BillingPeriod::Current,
            VendorPeriod::Previous => BillingPeriod::Last,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BillingPeriod::Current => "current",
            BillingPeriod::Last => "last",
        }
    }
}

/// How the HTTP pipeline retries transient failures (connection errors, 408, 5xx). Throttling
/// (429) is not retried here: the connector handles it itself (see
/// [`PartnerCenterConfig::max_throttle_retries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrySettings {
    /// No pipeline retries (tests: a failing call fails at once).
    None,
    Exponential {
        max_retries: u32,
        initial_delay: Duration,
        max_delay: Duration,
        max_total_elapsed: Duration,
    },
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings::Exponential {
            max_retries: 4,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total_elapsed: Duration::from_secs(120),
        }
    }
}

/// Configuration of one Partner Center partner account's usage source.
///
/// `credentials_ref` (`env:NAME` or `file:PATH`, see [`credentials::resolve`]) points at a JSON
/// document `{"client_id": "...", "client_secret": "...", "tenant_id": "..."}` for an Entra app
/// registered in the partner tenant. `tenant_id` is optional; when present it must equal
/// `partner_tenant_id` (a guard against pairing a partner account with another partner's app).
#[derive(Debug, Clone)]
pub struct PartnerCenterConfig {
    /// Base URL the API paths are joined to, e.g. `https://graph.microsoft.com/v1.0`.
    pub api_base_url: String,
    /// Entra ID authority host; must be https (azure_identity insists).
    pub authority_host: String,
    /// The OAuth scope of the API's access token.
    pub scope: String,
    /// The partner (CSP) tenant id: the token is requested from this tenant.
    pub partner_tenant_id: String,
    pub credentials_ref: String,
    /// ISO 4217 code of the partner's billing currency (`currencyCode` of the export).
    pub currency: String,
    /// Which id of a row becomes [`crate::domain::usage::UsageKey::vendor_account_id`].
    pub account_key: AccountKey,
    /// Wait between operation polls when the service sends no `Retry-After`.
    pub poll_interval: Duration,
    /// Operation polls before giving up on a still-running export.
    pub max_poll_attempts: u32,
    /// Longest single wait (poll or throttle back-off). A 429 asking for more is returned as
    /// [`VendorError::Throttled`] at once rather than holding the poller.
    pub max_wait: Duration,
    /// 429 answers tolerated per request before [`VendorError::Throttled`].
    pub max_throttle_retries: u32,
    /// PEM of extra root CAs to trust (an emulator's CA); the system roots stay trusted.
    pub extra_root_ca_pem: Option<String>,
    pub retry: RetrySettings,
}

impl PartnerCenterConfig {
    /// Production defaults for a partner tenant, billing currency and credentials reference.
    pub fn new(partner_tenant_id: &str, credentials_ref: &str, currency: &str) -> Self {
        PartnerCenterConfig {
            api_base_url: "https://graph.microsoft.com/v1.0".into(),
            authority_host: "https://login.microsoftonline.com".into(),
            scope: "https://graph.microsoft.com/.default".into(),
            partner_tenant_id: partner_tenant_id.into(),
            credentials_ref: credentials_ref.into(),
            currency: currency.into(),
            account_key: AccountKey::Subscription,
            poll_interval: Duration::from_secs(30),
            max_poll_attempts: 120,
            max_wait: Duration::from_secs(300),
            max_throttle_retries: 5,
            extra_root_ca_pem: None,
            retry: RetrySettings::default(),
        }
    }
}

impl PartnerCenterConfig {
    /// A partner account's partner tenant, credentials, endpoint override (empty = Microsoft
    /// Graph) and Microsoft settings (billing currency, authority host, token scope), trusting
    /// `extra_root_ca_pem` besides the system roots; the rest default.
    pub fn for_partner_account(
        spec: &PartnerAccountSpec,
        extra_root_ca_pem: Option<String>,
    ) -> Result<Self, VendorError> {
        let settings = spec.microsoft.as_ref().ok_or_else(|| {
            VendorError::Failed("the partner account has no microsoft_settings".into())
        })?;
        let mut config = Self::new(
            &spec.vendor_account_id,
            &spec.credentials_ref,
            settings.billing_currency.code(),
        );
        if !spec.endpoint_url.is_empty() {
            config.api_base_url = spec.endpoint_url.clone();
        }
        config.authority_host = settings.authority_host().to_string();
        config.scope = settings.token_scope().to_string();
        config.extra_root_ca_pem = extra_root_ca_pem;
        Ok(config)
    }
}

/// The secret document behind `credentials_ref`.
#[derive(Deserialize)]
struct AppCredentials {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

impl PartnerCenterConfig {
    fn connection(&self) -> http::Connection<'_> {
        http::Connection {
            authority_host: &self.authority_host,
            partner_tenant_id: &self.partner_tenant_id,
            scope: &self.scope,
            extra_root_ca_pem: self.extra_root_ca_pem.as_deref(),
            retry: &self.retry,
        }
    }
}

/// The app registration behind `credentials_ref`, checked against the partner tenant.
fn app_credentials(
    credentials_ref: &str,
    partner_tenant_id: &str,
) -> Result<AppCredentials, VendorError> {
    let text = credentials::resolve(credentials_ref)?;
    // serde's message could quote the document, i.e. the secret: say only what is wrong.
    let creds: AppCredentials = serde_json::from_str(&text).map_err(|e| {
        VendorError::Credentials(format!(
            "{credentials_ref} is not a JSON object with client_id and client_secret (line {}, \
             column {})",
            e.line(),
            e.column()
        ))
    })?;
    if creds.client_id.trim().is_empty() || creds.client_secret.is_empty() {
        return Err(VendorError::Credentials(format!(
            "{credentials_ref}: client_id and client_secret must not be empty"
        )));
    }
    if let Some(tenant) = &creds.tenant_id
        && !tenant.eq_ignore_ascii_case(partner_tenant_id)
    {
        return Err(VendorError::Credentials(format!(
            "{credentials_ref} is for tenant {tenant}, not the partner tenant {partner_tenant_id}"
        )));
    }
    Ok(creds)
}

/// What one export yielded, with the Partner Center ids the normalized lines cannot carry.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportOutcome {
    /// The manifest's eTag matched the previous version; no blob was read.
    Unchanged { etag: String },
    Data {
        etag: String,
        /// Every row of the export, placed in its period (before lines are merged by key).
        rows: Vec<RatedUsageRow>,
        /// The rows merged per usage key.
        pull: Pull,
    },
}

/// A [`UsageSource`] for one Partner Center partner tenant.
pub struct PartnerCenterSource {
    config: PartnerCenterConfig,
    client: http::Client,
}

impl std::fmt::Debug for PartnerCenterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterSource")
            .field("api_base_url", &self.config.api_base_url)
            .field("partner_tenant_id", &self.config.partner_tenant_id)
            .finish_non_exhaustive()
    }
}

impl PartnerCenterSource {
    /// Resolves the credentials and builds the HTTP pipelines; no request is made yet.
    pub fn new(config: PartnerCenterConfig) -> Result<Self, VendorError> {
        let creds = app_credentials(&config.credentials_ref, &config.partner_tenant_id)?;
        let client = http::Client::new(&config.connection(), creds.client_id, creds.client_secret)?;
        Ok(PartnerCenterSource { config, client })
    }

    pub fn config(&self) -> &PartnerCenterConfig {
        &self.config
    }

    /// Runs the export and returns the rows with their Partner Center ids (customer tenant,
    /// subscription, Azure entitlement) as well as the normalized pull, and the requests it
    /// sent whether or not it succeeded.
    pub async fn export(
        &self,
        request: &PullRequest,
    ) -> (Result<ExportOutcome, VendorError>, RequestCount) {
        let counter = http::RequestCounter::default();
        let result = export::run(&self.config, &self.client, &counter, request).await;
        let count = counter.get();
        match &result {
            Ok(outcome) => tracing::info!(
                partner_tenant = %self.config.partner_tenant_id,
                requests = count.0,
                unchanged = matches!(outcome, ExportOutcome::Unchanged { .. }),
                "partner center unbilled usage export read"
            ),
            Err(error) => tracing::warn!(
                partner_tenant = %self.config.partner_tenant_id,
                requests = count.0,
                %error,
                "partner center unbilled usage export failed"
            ),
        }
        (result, count)
    }
}

#[async_trait::async_trait]
impl UsageSource for PartnerCenterSource {
    fn vendor(&self) -> Vendor {
        Vendor::Microsoft
    }

    async fn pull(&self, request: &PullRequest) -> Pulled {
        let (result, requests) = self.export(request).await;
        let outcome = result.map(|outcome| match outcome {
            ExportOutcome::Unchanged { .. } => PullOutcome::Unchanged,
            ExportOutcome::Data { pull, .. } => PullOutcome::Data(pull),
        });
        Pulled { outcome, requests }
    }
}
