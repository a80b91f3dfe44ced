//! HelpDeskService and PortalService through the generated clients: spend summaries and cost
//! drivers on a hand-computed fixture (with a usage window on each side of a local midnight),
//! the overview, confinement to one customer and one tenant, bad input, portal sessions.
use chrono::{DateTime, Utc};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::help_desk_service_client::HelpDeskServiceClient;
use msp_gateway::proto::v1::portal_service_client::PortalServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::charge_streams::{Ledger, ledger, line};
use crate::harness::{Backend, Bearer, TestGateway, assert_violation};

pub type HelpDesk = HelpDeskServiceClient<InterceptedService<Channel, Bearer>>;
pub type Portal = PortalServiceClient<InterceptedService<Channel, Bearer>>;

pub async fn help_desk(gw: &TestGateway, key: &str) -> HelpDesk {
    HelpDeskServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

pub async fn portal(gw: &TestGateway, key: &str) -> Portal {
    PortalServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn usage(customer: &str, service: &str, meter: &str, cost: &str, window: &str) -> UsageLine {
    let mut l = line(customer, meter, cost, at(window));
    l.key.service = service.into();
    l
}

pub async fn record(gw: &TestGateway, l: &Ledger, lines: Vec<UsageLine>) {
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            lines,
            &crate::harness::fresh_request(),
        )
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id");
}

/// Customer 0 (Africa/Johannesburg, UTC+2, price = cost in ZAR) on local days 2026-10-01 and
/// 2026-10-02; customer 1 has a charge that must never show.
///
/// | local day  | service | meter | amount      | window (UTC)           |
/// | 2026-10-01 | Compute | vm    | 1.10        | 10-01 10:00            |
/// | 2026-10-01 | Storage | gb    | 0.5         | 10-01 21:00 (23:00 local) |
/// | 2026-10-02 | Compute | vm    | 2.000000001 | 10-01 22:00 (00:00 local) |
/// | 2026-10-02 | Compute | big   | 3           | 10-02 08:00            |
pub async fn fixture(gw: &TestGateway) -> Ledger {
    let l = ledger(gw, 2, "1000").await;
    let (c0, c1) = (&l.customers[0], &l.customers[1]);
    record(
        gw,
        &l,
        vec![
            usage(c0, "Compute", "vm", "1.10", "2026-10-01T10:00:00Z"),
            usage(c0, "Storage", "gb", "0.5", "2026-10-01T21:00:00Z"),
            usage(c0, "Compute", "vm", "2.000000001", "2026-10-01T22:00:00Z"),
            usage(c0, "Compute", "big", "3", "2026-10-02T08:00:00Z"),
            usage(c1, "Compute", "vm", "100", "2026-10-01T10:00:00Z"),
        ],
    )
    .await;
    l
}

pub fn summary_request(
    customer: &str,
    start: &str,
    end: &str,
    by: &[v1::SpendDimension],
) -> v1::GetSpendSummaryRequest {
    v1::GetSpendSummaryRequest {
        customer_id: customer.into(),
        start_date: start.into(),
        end_date: end.into(),
        group_by: by.iter().map(|d| *d as i32).collect(),
    }
}

fn rows(s: &v1::SpendSummary) -> Vec<(String, String, String, String, String)> {
    s.rows
        .iter()
        .map(|r| {
            (
                r.service.clone(),
                r.meter.clone(),
                r.date.clone(),
                r.amount.clone(),
                r.quantity.clone(),
            )
        })
        .collect()
}

fn row(
    service: &str,
    meter: &str,
    date: &str,
    amount: &str,
    quantity: &str,
) -> (String, String, String, String, String) {
    (
        service.into(),
        meter.into(),
        date.into(),
        amount.into(),
        quantity.into(),
    )
}

async fn summaries_and_drivers_match_the_hand_computed_fixture(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = fixture(&gw).await;
    let c0 = &l.customers[0];
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    use v1::SpendDimension::{Day, Meter, Service, Vendor};

    let by_day = hd
        .get_spend_summary(summary_request(c0, "2026-10-01", "2026-10-03", &[Day]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_day.currency, "ZAR");
    assert_eq!(by_day.time_zone, "Africa/Johannesburg");
    assert_eq!(by_day.total, "6.600000001");
    // The 22:00 UTC window is 00:00 local: it belongs to 2 October.
    assert_eq!(
        rows(&by_day),
        vec![
            row("", "", "2026-10-01", "1.60", ""),
            row("", "", "2026-10-02", "5.000000001", ""),
        ]
    );

    let by_meter = hd
        .get_spend_summary(summary_request(
            c0,
            "2026-10-01",
            "2026-10-03",
            &[Service, Meter],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rows(&by_meter),
        vec![
            row("Compute", "big", "", "3.00", "1"),
            row("Compute", "vm", "", "3.100000001", "2"),
            row("Storage", "gb", "", "0.50", "1"),
        ]
    );
    let by_vendor = hd
        .get_spend_summary(summary_request(c0, "2026-10-02", "2026-10-03", &[Vendor]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_vendor.rows.len(), 1);
    assert_eq!(by_vendor.rows[0].vendor, v1::Vendor::Simulator as i32);
    assert_eq!(by_vendor.total, "5.000000001");

    let drivers = hd
        .list_cost_drivers(v1::ListCostDriversRequest {
            customer_id: c0.clone(),
            start_date: "2026-10-02".into(),
            end_date: "2026-10-03".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            drivers.previous_start_date.as_str(),
            drivers.previous_end_date.as_str()
        ),
        ("2026-10-01", "2026-10-02")
    );
    // Storage fell (0.5 -> 0): not a driver. Compute: 1.10 -> 5.000000001.
    let got: Vec<_> = drivers
        .drivers
        .iter()
        .map(|d| {
            (
                d.service.as_str(),
                d.amount.as_str(),
                d.previous_amount.as_str(),
                d.change.as_str(),
                d.change_percent.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("Compute", "5.000000001", "1.10", "3.900000001", "354.55")]
    );
    let by_meter = hd
        .list_cost_drivers(v1::ListCostDriversRequest {
            customer_id: c0.clone(),
            start_date: "2026-10-02".into(),
            end_date: "2026-10-03".into(),
            by: Meter.into(),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = by_meter
        .drivers
        .iter()
        .map(|d| {
            (
                d.meter.as_str(),
                d.change.as_str(),
                d.change_percent.as_str(),
            )
        })
        .collect();
    assert_eq!(got, vec![("big", "3.00", "")]);
    gw.stop().await;
}

async fn the_overview_adds_up(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000").await;
    let c0 = &l.customers[0];
    record(&gw, &l, vec![line(c0, "vm", "70", l.base)]).await;
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    let overview = hd
        .get_spend_overview(v1::GetSpendOverviewRequest {
            customer_id: c0.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let to_date = hd
        .get_spend_summary(summary_request(c0, "", "", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overview.month_to_date, to_date.total);
    let credit = overview.credit.expect("credit position");
    assert_eq!(credit.credit_limit, "1000.00");
    assert_eq!(credit.exposure, "70.00");
    assert_eq!(credit.headroom, "930.00");
    // 70 over the last 7 days: 10 a day.
    assert_eq!(overview.run_rate_per_day, "10.00");
    let mtd: rust_decimal::Decimal = overview.month_to_date.parse().unwrap();
    let forecast: rust_decimal::Decimal = overview.forecast_to_period_end.parse().unwrap();
    let period_end = overview.period_end.unwrap().seconds;
    let days_left = rust_decimal::Decimal::from(period_end - Utc::now().timestamp())
        / rust_decimal::Decimal::from(86_400);
    let expected = mtd + rust_decimal::Decimal::TEN * days_left;
    assert!(
        (forecast - expected).abs() < rust_decimal::Decimal::ONE,
        "forecast {forecast}, expected about {expected}"
    );
    gw.stop().await;
}

pub async fn key(gw: &TestGateway, scope: v1::ApiKeyScope, customer: &str) -> String {
    gw.tenants(&gw.admin_key)
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: format!("{scope:?}-{customer}"),
            name: format!("{scope:?} key"),
            scope: scope.into(),
            customer_id: customer.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

async fn reads_are_confined_to_the_callers_customer_and_tenant(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = fixture(&gw).await;
    let (c0, c1) = (&l.customers[0], &l.customers[1]);
    let own = key(&gw, v1::ApiKeyScope::Portal, c0).await;
    let mut portal_key = help_desk(&gw, &own).await;
    let mine = portal_key
        .get_spend_summary(summary_request(c0, "2026-10-01", "2026-10-03", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.total, "6.600000001");
    let status = portal_key
        .get_spend_summary(summary_request(c1, "2026-10-01", "2026-10-03", &[]))
        .await
        .expect_err("another customer");
    assert_eq!(status.code(), Code::NotFound);
    let status = portal_key
        .get_spend_overview(v1::GetSpendOverviewRequest {
            customer_id: c1.clone(),
        })
        .await
        .expect_err("another customer");
    assert_eq!(status.code(), Code::NotFound);

    let other_tenant = gw.other_tenant().await;
    let mut other = help_desk(&gw, &other_tenant).await;
    let status = other
        .get_spend_summary(summary_request(c0, "", "", &[]))
        .await
        .expect_err("another tenant's customer");
    assert_eq!(status.code(), Code::NotFound);
    let status = portal(&gw, &other_tenant)
        .await
        .create_portal_session(v1::CreatePortalSessionRequest {
            customer_id: c0.clone(),
            request_id: "s-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("another tenant's customer");
    assert_eq!(status.code(), Code::NotFound);

    // Help desk reads; it may not open portals (billing and admin do).
    let hd_key = key(&gw, v1::ApiKeyScope::HelpDesk, "").await;
    let mut hd = help_desk(&gw, &hd_key).await;
    hd.get_spend_summary(summary_request(c1, "2026-10-01", "2026-10-03", &[]))
        .await
        .expect("help desk reads any customer");
    let status = portal(&gw, &hd_key)
        .await
        .create_portal_session(v1::CreatePortalSessionRequest {
            customer_id: c0.clone(),
            request_id: "s-2".into(),
            ..Default::default()
        })
        .await
        .expect_err("help desk is read-only");
    assert_eq!(status.code(), Code::PermissionDenied);
    gw.stop().await;
}

async fn bad_input_names_the_field(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "0").await;
    let c0 = &l.customers[0];
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    use v1::SpendDimension::Day;
    for (start, end, field) in [
        ("2026-10-01", "", "end_date"),
        ("2026-13-01", "2026-10-03", "start_date"),
        ("2026-10-03", "2026-10-03", "end_date"),
        ("2020-01-01", "2026-10-03", "end_date"),
    ] {
        assert_violation(
            hd.get_spend_summary(summary_request(c0, start, end, &[]))
                .await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_violation(
        hd.get_spend_summary(summary_request(c0, "", "", &[Day, Day]))
            .await,
        Code::InvalidArgument,
        "group_by[1]",
    );
    let mut request = summary_request(c0, "", "", &[]);
    request.group_by = vec![42];
    assert_violation(
        hd.get_spend_summary(request).await,
        Code::InvalidArgument,
        "group_by[0]",
    );
    assert_violation(
        hd.get_spend_summary(summary_request("", "", "", &[])).await,
        Code::InvalidArgument,
        "customer_id",
    );
    assert_violation(
        hd.list_cost_drivers(v1::ListCostDriversRequest {
            customer_id: c0.clone(),
            by: Day.into(),
            limit: 1000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "limit",
    );
    let mut portal_client = portal(&gw, &gw.admin_key).await;
    assert_violation(
        portal_client
            .create_portal_session(v1::CreatePortalSessionRequest {
                customer_id: c0.clone(),
                return_url: "javascript:alert(1)".into(),
                request_id: "s-1".into(),
            })
            .await,
        Code::InvalidArgument,
        "return_url",
    );
    assert_violation(
        portal_client
            .create_portal_session(v1::CreatePortalSessionRequest {
                customer_id: c0.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "request_id",
    );
    let status = portal_client
        .create_portal_session(v1::CreatePortalSessionRequest {
            customer_id: "cus_nobody".into(),
            request_id: "s-2".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown customer");
    assert_eq!(status.code(), Code::NotFound);
    gw.stop().await;
}

async fn portal_sessions_retry_to_the_same_link(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    let mut client = portal(&gw, &gw.admin_key).await;
    let request = v1::CreatePortalSessionRequest {
        customer_id: l.customers[0].clone(),
        return_url: "https://bss.example/accounts/1".into(),
        request_id: "session-1".into(),
    };
    let first = client
        .create_portal_session(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        first
            .url
            .starts_with(&format!("http://{}/portal/open/{}.", gw.address, first.id)),
        "{}",
        first.url
    );
    let again = client
        .create_portal_session(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    let other = client
        .create_portal_session(v1::CreatePortalSessionRequest {
            request_id: "session-2".into(),
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.url, first.url);
    assert_violation(
        client
            .create_portal_session(v1::CreatePortalSessionRequest {
                customer_id: l.customers[1].clone(),
                ..request
            })
            .await,
        Code::InvalidArgument,
        "request_id",
    );
    gw.stop().await;
}

crate::both_backends!(
    summaries_and_drivers_match_the_hand_computed_fixture,
    the_overview_adds_up,
    reads_are_confined_to_the_callers_customer_and_tenant,
    bad_input_names_the_field,
    portal_sessions_retry_to_the_same_link,
);
