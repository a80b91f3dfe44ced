//! Every service the gateway serves, registered here so that only the API sees the generated
//! types: ours (behind the auth layer the server puts in front of all of them), gRPC health,
//! and reflection v1 and v1alpha (grpcurl 1.8 speaks v1alpha) over our descriptors and health's.
use std::time::Duration;

use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::Gateway;
use super::catalog::CatalogApi;
use super::charges::ChargeApi;
use super::credit::CreditApi;
use super::customers::CustomerApi;
use super::helpdesk::{HelpDeskApi, PortalApi};
use super::invoices::InvoiceApi;
use super::partner_accounts::PartnerAccountApi;
use super::permissions::{PACKAGE, PERMISSIONS};
use super::pricing::PricingApi;
use super::service_management::ServiceManagementApi;
use super::subscriptions::SubscriptionApi;
use super::tenants::TenantApi;
use super::usage::UsageApi;
use crate::proto::v1::catalog_service_server::CatalogServiceServer;
use crate::proto::v1::charge_service_server::ChargeServiceServer;
use crate::proto::v1::credit_control_service_server::CreditControlServiceServer;
use crate::proto::v1::customer_service_server::CustomerServiceServer;
use crate::proto::v1::help_desk_service_server::HelpDeskServiceServer;
use crate::proto::v1::invoice_service_server::InvoiceServiceServer;
use crate::proto::v1::partner_account_service_server::PartnerAccountServiceServer;
use crate::proto::v1::portal_service_server::PortalServiceServer;
use crate::proto::v1::pricing_service_server::PricingServiceServer;
use crate::proto::v1::service_management_service_server::ServiceManagementServiceServer;
use crate::proto::v1::subscription_service_server::SubscriptionServiceServer;
use crate::proto::v1::tenant_service_server::TenantServiceServer;
use crate::proto::v1::usage_service_server::UsageServiceServer;
use crate::store::Store;

/// How often health looks at the database.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The routes of every service; health starts SERVING and follows the database from then on
/// (see [`watch_health`]).
pub async fn routes(
    gw: &Gateway,
    max_request_bytes: usize,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // The error details (google.rpc.BadRequest, …), so clients like grpcurl decode them.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = Routes::new(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(
            TenantServiceServer::new(TenantApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            PartnerAccountServiceServer::new(PartnerAccountApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            CustomerServiceServer::new(CustomerApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            PricingServiceServer::new(PricingApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            UsageServiceServer::new(UsageApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            ChargeServiceServer::new(ChargeApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            CreditControlServiceServer::new(CreditApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            InvoiceServiceServer::new(InvoiceApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            ServiceManagementServiceServer::new(ServiceManagementApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            HelpDeskServiceServer::new(HelpDeskApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            PortalServiceServer::new(PortalApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            CatalogServiceServer::new(CatalogApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            SubscriptionServiceServer::new(SubscriptionApi::new(gw.clone()))
                .max_decoding_message_size(max_request_bytes),
        );
    // The portal's pages on the same port (tonic's router is an axum router).
    let routes = Routes::from(
        routes
            .into_axum_router()
            .merge(super::portal::router(gw.clone())),
    );
    set_health(&health, ServingStatus::Serving).await;
    Ok((routes, health))
}

/// Every one of our services, and the server as a whole (""), at `status`.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for (service, _) in PERMISSIONS {
        health
            .set_service_status(format!("{PACKAGE}.{service}"), status)
            .await;
    }
}

/// Reports NOT_SERVING while the database does not answer or has migrations of this binary
/// pending, SERVING when it is ready again; runs
/// until the process ends.
pub async fn watch_health(health: HealthReporter, store: std::sync::Arc<Store>, every: Duration) {
    let mut serving = true;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let up = match tokio::time::timeout(every.max(Duration::from_secs(1)), store.ready()).await
        {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                if serving {
                    tracing::warn!(%error, "database not ready; health is NOT_SERVING");
                }
                false
            }
            Err(_) => {
                if serving {
                    tracing::warn!("database did not answer in time; health is NOT_SERVING");
                }
                false
            }
        };
        if up != serving {
            if up {
                tracing::info!("database reachable again; health is SERVING");
            }
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&health, status).await;
            serving = up;
        }
    }
}
