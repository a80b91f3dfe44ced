//! Microsoft Partner Center service control: customers and their subscriptions, over HTTPS
//! through the same azure_core pipeline and Entra ID token flow as the usage export.
//!
//! - Enroll: `POST /v1/customers` with the company profile (initial domain) and the billing
//!   profile (contact and address), idempotent through `MS-RequestId` (a GUID derived from the
//!   order's idempotency key, so a repeated order gets the first answer); Partner Center answers
//!   synchronously with the new customer tenant ([`customers`]).
//! - Suspend / resume / purge: `PATCH /v1/customers/{tenant}/subscriptions/{id}` with the whole
//!   resource, `status` set to `suspended` / `active` / `deleted`, and `If-Match` with the etag
//!   read just before; a 412 (the subscription changed meanwhile) re-reads and tries again
//!   ([`subscriptions`]). A customer tenant target acts on every subscription of the tenant,
//!   and reports which ones failed and why; a subscription target on that one.
//!
//! - New Commerce seats: cart and checkout, quantity PATCH, cancellation ([`orders`], behind
//!   [`crate::domain::seat_order::SeatOrders`]).
//!
//! Within one call, 429 waits out `Retry-After` (up to [`PartnerCenterControlConfig::max_wait`])
//! and 5xx, 408 and network faults are retried under [`PartnerCenterControlConfig::retry`]
//! ([`requests`]); what remains is a [`ControlError::Transient`] for the caller to retry later.
mod customers;
mod orders;
mod requests;
mod subscriptions;

use std::time::Duration;

use azure_core::http::Url;

use super::{RetrySettings, app_credentials, export, http};
use crate::domain::partner_account::PartnerAccountSpec;
use crate::domain::seat_order::{
    OrderedSubscription, RenewalChange, SeatOrder, SeatOrders, VendorSeats,
};
use crate::domain::service_action::RetryPolicy;
use crate::domain::service_control::{
    ControlError, ControlReport, ControlTarget, EnrollmentOrder, EnrollmentProgress,
};
use crate::domain::vendor::{Vendor, VendorAccountKind};
use crate::vendors::service_control::{ControlResult, ServiceControl, wrong_vendor};

pub use subscriptions::SubscriptionStatus;

/// Configuration of one partner tenant's service control.
///
/// `credentials_ref` points at the same app-registration document as the usage source's (see
/// [`super::PartnerCenterConfig`]); the app needs Partner Center's delegated or app+user
/// permissions to manage customers.
#[derive(Debug, Clone)]
pub struct PartnerCenterControlConfig {
    /// The Partner Center REST API, e.g. `https://api.partnercenter.microsoft.com/v1`.
    pub api_base_url: String,
    /// Entra ID authority host; must be https.
    pub authority_host: String,
    pub scope: String,
    pub partner_tenant_id: String,
    pub credentials_ref: String,
    /// PEM of extra root CAs to trust (an emulator's CA); the system roots stay trusted.
    pub extra_root_ca_pem: Option<String>,
    /// Retries of 5xx, 408 and network faults within one call.
    pub retry: RetryPolicy,
    /// 429 answers tolerated per request before the call reports a transient fault.
    pub max_throttle_retries: u32,
    /// The longest `Retry-After` waited out within a call; a longer one is handed to the caller.
    pub max_wait: Duration,
    /// Re-reads after a 412 (stale etag) before giving up on a subscription.
    pub max_precondition_retries: u32,
}

/// Within one call: 4 attempts, waits from 500 ms doubling up to 5 s.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(5),
};

/// Partner Center's API path under the endpoint override's origin.
const API_PATH: &str = "/v1";

