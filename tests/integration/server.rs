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

/// The error details the gateway sends (google.rpc.BadRequest and the others `api::status`
/// uses) are served by reflection, so grpcurl and other reflecting clients decode them.
async fn reflection_serves_the_error_details(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    for symbol in [
        "google.rpc.BadRequest",
        "google.rpc.ResourceInfo",
        "google.rpc.PreconditionFailure",
        "google.rpc.RetryInfo",
    ] {
        {
            use tonic_reflection::pb::v1::ServerReflectionRequest;
            use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
            };
            let response = ServerReflectionClient::new(gw.channel().await)
                .server_reflection_info(tokio_stream::iter(vec![request]))
                .await
                .unwrap()
                .into_inner()
                .next()
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                matches!(
                    response.message_response,
                    Some(MessageResponse::FileDescriptorResponse(_))
                ),
                "v1 does not know {symbol}: {:?}",
                response.message_response
            );
        }
        {
            use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
            use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
            };
            let response = ServerReflectionClient::new(gw.channel().await)
                .server_reflection_info(tokio_stream::iter(vec![request]))
                .await
                .unwrap()
                .into_inner()
                .next()
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                matches!(
                    response.message_response,
                    Some(MessageResponse::FileDescriptorResponse(_))
                ),
                "v1alpha does not know {symbol}: {:?}",
                response.message_response
            );
        }
    }
    gw.stop().await;
}

/// A unary or client-streaming call that runs past `request_timeout` is ended by the server
/// (CANCELLED, "Timeout expired", as tonic reports a server deadline), so a client that stalls
/// an upload cannot hold a connection and a database slot for ever.
async fn a_stalled_upload_is_ended_at_the_request_timeout(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let limits = msp_gateway::server::Limits {
        request_timeout: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    };
    let replica = gw.replica_with(limits).await;
    let mut usage =
        msp_gateway::proto::v1::usage_service_client::UsageServiceClient::with_interceptor(
            replica.channel().await,
            crate::harness::Bearer::new(&gw.admin_key),
        );
    let first = msp_gateway::proto::v1::IngestUsageRequest {
        request_id: "stalled".into(),
        ..Default::default()
    };
    // One message, then nothing and no end of stream: the client stalls.
    let stalled = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        usage.ingest_usage(stalled),
    )
    .await
    .expect("the server ended the call")
    .expect_err("a stalled upload is refused");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert!(status.message().contains("Timeout expired"), "{status:?}");
    replica.stop().await;
    gw.stop().await;
}

/// A tenant holds at most `max_streams_per_tenant` open streams (charges, credit events,
/// invoices, service actions together); one more answers RESOURCE_EXHAUSTED with a RetryInfo,
/// other tenants are not affected, and a closed stream frees its slot.
async fn open_streams_are_capped_per_tenant(backend: Backend) {
    use msp_gateway::proto::v1;
    use tonic_types::StatusExt;
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let other_key = gw.other_tenant().await;
    let limits = msp_gateway::server::Limits {
        max_streams_per_tenant: 2,
        ..Default::default()
    };
    let replica = gw.replica_with(limits).await;
    let channel = replica.channel().await;
    let mut charges = crate::charge_streams::charges_client(channel.clone(), &gw.admin_key);
    let mut credit =
        v1::credit_control_service_client::CreditControlServiceClient::with_interceptor(
            channel.clone(),
            crate::harness::Bearer::new(&gw.admin_key),
        );
    let first = charges
        .stream_charges(v1::StreamChargesRequest::default())
        .await
        .expect("first stream");
    let second = credit
        .stream_credit_events(v1::StreamCreditEventsRequest::default())
        .await
        .expect("second stream");
    let refused = charges
        .stream_charges(v1::StreamChargesRequest::default())
        .await
        .expect_err("a third stream is over the cap");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("max_streams_per_tenant"),
        "{refused:?}"
    );
    assert!(
        refused.get_details_retry_info().is_some(),
        "RESOURCE_EXHAUSTED carries a RetryInfo"
    );
    // Another tenant has slots of its own.
    let mut others = crate::charge_streams::charges_client(channel.clone(), &other_key);
    let _theirs = others
        .stream_charges(v1::StreamChargesRequest::default())
        .await
        .expect("another tenant's stream");

    // Closing a stream frees its slot (once the server sees the client go).
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match charges
            .stream_charges(v1::StreamChargesRequest::default())
            .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the closed stream's slot was never freed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    drop(second);
    replica.stop().await;
    gw.stop().await;
}

