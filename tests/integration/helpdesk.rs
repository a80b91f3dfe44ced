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

/// Invoices of the fixture: customer 0's October (paid 1.00 of it) and November (a late
/// October line, 4 ZAR, billed as an adjustment naming October; closed by the ledger as of ten
/// days from now, since November's grace may not have passed), and customer 1's October.
pub struct Invoices {
    pub october: v1::Invoice,
    pub november: v1::Invoice,
    pub other_customer: v1::Invoice,
}

pub async fn invoices(gw: &TestGateway, l: &Ledger) -> Invoices {
    let mut client =
        msp_gateway::proto::v1::invoice_service_client::InvoiceServiceClient::with_interceptor(
            gw.channel().await,
            crate::harness::Bearer::new(&gw.admin_key),
        );
    let close = |customer: &str| v1::CloseBillingPeriodRequest {
        request_id: format!("close-{customer}"),
        customer_id: customer.into(),
        period_start: None,
    };
    let (c0, c1) = (&l.customers[0], &l.customers[1]);
    let october = client
        .close_billing_period(close(c0))
        .await
        .unwrap()
        .into_inner();
    let other_customer = client
        .close_billing_period(close(c1))
        .await
        .unwrap()
        .into_inner();
    client
        .record_payment(v1::RecordPaymentRequest {
            request_id: format!("pay-{c0}"),
            invoice_id: october.id.clone(),
            amount: "1.00".into(),
            reference: "EFT 1".into(),
        })
        .await
        .unwrap();
    let october = client
        .get_invoice(v1::GetInvoiceRequest {
            id: october.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    record(
        gw,
        l,
        vec![usage(c0, "Compute", "vm", "4", "2026-10-20T10:00:00Z")],
    )
    .await;
    let closed = gw
        .ledger
        .close_billing_period(
            &gw.tenant_id,
            c0,
            None,
            Utc::now() + chrono::Duration::days(10),
            None,
        )
        .await
        .unwrap()
        .unguarded()
        .unwrap();
    let november = client
        .get_invoice(v1::GetInvoiceRequest {
            id: closed.value.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    Invoices {
        october,
        november,
        other_customer,
    }
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

async fn the_overview_lists_recent_invoices_and_service_actions(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = fixture(&gw).await;
    let c0 = &l.customers[0];
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    let overview = |c: &str| v1::GetSpendOverviewRequest {
        customer_id: c.into(),
    };
    let before = hd
        .get_spend_overview(overview(c0))
        .await
        .unwrap()
        .into_inner();
    assert!(before.recent_invoices.is_empty());
    assert!(before.recent_service_actions.is_empty());

    let inv = invoices(&gw, &l).await;
    assert_eq!(inv.october.total, "6.60");
    assert_eq!(inv.october.paid, "1.00");
    let adjustment = inv
        .november
        .lines
        .iter()
        .find_map(|line| line.adjusts.as_ref())
        .expect("November adjusts October");
    assert_eq!(adjustment.invoice_id, inv.october.id);
    let mut services = crate::service_actions::services(&gw, &gw.admin_key).await;
    let suspended = services
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: c0.clone(),
            reason: "invoice overdue".into(),
            request_id: "suspend-overview".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let after = hd
        .get_spend_overview(overview(c0))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = after
        .recent_invoices
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [inv.november.id.as_str(), inv.october.id.as_str()],
        "newest first"
    );
    assert_eq!(after.recent_invoices[0], inv.november, "with its lines");
    assert_eq!(after.recent_service_actions.len(), 1);
    assert_eq!(after.recent_service_actions[0].id, suspended.id);
    assert_eq!(after.recent_service_actions[0].reason, "invoice overdue");
    // Another customer's overview has its own invoice only, and no actions.
    let other = hd
        .get_spend_overview(overview(&l.customers[1]))
        .await
        .unwrap()
        .into_inner();
    let other_ids: Vec<&str> = other
        .recent_invoices
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(other_ids, [inv.other_customer.id.as_str()]);
    assert!(other.recent_service_actions.is_empty());
    // A portal key reads its own customer's overview, with the same lists.
    let own = key(&gw, v1::ApiKeyScope::Portal, c0).await;
    let mine = help_desk(&gw, &own)
        .await
        .get_spend_overview(overview(c0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.recent_invoices, after.recent_invoices);
    gw.stop().await;
}

async fn tenant_branding_is_validated_and_shown(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let got = tenants
        .get_tenant(v1::GetTenantRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.branding,
        Some(v1::TenantBranding::default()),
        "defaults: empty"
    );
    let request = |id: &str, primary: &str, accent: &str| v1::UpdateTenantBrandingRequest {
        request_id: id.into(),
        branding: Some(v1::TenantBranding {
            primary_color: primary.into(),
            accent_color: accent.into(),
        }),
    };
    let bad = tenants
        .update_tenant_branding(request("b-1", "teal", "#12345"))
        .await;
    let status = bad.unwrap_err();
    let fields: Vec<String> = crate::harness::field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        fields,
        ["branding.primary_color", "branding.accent_color"],
        "{status:?}"
    );
    assert_violation(
        tenants
            .update_tenant_branding(request("", "#0e6e6e", ""))
            .await,
        Code::InvalidArgument,
        "request_id",
    );
    assert_violation(
        tenants
            .update_tenant_branding(v1::UpdateTenantBrandingRequest {
                request_id: "b-2".into(),
                branding: None,
            })
            .await,
        Code::InvalidArgument,
        "branding",
    );
    let set = tenants
        .update_tenant_branding(request("b-3", "#0E6E6E", "#fa0"))
        .await
        .unwrap()
        .into_inner();
    let expected = v1::TenantBranding {
        primary_color: "#0e6e6e".into(),
        accent_color: "#ffaa00".into(),
    };
    assert_eq!(set.branding.as_ref(), Some(&expected));
    let got = tenants
        .get_tenant(v1::GetTenantRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.branding, Some(expected));
    // Only admin keys change the tenant.
    let billing = key(&gw, v1::ApiKeyScope::Billing, "").await;
    let refused = gw
        .tenants(&billing)
        .await
        .update_tenant_branding(request("b-4", "#000000", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    gw.stop().await;
}

crate::both_backends!(
    the_overview_lists_recent_invoices_and_service_actions,
    tenant_branding_is_validated_and_shown,
    summaries_and_drivers_match_the_hand_computed_fixture,
    the_overview_adds_up,
    reads_are_confined_to_the_callers_customer_and_tenant,
    bad_input_names_the_field,
    portal_sessions_retry_to_the_same_link,
);