impl PartnerCenterControlConfig {
    /// Production defaults for a partner tenant and credentials reference.
    pub fn new(partner_tenant_id: &str, credentials_ref: &str) -> Self {
        PartnerCenterControlConfig {
            api_base_url: format!("https://api.partnercenter.microsoft.com{API_PATH}"),
            authority_host: "https://login.microsoftonline.com".into(),
            scope: "https://api.partnercenter.microsoft.com/.default".into(),
            partner_tenant_id: partner_tenant_id.into(),
            credentials_ref: credentials_ref.into(),
            extra_root_ca_pem: None,
            retry: DEFAULT_RETRY,
            max_throttle_retries: 5,
            max_wait: Duration::from_secs(60),
            max_precondition_retries: 3,
        }
    }

    /// The partner account's tenant and credentials. Its endpoint override (the usage API's
    /// base, e.g. an emulator's `https://host/v1.0`) moves Partner Center to the same origin,
    /// under `/v1`.
    pub fn for_partner_account(spec: &PartnerAccountSpec) -> Result<Self, ControlError> {
        let mut config = Self::new(&spec.vendor_account_id, &spec.credentials_ref);
        if !spec.endpoint_url.is_empty() {
            let url = Url::parse(&spec.endpoint_url).map_err(|e| {
                ControlError::permanent(format!("endpoint_url {:?}: {e}", spec.endpoint_url))
            })?;
            config.api_base_url = format!("{}{API_PATH}", url.origin().ascii_serialization());
        }
        if let Some(settings) = &spec.microsoft {
            config.authority_host = settings.authority_host().to_string();
        }
        Ok(config)
    }
}

/// Service control through one Partner Center partner tenant.
pub struct PartnerCenterControl {
    config: PartnerCenterControlConfig,
    client: http::Client,
    base: Url,
}

impl std::fmt::Debug for PartnerCenterControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterControl")
            .field("api_base_url", &self.config.api_base_url)
            .field("partner_tenant_id", &self.config.partner_tenant_id)
            .finish_non_exhaustive()
    }
}

impl PartnerCenterControl {
    /// Resolves the credentials and builds the pipeline; no request is made yet.
    pub fn new(config: PartnerCenterControlConfig) -> Result<Self, ControlError> {
        let permanent = |e: crate::vendors::VendorError| ControlError::permanent(e.to_string());
        if config.retry.max_attempts == 0 {
            return Err(ControlError::permanent(
                "retry.max_attempts must be at least 1",
            ));
        }
        let base = export::api_base(&config.api_base_url).map_err(permanent)?;
        let creds = app_credentials(&config.credentials_ref, &config.partner_tenant_id)
            .map_err(permanent)?;
        let connection = http::Connection {
            authority_host: &config.authority_host,
            partner_tenant_id: &config.partner_tenant_id,
            scope: &config.scope,
            extra_root_ca_pem: config.extra_root_ca_pem.as_deref(),
            // This adapter retries itself, under the domain's policy.
            retry: &RetrySettings::None,
        };
        let client = http::Client::new(&connection, creds.client_id, creds.client_secret)
            .map_err(permanent)?;
        Ok(PartnerCenterControl {
            config,
            client,
            base,
        })
    }

    pub fn config(&self) -> &PartnerCenterControlConfig {
        &self.config
    }

    /// `{base}/{path}`; `path` is built from ids checked to be GUIDs.
    fn url(&self, path: &str) -> ControlResult<Url> {
        self.base
            .join(path)
            .map_err(|e| ControlError::permanent(format!("URL for {path}: {e}")))
    }

    async fn act(
        &self,
        target: &ControlTarget,
        wanted: SubscriptionStatus,
    ) -> ControlResult<ControlReport> {
        let resources = match target.kind {
            VendorAccountKind::MicrosoftTenant => {
                check_guid(target, &target.account_id)?;
                self.set_tenant(&target.account_id, wanted).await?
            }
            VendorAccountKind::MicrosoftSubscription => {
                let tenant = target.tenant_id.as_deref().ok_or_else(|| {
                    ControlError::permanent(format!(
                        "{target}: Partner Center addresses a subscription under its customer \
                         tenant, and none is known; link the customer's MICROSOFT_TENANT"
                    ))
                })?;
                check_guid(target, tenant)?;
                check_guid(target, &target.account_id)?;
                vec![self.set_one(tenant, &target.account_id, wanted).await?]
            }
            _ => return Err(wrong_vendor(Vendor::Microsoft, target)),
        };
        Ok(ControlReport {
            resources,
            deny_policy_id: None,
        })
    }
}

