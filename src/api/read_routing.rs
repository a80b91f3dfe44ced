//! Which calls the read replica may serve, in one table, applied by a tower layer around the
//! services: a call named here runs inside `store::read_replica::allow`, so the store's reads
//! for it go to the standby while the standby is within its staleness bound
//! (`database_read_max_lag_ms`), and to the primary otherwise. Every other call reads the
//! primary, as do, within any call, writes, idempotent replays, and the `fresh` reads of API
//! keys and portal sessions.
//!
//! What belongs here: reads a user looks at, where seeing a write a few seconds late is
//! harmless: lists, the help desk's spend views, the portal's pages. What does not:
//! - streams (`StreamCharges`, `StreamInvoices`, …): cursor-based and gap-free, they follow the
//!   primary's live feeds (their bodies run outside the layer's scope anyway);
//! - `Get*` of records a client just created or changed (`GetCustomer` after `CreateCustomer`,
//!   `GetServiceAction` after `SuspendCustomer`, `GetInvoiceSettings` after an update), and
//!   `GetCreditPosition`, on which a BSS decides to cut service;
//! - `ListApiKeys`: keys are security state, and an admin listing them after a revocation must
//!   see it;
//! - `ExportInvoices`: an export to accounting must be complete.
//!
//! A NOT_FOUND from the standby is asked again of the primary, so a help-desk or portal read
//! of a record created a moment ago still finds it.
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::{Layer, Service};

use super::permissions::PACKAGE;
use crate::store::read_replica;

/// The RPCs whose reads the replica may serve, by service.
pub const REPLICA_READS: &[(&str, &[&str])] = &[
    ("PartnerAccountService", &["ListPartnerAccounts"]),
    ("CustomerService", &["ListCustomers"]),
    ("PricingService", &["ListPriceRules", "ListFxRates"]),
    ("UsageService", &["ListUnratedUsage"]),
    ("ChargeService", &["ListCharges", "ListOpenLineItems"]),
    ("InvoiceService", &["ListInvoices"]),
    ("ServiceManagementService", &["ListServiceActions"]),
    (
        "HelpDeskService",
        &["GetSpendSummary", "ListCostDrivers", "GetSpendOverview"],
    ),
    ("CatalogService", &["ListCatalogItems"]),
    ("SubscriptionService", &["ListSubscriptions"]),
];

/// The portal's customer pages (overview, breakdown, invoices). Opening a link
/// (`/portal/open/…`) writes the session and is not among them; the session cookie itself is
/// always checked on the primary.
pub const REPLICA_PORTAL_PAGES: &str = "/portal/c/";

/// Whether the call at `path` may read from the replica.
pub fn reads_from_replica(path: &str) -> bool {
    if path.starts_with(REPLICA_PORTAL_PAGES) {
        return true;
    }
    let Some((service, method)) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(PACKAGE))
        .and_then(|p| p.strip_prefix('.'))
        .and_then(|p| p.split_once('/'))
    else {
        return false;
    };
    REPLICA_READS
        .iter()
        .any(|(s, methods)| *s == service && methods.contains(&method))
}

/// Runs the calls of [`REPLICA_READS`] and the portal's pages with the replica allowed.
#[derive(Clone, Default)]
pub struct ReadRoutingLayer;

impl<S> Layer<S> for ReadRoutingLayer {
    type Service = ReadRouting<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadRouting { inner }
    }
}

#[derive(Clone)]
pub struct ReadRouting<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for ReadRouting<S>
where
    S: Service<http::Request<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let replica = reads_from_replica(request.uri().path());
        let call = self.inner.call(request);
        if replica {
            Box::pin(read_replica::allow(call))
        } else {
            Box::pin(call)
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::api::permissions::{Verdict, verdict};
    use crate::domain::access::Action;

    #[test]
    fn paths_route_by_the_table() {
        for replica in [
            "/msp.gateway.v1.CustomerService/ListCustomers",
            "/msp.gateway.v1.HelpDeskService/GetSpendSummary",
            "/portal/c/cus_1/",
            "/portal/c/cus_1/invoices/inv_1",
        ] {
            assert!(reads_from_replica(replica), "{replica}");
        }
        for primary in [
            "/msp.gateway.v1.CustomerService/GetCustomer",
            "/msp.gateway.v1.CustomerService/CreateCustomer",
            "/msp.gateway.v1.ChargeService/StreamCharges",
            "/msp.gateway.v1.TenantService/ListApiKeys",
            "/msp.gateway.v1.CreditControlService/GetCreditPosition",
            "/portal/open/token.signature",
            "/msp.gateway.v2.CustomerService/ListCustomers",
            "/grpc.health.v1.Health/Check",
            "",
        ] {
            assert!(!reads_from_replica(primary), "{primary}");
        }
    }

    /// Every entry is an RPC that only reads (the permission table says so) and answers once
    /// (the proto says it streams nothing): a write or a stream here would read stale data.
    #[test]
    fn only_unary_reads_are_routed_to_the_replica() {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        for (service, methods) in REPLICA_READS {
            for method in *methods {
                let path = format!("/{PACKAGE}.{service}/{method}");
                match verdict(&path) {
                    Verdict::Requires(p) => assert_eq!(p.action, Action::Read, "{path}"),
                    other => panic!("{path} is not in the permission table: {other:?}"),
                }
                let descriptor = set
                    .file
                    .iter()
                    .filter(|f| f.package() == PACKAGE)
                    .flat_map(|f| &f.service)
                    .filter(|s| s.name() == *service)
                    .flat_map(|s| &s.method)
                    .find(|m| m.name() == *method)
                    .unwrap_or_else(|| panic!("{path} is not in the proto"));
                assert!(
                    !descriptor.server_streaming() && !descriptor.client_streaming(),
                    "{path} streams"
                );
            }
        }
    }
}
