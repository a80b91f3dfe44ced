//! Who may call what, in one table: every RPC of the API with the area it touches and whether it
//! reads or changes it. The auth layer ([`super::auth`]) looks each call's path up here and
//! refuses before the handler runs; a path missing from the table is refused (deny by default),
//! and a test walks every method the server serves to check that each has its entry. Which
//! scopes may read or change each area is `domain::access::Scope::allows`; a portal key is
//! further confined to its one customer where the handler resolves a customer id
//! ([`super::customers_of`]).
//!
//! A new RPC: add its line below, in its service's list.
use crate::domain::access::{Action, Area};

use Action::{Read, Write};
use Area::*;

/// The proto package every service below belongs to.
pub const PACKAGE: &str = "msp.gateway.v1";

/// Services callable without a key: health and reflection, which say nothing of any tenant.
pub const PUBLIC_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Where the portal's pages are served: they check their own session cookie (`super::portal`),
/// not API keys.
pub const PORTAL_PATH_PREFIX: &str = "/portal";

/// What one RPC touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub area: Area,
    pub action: Action,
}

/// A service's methods: (method, area, action).
pub type Methods = &'static [(&'static str, Area, Action)];

/// Every RPC of the package, by service.
pub const PERMISSIONS: &[(&str, Methods)] = &[
    (
        "TenantService",
        &[
            ("GetTenant", Tenant, Read),
            ("CreateApiKey", ApiKeys, Write),
            ("ListApiKeys", ApiKeys, Read),
            ("RevokeApiKey", ApiKeys, Write),
            ("UpdateTenantBranding", Tenant, Write),
        ],
    ),
    (
        "PartnerAccountService",
        &[
            ("CreatePartnerAccount", PartnerAccounts, Write),
            ("GetPartnerAccount", PartnerAccounts, Read),
            ("ListPartnerAccounts", PartnerAccounts, Read),
            ("UpdatePartnerAccount", PartnerAccounts, Write),
        ],
    ),
    (
        "CustomerService",
        &[
            ("CreateCustomer", Customers, Write),
            ("GetCustomer", Customers, Read),
            ("ListCustomers", Customers, Read),
            ("UpdateCustomer", Customers, Write),
            ("LinkVendorAccount", Customers, Write),
            ("UnlinkVendorAccount", Customers, Write),
        ],
    ),
    (
        "PricingService",
        &[
            ("CreatePriceRule", Pricing, Write),
            ("ListPriceRules", Pricing, Read),
            ("SetFxRate", Pricing, Write),
            ("ListFxRates", Pricing, Read),
            ("GetPricingPolicy", Pricing, Read),
            ("UpdatePricingPolicy", Pricing, Write),
        ],
    ),
    (
        "UsageService",
        &[
            ("IngestUsage", Usage, Write),
            ("ListUnratedUsage", Usage, Read),
        ],
    ),
    (
        "ChargeService",
        &[
            ("ListCharges", Usage, Read),
            ("StreamCharges", Usage, Read),
            ("ListOpenLineItems", Usage, Read),
        ],
    ),
    (
        "CreditControlService",
        &[
            ("GetCreditSettings", CreditControl, Read),
            ("UpdateCreditSettings", CreditControl, Write),
            ("GetCreditDefaults", CreditControl, Read),
            ("UpdateCreditDefaults", CreditControl, Write),
            ("GetCreditPosition", CreditControl, Read),
            ("StreamCreditEvents", CreditControl, Read),
        ],
    ),
    (
        "InvoiceService",
        &[
            ("CloseBillingPeriod", Invoices, Write),
            ("CloseBillingPeriods", Invoices, Write),
            ("GetInvoice", Invoices, Read),
            ("ListInvoices", Invoices, Read),
            ("RecordPayment", Invoices, Write),
            ("StreamInvoices", Invoices, Read),
            ("ExportInvoices", Invoices, Read),
            ("GetInvoiceSettings", InvoiceSettings, Read),
            ("UpdateInvoiceSettings", InvoiceSettings, Write),
        ],
    ),
    (
        "ServiceManagementService",
        &[
            ("SuspendCustomer", ServiceActions, Write),
            ("ResumeCustomer", ServiceActions, Write),
            ("PurgeCustomer", ServicePurge, Write),
            ("GetServiceAction", ServiceActions, Read),
            ("ListServiceActions", ServiceActions, Read),
            ("StreamServiceActions", ServiceActions, Read),
        ],
    ),
    (
        "HelpDeskService",
        &[
            ("GetSpendSummary", Usage, Read),
            ("ListCostDrivers", Usage, Read),
            ("GetSpendOverview", Usage, Read),
        ],
    ),
    (
        "CatalogService",
        &[
            ("CreateCatalogItem", Catalog, Write),
            ("GetCatalogItem", Catalog, Read),
            ("ListCatalogItems", Catalog, Read),
            ("ImportPriceSheet", Catalog, Write),
        ],
    ),
    (
        "SubscriptionService",
        &[
            ("CreateSubscription", Subscriptions, Write),
            ("GetSubscription", Subscriptions, Read),
            ("ListSubscriptions", Subscriptions, Read),
            ("ChangeSubscriptionQuantity", Subscriptions, Write),
            ("CancelSubscription", Subscriptions, Write),
            ("ChangeSubscriptionTerm", Subscriptions, Write),
            ("SetSubscriptionAutoRenew", Subscriptions, Write),
        ],
    ),
    // Opening a customer's portal is the BSS's (billing) or an admin's.
    (
        "PortalService",
        &[("CreatePortalSession", Customers, Write)],
    ),
];

