//! Bad input: each answers the right code with a field violation and writes nothing.
use msp_gateway::proto::v1;
use tonic::Code;

use crate::customers::{new_customer, simulator_account};
use crate::harness::{Backend, TestGateway, assert_violation};

async fn bad_customer_input_writes_nothing(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    simulator_account(&gw).await;
    let mut client = gw.customers(&gw.admin_key).await;

    type Mutation = fn(&mut v1::CreateCustomerRequest);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "empty name",
            |r| r.display_name = "  ".into(),
            "display_name",
        ),
        (
            "oversized name",
            |r| r.display_name = "x".repeat(201),
            "display_name",
        ),
        (
            "lower-case currency",
            |r| r.billing_currency = "zar".into(),
            "billing_currency",
        ),
        (
            "unknown currency",
            |r| r.billing_currency = "ABC".into(),
            "billing_currency",
        ),
        (
            "negative limit",
            |r| r.credit_limit = "-1.00".into(),
            "credit_limit",
        ),
        (
            "malformed limit",
            |r| r.credit_limit = "1,000".into(),
            "credit_limit",
        ),
        (
            "exponent limit",
            |r| r.credit_limit = "1E-3".into(),
            "credit_limit",
        ),
        (
            "too precise limit",
            |r| r.credit_limit = "10.001".into(),
            "credit_limit",
        ),
        (
            "unknown billing cycle",
            |r| r.billing_cycle = 42,
            "billing_cycle",
        ),
        (
            "missing billing cycle",
            |r| r.billing_cycle = 0,
            "billing_cycle",
        ),
        (
            "bad time zone",
            |r| r.time_zone = "Mars/Olympus".into(),
            "time_zone",
        ),
        ("missing request id", |r| r.request_id.clear(), "request_id"),
        (
            "oversized external ref",
            |r| r.external_ref = "r".repeat(129),
            "external_ref",
        ),
        (
            "spaces in external ref",
            |r| r.external_ref = "A B".into(),
            "external_ref",
        ),
        (
            "unknown vendor",
            |r| {
                r.enrollments = vec![v1::EnrollmentRequest {
                    vendor: 9,
                    partner_account_id: String::new(),
                    new_account: None,
                }]
            },
            "enrollments[0].vendor",
        ),
        (
            "vendor twice",
            |r| {
                let sim = v1::EnrollmentRequest {
                    vendor: v1::Vendor::Simulator.into(),
                    partner_account_id: String::new(),
                    new_account: None,
                };
                r.enrollments = vec![sim.clone(), sim];
            },
            "enrollments[1].vendor",
        ),
    ];
    for (i, (label, mutate, field)) in cases.into_iter().enumerate() {
        let mut request = new_customer(&format!("bad-{i}"), &format!("BAD-{i}"));
        mutate(&mut request);
        let result = client.create_customer(request).await;
        assert!(result.is_err(), "{label} was accepted");
        assert_violation(result, Code::InvalidArgument, field);
    }

    // Enrolling with a vendor the tenant has no partner account for is a failed precondition.
    let mut request = new_customer("no-aws", "NO-AWS");
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Aws.into(),
        partner_account_id: String::new(),
        new_account: None,
    }];
    let status = client
        .create_customer(request)
        .await
        .expect_err("no AWS account");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Malformed page tokens and sizes.
    let token = client
        .list_customers(v1::ListCustomersRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_violation(token, Code::InvalidArgument, "page_token");
    let size = client
        .list_customers(v1::ListCustomersRequest {
            page_size: -5,
            ..Default::default()
        })
        .await;
    assert_violation(size, Code::InvalidArgument, "page_size");

    // Nothing was written by any of the refused calls.
    let all = client
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        all.customers.is_empty(),
        "refused calls wrote {:?}",
        all.customers
    );
    gw.stop().await;
}

async fn bad_updates_are_refused(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut client = gw.customers(&gw.admin_key).await;
    let created = client
        .create_customer(new_customer("u-1", "UPD-1"))
        .await
        .unwrap()
        .into_inner();
    let update = |customer: v1::Customer, paths: &[&str]| v1::UpdateCustomerRequest {
        customer: Some(customer),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        request_id: String::new(),
    };
    let mut bad = created.clone();
    bad.credit_limit = "-5".into();
    assert_violation(
        client.update_customer(update(bad, &["credit_limit"])).await,
        Code::InvalidArgument,
        "customer.credit_limit",
    );
    assert_violation(
        client
            .update_customer(update(created.clone(), &["billing_currency"]))
            .await,
        Code::InvalidArgument,
        "update_mask.paths[0]",
    );
    assert_violation(
        client.update_customer(update(created.clone(), &[])).await,
        Code::InvalidArgument,
        "update_mask",
    );
    let mut missing = created.clone();
    missing.id = "cus_doesnotexist".into();
    let status = client
        .update_customer(update(missing, &["display_name"]))
        .await
        .expect_err("unknown customer");
    assert_eq!(status.code(), Code::NotFound);
    let after = client
        .get_customer(v1::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, created, "refused updates changed nothing");
    gw.stop().await;
}

