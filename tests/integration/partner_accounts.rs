use msp_gateway::proto::v1;
use tonic::Code;

use crate::customers::{aws_account, simulator_account};
use crate::harness::{Backend, TestGateway, assert_violation};

async fn create_get_list_update(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let sim = simulator_account(&gw).await;
    let aws = aws_account(&gw).await;
    let mut client = gw.partner_accounts(&gw.admin_key).await;
    assert_eq!(sim.partner_discount_rate, "0.10");
    assert_eq!(
        sim.poll_interval.as_ref().unwrap().seconds,
        900,
        "15 minutes by default"
    );

    let fetched = client
        .get_partner_account(v1::GetPartnerAccountRequest { id: aws.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, aws);
    let only_aws = client
        .list_partner_accounts(v1::ListPartnerAccountsRequest {
            vendor: v1::Vendor::Aws.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_aws.partner_accounts, vec![aws.clone()]);

    let mut patch = aws.clone();
    patch.enabled = false;
    patch.poll_interval = Some(prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    });
    let updated = client
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(patch.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into(), "poll_interval".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.enabled);
    assert_eq!(updated.poll_interval.unwrap().seconds, 3600);
    let status = client
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(status.code(), Code::Aborted);
    gw.stop().await;
}

async fn bad_partner_accounts_are_refused(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut client = gw.partner_accounts(&gw.admin_key).await;
    let base = v1::PartnerAccount {
        vendor: v1::Vendor::Aws.into(),
        display_name: "AWS payer".into(),
        vendor_account_id: "111122223333".into(),
        partner_discount_rate: "0.05".into(),
        credentials_ref: "env:AWS_PAYER".into(),
        enabled: true,
        ..Default::default()
    };
    type Mutation = fn(&mut v1::PartnerAccount);
    let cases: Vec<(Mutation, &str)> = vec![
        (
            |a| a.credentials_ref = "AKIAIOSFODNN7EXAMPLE".into(),
            "partner_account.credentials_ref",
        ),
        (
            |a| a.credentials_ref.clear(),
            "partner_account.credentials_ref",
        ),
        (
            |a| a.vendor_account_id = "12".into(),
            "partner_account.vendor_account_id",
        ),
        (
            |a| a.partner_discount_rate = "1.5".into(),
            "partner_account.partner_discount_rate",
        ),
        (
            |a| a.partner_discount_rate = "abc".into(),
            "partner_account.partner_discount_rate",
        ),
        (|a| a.vendor = 0, "partner_account.vendor"),
        (
            |a| a.endpoint_url = "ftp://x".into(),
            "partner_account.endpoint_url",
        ),
        (
            |a| {
                a.poll_interval = Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                })
            },
            "partner_account.poll_interval",
        ),
    ];
    for (i, (mutate, field)) in cases.into_iter().enumerate() {
        let mut account = base.clone();
        mutate(&mut account);
        let result = client
            .create_partner_account(v1::CreatePartnerAccountRequest {
                request_id: format!("bad-{i}"),
                partner_account: Some(account),
            })
            .await;
        assert_violation(result, Code::InvalidArgument, field);
    }
    let listed = client
        .list_partner_accounts(v1::ListPartnerAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.partner_accounts.is_empty());

    // The same vendor account twice is ALREADY_EXISTS.
    aws_account(&gw).await;
    let status = client
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "dup".into(),
            partner_account: Some(base),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(status.code(), Code::AlreadyExists);

    // Help desk keys cannot create partner accounts.
    gw.stop().await;
}

crate::both_backends!(create_get_list_update, bad_partner_accounts_are_refused);