/// How the table answers a call's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Health or reflection: no key needed.
    Public,
    /// An RPC of the API: a key whose scope allows this.
    Requires(Permission),
    /// Not in the table: refused.
    Unknown,
    /// A portal page: the portal checks its session cookie.
    Portal,
}

/// The verdict for a gRPC path, `/<package>.<Service>/<Method>`.
pub fn verdict(path: &str) -> Verdict {
    if path == PORTAL_PATH_PREFIX || path.starts_with("/portal/") {
        return Verdict::Portal;
    }
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Verdict::Unknown;
    };
    if PUBLIC_SERVICES.contains(&service) {
        return Verdict::Public;
    }
    let Some(service) = service
        .strip_prefix(PACKAGE)
        .and_then(|s| s.strip_prefix('.'))
    else {
        return Verdict::Unknown;
    };
    PERMISSIONS
        .iter()
        .find(|(name, _)| *name == service)
        .and_then(|(_, methods)| methods.iter().find(|(name, _, _)| *name == method))
        .map_or(Verdict::Unknown, |&(_, area, action)| {
            Verdict::Requires(Permission { area, action })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_their_entries_and_nothing_else() {
        assert_eq!(
            verdict("/msp.gateway.v1.CustomerService/CreateCustomer"),
            Verdict::Requires(Permission {
                area: Customers,
                action: Write
            })
        );
        assert_eq!(verdict("/grpc.health.v1.Health/Check"), Verdict::Public);
        for unknown in [
            "/msp.gateway.v1.CustomerService/DeleteCustomer",
            "/msp.gateway.v1.NoSuchService/GetTenant",
            "/msp.gateway.v2.CustomerService/CreateCustomer",
            "/msp.gateway.v1CustomerService/CreateCustomer",
            "msp.gateway.v1.CustomerService/CreateCustomer",
            "/",
            "",
        ] {
            assert_eq!(verdict(unknown), Verdict::Unknown, "{unknown}");
        }
    }

    #[test]
    fn every_entry_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (service, methods) in PERMISSIONS {
            for (method, _, _) in *methods {
                assert!(seen.insert((service, method)), "{service}/{method} twice");
            }
        }
    }
}
