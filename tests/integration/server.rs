//! What every caller sees before authenticating: reflection (v1 and v1alpha) lists every service.
use tokio_stream::StreamExt;

use crate::harness::{Backend, TestGateway};

const EXPECTED: &[&str] = &[
    "grpc.health.v1.Health",
    "msp.gateway.v1.CustomerService",
    "msp.gateway.v1.PartnerAccountService",
    "msp.gateway.v1.PricingService",
    "msp.gateway.v1.TenantService",
    "msp.gateway.v1.UsageService",
];

async fn reflection_lists_every_service(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(gw.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(response)) = responses.next().await else {
            panic!("no reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in EXPECTED {
            assert!(
                names.iter().any(|n| n == expected),
                "v1 lacks {expected}: {names:?}"
            );
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(gw.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(response)) = responses.next().await else {
            panic!("no reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in EXPECTED {
            assert!(
                names.iter().any(|n| n == expected),
                "v1alpha lacks {expected}: {names:?}"
            );
        }
    }
    gw.stop().await;
}

crate::both_backends!(reflection_lists_every_service);
