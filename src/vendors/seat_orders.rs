//! The seat adapters of partner accounts (see `domain::seat_order`): Microsoft's New Commerce
//! seats go through Partner Center ([`PartnerCenterControl`]); the MSP's own items have no
//! vendor and never come here.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::partner_account::PartnerAccount;
use crate::domain::seat_order::{SeatOrders, SeatVendors};
use crate::domain::service_control::ControlError;
use crate::domain::vendor::Vendor;
use crate::vendors::microsoft::control::{PartnerCenterControl, PartnerCenterControlConfig};
use crate::vendors::service_control::ControlResult;

/// Builds the seat adapter of a partner account.
pub type SeatOrdersFactory =
    Arc<dyn Fn(&PartnerAccount) -> ControlResult<Arc<dyn SeatOrders>> + Send + Sync>;

/// Partner Center adapters for Microsoft partner accounts, trusting `extra_root_ca_pem` (the
/// gateway's vendor CA, e.g. an emulator's) besides the system roots.
pub fn partner_center(extra_root_ca_pem: Option<String>) -> SeatOrdersFactory {
    Arc::new(move |account| {
        if account.spec.vendor != Vendor::Microsoft {
            return Err(ControlError::permanent(format!(
                "partner account {} is {}: only Microsoft seats are ordered through a vendor",
                account.id, account.spec.vendor
            )));
        }
        let mut config = PartnerCenterControlConfig::for_partner_account(&account.spec)?;
        config.extra_root_ca_pem = extra_root_ca_pem.clone();
        Ok(Arc::new(PartnerCenterControl::new(config)?) as Arc<dyn SeatOrders>)
    })
}

/// The adapters in use, one per partner account version (a changed account gets a new one; an
/// adapter keeps its access token between calls).
pub struct VendorAdapters {
    factory: SeatOrdersFactory,
    adapters: Mutex<HashMap<(String, i64), Arc<dyn SeatOrders>>>,
}

impl VendorAdapters {
    pub fn new(factory: SeatOrdersFactory) -> Self {
        VendorAdapters {
            factory,
            adapters: Mutex::default(),
        }
    }
}

impl SeatVendors for VendorAdapters {
    fn seats_for(&self, account: &PartnerAccount) -> ControlResult<Arc<dyn SeatOrders>> {
        let key = (account.id.clone(), account.version);
        let mut adapters = self.adapters.lock().expect("seat adapters");
        if let Some(adapter) = adapters.get(&key) {
            return Ok(adapter.clone());
        }
        let adapter = (self.factory)(account)?;
        adapters.insert(key, adapter.clone());
        Ok(adapter)
    }
}
