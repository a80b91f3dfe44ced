//! The gRPC surface: one tonic service per proto service, the only module that sees proto types.
//! Who may call each RPC is one table ([`permissions`]) enforced by the auth layer ([`auth`])
//! before any handler runs. Each handler then validates its request, resolves the customer ids
//! it names (confining portal keys to their customer, here and nowhere else), converts proto to
//! domain, calls the ledger or the store, and lets [`status`] map errors.
pub mod auth;
pub mod catalog;
pub mod charges;
mod convert;
pub mod credit;
pub mod cursor_stream;
pub mod customers;
pub mod helpdesk;
pub mod invoice_export;
pub mod invoices;
pub mod metrics_layer;
pub mod partner_accounts;
pub mod permissions;
pub mod portal;
pub mod pricing;
pub mod rate_limits;
pub mod read_routing;
pub mod replies;
#[doc(hidden)]
pub mod request_fuzz;
pub mod service_management;
pub mod services;
mod status;
pub mod stream_slots;
pub mod subscriptions;
pub mod tenants;
pub mod usage;

use std::sync::Arc;

use crate::domain::access::Principal;
use crate::domain::error::{Error, Result, Violations};
use crate::ledger::Ledger;
use crate::store::Store;

/// What the services work with: the charge ledger and the store of records under it.
#[derive(Clone)]
pub struct Gateway {
    pub ledger: Arc<Ledger>,
    pub store: Arc<Store>,
    /// Where the portal is reached (portal links are made from it).
    pub portal: Arc<PortalSite>,
    /// The server streams each tenant holds open, capped.
    pub stream_slots: Arc<stream_slots::StreamSlots>,
}

/// Where browsers reach the portal: the gateway's own address unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSite {
    /// e.g. "http://127.0.0.1:50051", without a trailing slash.
    pub base_url: String,
    /// Cookies are marked Secure (TLS is on).
    pub secure: bool,
}

impl Gateway {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Gateway {
            store: ledger.store().clone(),
            ledger,
            portal: Arc::new(PortalSite {
                base_url: "http://127.0.0.1:50051".into(),
                secure: false,
            }),
            stream_slots: stream_slots::StreamSlots::new(
                crate::config::DEFAULT_MAX_STREAMS_PER_TENANT,
            ),
        }
    }

    /// At most `per_tenant` open server streams per tenant (0: no cap).
    pub fn with_stream_cap(mut self, per_tenant: usize) -> Self {
        self.stream_slots = stream_slots::StreamSlots::new(per_tenant);
        self
    }

    pub fn with_portal(mut self, site: PortalSite) -> Self {
        self.portal = Arc::new(site);
        self
    }
}

/// Most customers one request (a stream's filter) may name.
pub const MAX_CUSTOMERS_PER_REQUEST: usize = 100;

/// The customer a request names in `field`, as the caller may see it: a valid id, and for a
/// portal key its own customer only (another is NOT_FOUND, as if it did not exist).
pub fn customer_of(principal: &Principal, field: &str, id: &str) -> Result<String> {
    let id = convert::required_id(field, id)?;
    principal.require_customer(&id)?;
    Ok(id)
}

/// An optional customer filter: the customer named in `field`, or none; a portal key always
/// gets its own customer (naming another is NOT_FOUND).
pub fn optional_customer_of(
    principal: &Principal,
    field: &str,
    id: &str,
) -> Result<Option<String>> {
    if id.is_empty() {
        return Ok(principal.customer_scope().map(str::to_string));
    }
    customer_of(principal, field, id).map(Some)
}

/// The customers a request names in `field` (each a valid id, deduplicated, at most
/// [`MAX_CUSTOMERS_PER_REQUEST`]); none means every customer, except for a portal key, which
/// gets its own customer (naming another is NOT_FOUND). Malformed ids are added to `v`.
pub fn customers_of(
    principal: &Principal,
    field: &str,
    ids: &[String],
    v: &mut Violations,
) -> Result<Vec<String>> {
    if ids.len() > MAX_CUSTOMERS_PER_REQUEST {
        v.add(
            field,
            format!("has {} ids; at most {MAX_CUSTOMERS_PER_REQUEST}", ids.len()),
        );
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = v.check_error(convert::required_id(&format!("{field}[{i}]"), id))?;
        if let Some(id) = id.filter(|id| !out.contains(id)) {
            out.push(id);
        }
    }
    match principal.customer_scope() {
        None => Ok(out),
        Some(own) => {
            if let Some(other) = out.iter().find(|c| c.as_str() != own) {
                return Err(Error::not_found("customer", other.clone()));
            }
            Ok(vec![own.to_string()])
        }
    }
}
