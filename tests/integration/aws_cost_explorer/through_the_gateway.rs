//! Cost Explorer through partner accounts made with the API and the gateway's real poller:
//! list and cost from two metrics of one request, back-off after failed polls, and a disabled
//! account's poller stopping at once.
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use msp_gateway::domain::charges::ChargeFilter;
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::poller::{PollOutcome, PollerSettings, poll_once};
use msp_gateway::proto::v1;
use rust_decimal::Decimal;
use serde_json::json;

use super::moto::{FaultProxy, Moto};
use super::{EC2, S3, credentials_in, day, group, page, priced_group};
use crate::harness::{Backend, TestGateway};

const LINKED: &str = "111122223333";

/// An AWS payer account created through the API, reading Cost Explorer through `endpoint`.
async fn payer(
    gw: &TestGateway,
    endpoint: &str,
    credentials: &tempfile::TempDir,
    discount: &str,
    poll_interval_secs: i64,
    aws_settings: v1::AwsSettings,
) -> msp_gateway::domain::partner_account::PartnerAccount {
    let created = gw
        .partner_accounts(&gw.admin_key)
        .await
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: format!("payer-{}", uuid::Uuid::new_v4()),
            partner_account: Some(v1::PartnerAccount {
                vendor: v1::Vendor::Aws.into(),
                display_name: "AWS payer".into(),
                vendor_account_id: "999988887777".into(),
                partner_discount_rate: discount.into(),
                credentials_ref: credentials_in(credentials),
                endpoint_url: endpoint.into(),
                poll_interval: Some(prost_types::Duration {
                    seconds: poll_interval_secs,
                    nanos: 0,
                }),
                enabled: true,
                aws_settings: Some(aws_settings),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    gw.store
        .partner_account(&gw.admin(), &created.id)
        .await
        .unwrap()
}

fn settings() -> PollerSettings {
    PollerSettings {
        owner: "replica".into(),
        ..Default::default()
    }
}

/// The gateway's poller running in the background, as `serve` runs it.
struct RunningPoller {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPoller {
    fn start(gw: &TestGateway) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(msp_gateway::poller::run(
            gw.ledger.clone(),
            settings(),
            stopped,
        ));
        RunningPoller { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

/// A gateway, moto answering `seed` (behind a recording proxy) and an AWS payer account with
/// a 1 s poll interval and `aws_settings`, whose linked account nobody is linked to.
struct Fixture {
    gw: TestGateway,
    _moto: Moto,
    proxy: FaultProxy,
    _credentials: tempfile::TempDir,
    account: msp_gateway::domain::partner_account::PartnerAccount,
}

impl Fixture {
    async fn start(
        backend: Backend,
        aws_settings: v1::AwsSettings,
        seed: Vec<serde_json::Value>,
    ) -> Option<Self> {
        let gw = TestGateway::start(backend).await?;
        let moto = Moto::start().await;
        moto.seed(seed).await;
        let proxy = FaultProxy::start(moto.address, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let account = payer(&gw, &proxy.url(), &dir, "0", 1, aws_settings).await;
        Some(Fixture {
            gw,
            _moto: moto,
            proxy,
            _credentials: dir,
            account,
        })
    }
}

/// A budget of one request a poll with a meter mode that needs two.
fn over_budget() -> v1::AwsSettings {
    v1::AwsSettings {
        meter_mode: v1::AwsMeterMode::MeterByUsageType.into(),
        request_budget: 1,
        ..Default::default()
    }
}

/// Yesterday (UTC) as Cost Explorer's DAILY period: inside every poll's window.
fn yesterday() -> (String, String) {
    let start = (Utc::now() - Span::days(1)).date_naive();
    let end = start.succ_opt().unwrap();
    (start.to_string(), end.to_string())
}

/// LIST_MINUS_DISCOUNT prices off AWS's own list (UnblendedCost), asked for in the same request
/// as the cost (NetUnblendedCost, after the partner's 5 % discount), not off a list recovered
/// from the partner discount; the line keeps both.
async fn aws_list_is_unblended_and_cost_is_net(backend: Backend) {
    use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
    use msp_gateway::domain::pricing::NewPriceRule;
    use msp_gateway::domain::pricing::{PriceKind, RuleScope};

    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(moto.address, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let account = payer(
        &gw,
        &proxy.url(),
        &dir,
        "0.05",
        900,
        v1::AwsSettings::default(),
    )
    .await;
    gw.linked_customer(Vendor::Aws, VendorAccountKind::AwsAccount, LINKED, "USD")
        .await;
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::ListMinusDiscount,
        value: Decimal::new(2, 2),
        currency: None,
        effective_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    let key = IdempotencyKey::new("list-2".into(), "CreatePriceRule", &rule);
    gw.ledger
        .create_price_rule(&gw.admin(), &rule, &Idempotent::unanswered(key))
        .await
        .unwrap();
    let (start, end) = yesterday();
    moto.seed(vec![page(
        vec![day(
            &start,
            &end,
            true,
            vec![
                // The partner pays 9.5 of AWS's 10 list; 0.0116 of 0.0125 (a different discount
                // than the account's 5 %: AWS's figure wins).
                priced_group(LINKED, EC2, "9.5", "10", "24", "Hrs"),
                priced_group(LINKED, S3, "0.0116", "0.0125", "5", "GB-Mo"),
            ],
        )],
        None,
    )])
    .await;

    let PollOutcome::Recorded(summary) = poll_once(&gw.ledger, &account, &settings())
        .await
        .expect("poll")
    else {
        panic!("recorded")
    };
    assert_eq!(summary.events_appended, 2);
    let body = &proxy.bodies()[0];
    assert_eq!(
        body["Metrics"],
        json!(["NetUnblendedCost", "UnblendedCost", "UsageQuantity"]),
        "both metrics in one request"
    );
    assert_eq!(
        body["Filter"],
        json!({"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}}),
        "credits and refunds are not usage"
    );
    let charges = gw
        .ledger
        .list_charges(&gw.admin(), &ChargeFilter::default(), 0, 10)
        .await
        .unwrap()
        .0;
    let mut amounts: Vec<(String, Decimal)> = charges
        .iter()
        .map(|c| (c.service.clone(), c.amount))
        .collect();
    amounts.sort();
    // list × 0.98. Taking UnblendedCost as the cost and recovering list as cost / (1 − 0.05),
    // as before, charged 10.3157… and 0.012894…: above AWS's own list price.
    assert_eq!(
        amounts,
        [
            (EC2.to_string(), Decimal::new(98, 1)),
            (S3.to_string(), Decimal::new(1225, 5)),
        ]
    );
    let lines = gw
        .ledger
        .usage_lines_in_window(
            &gw.tenant_id,
            &account,
            Utc::now() - Span::days(3),
            Utc::now(),
        )
        .await
        .unwrap();
    let s3 = lines
        .values()
        .find(|l| l.usage.key.service == S3)
        .expect("the S3 line");
    assert_eq!(s3.usage.cost, Decimal::new(116, 4));
    assert_eq!(s3.usage.list_cost, Some(Decimal::new(125, 4)));
    gw.stop().await;
}

/// A poll that cannot fit its request budget fails, and the next is due after a back-off that
/// doubles (1 s interval: 2 s, then 4 s), shown on the partner account; an update resets it, and
/// a success brings the interval back.
async fn aws_failed_polls_back_off_until_a_success(backend: Backend) {
    let (start, end) = yesterday();
    let one_day = |groups| page(vec![day(&start, &end, true, groups)], None);
    // The by-service pass, then the EC2 usage-type query: a budget of one never gets there.
    let seed = vec![
        one_day(vec![group(LINKED, EC2, "2", "1", "N/A")]),
        one_day(vec![group(LINKED, "BoxUsage:t3.micro", "2", "1", "Hrs")]),
    ];
    let Some(fx) = Fixture::start(backend, over_budget(), seed).await else {
        return;
    };
    let (gw, proxy, account) = (&fx.gw, &fx.proxy, fx.account.clone());
    let mut gaps = Vec::new();
    for _ in 0..3 {
        poll_once(&gw.ledger, &account, &settings())
            .await
            .expect_err("over budget");
        let status = gw.store.poll_status(&account.id).await.unwrap();
        let last = status.last_poll_at.unwrap();
        gaps.push((status.next_poll_at.unwrap() - last).num_milliseconds());
    }
    let seconds: Vec<i64> = gaps.iter().map(|ms| (ms + 500) / 1000).collect();
    assert_eq!(seconds, [2, 4, 8], "{gaps:?}");
    assert_eq!(proxy.bodies().len(), 3, "one billed request a poll");

    let mut accounts = gw.partner_accounts(&gw.admin_key).await;
    let shown = accounts
        .get_partner_account(v1::GetPartnerAccountRequest {
            id: account.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .poll_status
        .unwrap();
    assert_eq!(shown.consecutive_failures, 3);
    let next = shown.next_poll_time.unwrap();
    let last = shown.last_poll_time.unwrap();
    assert!(
        (7..=9).contains(&(next.seconds - last.seconds)),
        "{shown:?}"
    );
    assert!(shown.last_error.contains("budget"), "{}", shown.last_error);

    // New settings are worth a poll now.
    let updated = accounts
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(v1::PartnerAccount {
                id: account.id.clone(),
                aws_settings: Some(v1::AwsSettings {
                    request_budget: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["aws_settings.request_budget".into()],
            }),
            request_id: "more-budget".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = updated.poll_status.unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.next_poll_time, None);

    let account = gw
        .store
        .partner_account(&gw.admin(), &account.id)
        .await
        .unwrap();
    assert!(matches!(
        poll_once(&gw.ledger, &account, &settings()).await,
        Ok(PollOutcome::Recorded(_))
    ));
    let status = gw.store.poll_status(&account.id).await.unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.last_error, None);
    let gap = status.next_poll_at.unwrap() - status.last_poll_at.unwrap();
    assert!(
        gap <= Span::milliseconds(1500),
        "back to the interval: {gap}"
    );
    fx.gw.stop().await;
}

/// The running poller honours the back-off: over 5 s a failing account with a 1 s interval is
/// polled at 0 s and 2 s (then 6 s), not every second.
async fn aws_the_running_poller_backs_off(backend: Backend) {
    let (start, end) = yesterday();
    let seed = vec![page(
        vec![day(
            &start,
            &end,
            true,
            vec![group(LINKED, EC2, "2", "1", "N/A")],
        )],
        None,
    )];
    let Some(fx) = Fixture::start(backend, over_budget(), seed).await else {
        return;
    };
    let poller = RunningPoller::start(&fx.gw);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    poller.stop().await;
    assert_eq!(fx.proxy.bodies().len(), 2, "polled at 0 s and 2 s only");
    fx.gw.stop().await;
}

/// Disabling a partner account through the API stops its poller at once, not at the next
/// refresh of the poller's account list (10 s).
async fn aws_disabling_stops_the_poller_at_once(backend: Backend) {
    let (start, end) = yesterday();
    let seed = vec![page(
        vec![day(
            &start,
            &end,
            true,
            vec![group(LINKED, EC2, "2", "1", "N/A")],
        )],
        None,
    )];
    let Some(fx) = Fixture::start(backend, v1::AwsSettings::default(), seed).await else {
        return;
    };
    let poller = RunningPoller::start(&fx.gw);
    // Polled every second meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(fx.proxy.bodies().len() >= 2, "{}", fx.proxy.bodies().len());

    fx.gw
        .partner_accounts(&fx.gw.admin_key)
        .await
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(v1::PartnerAccount {
                id: fx.account.id.clone(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            request_id: "disable".into(),
        })
        .await
        .unwrap();
    // A poll already under way may finish; none starts after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_disable = fx.proxy.bodies().len();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        fx.proxy.bodies().len(),
        after_disable,
        "no poll after disabling"
    );
    let status = fx.gw.store.poll_status(&fx.account.id).await.unwrap();
    assert_eq!(
        status.lease_owner, None,
        "the stopped poller gave its lease up"
    );
    poller.stop().await;
    fx.gw.stop().await;
}

crate::both_backends!(
    aws_list_is_unblended_and_cost_is_net,
    aws_failed_polls_back_off_until_a_success,
    aws_the_running_poller_backs_off,
    aws_disabling_stops_the_poller_at_once,
);