/// A batch of 300 bad lines is refused with an error small enough for every client's default
/// metadata limit (Java's 8 KiB): the first violations, then how many more there were.
async fn a_refused_batch_fits_any_client(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = simulator_account(&gw).await;
    let bad: Vec<v1::UsageLine> = (0..300)
        .map(|h| {
            let mut line = crate::usage::usage_line("sim-linked", "vm", h, "not a number");
            line.quantity = "-1".into();
            line
        })
        .collect();
    let status = crate::usage::push(&gw, "too-bad", &account.id, vec![bad])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    // What the trailers carry: the message, and the details (with the message again) in base64.
    let trailers = status.message().len() + status.details().len().div_ceil(3) * 4;
    assert!(trailers < 6 * 1024, "{trailers} bytes of trailers");
    let violations = crate::harness::field_violations(&status);
    assert_eq!(violations[0].0, "lines[0].quantity");
    let (_, last) = violations.last().unwrap();
    assert!(last.contains("more violations not listed"), "{last}");
    gw.stop().await;
}

/// A request over the size limit (4 MiB by default) answers RESOURCE_EXHAUSTED, as gRPC's
/// convention has it, for unary and streaming calls alike.
async fn an_oversized_request_is_resource_exhausted(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = simulator_account(&gw).await;
    let mut customers = gw.customers(&gw.admin_key).await;
    let mut huge = new_customer("huge", "HUGE-1");
    huge.display_name = "x".repeat(5 * 1024 * 1024);
    let status = customers.create_customer(huge).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_request_bytes"), "{status:?}");
    let mut line = crate::usage::usage_line("sim-linked", "vm", 0, "1");
    line.meter_name = "m".repeat(5 * 1024 * 1024);
    let status = crate::usage::push(&gw, "huge-push", &account.id, vec![vec![line]])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    gw.stop().await;
}

/// Page tokens are checked before anything reaches the database: a flipped byte, a truncation, a
/// NUL in the cursor (even with a recomputed check), or a token from another query each answer
/// INVALID_ARGUMENT naming `page_token`, never INTERNAL and never a silently different page.
async fn tampered_page_tokens_are_refused(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};

    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    simulator_account(&gw).await;
    let mut client = gw.customers(&gw.admin_key).await;
    for i in 0..3 {
        client
            .create_customer(new_customer(&format!("page-{i}"), &format!("PAGE-{i}")))
            .await
            .unwrap();
    }
    let list = |token: String| v1::ListCustomersRequest {
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let first = client.list_customers(list(String::new())).await.unwrap();
    let token = first.into_inner().next_page_token;
    assert!(!token.is_empty());
    client.list_customers(list(token.clone())).await.unwrap();

    let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let mut tampered = Vec::new();
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        tampered.push(("flipped byte", URL_SAFE_NO_PAD.encode(flipped)));
    }
    tampered.push(("truncated", token[..token.len() - 3].to_string()));
    tampered.push(("truncated to one", token[..1].to_string()));
    // A cursor with a NUL byte: in the issued layout with a matching check, and in the old one.
    let payload_len = bytes.len() - 12;
    let text = String::from_utf8(bytes[..payload_len].to_vec()).unwrap();
    let nul = format!("{}\0x", text);
    let mut forged = nul.clone().into_bytes();
    forged.extend_from_slice(&Sha256::digest(nul.as_bytes())[..12]);
    tampered.push(("NUL with a good check", URL_SAFE_NO_PAD.encode(forged)));
    tampered.push((
        "NUL in the old layout",
        URL_SAFE_NO_PAD.encode(nul.replacen('2', "1", 1)),
    ));
    for (label, bad) in tampered {
        let result = client.list_customers(list(bad.clone())).await;
        assert!(result.is_err(), "{label} ({bad}) was accepted");
        assert_violation(result, Code::InvalidArgument, "page_token");
    }
    // The same token with other filters, and on another list.
    let filtered = client
        .list_customers(v1::ListCustomersRequest {
            page_size: 1,
            page_token: token.clone(),
            status: v1::CustomerStatus::Active.into(),
            ..Default::default()
        })
        .await;
    assert_violation(filtered, Code::InvalidArgument, "page_token");
    let mut charges =
        msp_gateway::proto::v1::charge_service_client::ChargeServiceClient::with_interceptor(
            gw.channel().await,
            crate::harness::Bearer::new(&gw.admin_key),
        );
    let other = charges
        .list_charges(v1::ListChargesRequest {
            page_token: token,
            ..Default::default()
        })
        .await;
    assert_violation(other, Code::InvalidArgument, "page_token");
    gw.stop().await;
}

crate::both_backends!(
    tampered_page_tokens_are_refused,
    bad_customer_input_writes_nothing,
    bad_updates_are_refused,
    a_refused_batch_fits_any_client,
    an_oversized_request_is_resource_exhausted
);