/// Each API key has its own call budget (`rate_limit_per_key_per_sec`, `rate_limit_burst`):
/// calls past it answer RESOURCE_EXHAUSTED with a RetryInfo, another key of the same tenant is
/// not held back, and after the advertised wait the key is admitted again.
async fn calls_are_rate_limited_per_key(backend: Backend) {
    use msp_gateway::proto::v1;
    use tonic_types::StatusExt;
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let second_key = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "rate-limited-peer".into(),
            name: "help desk".into(),
            scope: v1::ApiKeyScope::HelpDesk.into(),
            customer_id: String::new(),
        })
        .await
        .expect("second key")
        .into_inner()
        .secret;
    // One call a second with bursts of 3: a fourth call at once is over the budget however
    // slowly this machine runs the first three (they would have to take a second).
    let limits = msp_gateway::server::Limits {
        rate_limit: msp_gateway::api::rate_limits::RateLimit::new(1, 3),
        ..Default::default()
    };
    let replica = gw.replica_with(limits).await;
    let channel = replica.channel().await;
    let mut customers = v1::customer_service_client::CustomerServiceClient::with_interceptor(
        channel.clone(),
        crate::harness::Bearer::new(&gw.admin_key),
    );
    let list = || v1::ListCustomersRequest::default();
    for call in 1..=3 {
        customers
            .list_customers(list())
            .await
            .unwrap_or_else(|status| panic!("call {call} is within the burst: {status:?}"));
    }
    let refused = customers
        .list_customers(list())
        .await
        .expect_err("the fourth call at once is over the key's budget");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("rate_limit_per_key_per_sec"),
        "the refusal names the limit: {refused:?}"
    );
    let retry_after = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RESOURCE_EXHAUSTED carries a RetryInfo with a delay");
    assert!(
        retry_after > std::time::Duration::ZERO && retry_after <= std::time::Duration::from_secs(1),
        "the wait is at most one interval: {retry_after:?}"
    );
    // Another key of the same tenant has its own budget.
    let mut peer = v1::customer_service_client::CustomerServiceClient::with_interceptor(
        channel.clone(),
        crate::harness::Bearer::new(&second_key),
    );
    peer.list_customers(list())
        .await
        .expect("another key is not held back");
    // Waiting what the RetryInfo says is enough.
    tokio::time::sleep(retry_after).await;
    customers
        .list_customers(list())
        .await
        .expect("admitted again after the advertised wait");
    replica.stop().await;
    gw.stop().await;
}

crate::both_backends!(
    calls_are_rate_limited_per_key,
    open_streams_are_capped_per_tenant,
    reflection_lists_every_service,
    reflection_serves_the_error_details,
    a_stalled_upload_is_ended_at_the_request_timeout
);

/// With a certificate and key configured the gateway speaks TLS (rustls) and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_a_certificate_is_configured() {
    use msp_gateway::config::Config;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};

    let certs = crate::certs::localhost("msp-gateway test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &certs.leaf_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    let config = Config {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Config::default()
    };
    let tls = msp_gateway::server::tls_config(&config)
        .unwrap()
        .expect("TLS configured");
    let db = crate::harness::TestDatabase::create(crate::harness::Backend::Sqlite)
        .await
        .unwrap();
    msp_gateway::store::migrate::run(&db.url, msp_gateway::store::migrate::Direction::Up)
        .await
        .unwrap();
    let store = std::sync::Arc::new(
        msp_gateway::store::Store::connect(&db.url, &Default::default()).unwrap(),
    );
    let ledger = std::sync::Arc::new(msp_gateway::ledger::Ledger::new(store).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(msp_gateway::server::serve(
        listener,
        ledger,
        Some(tls),
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));

    let channel = Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&certs.ca_pem)))
        .unwrap()
        .connect()
        .await
        .expect("TLS handshake");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over TLS")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A plaintext client gets no gRPC answer from a TLS port.
    let plaintext = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        assert!(
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_err()
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
