//! The usage source behind each partner account.
use std::sync::Arc;

use super::{PollerSettings, SIMULATOR_SEED};
use crate::domain::error::{Error, Result};
use crate::domain::partner_account::PartnerAccount;
use crate::domain::vendor::Vendor;
use crate::store::Store;
use crate::vendors::aws::{AwsCostExplorer, AwsCostExplorerConfig};
use crate::vendors::microsoft::{PartnerCenterConfig, PartnerCenterSource};
use crate::vendors::simulator::Simulator;
use crate::vendors::{UsageSource, VendorError};

/// The usage source for a partner account, built from its settings and credentials.
pub async fn source_for(
    store: &Store,
    account: &PartnerAccount,
    settings: &PollerSettings,
) -> Result<Arc<dyn UsageSource>> {
    let vendor_error = |e: VendorError| {
        Error::precondition(format!("partner account {}", account.id), e.to_string())
    };
    Ok(match account.spec.vendor {
        Vendor::Simulator => {
            let accounts = store.linked_vendor_accounts(&account.id).await?;
            Arc::new(Simulator::new(SIMULATOR_SEED, accounts))
        }
        Vendor::Aws => Arc::new(
            AwsCostExplorer::new(AwsCostExplorerConfig::for_partner_account(&account.spec))
                .map_err(vendor_error)?,
        ),
        Vendor::Microsoft => {
            let config = PartnerCenterConfig::for_partner_account(
                &account.spec,
                settings.extra_root_ca_pem.clone(),
            )
            .map_err(vendor_error)?;
            Arc::new(PartnerCenterSource::new(config).map_err(vendor_error)?)
        }
        Vendor::Msp => {
            return Err(Error::precondition(
                format!("partner account {}", account.id),
                "the MSP's own items have no usage to poll",
            ));
        }
    })
}

/// One account's source, kept from poll to poll by its poller: a Partner Center source keeps
/// its access token until shortly before it expires, instead of asking Entra ID on every poll.
/// The simulator's is built for each poll (its accounts are whichever are linked now). A poller
/// exists per account version, so changed settings get a new source; a failed poll drops it
/// too, so a rotated secret or CA takes effect on the next try.
#[derive(Default)]
pub struct SourceCache(Option<Arc<dyn UsageSource>>);

impl SourceCache {
    pub async fn get(
        &mut self,
        store: &Store,
        account: &PartnerAccount,
        settings: &PollerSettings,
    ) -> Result<Arc<dyn UsageSource>> {
        if let Some(source) = &self.0 {
            return Ok(source.clone());
        }
        let source = source_for(store, account, settings).await?;
        if account.spec.vendor != Vendor::Simulator {
            self.0 = Some(source.clone());
        }
        Ok(source)
    }

    pub fn forget(&mut self) {
        self.0 = None;
    }
}
