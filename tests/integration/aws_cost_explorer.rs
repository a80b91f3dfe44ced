//! The AWS Cost Explorer connector through the real SDK, against PyPI's moto server.
//!
//! Each test starts its own `moto_server` on a free port (killed on drop) and seeds Cost
//! Explorer answers through moto's `/moto-api/static/ce/cost-and-usage-results`: moto hands the
//! queued results out in order, one per distinct request body (a page token makes a new body).
//! moto cannot throttle, so the connector talks to moto through [`moto::FaultProxy`], which answers the
//! first queued requests with AWS JSON errors and records every request body it sees.
//!
//! `moto_server` missing from PATH fails the tests: `pip install 'moto[server]'`.
use std::time::Duration;

use chrono::{DateTime, Utc};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::vendors::aws::{
    AwsCostExplorer, AwsCostExplorerConfig, Granularity, MeterMode, RetryPolicy,
};
use msp_gateway::vendors::{
    PullOutcome, PullRequest, RequestCount, UsageSource, VendorError, VendorPeriod,
};
use serde_json::{Value, json};

use self::moto::{FaultProxy, Moto};

/// Shared with the service-control tests (AWS Organizations through the same moto and proxy).
pub mod moto;
mod through_the_gateway;

const EC2: &str = "Amazon Elastic Compute Cloud - Compute";
const S3: &str = "Amazon Simple Storage Service";

/// Writes example AWS credentials into `dir`; returns their `file:` reference.
pub fn credentials_in(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("aws.json");
    std::fs::write(
        &path,
        r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG"}"#,
    )
    .unwrap();
    format!("file:{}", path.display())
}

fn connector(
    endpoint: &str,
    configure: impl FnOnce(&mut AwsCostExplorerConfig),
) -> AwsCostExplorer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AwsCostExplorerConfig::new(credentials_in(&dir));
    config.endpoint_url = Some(endpoint.to_string());
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    configure(&mut config);
    // The secret is read here; the file may go.
    AwsCostExplorer::new(config).expect("connector")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn november_1_to_3() -> PullRequest {
    PullRequest {
        start: at("2026-11-01T00:00:00Z"),
        end: at("2026-11-03T00:00:00Z"),
        period: VendorPeriod::Current,
        previous_version: None,
    }
}

/// One GetCostAndUsage answer.
fn page(results_by_time: Vec<Value>, next_page_token: Option<&str>) -> Value {
    let mut page = json!({ "ResultsByTime": results_by_time, "DimensionValueAttributes": [] });
    if let Some(token) = next_page_token {
        page["NextPageToken"] = json!(token);
    }
    page
}

fn day(date: &str, next: &str, estimated: bool, groups: Vec<Value>) -> Value {
    json!({
        "TimePeriod": { "Start": date, "End": next },
        "Total": {},
        "Groups": groups,
        "Estimated": estimated,
    })
}

/// A group as Cost Explorer answers the default request: the net cost (what the payer pays
/// after its partner discounts) and the unblended (list) cost, here without a discount.
fn group(account: &str, key: &str, cost: &str, quantity: &str, unit: &str) -> Value {
    priced_group(account, key, cost, cost, quantity, unit)
}

fn priced_group(
    account: &str,
    key: &str,
    net: &str,
    list: &str,
    quantity: &str,
    unit: &str,
) -> Value {
    json!({
        "Keys": [account, key],
        "Metrics": {
            "NetUnblendedCost": { "Amount": net, "Unit": "USD" },
            "UnblendedCost": { "Amount": list, "Unit": "USD" },
            "UsageQuantity": { "Amount": quantity, "Unit": unit },
        },
    })
}

