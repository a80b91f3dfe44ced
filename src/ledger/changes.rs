//! Writes of records that change how usage is rated or counted, and the ledger work that must
//! follow them in the same transaction: a new price rule or FX rate re-rates the tenant's
//! lines, a link rates the usage that waited for it, a customer's new credit limit moves its
//! crossings, and a new time zone re-buckets its daily totals. Each opens the transaction,
//! writes the record (`store`), then does the ledger's part, so nothing commits half done. (A
//! new pricing policy re-rates too.)
use chrono_tz::Tz;
use diesel_async::AsyncConnection;

use super::diesel_tx::DieselLedger;
use super::write::rerate;
use super::{Ledger, ledger_backends};
use crate::domain::customer::{Customer, CustomerPatch, NewVendorAccountLink};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::pricing::{
    FxRate, NewPriceRule, PriceRule, PricingPolicy, VersionedPricingPolicy,
};
use crate::store::idempotency::write_once;

ledger_backends! {
    use super::{DieselLedger, rerate};

    /// Adds a rule and re-rates the tenant's lines.
    pub async fn create_price_rule(conn: &mut Conn, tenant_id: &str, new: &NewPriceRule) -> Result<PriceRule> {
        conn.transaction(async |conn| {
            let rule = q::pricing::create_rule(conn, tenant_id, new).await?;
            rerate(&mut DieselLedger::new(conn), tenant_id, false).await?;
            Ok(rule)
        })
        .await
    }

    /// Sets (or replaces) an FX rate and re-rates the tenant's lines.
    pub async fn set_fx_rate(conn: &mut Conn, tenant_id: &str, rate: &FxRate) -> Result<FxRate> {
        conn.transaction(async |conn| {
            q::pricing::set_fx(conn, tenant_id, rate).await?;
            rerate(&mut DieselLedger::new(conn), tenant_id, false).await?;
            Ok(rate.clone())
        })
        .await
    }

    /// Replaces the tenant's pricing policy and, when it changed, re-rates the tenant's lines.
    pub async fn update_pricing_policy(conn: &mut Conn, tenant_id: &str, etag: &str, next: PricingPolicy) -> Result<VersionedPricingPolicy> {
        conn.transaction(async |conn| {
            let written = q::pricing::update_policy(conn, tenant_id, etag, next).await?;
            if written.fresh {
                rerate(&mut DieselLedger::new(conn), tenant_id, false).await?;
            }
            Ok(written.value)
        })
        .await
    }

    /// Links a vendor account to a customer and rates the usage that was waiting for it.
    pub async fn link_vendor_account(conn: &mut Conn, tenant_id: &str, customer_id: &str, link: &NewVendorAccountLink) -> Result<Customer> {
        conn.transaction(async |conn| {
            let change = q::customers::link(conn, tenant_id, customer_id, link).await?;
            if change.before.is_some() {
                rerate(&mut DieselLedger::new(conn), tenant_id, true).await?;
            }
            Ok(change.after)
        })
        .await
    }

    /// Updates a customer; a new time zone re-buckets its daily totals, a new limit moves its
    /// crossings.
    pub async fn update_customer(conn: &mut Conn, tenant_id: &str, id: &str, etag: &str, patch: &CustomerPatch) -> Result<Customer> {
        conn.transaction(async |conn| {
            let change = q::customers::update(conn, tenant_id, id, etag, patch).await?;
            let Some(before) = &change.before else {
                return Ok(change.after);
            };
            let after = &change.after;
            // The rebuild takes the tenant alone before the ledger lock that re-evaluation
            // takes: the lock order every ledger writer follows (see `tx`).
            if after.time_zone != before.time_zone {
                let zone: Tz = after.time_zone.parse().map_err(|_| {
                    Error::invalid("customer.time_zone", format!("{:?} is not an IANA time zone", after.time_zone))
                })?;
                q::totals::rebuild(conn, tenant_id, id, zone).await?;
            }
            if after.credit_limit != before.credit_limit {
                q::ledger_credit::reevaluate(conn, tenant_id, vec![id.to_string()]).await?;
            }
            Ok(change.after)
        })
        .await
    }
}

impl Ledger {
    pub async fn create_price_rule(
        &self,
        tenant_id: &str,
        new: &NewPriceRule,
        request: &Idempotent<'_, PriceRule>,
    ) -> Result<Answer<PriceRule>> {
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::create_price_rule(tenant_id, new)
        )
    }

    pub async fn set_fx_rate(
        &self,
        tenant_id: &str,
        rate: &FxRate,
        request: Option<&Idempotent<'_, FxRate>>,
    ) -> Result<Answer<FxRate>> {
        write_once!(
            self.store,
            tenant_id,
            request,
            self::set_fx_rate(tenant_id, rate)
        )
    }

    pub async fn update_pricing_policy(
        &self,
        tenant_id: &str,
        etag: &str,
        next: PricingPolicy,
        request: Option<&Idempotent<'_, VersionedPricingPolicy>>,
    ) -> Result<Answer<VersionedPricingPolicy>> {
        write_once!(
            self.store,
            tenant_id,
            request,
            self::update_pricing_policy(tenant_id, etag, next)
        )
    }

    pub async fn link_vendor_account(
        &self,
        tenant_id: &str,
        customer_id: &str,
        link: &NewVendorAccountLink,
        request: Option<&Idempotent<'_, Customer>>,
    ) -> Result<Answer<Customer>> {
        write_once!(
            self.store,
            tenant_id,
            request,
            self::link_vendor_account(tenant_id, customer_id, link)
        )
    }

    pub async fn update_customer(
        &self,
        tenant_id: &str,
        id: &str,
        etag: &str,
        patch: &CustomerPatch,
        request: Option<&Idempotent<'_, Customer>>,
    ) -> Result<Answer<Customer>> {
        write_once!(
            self.store,
            tenant_id,
            request,
            self::update_customer(tenant_id, id, etag, patch)
        )
    }
}
