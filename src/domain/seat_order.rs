//! Buying seats from a vendor: what the gateway asks Microsoft's Partner Center for when a
//! subscription is bought, resized or cancelled, and who may buy.
//!
//! The gateway's own rules (`subscription`: the 168-hour window, offers, quantities) are decided
//! first; only a change that takes effect now goes to the vendor, and the subscription is recorded
//! (or changed) only once the vendor confirmed it. Every vendor call is safe to repeat: its
//! `MS-RequestId` is derived from the gateway request's idempotency key ([`vendor_request_id`]),
//! so a retried CreateSubscription whose first attempt reached Partner Center but was never
//! recorded (a timeout, a crash) replays Partner Center's first answer instead of buying twice,
//! and quantity changes set an absolute quantity (repeating one changes nothing).
//!
//! A purchase whose answer was lost: the order is written as pending (`subscription_record::PendingOrder`, its own
//! short transaction) before Partner Center is called, and removed by the transaction that
//! records the subscription, its first fee and the request id's answer. One left behind (a
//! timeout, a crash, and a client that never retried) is finished by the sweeper
//! (`ledger::pending_orders`, where the pollers run, after `pending_order_age_secs`): it repeats
//! the order with the same vendor request ids, so Partner Center answers with the first order,
//! and records it as the request would have, so a later retry answers that subscription; a
//! refusal marks the request failed and its retries answer the refusal. The ledger still never
//! bills a licence Partner Center did not confirm: only a confirmed order is recorded.
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::catalog::{BillingFrequency, CatalogItem, CatalogItemId, Offer};
use super::customer::{Customer, CustomerStatus};
use super::error::{Error, Result};
use super::idempotency::IdempotencyKey;
use super::partner_account::PartnerAccount;
use super::service_control::ControlError;
use super::vendor::{Vendor, VendorAccountKind};

/// The unit of every subscription charge (fee, proration, refund): its quantity counts seats.
pub const SEAT_UNIT: &str = "seat";

/// A purchase through Partner Center's cart and checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatOrder {
    /// The customer's Microsoft tenant (Partner Center's customer id).
    pub customer_tenant: String,
    pub item: CatalogItemId,
    pub quantity: u32,
    pub offer: Offer,
    /// The gateway request this order carries out: its idempotency key's
    /// [`vendor_request_id`] seed.
    pub request_key: String,
}

/// What Partner Center's checkout created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedSubscription {
    pub subscription_id: String,
    pub order_id: String,
}

/// A subscription at Partner Center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSeats {
    pub customer_tenant: String,
    pub subscription_id: String,
}

/// Partner Center's `billingCycle` for a billing frequency.
pub fn billing_cycle(billing: BillingFrequency) -> &'static str {
    match billing {
        BillingFrequency::Monthly => "monthly",
        BillingFrequency::Annual => "annual",
        BillingFrequency::Triennial => "triennial",
    }
}

/// A GUID for `MS-RequestId` / `MS-CorrelationId`, derived from `seed` (the gateway request's
/// idempotency key and the step): the same request is the same request to Partner Center.
pub fn vendor_request_id(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The seed of a gateway request's vendor request ids: the tenant, the operation, the request id
/// and the request's fingerprint (a request id reused for another request never replays the
/// first one's order).
pub fn request_seed(tenant_id: &str, key: &IdempotencyKey) -> String {
    format!(
        "{tenant_id}/{}/{}/{}",
        key.operation, key.request_id, key.fingerprint
    )
}

/// Seats may be bought (a purchase, or seats added) only for an active customer: a suspended
/// customer, or one scheduled for purge, is refused, naming the status.
pub fn check_can_buy(customer: &Customer) -> Result<()> {
    match customer.status {
        CustomerStatus::Active => Ok(()),
        status => Err(Error::precondition(
            "subscription.customer_id",
            format!(
                "customer {} is {status}; seats are sold only to ACTIVE customers (resume it first)",
                customer.id
            ),
        )),
    }
}

/// Where a Microsoft item's seats are bought for `customer`: its linked MICROSOFT_TENANT and the
/// partner account that link goes through. None for the MSP's own items (no vendor).
pub fn vendor_of(customer: &Customer, item: &CatalogItem) -> Result<Option<(String, String)>> {
    match item.vendor {
        Vendor::Microsoft => {}
        Vendor::Msp => return Ok(None),
        other => {
            return Err(Error::precondition(
                "subscription.catalog_item_id",
                format!("{other} sells no seats"),
            ));
        }
    }
    customer
        .vendor_accounts
        .iter()
        .find(|link| link.kind == VendorAccountKind::MicrosoftTenant)
        .map(|link| Some((link.account_id.clone(), link.partner_account_id.clone())))
        .ok_or_else(|| {
            Error::precondition(
                "subscription.customer_id",
                format!(
                    "customer {} has no MICROSOFT_TENANT linked: Microsoft seats are bought for \
                     the customer's tenant through Partner Center; link (or enroll) it first",
                    customer.id
                ),
            )
        })
}

/// Buying, resizing and cancelling seats at a vendor (`vendors::seat_orders` implements it for
/// Partner Center). Transient failures are for the caller to retry with the same request id;
/// permanent ones carry the vendor's reason.
#[async_trait::async_trait]
pub trait SeatOrders: Send + Sync {
    /// Buys the seats; repeating an order (same request key) finds the first purchase.
    async fn order(&self, order: &SeatOrder) -> Result<OrderedSubscription, ControlError>;

    /// Sets the subscription's seat count (absolute: repeating it changes nothing).
    async fn set_quantity(
        &self,
        seats: &VendorSeats,
        quantity: u32,
        request_key: &str,
    ) -> Result<(), ControlError>;

    /// Cancels the subscription (inside the vendor's cancellation window).
    async fn cancel(&self, seats: &VendorSeats) -> Result<(), ControlError>;

    /// Sets what happens at the subscription's renewal (a change the window scheduled).
    async fn schedule_renewal(
        &self,
        seats: &VendorSeats,
        change: RenewalChange,
        request_key: &str,
    ) -> Result<(), ControlError>;
}

/// What the vendor is to do at the renewal: a change the 168-hour window scheduled, a term
/// change (only ever at the renewal), or whether it renews at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalChange {
    /// Renew with these changes (None: as it is now); both None withdraws every scheduled
    /// change. Always the whole of what is scheduled, so a term change and a reduction
    /// scheduled one after the other both reach the vendor.
    NextTerm {
        quantity: Option<u32>,
        offer: Option<Offer>,
    },
    /// Renew (true) or end at the term's end (false).
    AutoRenew(bool),
}

