//! Every RPC the gateway serves is in the permission table, and the table's verdict is what a
//! key of each scope meets: the methods are read from the server through reflection, so a new
//! RPC without an entry fails here.
use std::str::FromStr;

use futures::StreamExt;
use http::uri::PathAndQuery;
use msp_gateway::api::permissions::{PACKAGE, PERMISSIONS, Verdict, verdict};
use msp_gateway::domain::access::Scope;
use msp_gateway::proto::v1;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::customers::new_customer;
use crate::harness::{Backend, TestGateway};

/// One served method: its path and whether it streams requests or responses.
struct Method {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every method of our package the server serves, as reflection describes it.
async fn served_methods(gw: &TestGateway) -> Vec<Method> {
    let mut reflection = ServerReflectionClient::new(gw.channel().await);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter(vec![ask(
            MessageRequest::ListServices(String::new()),
        )]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("reflection did not list the services");
    };
    let ours: Vec<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|name| name.starts_with(&format!("{PACKAGE}.")))
        .collect();
    assert_eq!(ours.len(), PERMISSIONS.len(), "services served: {ours:?}");
    let mut methods = Vec::new();
    for service in ours {
        let mut answers = reflection
            .server_reflection_info(futures::stream::iter(vec![ask(
                MessageRequest::FileContainingSymbol(service.clone()),
            )]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.next().await.unwrap().unwrap().message_response
        else {
            panic!("reflection did not describe {service}");
        };
        let name = service.rsplit('.').next().unwrap();
        let described = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .flat_map(|file| file.service)
            .find(|s| s.name() == name)
            .unwrap_or_else(|| panic!("{service} not among its file's services"));
        for method in described.method {
            methods.push(Method {
                path: format!("/{service}/{}", method.name()),
                client_streaming: method.client_streaming(),
                server_streaming: method.server_streaming(),
            });
        }
    }
    methods
}

/// Calls `method` with an empty request (or stream) as `key`; the status it ends with, or OK.
async fn call(gw: &TestGateway, method: &Method, key: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(gw.channel().await);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_str(&method.path).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let bearer: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    let code = |result: Result<Code, tonic::Status>| match result {
        Ok(code) => code,
        Err(status) => status.code(),
    };
    match (method.client_streaming, method.server_streaming) {
        (false, false) => {
            let mut request = Request::new(());
            request.metadata_mut().insert("authorization", bearer);
            code(grpc.unary(request, path, codec).await.map(|_| Code::Ok))
        }
        (true, false) => {
            let mut request = Request::new(futures::stream::iter(Vec::<()>::new()));
            request.metadata_mut().insert("authorization", bearer);
            code(
                grpc.client_streaming(request, path, codec)
                    .await
                    .map(|_| Code::Ok),
            )
        }
        (false, true) => {
            let mut request = Request::new(());
            request.metadata_mut().insert("authorization", bearer);
            code(
                grpc.server_streaming(request, path, codec)
                    .await
                    .map(|_| Code::Ok),
            )
        }
        (true, true) => {
            let mut request = Request::new(futures::stream::iter(Vec::<()>::new()));
            request.metadata_mut().insert("authorization", bearer);
            code(grpc.streaming(request, path, codec).await.map(|_| Code::Ok))
        }
    }
}

async fn every_rpc_answers_as_the_table_says(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let customer = gw
        .customers(&gw.admin_key)
        .await
        .create_customer(new_customer("perm-1", "PERM-1"))
        .await
        .unwrap()
        .into_inner();
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let mut keys = Vec::new();
    for (scope, proto) in [
        (Scope::Admin, v1::ApiKeyScope::Admin),
        (Scope::Billing, v1::ApiKeyScope::Billing),
        (Scope::CreditControl, v1::ApiKeyScope::CreditControl),
        (Scope::HelpDesk, v1::ApiKeyScope::HelpDesk),
        (Scope::Portal, v1::ApiKeyScope::Portal),
    ] {
        let customer_id = if scope == Scope::Portal {
            customer.id.clone()
        } else {
            String::new()
        };
        let secret = tenants
            .create_api_key(v1::CreateApiKeyRequest {
                request_id: format!("perm-{scope}"),
                name: format!("{scope} key"),
                scope: proto.into(),
                customer_id,
            })
            .await
            .unwrap()
            .into_inner()
            .secret;
        keys.push((scope, secret));
    }

    let methods = served_methods(&gw).await;
    let table: usize = PERMISSIONS.iter().map(|(_, methods)| methods.len()).sum();
    assert_eq!(methods.len(), table, "every table entry is a served method");
    for method in &methods {
        let Verdict::Requires(permission) = verdict(&method.path) else {
            panic!(
                "{} is served but has no entry in api::permissions",
                method.path
            );
        };
        for (scope, key) in &keys {
            let code = call(&gw, method, key).await;
            if scope.allows(permission.area, permission.action) {
                assert_ne!(code, Code::PermissionDenied, "{} as {scope}", method.path);
                assert_ne!(code, Code::Unauthenticated, "{} as {scope}", method.path);
            } else {
                assert_eq!(code, Code::PermissionDenied, "{} as {scope}", method.path);
            }
        }
        // And nobody gets in without a key.
        let code = call(&gw, method, "mspgw.key_none.secret").await;
        assert_eq!(code, Code::Unauthenticated, "{} without a key", method.path);
    }

    // A method the table does not know is refused even to an admin key.
    let unknown = Method {
        path: format!("/{PACKAGE}.CustomerService/DeleteEverything"),
        client_streaming: false,
        server_streaming: false,
    };
    assert_eq!(
        call(&gw, &unknown, &keys[0].1).await,
        Code::PermissionDenied
    );
    gw.stop().await;
}

crate::both_backends!(every_rpc_answers_as_the_table_says);
