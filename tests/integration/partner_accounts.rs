use msp_gateway::proto::v1;
use msp_gateway::proto::v1::partner_account_service_client::PartnerAccountServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::customers::{aws_account, simulator_account};
use crate::harness::{Backend, Bearer, TestGateway, assert_violation};

type Accounts = PartnerAccountServiceClient<InterceptedService<Channel, Bearer>>;

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

/// An enabled AWS partner account asking Cost Explorer for HOURLY AmortizedCost, the rest of its
/// AWS settings left to their defaults.
pub fn hourly_amortized_aws(vendor_account_id: &str) -> v1::PartnerAccount {
    v1::PartnerAccount {
        vendor: v1::Vendor::Aws.into(),
        display_name: "AWS payer (hourly)".into(),
        vendor_account_id: vendor_account_id.into(),
        partner_discount_rate: "0".into(),
        credentials_ref: "env:MSPGW_AWS_HOURLY".into(),
        enabled: true,
        aws_settings: Some(v1::AwsSettings {
            granularity: v1::AwsGranularity::Hourly.into(),
            cost_metric: v1::AwsCostMetric::AmortizedCost.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn fetch(client: &mut Accounts, id: &str) -> v1::PartnerAccount {
    client
        .get_partner_account(v1::GetPartnerAccountRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

fn aws_settings(
    granularity: v1::AwsGranularity,
    cost_metric: v1::AwsCostMetric,
    meter_mode: v1::AwsMeterMode,
    request_budget: u32,
) -> v1::AwsSettings {
    v1::AwsSettings {
        granularity: granularity.into(),
        cost_metric: cost_metric.into(),
        meter_mode: meter_mode.into(),
        request_budget,
    }
}

/// An AWS partner account's Cost Explorer settings are chosen at create, read back, changed
/// field by field or whole, defaulted where unspecified, and refused with the field named.
async fn aws_settings_are_chosen_and_kept(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut client = gw.partner_accounts(&gw.admin_key).await;
    let defaults = aws_settings(
        v1::AwsGranularity::Daily,
        v1::AwsCostMetric::UnblendedCost,
        v1::AwsMeterMode::MeterByService,
        20,
    );
    // Without settings an AWS account gets the defaults; other vendors get none.
    let plain = aws_account(&gw).await;
    assert_eq!(plain.aws_settings, Some(defaults));
    let sim = simulator_account(&gw).await;
    assert_eq!(sim.aws_settings, None);

    let created = client
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "aws-hourly".into(),
            partner_account: Some(hourly_amortized_aws("210987654321")),
        })
        .await
        .unwrap()
        .into_inner();
    let hourly_amortized = aws_settings(
        v1::AwsGranularity::Hourly,
        v1::AwsCostMetric::AmortizedCost,
        v1::AwsMeterMode::MeterByService,
        20,
    );
    assert_eq!(created.aws_settings, Some(hourly_amortized));
    assert_eq!(fetch(&mut client, &created.id).await, created);

    // Field by field: the rest stays.
    let update = |account: &v1::PartnerAccount, aws: v1::AwsSettings, paths: &[&str]| {
        v1::UpdatePartnerAccountRequest {
            partner_account: Some(v1::PartnerAccount {
                id: account.id.clone(),
                aws_settings: Some(aws),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            request_id: String::new(),
        }
    };
    let usage_type = aws_settings(
        v1::AwsGranularity::Daily,
        v1::AwsCostMetric::NetUnblendedCost,
        v1::AwsMeterMode::MeterByUsageType,
        50,
    );
    let updated = client
        .update_partner_account(update(
            &created,
            usage_type,
            &["aws_settings.meter_mode", "aws_settings.request_budget"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.aws_settings,
        Some(aws_settings(
            v1::AwsGranularity::Hourly,
            v1::AwsCostMetric::AmortizedCost,
            v1::AwsMeterMode::MeterByUsageType,
            50,
        ))
    );
    // Whole: what is unspecified returns to its default.
    let updated = client
        .update_partner_account(update(
            &created,
            v1::AwsSettings {
                cost_metric: v1::AwsCostMetric::NetUnblendedCost.into(),
                ..Default::default()
            },
            &["aws_settings"],
        ))
        .await
        .unwrap()
        .into_inner();
    let net_unblended = aws_settings(
        v1::AwsGranularity::Daily,
        v1::AwsCostMetric::NetUnblendedCost,
        v1::AwsMeterMode::MeterByService,
        20,
    );
    assert_eq!(updated.aws_settings, Some(net_unblended));
    assert_eq!(fetch(&mut client, &created.id).await, updated);

    // Bad values, at create and at update.
    type Mutation = fn(&mut v1::AwsSettings);
    let cases: Vec<(Mutation, &str)> = vec![
        (|a| a.granularity = 99, "granularity"),
        (|a| a.cost_metric = 4, "cost_metric"),
        (|a| a.meter_mode = -1, "meter_mode"),
        (|a| a.request_budget = 1001, "request_budget"),
    ];
    for (i, (mutate, field)) in cases.into_iter().enumerate() {
        let mut aws = hourly_amortized;
        mutate(&mut aws);
        let result = client
            .create_partner_account(v1::CreatePartnerAccountRequest {
                request_id: format!("bad-aws-{i}"),
                partner_account: Some(v1::PartnerAccount {
                    vendor: v1::Vendor::Aws.into(),
                    display_name: "AWS payer (bad)".into(),
                    vendor_account_id: "555566667777".into(),
                    partner_discount_rate: "0".into(),
                    credentials_ref: "env:MSPGW_AWS_BAD".into(),
                    aws_settings: Some(aws),
                    ..Default::default()
                }),
            })
            .await;
        let named = format!("partner_account.aws_settings.{field}");
        assert_violation(result, Code::InvalidArgument, &named);
        let result = client
            .update_partner_account(update(&created, aws, &["aws_settings"]))
            .await;
        assert_violation(result, Code::InvalidArgument, &named);
        let path = format!("aws_settings.{field}");
        let result = client
            .update_partner_account(update(&created, aws, &[path.as_str()]))
            .await;
        assert_violation(result, Code::InvalidArgument, &named);
    }
    let mut aws = hourly_amortized;
    aws.granularity = 3;
    let status = client
        .update_partner_account(update(&created, aws, &["aws_settings.granularity"]))
        .await
        .expect_err("unknown granularity");
    assert_eq!(
        crate::harness::field_violations(&status),
        vec![(
            "partner_account.aws_settings.granularity".to_string(),
            "3 is not one of DAILY, HOURLY".to_string()
        )]
    );
    // Only AWS accounts have AWS settings.
    let result = client
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "sim-with-aws".into(),
            partner_account: Some(v1::PartnerAccount {
                vendor: v1::Vendor::Simulator.into(),
                display_name: "Simulator".into(),
                vendor_account_id: "sim-2".into(),
                partner_discount_rate: "0".into(),
                aws_settings: Some(hourly_amortized),
                ..Default::default()
            }),
        })
        .await;
    assert_violation(
        result,
        Code::InvalidArgument,
        "partner_account.aws_settings",
    );
    let result = client
        .update_partner_account(update(
            &sim,
            hourly_amortized,
            &["aws_settings.granularity"],
        ))
        .await;
    assert_violation(
        result,
        Code::InvalidArgument,
        "partner_account.aws_settings",
    );

    // Nothing refused was written.
    let listed = client
        .list_partner_accounts(v1::ListPartnerAccountsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .partner_accounts;
    assert_eq!(listed.len(), 3);
    let settings: Vec<Option<v1::AwsSettings>> = listed.iter().map(|a| a.aws_settings).collect();
    assert!(settings.contains(&Some(net_unblended)));
    assert!(settings.contains(&Some(defaults)));
    assert!(settings.contains(&None));
    gw.stop().await;
}

crate::both_backends!(
    create_get_list_update,
    bad_partner_accounts_are_refused,
    aws_settings_are_chosen_and_kept,
);