/// The filter every query carries: usage without credits and refunds.
fn usage_only() -> Value {
    json!({"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}})
}

async fn pull(source: &AwsCostExplorer) -> Result<(Vec<UsageLine>, RequestCount), VendorError> {
    let (outcome, count) = source.pull(&november_1_to_3()).await.into_result()?;
    match outcome {
        PullOutcome::Data(pull) => {
            assert_eq!(pull.version, None);
            assert_eq!(
                (pull.start, pull.end),
                (at("2026-11-01T00:00:00Z"), at("2026-11-03T00:00:00Z"))
            );
            Ok((pull.lines, count))
        }
        PullOutcome::Unchanged => panic!("Cost Explorer has no version to be unchanged against"),
    }
}

/// Each line as "account | service | meter | MM-DD | cost currency | quantity unit | flag".
fn summary(lines: &[UsageLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            assert_eq!(l.key.region, "", "Cost Explorer lines carry no region");
            assert_eq!(l.window_end - l.key.window_start, chrono::Duration::days(1));
            format!(
                "{} | {} | {} | {} | {} {} | {} {} | {}",
                l.key.vendor_account_id,
                l.key.service,
                l.key.meter,
                l.key.window_start.format("%m-%d"),
                l.cost,
                l.currency,
                l.quantity,
                l.unit,
                if l.estimated { "estimated" } else { "final" }
            )
        })
        .collect()
}

#[tokio::test]
async fn pages_are_followed_and_amounts_stay_exact() {
    let moto = Moto::start().await;
    moto.seed(vec![
        page(
            vec![day(
                "2026-11-01",
                "2026-11-02",
                false,
                vec![
                    group("111122223333", EC2, "0.0101516483", "1.5", "N/A"),
                    group("444455556666", S3, "1234.5678901234567", "0.000123", "N/A"),
                ],
            )],
            Some("page-2"),
        ),
        page(
            vec![day(
                "2026-11-02",
                "2026-11-03",
                true,
                vec![group("111122223333", EC2, "-0.0000000001", "0", "N/A")],
            )],
            None,
        ),
    ])
    .await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let source = connector(&proxy.url(), |_| {});

    let (lines, count) = pull(&source).await.expect("pull");

    assert_eq!(count, RequestCount(2));
    assert_eq!(
        summary(&lines),
        vec![
            format!("111122223333 | {EC2} | {EC2} | 11-01 | 0.0101516483 USD | 1.5 N/A | final"),
            format!("111122223333 | {EC2} | {EC2} | 11-02 | -0.0000000001 USD | 0 N/A | estimated"),
            format!(
                "444455556666 | {S3} | {S3} | 11-01 | 1234.5678901234567 USD | 0.000123 N/A | final"
            ),
        ]
    );
    let bodies = proxy.bodies();
    assert_eq!(
        bodies[0]["TimePeriod"],
        json!({"Start": "2026-11-01", "End": "2026-11-03"})
    );
    assert_eq!(bodies[0]["Granularity"], "DAILY");
    // Cost and list in one request; credits and refunds left out.
    assert_eq!(
        bodies[0]["Metrics"],
        json!(["NetUnblendedCost", "UnblendedCost", "UsageQuantity"])
    );
    assert_eq!(bodies[0]["Filter"], usage_only());
    assert_eq!(
        bodies[0]["GroupBy"],
        json!([{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "SERVICE"}])
    );
    assert!(bodies[0].get("NextPageToken").is_none());
    assert_eq!(bodies[1]["NextPageToken"], "page-2");
}

#[tokio::test]
async fn an_estimate_is_restated_by_the_final_figure() {
    let moto = Moto::start().await;
    let source = connector(&format!("http://{}", moto.address), |_| {});
    let answer = |estimated, cost| {
        page(
            vec![day(
                "2026-11-01",
                "2026-11-02",
                estimated,
                vec![group("111122223333", EC2, cost, "24", "Hrs")],
            )],
            None,
        )
    };

    moto.seed(vec![answer(true, "10.1234567891")]).await;
    let (first, count) = pull(&source).await.expect("estimated pull");
    assert_eq!(count, RequestCount(1));
    assert_eq!(
        summary(&first),
        vec![format!(
            "111122223333 | {EC2} | {EC2} | 11-01 | 10.1234567891 USD | 24 Hrs | estimated"
        )]
    );

    // moto answers a repeated request with its first answer: start it over with the revision.
    moto.reset().await;
    moto.seed(vec![answer(false, "10.1234567899")]).await;
    let (second, count) = pull(&source).await.expect("final pull");
    assert_eq!(count, RequestCount(1));
    assert_eq!(
        summary(&second),
        vec![format!(
            "111122223333 | {EC2} | {EC2} | 11-01 | 10.1234567899 USD | 24 Hrs | final"
        )]
    );
    assert_eq!(
        first[0].key, second[0].key,
        "the revision restates the same usage key"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_and_counted() {
    let moto = Moto::start().await;
    moto.seed(vec![page(
        vec![day(
            "2026-11-01",
            "2026-11-02",
            false,
            vec![group("111122223333", EC2, "3.25", "1", "Hrs")],
        )],
        None,
    )])
    .await;
    let proxy = FaultProxy::start(
        moto.address,
        &[
            (400, "LimitExceededException"),
            (503, "ServiceUnavailableException"),
            (400, "ThrottlingException"),
        ],
    )
    .await;
    let source = connector(&proxy.url(), |_| {});

    let (lines, count) = pull(&source).await.expect("pull after retries");

    assert_eq!(count, RequestCount(4), "every attempt is a billed request");
    assert_eq!(proxy.bodies().len(), 4);
    assert_eq!(
        summary(&lines),
        vec![format!(
            "111122223333 | {EC2} | {EC2} | 11-01 | 3.25 USD | 1 Hrs | final"
        )]
    );
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_reported() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(moto.address, &[(400, "LimitExceededException"); 10]).await;
    let source = connector(&proxy.url(), |_| {});

    let error = pull(&source).await.expect_err("throttled");

    assert!(matches!(error, VendorError::Throttled { .. }), "{error:?}");
    assert_eq!(proxy.bodies().len(), 4, "max_attempts bounds the attempts");
}

#[tokio::test]
async fn the_budget_is_never_exceeded() {
    let moto = Moto::start().await;
    let one_day = |date: &str, next: &str, token: Option<&str>| {
        page(
            vec![day(
                date,
                next,
                false,
                vec![group("111122223333", EC2, "1", "1", "Hrs")],
            )],
            token,
        )
    };
    moto.seed(vec![
        one_day("2026-11-01", "2026-11-02", Some("page-2")),
        one_day("2026-11-02", "2026-11-03", Some("page-3")),
        one_day("2026-11-02", "2026-11-03", None),
    ])
    .await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let source = connector(&proxy.url(), |c| c.request_budget = 2);

    let error = pull(&source)
        .await
        .expect_err("three pages do not fit in two requests");
    assert!(
        matches!(error, VendorError::BudgetExhausted(_)),
        "{error:?}"
    );
    assert_eq!(
        proxy.bodies().len(),
        2,
        "the request past the budget was never sent"
    );

    // Retries spend the same budget.
    let throttled = FaultProxy::start(moto.address, &[(400, "LimitExceededException"); 3]).await;
    let source = connector(&throttled.url(), |c| c.request_budget = 2);
    let error = pull(&source).await.expect_err("budget spent on retries");
    assert!(
        matches!(error, VendorError::BudgetExhausted(_)),
        "{error:?}"
    );
    assert_eq!(throttled.bodies().len(), 2);
}

#[tokio::test]
async fn data_unavailable_is_an_empty_window() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(moto.address, &[(400, "DataUnavailableException")]).await;
    let source = connector(&proxy.url(), |_| {});

    let (lines, count) = pull(&source).await.expect("no data is not an error");

    assert!(lines.is_empty());
    assert_eq!(count, RequestCount(1));
}

#[tokio::test]
async fn usage_type_mode_breaks_each_service_down() {
    let moto = Moto::start().await;
    let nov1 = |groups| page(vec![day("2026-11-01", "2026-11-02", true, groups)], None);
    moto.seed(vec![
        // The service pass.
        nov1(vec![
            group("111122223333", EC2, "5.0000000003", "2", "N/A"),
            group("111122223333", S3, "0.25", "7", "N/A"),
        ]),
        // Then one query per service, in name order.
        nov1(vec![
            group(
                "111122223333",
                "EU-BoxUsage:t3.micro",
                "5.0000000001",
                "1",
                "Hrs",
            ),
            group(
                "111122223333",
                "EU-EBS:VolumeUsage.gp3",
                "0.0000000002",
                "1",
                "GB-Mo",
            ),
        ]),
        nov1(vec![group(
            "111122223333",
            "EU-TimedStorage-ByteHrs",
            "0.25",
            "7",
            "GB-Mo",
        )]),
    ])
    .await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let source = connector(&proxy.url(), |c| c.meter_mode = MeterMode::UsageType);

    let (lines, count) = pull(&source).await.expect("pull");

    assert_eq!(count, RequestCount(3));
    assert_eq!(
        summary(&lines),
        vec![
            format!(
                "111122223333 | {EC2} | EU-BoxUsage:t3.micro | 11-01 | 5.0000000001 USD | 1 Hrs | estimated"
            ),
            format!(
                "111122223333 | {EC2} | EU-EBS:VolumeUsage.gp3 | 11-01 | 0.0000000002 USD | 1 GB-Mo | estimated"
            ),
            format!(
                "111122223333 | {S3} | EU-TimedStorage-ByteHrs | 11-01 | 0.25 USD | 7 GB-Mo | estimated"
            ),
        ]
    );
    let bodies = proxy.bodies();
    for (body, service) in bodies[1..].iter().zip([EC2, S3]) {
        assert_eq!(
            body["GroupBy"],
            json!([{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "USAGE_TYPE"}])
        );
        assert_eq!(
            body["Filter"],
            json!({"And": [usage_only(), {"Dimensions": {"Key": "SERVICE", "Values": [service]}}]})
        );
    }
}

#[tokio::test]
async fn hourly_windows_use_timestamps() {
    let moto = Moto::start().await;
    moto.seed(vec![page(
        vec![day(
            "2026-11-01T06:00:00Z",
            "2026-11-01T07:00:00Z",
            true,
            vec![group("111122223333", EC2, "0.0116", "1", "Hrs")],
        )],
        None,
    )])
    .await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let source = connector(&proxy.url(), |c| c.granularity = Granularity::Hourly);
    let request = PullRequest {
        // 05:00 began before the window: only the 06:00 hour is ours.
        start: at("2026-11-01T05:30:00Z"),
        end: at("2026-11-01T07:00:00Z"),
        period: VendorPeriod::Current,
        previous_version: None,
    };

    let (outcome, count) = source.pull(&request).await.into_result().expect("pull");

    assert_eq!(count, RequestCount(1));
    let PullOutcome::Data(pull) = outcome else {
        panic!("expected data")
    };
    let line = &pull.lines[0];
    assert_eq!(line.key.window_start, at("2026-11-01T06:00:00Z"));
    assert_eq!(line.window_end, at("2026-11-01T07:00:00Z"));
    assert_eq!(line.cost.to_string(), "0.0116");
    let body = &proxy.bodies()[0];
    assert_eq!(body["Granularity"], "HOURLY");
    assert_eq!(
        body["TimePeriod"],
        json!({"Start": "2026-11-01T06:00:00Z", "End": "2026-11-01T07:00:00Z"})
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_after_retries() {
    // A port nothing listens on: bind one, then free it.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let source = connector(&format!("http://{address}"), |_| {});

    let error = pull(&source).await.expect_err("nobody listens");

    assert!(matches!(error, VendorError::Unavailable(_)), "{error:?}");
    assert_eq!(source.requests_sent(), 4, "each attempt counts");
}

/// Cost Explorer through the real poller into the ledger: an estimate is charged, the final
/// figure appends only the difference, and a line AWS stops reporting is reversed.
async fn aws_revisions_reach_the_ledger_as_deltas(backend: crate::harness::Backend) {
    use msp_gateway::domain::charges::ChargeFilter;
    use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
    use msp_gateway::poller::{PollOutcome, PollerSettings, poll_with};
    use rust_decimal::Decimal;

    let Some(gw) = crate::harness::TestGateway::start(backend).await else {
        return;
    };
    let moto = Moto::start().await;
    let source = connector(&format!("http://{}", moto.address), |_| {});
    let account = gw
        .vendor_customer(
            Vendor::Aws,
            "999988887777",
            "USD",
            VendorAccountKind::AwsAccount,
            "111122223333",
            Decimal::new(10, 2),
        )
        .await;

    let window = (at("2026-11-01T00:00:00Z"), at("2026-11-03T00:00:00Z"));
    let settings = PollerSettings {
        owner: "replica".into(),
        ..Default::default()
    };
    moto.seed(vec![page(
        vec![day(
            "2026-11-01",
            "2026-11-02",
            true,
            vec![
                group("111122223333", EC2, "10.0000000001", "24", "Hrs"),
                group("111122223333", S3, "2", "5", "GB-Mo"),
            ],
        )],
        None,
    )])
    .await;
    let PollOutcome::Recorded(first) = poll_with(&gw.ledger, &account, &source, window, &settings)
        .await
        .unwrap()
    else {
        panic!("recorded")
    };
    assert_eq!(first.events_appended, 2);

    moto.reset().await;
    moto.seed(vec![page(
        vec![day(
            "2026-11-01",
            "2026-11-02",
            false,
            vec![group("111122223333", EC2, "10.5000000001", "25", "Hrs")],
        )],
        None,
    )])
    .await;
    let PollOutcome::Recorded(second) = poll_with(&gw.ledger, &account, &source, window, &settings)
        .await
        .unwrap()
    else {
        panic!("recorded")
    };
    assert_eq!(second.events_appended, 2, "a revision and a reversal");
    let charges = gw
        .ledger
        .list_charges(&gw.admin(), &ChargeFilter::default(), 0, 100)
        .await
        .unwrap()
        .0;
    let mut kinds: Vec<&str> = charges.iter().map(|c| c.kind.as_str()).collect();
    // Within one write, events are numbered customer by customer and by line key.
    kinds[2..].sort_unstable();
    assert_eq!(kinds, ["NEW", "NEW", "REVERSAL", "REVISION"]);
    let total: Decimal = charges.iter().map(|c| c.amount).sum();
    assert_eq!(
        total,
        Decimal::from_str_exact("11.55000000011").unwrap(),
        "10.5000000001 x 1.1"
    );
    assert_eq!(
        gw.store
            .poll_status(&account.id)
            .await
            .unwrap()
            .requests_spent,
        2
    );
    gw.stop().await;
}

/// The Cost Explorer settings chosen on a partner account through the API are what the poller
/// asks for: HOURLY windows over the last 14 days, the amortized pair (NetAmortizedCost as the
/// cost, AmortizedCost as the list; moto's answer carries only those, so asking for others would
/// fail the poll), then the usage-type meter mode and a request budget too small for it.
async fn partner_account_settings_drive_the_poller(backend: crate::harness::Backend) {
    use chrono::{Duration as Span, DurationRound};
    use msp_gateway::poller::{PollOutcome, PollerSettings, poll_once};
    use msp_gateway::proto::v1;

    let Some(gw) = crate::harness::TestGateway::start(backend).await else {
        return;
    };
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut account = crate::partner_accounts::hourly_amortized_aws("999988887777");
    account.credentials_ref = credentials_in(&dir);
    account.endpoint_url = proxy.url();
    let mut accounts = gw.partner_accounts(&gw.admin_key).await;
    let created = accounts
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "aws-moto".into(),
            partner_account: Some(account),
        })
        .await
        .unwrap()
        .into_inner();

    let now = Utc::now();
    let hour = (now - Span::days(1))
        .duration_trunc(Span::hours(1))
        .unwrap();
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let amortized = json!({
        "Keys": ["111122223333", EC2],
        "Metrics": {
            "NetAmortizedCost": { "Amount": "7.2500000001", "Unit": "USD" },
            "AmortizedCost": { "Amount": "8", "Unit": "USD" },
            "UsageQuantity": { "Amount": "1", "Unit": "Hrs" },
        },
    });
    moto.seed(vec![page(
        vec![day(
            &stamp(hour),
            &stamp(hour + Span::hours(1)),
            true,
            vec![amortized],
        )],
        None,
    )])
    .await;
    let settings = PollerSettings {
        owner: "replica".into(),
        ..Default::default()
    };
    let account = gw
        .store
        .partner_account(&gw.admin(), &created.id)
        .await
        .unwrap();
    let PollOutcome::Recorded(summary) = poll_once(&gw.ledger, &account, &settings)
        .await
        .expect("poll")
    else {
        panic!("recorded")
    };
    assert_eq!(summary.lines_written, 1);

    let bodies = proxy.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["Granularity"], "HOURLY");
    assert_eq!(
        bodies[0]["Metrics"],
        json!(["NetAmortizedCost", "AmortizedCost", "UsageQuantity"])
    );
    // The last 14 whole days (UTC), as hourly timestamps.
    let start = at(bodies[0]["TimePeriod"]["Start"].as_str().unwrap());
    assert_eq!(start.duration_trunc(Span::days(1)).unwrap(), start);
    assert!(
        start >= now - Span::days(14) && start <= now - Span::days(13),
        "{start}"
    );
    let tomorrow = now.duration_trunc(Span::days(1)).unwrap() + Span::days(1);
    assert_eq!(bodies[0]["TimePeriod"]["End"], stamp(tomorrow));
    // The line carries the amortized cost, hour by hour.
    let mut usage = gw.usage(&gw.admin_key).await;
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .unrated_usage;
    assert_eq!(unrated.len(), 1);
    let line = unrated[0].line.as_ref().unwrap();
    assert_eq!(
        (line.cost.as_str(), line.currency.as_str()),
        ("7.2500000001", "USD")
    );
    assert_eq!(line.list_cost, "8.00");
    assert_eq!(line.window_start.unwrap().seconds, hour.timestamp());
    assert_eq!(line.window_end.unwrap().seconds, hour.timestamp() + 3600);

    // Usage types cost a second query; a budget of one refuses to send it.
    let updated = accounts
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(v1::PartnerAccount {
                id: created.id.clone(),
                aws_settings: Some(v1::AwsSettings {
                    meter_mode: v1::AwsMeterMode::MeterByUsageType.into(),
                    request_budget: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "aws_settings.meter_mode".into(),
                    "aws_settings.request_budget".into(),
                ],
            }),
            request_id: "usage-types".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.poll_status.unwrap().requests_spent, 1);
    let account = gw
        .store
        .partner_account(&gw.admin(), &created.id)
        .await
        .unwrap();
    poll_once(&gw.ledger, &account, &settings)
        .await
        .expect_err("over budget");
    let bodies = proxy.bodies();
    assert_eq!(bodies.len(), 2, "the query past the budget was never sent");
    assert_eq!(bodies[1], bodies[0], "the by-service pass, as before");
    let status = gw.store.poll_status(&created.id).await.unwrap();
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("budget"), "{error}");
    // The failed poll's request was billed: one before, one now.
    assert_eq!(status.requests_spent, 2);
    gw.stop().await;
}

crate::both_backends!(
    aws_revisions_reach_the_ledger_as_deltas,
    partner_account_settings_drive_the_poller,
);
