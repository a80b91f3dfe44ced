//! Authentication, scopes and tenant isolation.
use msp_gateway::proto::v1;
use tonic::Code;

use crate::customers::new_customer;
use crate::harness::{Backend, TestGateway};

async fn keys_are_required_and_checked(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    for key in ["", "mspgw.key_nope.secret", "not-a-key"] {
        let status = gw
            .customers(key)
            .await
            .list_customers(v1::ListCustomersRequest::default())
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "key {key:?}: {status:?}"
        );
    }
    // A real key id with a wrong secret.
    let forged = format!("{}x", gw.admin_key);
    let status = gw
        .customers(&forged)
        .await
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .expect_err("forged");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Health needs no key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gw.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "msp.gateway.v1.CustomerService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    gw.stop().await;
}

async fn revoked_keys_stop_working(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let created = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "k1".into(),
            name: "billing system".into(),
            scope: v1::ApiKeyScope::Billing.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("mspgw."));
    let key = created.api_key.unwrap();

    // The secret is shown once: a retry returns the key without it.
    let retry = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "k1".into(),
            name: "billing system".into(),
            scope: v1::ApiKeyScope::Billing.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.api_key.unwrap().id, key.id);
    assert!(retry.secret.is_empty());

    let mut billing = gw.customers(&created.secret).await;
    billing
        .create_customer(new_customer("b-1", "B-1"))
        .await
        .expect("billing keys write customers");

    // Listing never shows secrets, and shows both keys.
    let listed = tenants
        .list_api_keys(v1::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 2);

    let revoked = tenants
        .revoke_api_key(v1::RevokeApiKeyRequest {
            id: key.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let status = billing
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .expect_err("revoked");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A billing key cannot manage keys.
    gw.stop().await;
}

async fn scopes_limit_what_keys_do(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut admin = gw.customers(&gw.admin_key).await;
    let mine = admin
        .create_customer(new_customer("c-1", "MINE"))
        .await
        .unwrap()
        .into_inner();
    let theirs = admin
        .create_customer(new_customer("c-2", "THEIRS"))
        .await
        .unwrap()
        .into_inner();
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let mint = |scope: v1::ApiKeyScope, customer: &str, request: &str| v1::CreateApiKeyRequest {
        request_id: request.into(),
        name: format!("{scope:?} key"),
        scope: scope.into(),
        customer_id: customer.into(),
    };
    let help_desk = tenants
        .create_api_key(mint(v1::ApiKeyScope::HelpDesk, "", "hd"))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let portal = tenants
        .create_api_key(mint(v1::ApiKeyScope::Portal, &mine.id, "portal"))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let status = tenants
        .create_api_key(mint(v1::ApiKeyScope::Portal, "", "portal-without-customer"))
        .await
        .expect_err("portal keys need a customer");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Help desk reads but cannot write.
    let mut hd = gw.customers(&help_desk).await;
    assert_eq!(
        hd.list_customers(v1::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .customers
            .len(),
        2
    );
    let status = hd
        .create_customer(new_customer("hd-1", "HD"))
        .await
        .expect_err("help desk is read-only");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = gw
        .tenants(&help_desk)
        .await
        .list_api_keys(v1::ListApiKeysRequest::default())
        .await
        .expect_err("help desk cannot see keys");
    assert_eq!(status.code(), Code::PermissionDenied);

    // A portal key sees its one customer only; the other is NOT_FOUND.
    let mut p = gw.customers(&portal).await;
    let listed = p
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers.len(), 1);
    assert_eq!(listed.customers[0].id, mine.id);
    let status = p
        .get_customer(v1::GetCustomerRequest {
            id: theirs.id.clone(),
        })
        .await
        .expect_err("other customer");
    assert_eq!(status.code(), Code::NotFound);
    gw.stop().await;
}

async fn tenants_are_isolated(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut a = gw.customers(&gw.admin_key).await;
    let customer = a
        .create_customer(new_customer("iso-1", "SHARED-REF"))
        .await
        .unwrap()
        .into_inner();
    let other_key = gw.other_tenant().await;
    let mut b = gw.customers(&other_key).await;
    let status = b
        .get_customer(v1::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .expect_err("tenant B cannot read tenant A's customer");
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        b.list_customers(v1::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .customers
            .is_empty()
    );
    // The same request id and external_ref are independent per tenant.
    let mut request = new_customer("iso-1", "SHARED-REF");
    request.billing_currency = "USD".into();
    let theirs = b.create_customer(request).await.unwrap().into_inner();
    assert_ne!(theirs.id, customer.id);
    let mut patch = customer.clone();
    patch.display_name = "hijack".into();
    let status = b
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("cross-tenant update");
    assert_eq!(status.code(), Code::NotFound);
    gw.stop().await;
}

crate::both_backends!(
    keys_are_required_and_checked,
    revoked_keys_stop_working,
    scopes_limit_what_keys_do,
    tenants_are_isolated
);