/// How long a change of a vendor subscription holds it while the vendor is asked: longer than
/// the vendor calls can take (each Partner Center request gives up after 2 minutes of retries,
/// a change makes at most three), short enough that a gateway that crashed mid-change holds up
/// nobody for long.
pub const CHANGE_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// A request's hold on a subscription while its change is at the vendor: the request (its
/// [`request_seed`]), when it claimed it (claims run on the wall clock: they are about
/// processes, not billing time) and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeClaim {
    pub request: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl ChangeClaim {
    pub fn new(request: String, at: chrono::DateTime<chrono::Utc>) -> Self {
        ChangeClaim {
            request,
            at,
            expires_at: at + CHANGE_CLAIM_TTL,
        }
    }
}

/// A change refused because another request's change of the same subscription is in flight.
///
/// Refused rather than queued: the other change waits on Partner Center (seconds, up to
/// minutes under throttling), and a gRPC call held that long would hold a connection and a
/// deadline the caller did not plan for; the caller's retry with the same request_id is
/// cheap and decides on the state the first change left.
pub fn change_in_progress(subscription_id: &str) -> Error {
    Error::InProgress {
        kind: "subscription",
        id: subscription_id.to_string(),
        description: "another change of this subscription is in progress at Partner Center; \
                      retry with the same request_id once it has finished"
            .into(),
    }
}

/// Seats are ordered only through an enabled partner account: a disabled one (its credentials
/// revoked, the MSP's relationship paused) is refused before the vendor is called, naming it.
pub fn check_orders_through(account: &PartnerAccount) -> Result<()> {
    if account.spec.enabled {
        return Ok(());
    }
    Err(Error::precondition(
        "subscription.catalog_item_id",
        format!(
            "partner account {} ({}) is disabled: the customer's {} seats are ordered through it; \
             enable it (UpdatePartnerAccount) first",
            account.id, account.spec.display_name, account.spec.vendor
        ),
    ))
}

/// The seat adapter of each partner account.
pub trait SeatVendors: Send + Sync {
    fn seats_for(&self, account: &PartnerAccount) -> Result<Arc<dyn SeatOrders>, ControlError>;
}

/// No vendor to order from: Microsoft seats are refused (a gateway built without adapters).
pub struct NoSeatVendors;

impl SeatVendors for NoSeatVendors {
    fn seats_for(&self, account: &PartnerAccount) -> Result<Arc<dyn SeatOrders>, ControlError> {
        Err(ControlError::permanent(format!(
            "this gateway has no vendor adapters to order {} seats through partner account {}",
            account.spec.vendor, account.id
        )))
    }
}

/// A vendor's answer as the caller sees it: a refusal (an unavailable SKU, a quantity limit) is
/// FAILED_PRECONDITION with the vendor's code and description; throttling or an outage that
/// outlasted the adapter's retries is UNAVAILABLE (retry with the same request_id).
pub fn vendor_error(error: ControlError) -> Error {
    match error {
        ControlError::Permanent { reason } => Error::precondition("Partner Center", reason),
        ControlError::Transient { reason, .. } => Error::Unavailable("Partner Center", reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_stable_guids_per_seed() {
        let first = vendor_request_id("ten_1/r-1/cart");
        assert_eq!(first, vendor_request_id("ten_1/r-1/cart"));
        assert_ne!(first, vendor_request_id("ten_1/r-1/checkout"));
        assert!(uuid::Uuid::try_parse(&first).is_ok());
    }

    #[test]
    fn refusals_and_outages_map_to_their_codes() {
        let refused = vendor_error(ControlError::permanent("code 800002: SKU unavailable"));
        assert!(matches!(refused, Error::FailedPrecondition { .. }));
        assert!(refused.to_string().contains("800002"), "{refused}");
        let throttled = vendor_error(ControlError::transient("HTTP 429"));
        assert!(matches!(throttled, Error::Unavailable(..)));
    }
}
