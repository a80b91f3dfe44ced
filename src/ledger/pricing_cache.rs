//! Tenants' pricing as the ledger writers last loaded it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::tx::LedgerTx;
use crate::domain::error::Result;
use crate::domain::ledger::TenantPricing;

/// Each tenant's pricing as last loaded, tagged with the tenant's pricing version (bumped by
/// triggers on every change that can alter rating; see the `pricing_versions` migration). A
/// ledger write reads the version, one short query, instead of reloading every rule, rate,
/// customer and link of the tenant.
#[derive(Default)]
pub(super) struct PricingCache(Mutex<HashMap<String, (i64, Arc<TenantPricing>)>>);

impl PricingCache {
    fn get(&self, tenant_id: &str, version: i64) -> Option<Arc<TenantPricing>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.get(tenant_id) {
            Some((at, pricing)) if *at == version => Some(pricing.clone()),
            _ => None,
        }
    }

    fn put(&self, tenant_id: &str, version: i64, pricing: Arc<TenantPricing>) {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.get(tenant_id) {
            // A concurrent writer may already hold a newer version.
            Some((at, _)) if *at > version => {}
            _ => {
                cached.insert(tenant_id.to_string(), (version, pricing));
            }
        }
    }
}

/// The tenant's pricing, from `cache` while the tenant's pricing version has not moved. The
/// version is read before anything is loaded, so a load is never tagged newer than its data.
pub(super) async fn pricing<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
) -> Result<Arc<TenantPricing>> {
    let version = tx.pricing_version(tenant_id).await?;
    if let Some(pricing) = cache.get(tenant_id, version) {
        return Ok(pricing);
    }
    let pricing = Arc::new(tx.load_pricing(tenant_id).await?);
    cache.put(tenant_id, version, pricing.clone());
    Ok(pricing)
}