fn check_guid(target: &ControlTarget, id: &str) -> ControlResult<()> {
    VendorAccountKind::MicrosoftTenant
        .check_account_id(id)
        .map_err(|reason| ControlError::permanent(format!("{target}: {reason}")))
}

#[async_trait::async_trait]
impl ServiceControl for PartnerCenterControl {
    fn vendor(&self) -> Vendor {
        Vendor::Microsoft
    }

    async fn enroll(&self, order: &EnrollmentOrder) -> ControlResult<EnrollmentProgress> {
        self.create_customer(order).await
    }

    async fn poll_enrollment(&self, operation_id: &str) -> ControlResult<EnrollmentProgress> {
        Err(ControlError::permanent(format!(
            "Partner Center creates customers synchronously; there is no operation \
             {operation_id:?} to poll"
        )))
    }

    async fn suspend(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        self.act(target, SubscriptionStatus::Suspended).await
    }

    async fn resume(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        self.act(target, SubscriptionStatus::Active).await
    }

    async fn purge(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        self.act(target, SubscriptionStatus::Deleted).await
    }
}

#[async_trait::async_trait]
impl SeatOrders for PartnerCenterControl {
    async fn order(&self, order: &SeatOrder) -> ControlResult<OrderedSubscription> {
        self.order_seats(order).await
    }

    async fn set_quantity(
        &self,
        seats: &VendorSeats,
        quantity: u32,
        request_key: &str,
    ) -> ControlResult<()> {
        self.set_seat_quantity(seats, quantity, request_key).await
    }

    async fn cancel(&self, seats: &VendorSeats) -> ControlResult<()> {
        self.cancel_seats(seats).await
    }

    async fn schedule_renewal(
        &self,
        seats: &VendorSeats,
        change: RenewalChange,
        request_key: &str,
    ) -> ControlResult<()> {
        self.schedule_seat_renewal(seats, change, request_key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_override_moves_partner_center_to_its_origin() {
        let mut spec = PartnerAccountSpec {
            vendor: Vendor::Microsoft,
            display_name: "CSP".into(),
            vendor_account_id: "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17".into(),
            partner_discount_rate: rust_decimal::Decimal::ZERO,
            credentials_ref: "env:PC".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: None,
            microsoft: None,
        };
        let config = PartnerCenterControlConfig::for_partner_account(&spec).unwrap();
        assert_eq!(
            config.api_base_url,
            "https://api.partnercenter.microsoft.com/v1"
        );
        assert_eq!(config.partner_tenant_id, spec.vendor_account_id);
        spec.endpoint_url = "https://127.0.0.1:8443/v1.0".into();
        let config = PartnerCenterControlConfig::for_partner_account(&spec).unwrap();
        assert_eq!(config.api_base_url, "https://127.0.0.1:8443/v1");
    }

    #[test]
    fn building_checks_credentials_and_https() {
        let config = PartnerCenterControlConfig::new(
            "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17",
            "env:MSPGW_TEST_PC_CONTROL_SURELY_UNSET",
        );
        let error = PartnerCenterControl::new(config.clone()).unwrap_err();
        assert!(
            error
                .reason()
                .contains("MSPGW_TEST_PC_CONTROL_SURELY_UNSET"),
            "{error}"
        );
        let mut plain = config;
        plain.api_base_url = "http://api.partnercenter.microsoft.com/v1".into();
        assert!(
            PartnerCenterControl::new(plain)
                .unwrap_err()
                .reason()
                .contains("not https")
        );
    }
}
