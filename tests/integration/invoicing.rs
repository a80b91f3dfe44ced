//! InvoiceService through the generated client on both backends: closes at a ledger sequence
//! with exact totals, periods across daylight saving and 29 February, idempotent re-closes,
//! late usage billed as prior-period adjustments, payments, tenant-wide close runs, a close
//! racing pushes, bad input and scopes. Charges are recorded through the ledger (`ingest_push`)
//! with simulator-linked customers at a zero markup (price = cost, in ZAR).
use std::str::FromStr;

use chrono::{DateTime, Utc};
use msp_gateway::domain::partner_account::PartnerAccount;
use msp_gateway::domain::pricing::{NewPriceRule, PriceKind, RuleScope};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::credit_control_service_client::CreditControlServiceClient;
use msp_gateway::proto::v1::invoice_service_client::InvoiceServiceClient;
use rust_decimal::Decimal;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::charge_streams::line;
use crate::customers::{new_customer, simulator_account};
use crate::harness::{Backend, Bearer, TestGateway, assert_violation, fresh_request};

pub type Invoices = InvoiceServiceClient<InterceptedService<Channel, Bearer>>;
pub type Credit = CreditControlServiceClient<InterceptedService<Channel, Bearer>>;

pub async fn credit_client(gw: &TestGateway) -> Credit {
    CreditControlServiceClient::with_interceptor(gw.channel().await, Bearer::new(&gw.admin_key))
}

/// Sets the fields `paths` of a customer's credit settings.
pub async fn set_credit(credit: &mut Credit, settings: v1::CreditSettings, paths: &[&str]) {
    credit
        .update_credit_settings(v1::UpdateCreditSettingsRequest {
            request_id: format!("set-{}-of-{}", paths.join("+"), settings.customer_id),
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .unwrap();
}

pub async fn credit_position(credit: &mut Credit, customer_id: &str) -> v1::CreditPosition {
    credit
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: customer_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn invoices(gw: &TestGateway, key: &str) -> Invoices {
    InvoiceServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn ts(s: &str) -> prost_types::Timestamp {
    let t = at(s);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// A simulator partner account and customers in the given time zones (monthly, ZAR), with a
/// zero markup.
pub async fn books(gw: &TestGateway, zones: &[&str]) -> (PartnerAccount, Vec<String>) {
    let sim = simulator_account(gw).await;
    let account = gw
        .store
        .partner_account(&gw.tenant_id, &sim.id)
        .await
        .unwrap();
    let mut client = gw.customers(&gw.admin_key).await;
    let mut ids = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let mut request = new_customer(&format!("inv-c-{i}"), &format!("INV-{i:04}"));
        request.time_zone = (*zone).into();
        request.enrollments = vec![v1::EnrollmentRequest {
            vendor: v1::Vendor::Simulator.into(),
            partner_account_id: String::new(),
            new_account: None,
        }];
        ids.push(
            client
                .create_customer(request)
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: Decimal::ZERO,
        currency: None,
        effective_from: DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    let key = msp_gateway::domain::idempotency::IdempotencyKey::new(
        "inv-rule".into(),
        "CreatePriceRule",
        &rule,
    );
    gw.ledger
        .create_price_rule(
            &gw.tenant_id,
            &rule,
            &msp_gateway::domain::idempotency::Idempotent::unanswered(key),
        )
        .await
        .unwrap();
    (account, ids)
}

pub async fn push(gw: &TestGateway, account: &PartnerAccount, lines: Vec<UsageLine>) {
    gw.ledger
        .ingest_push(&gw.tenant_id, account, lines, &fresh_request())
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id");
}

pub async fn close(client: &mut Invoices, customer: &str, start: Option<&str>) -> v1::Invoice {
    client
        .close_billing_period(v1::CloseBillingPeriodRequest {
            request_id: String::new(),
            customer_id: customer.into(),
            period_start: start.map(ts),
        })
        .await
        .unwrap_or_else(|s| panic!("close {customer} {start:?}: {s:?}"))
        .into_inner()
}

/// Runs (or resumes) the close run `request_id` to its end; its last progress report.
pub async fn close_run(client: &mut Invoices, request_id: &str) -> v1::CloseRunProgress {
    let mut stream = client
        .close_billing_periods(v1::CloseBillingPeriodsRequest {
            request_id: request_id.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("close run {request_id}: {s:?}"))
        .into_inner();
    let mut last = None;
    while let Some(progress) = stream.message().await.unwrap() {
        last = Some(progress);
    }
    last.expect("progress")
}

/// Checks the invoice's own arithmetic: total = Σ rounded lines exactly, unrounded total =
/// Σ unrounded lines, difference = total - unrounded.
#[track_caller]
fn assert_exact(invoice: &v1::Invoice) {
    let lines: Decimal = invoice.lines.iter().map(|l| dec(&l.amount)).sum();
    let unrounded: Decimal = invoice.lines.iter().map(|l| dec(&l.unrounded_amount)).sum();
    assert_eq!(lines, dec(&invoice.total), "{invoice:#?}");
    assert_eq!(unrounded, dec(&invoice.unrounded_total), "{invoice:#?}");
    assert_eq!(
        dec(&invoice.total) - unrounded,
        dec(&invoice.rounding_difference)
    );
}

fn line_amount(invoice: &v1::Invoice, meter: &str, adjustment: bool) -> Option<(String, String)> {
    invoice
        .lines
        .iter()
        .find(|l| l.meter == meter && l.adjusts.is_some() == adjustment)
        .map(|l| (l.amount.clone(), l.unrounded_amount.clone()))
}

async fn ledger_sum(gw: &TestGateway, customer: &str) -> Decimal {
    let filter = msp_gateway::domain::charges::ChargeFilter {
        customer_id: Some(customer.to_string()),
        ..Default::default()
    };
    let (events, _) = gw
        .ledger
        .list_charges(&gw.tenant_id, &filter, 0, 100_000)
        .await
        .unwrap();
    events.iter().map(|e| e.amount).sum()
}

async fn closes_periods_across_dst_with_exact_totals(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["America/New_York"]).await;
    let c = &customers[0];
    push(
        &gw,
        &account,
        vec![
            // 23:30 on 28 February in New York: February.
            line(c, "vm", "0.125", at("2026-03-01T04:30:00Z")),
            // 00:30 on 1 March: March.
            line(c, "vm", "0.125", at("2026-03-01T05:30:00Z")),
            // After the clocks go forward on 8 March.
            line(c, "disk", "1.005", at("2026-03-08T07:30:00Z")),
            // 23:30 EDT on 31 March: still March.
            line(c, "vm", "2.0000000001", at("2026-04-01T03:30:00Z")),
            // 00:30 EDT on 1 April: April.
            line(c, "vm", "3.10", at("2026-04-01T04:30:00Z")),
        ],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    // The first period is the one holding the customer's earliest usage.
    let feb = close(&mut client, c, None).await;
    assert_eq!(feb.period_start, Some(ts("2026-02-01T05:00:00Z")));
    assert_eq!(feb.period_end, Some(ts("2026-03-01T05:00:00Z")));
    assert_eq!(feb.time_zone, "America/New_York");
    assert_eq!(feb.lines.len(), 1);
    assert_eq!(
        line_amount(&feb, "vm", false),
        Some(("0.13".into(), "0.125".into()))
    );
    assert_eq!(
        (feb.total.as_str(), feb.rounding_difference.as_str()),
        ("0.13", "0.005")
    );
    assert_exact(&feb);
    let mar = close(&mut client, c, Some("2026-03-01T05:00:00Z")).await;
    assert_eq!(mar.period_end, Some(ts("2026-04-01T04:00:00Z")));
    assert_eq!(
        line_amount(&mar, "vm", false),
        Some(("2.13".into(), "2.1250000001".into()))
    );
    assert_eq!(
        line_amount(&mar, "disk", false),
        Some(("1.01".into(), "1.005".into()))
    );
    assert_eq!(mar.total, "3.14");
    assert_exact(&mar);
    let apr = close(&mut client, c, Some("2026-04-01T04:00:00Z")).await;
    assert_eq!(apr.total, "3.10");
    assert_exact(&apr);
    // Every charge on exactly one invoice: the unrounded totals add up to the ledger.
    let billed: Decimal = [&feb, &mar, &apr]
        .iter()
        .map(|i| dec(&i.unrounded_total))
        .sum();
    assert_eq!(billed, ledger_sum(&gw, c).await);
    assert_eq!(billed, dec("6.3550000001"));
    // Gap-free numbers in close order, with the default prefix.
    let counters: Vec<i64> = [&feb, &mar, &apr]
        .iter()
        .map(|i| i.number_counter)
        .collect();
    assert_eq!(counters, [1, 2, 3]);
    assert!(feb.number.starts_with("INV-") && feb.number.ends_with("-000001"));
    // Closing again returns the same invoice.
    assert_eq!(
        close(&mut client, c, Some("2026-02-01T05:00:00Z")).await,
        feb
    );
    let again = client
        .get_invoice(v1::GetInvoiceRequest { id: mar.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, mar);
    gw.stop().await;
}

async fn late_usage_becomes_a_prior_period_adjustment(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["Europe/London"]).await;
    let c = &customers[0];
    let leap_day = at("2024-02-29T12:00:00Z");
    push(
        &gw,
        &account,
        vec![
            line(c, "vm", "10.00", leap_day),
            line(c, "vm", "5.00", at("2024-03-10T12:00:00Z")),
        ],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let feb = close(&mut client, c, Some("2024-02-01T00:00:00Z")).await;
    assert_eq!(feb.period_end, Some(ts("2024-03-01T00:00:00Z")));
    assert_eq!(feb.total, "10.00");
    // The vendor restates February after it closed, and a late line arrives for it.
    push(
        &gw,
        &account,
        vec![
            line(c, "vm", "12.50", leap_day),
            line(c, "disk", "1.00", leap_day),
        ],
    )
    .await;
    let unchanged = client
        .get_invoice(v1::GetInvoiceRequest { id: feb.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, feb, "a finalized invoice never changes");
    let mar = close(&mut client, c, None).await;
    assert_eq!(mar.period_start, Some(ts("2024-03-01T00:00:00Z")));
    assert_eq!(
        line_amount(&mar, "vm", false),
        Some(("5.00".into(), "5.00".into()))
    );
    assert_eq!(
        line_amount(&mar, "vm", true),
        Some(("2.50".into(), "2.50".into()))
    );
    assert_eq!(
        line_amount(&mar, "disk", true),
        Some(("1.00".into(), "1.00".into()))
    );
    for adjustment in mar.lines.iter().filter_map(|l| l.adjusts.as_ref()) {
        assert_eq!(adjustment.invoice_id, feb.id);
        assert_eq!(adjustment.invoice_number, feb.number);
        assert_eq!(adjustment.period_start, feb.period_start);
    }
    assert_eq!(mar.total, "8.50");
    assert_exact(&mar);
    assert_eq!(
        dec(&feb.unrounded_total) + dec(&mar.unrounded_total),
        ledger_sum(&gw, c).await
    );
    gw.stop().await;
}

async fn payments_partial_full_over_and_retried(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["UTC"]).await;
    let c = &customers[0];
    push(
        &gw,
        &account,
        vec![line(c, "vm", "100.004", at("2025-05-05T10:00:00Z"))],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let invoice = close(&mut client, c, Some("2025-05-01T00:00:00Z")).await;
    assert_eq!(invoice.total, "100.00");
    assert_eq!(invoice.payment_status(), v1::PaymentStatus::Unpaid);
    let mut credit = credit_client(&gw).await;
    let after_close = credit_position(&mut credit, c).await;
    assert_eq!(dec(&after_close.open_charges), Decimal::ZERO);
    assert_eq!(dec(&after_close.unpaid_invoices), dec("100.00"));
    let pay = |request_id: &str, amount: &str| v1::RecordPaymentRequest {
        request_id: request_id.into(),
        invoice_id: invoice.id.clone(),
        amount: amount.into(),
        reference: format!("bank {request_id}"),
    };
    let first = client
        .record_payment(pay("p-1", "30.00"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.paid_after.as_str(), first.balance_after.as_str()),
        ("30.00", "70.00")
    );
    // A retry answers the first payment, byte for byte, and pays nothing more.
    let retried = client
        .record_payment(pay("p-1", "30.00"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    assert_eq!(
        dec(&credit_position(&mut credit, c).await.unpaid_invoices),
        dec("70.00")
    );
    let reused = client.record_payment(pay("p-1", "31.00")).await;
    assert_violation(reused, Code::InvalidArgument, "request_id");
    let over = client
        .record_payment(pay("p-2", "70.01"))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");
    assert!(over.message().contains("70.00"), "{}", over.message());
    assert_violation(
        client.record_payment(pay("p-3", "1.001")).await,
        Code::InvalidArgument,
        "amount",
    );
    let last = client
        .record_payment(pay("p-4", "70.00"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.balance_after, "0.00");
    let paid = client
        .get_invoice(v1::GetInvoiceRequest {
            id: invoice.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.payment_status(), v1::PaymentStatus::Paid);
    assert_eq!(
        (paid.paid.as_str(), paid.balance.as_str()),
        ("100.00", "0.00")
    );
    assert_eq!(
        dec(&credit_position(&mut credit, c).await.unpaid_invoices),
        Decimal::ZERO
    );
    let listed = client
        .list_invoices(v1::ListInvoicesRequest {
            payment_status: v1::PaymentStatus::Paid.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.invoices, vec![paid]);
    gw.stop().await;
}

async fn close_run_closes_every_due_customer_with_gap_free_numbers(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["UTC", "Asia/Kolkata", "Pacific/Chatham"]).await;
    let lines = customers
        .iter()
        .map(|c| line(c, "vm", "1.50", at("2025-01-15T10:00:00Z")))
        .collect();
    push(&gw, &account, lines).await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let run = |id: &str| v1::CloseBillingPeriodsRequest {
        request_id: id.into(),
    };
    let last = close_run(&mut client, "run-1").await;
    assert_eq!(last.status, "SUCCEEDED", "{last:?}");
    assert_eq!(last.customers_done, 3);
    // Every customer closes its January and each month after it that is due (at least one
    // more: the test runs after January 2025).
    assert!(last.invoices_closed >= 6, "{last:?}");
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_invoices(v1::ListInvoicesRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.invoices);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all.len() as i32, last.invoices_closed);
    // Only invoices that bill something take a number, gap-free from 1.
    let mut counters: Vec<i64> = all
        .iter()
        .filter(|i| !i.number.is_empty())
        .map(|i| i.number_counter)
        .collect();
    counters.sort();
    assert_eq!(counters, [1, 2, 3]);
    for c in &customers {
        let january: Vec<_> = all
            .iter()
            .filter(|i| &i.customer_id == c && !i.number.is_empty())
            .collect();
        assert_eq!(january.len(), 1);
        assert_eq!(january[0].total, "1.50");
    }
    // The same request id answers the finished run; a new run finds nothing due.
    let mut again = client
        .close_billing_periods(run("run-1"))
        .await
        .unwrap()
        .into_inner();
    let replay = again.message().await.unwrap().expect("replayed progress");
    assert_eq!(
        (replay.status.as_str(), replay.invoices_closed),
        ("SUCCEEDED", last.invoices_closed)
    );
    assert_eq!(close_run(&mut client, "run-2").await.invoices_closed, 0);
    gw.stop().await;
}

async fn a_close_racing_pushes_bills_each_charge_once(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["Africa/Johannesburg"]).await;
    let c = customers[0].clone();
    // 22:30 UTC on 31 March is 1 April in Johannesburg: billed in April.
    push(
        &gw,
        &account,
        vec![
            line(&c, "vm", "1", at("2025-03-10T10:00:00Z")),
            line(&c, "edge", "7", at("2025-03-31T22:30:00Z")),
        ],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let pushes = {
        let (gw_ledger, tenant, account, c) = (
            gw.ledger.clone(),
            gw.tenant_id.clone(),
            account.clone(),
            c.clone(),
        );
        tokio::spawn(async move {
            for i in 0..20 {
                let cost = format!("1.{i:02}");
                gw_ledger
                    .ingest_push(
                        &tenant,
                        &account,
                        vec![line(&c, "vm", &cost, at("2025-03-10T10:00:00Z"))],
                        &fresh_request(),
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let march = close(&mut client, &c, Some("2025-02-28T22:00:00Z")).await;
    pushes.await.unwrap();
    assert!(
        line_amount(&march, "edge", false).is_none(),
        "April usage stays open"
    );
    let april = close(&mut client, &c, None).await;
    assert_eq!(april.period_start, Some(ts("2025-03-31T22:00:00Z")));
    assert_eq!(
        line_amount(&april, "edge", false),
        Some(("7.00".into(), "7.00".into()))
    );
    // Revisions committed after March's close are April's adjustments, never both, never neither.
    let billed = dec(&march.unrounded_total) + dec(&april.unrounded_total);
    assert_eq!(billed, ledger_sum(&gw, &c).await);
    assert_eq!(billed, dec("8.19"));
    gw.stop().await;
}

async fn bad_input_scopes_and_tenants(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["Europe/London"]).await;
    let c = &customers[0];
    push(
        &gw,
        &account,
        vec![line(c, "vm", "3", at("2025-06-10T10:00:00Z"))],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let request = |customer: &str, start: Option<&str>| v1::CloseBillingPeriodRequest {
        request_id: String::new(),
        customer_id: customer.into(),
        period_start: start.map(ts),
    };
    assert_violation(
        client.close_billing_period(request("", None)).await,
        Code::InvalidArgument,
        "customer_id",
    );
    // Not the start of a period: the error names the period that contains it.
    let status = client
        .close_billing_period(request(c, Some("2025-06-10T00:00:00Z")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("2025-05-31T23:00:00Z"),
        "{}",
        status.message()
    );
    // Periods close in order; the current one has not ended.
    let status = client
        .close_billing_period(request(c, Some("2025-06-30T23:00:00Z")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let june = close(&mut client, c, None).await;
    assert_eq!(june.total, "3.00");
    let now = Utc::now();
    let mut newcomer = gw.customers(&gw.admin_key).await;
    let fresh = newcomer
        .create_customer(new_customer("inv-new", "INV-NEW"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let status = client
        .close_billing_period(request(&fresh, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("has not ended yet") && status.message().contains("closes at"),
        "{} (at {now})",
        status.message()
    );
    assert_eq!(
        client
            .close_billing_period(request("cus_nonexistent", None))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // Another tenant sees nothing of this one's invoices.
    let other = gw.other_tenant().await;
    let mut outsider = invoices(&gw, &other).await;
    let status = outsider
        .get_invoice(v1::GetInvoiceRequest {
            id: june.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        outsider
            .list_invoices(v1::ListInvoicesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .invoices
            .is_empty()
    );
    // A help-desk key reads invoices but cannot close or record payments.
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let key = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "inv-hd".into(),
            name: "help desk".into(),
            scope: v1::ApiKeyScope::HelpDesk.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut help_desk = invoices(&gw, &key.secret).await;
    help_desk
        .get_invoice(v1::GetInvoiceRequest {
            id: june.id.clone(),
        })
        .await
        .unwrap();
    let denied = help_desk
        .record_payment(v1::RecordPaymentRequest {
            request_id: "hd-pay".into(),
            invoice_id: june.id.clone(),
            amount: "1.00".into(),
            reference: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        help_desk
            .close_billing_period(request(c, None))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // Payment input: every bad field named.
    let status = client
        .record_payment(v1::RecordPaymentRequest {
            request_id: String::new(),
            invoice_id: "not an id".into(),
            amount: String::new(),
            reference: String::new(),
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = crate::harness::field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        fields,
        ["request_id", "invoice_id", "reference", "amount"],
        "{status:?}"
    );
    assert_violation(
        client
            .list_invoices(v1::ListInvoicesRequest {
                payment_status: 42,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "payment_status",
    );
    gw.stop().await;
}

/// An invoice's lines as two closes of the same charges must show them: the adjusted period
/// named by its start (each customer's own invoice ids aside).
fn comparable_lines(invoice: &v1::Invoice) -> Vec<v1::InvoiceLine> {
    let mut lines = invoice.lines.clone();
    for line in &mut lines {
        if let Some(adjusts) = &mut line.adjusts {
            adjusts.invoice_id.clear();
            adjusts.invoice_number.clear();
        }
    }
    lines
}

/// A period of whole local days is summed from the daily totals and monthly rollups (less
/// what comes after the close), the rest read from the charges: the same invoice as reading
/// every charge, which a close does when the rollups keep no line key for a meter's unit (rows
/// written before they did), and with the same units, whether a rollup keeps its unit or (rows
/// written before it did) a close looks it up through the row's line key; a revised unit shows.
/// Quarterly from the 15th in Chatham (+13:45 / +12:45) takes the days of its partial months
/// from the daily totals and its whole months from the rollups.
async fn period_sums_bill_what_the_charges_make(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["Asia/Kolkata"; 3]).await;
    let (summed, read, looked_up) = (&customers[0], &customers[1], &customers[2]);
    for c in [summed, read, looked_up] {
        push(
            &gw,
            &account,
            vec![
                // 23:30 on 31 October in Kolkata: October.
                line(c, "vm", "1.25", at("2025-10-31T18:00:00Z")),
                // 00:00 on 1 November: November.
                line(c, "vm", "2.50", at("2025-10-31T18:30:00Z")),
                line(c, "disk", "0.3333333333", at("2025-11-15T10:00:00Z")),
                // 23:30 on 30 November: November; 00:00 on 1 December: left open.
                line(c, "net", "4.00", at("2025-11-30T18:00:00Z")),
                line(c, "net", "8.00", at("2025-11-30T18:30:00Z")),
            ],
        )
        .await;
    }
    let mut client = invoices(&gw, &gw.admin_key).await;
    for c in [summed, read, looked_up] {
        let october = close(&mut client, c, None).await;
        assert_eq!(october.period_end, Some(ts("2025-10-31T18:30:00Z")));
        assert_eq!(october.total, "1.25");
        // A revision of November, in another unit, and a late one of October (an adjustment).
        let mut disk = line(c, "disk", "0.50", at("2025-11-15T10:00:00Z"));
        disk.unit = "GB-h".into();
        push(
            &gw,
            &account,
            vec![disk, line(c, "vm", "1.75", at("2025-10-31T18:00:00Z"))],
        )
        .await;
    }
    let nulled = gw
        .execute_sql(&format!(
            "UPDATE charge_rollups SET line_key = NULL WHERE customer_id = '{read}'"
        ))
        .await;
    assert!(nulled > 0, "the rollups of {read} kept line keys");
    let unkept = gw
        .execute_sql(&format!(
            "UPDATE charge_rollups SET unit = NULL \
              WHERE customer_id = '{looked_up}' AND grain = 'month_meter' AND unit IS NOT NULL"
        ))
        .await;
    assert!(
        unkept > 0,
        "the rollups per meter of {looked_up} kept no unit"
    );
    let from_sums = close(&mut client, summed, None).await;
    let from_charges = close(&mut client, read, None).await;
    let from_lookups = close(&mut client, looked_up, None).await;
    assert_eq!(from_sums.period_start, Some(ts("2025-10-31T18:30:00Z")));
    assert_eq!(
        comparable_lines(&from_sums),
        comparable_lines(&from_charges)
    );
    assert_eq!(
        comparable_lines(&from_sums),
        comparable_lines(&from_lookups)
    );
    assert_eq!(
        line_amount(&from_sums, "vm", false),
        Some(("2.50".into(), "2.50".into()))
    );
    assert_eq!(
        line_amount(&from_sums, "vm", true),
        Some(("0.50".into(), "0.50".into()))
    );
    assert_eq!(
        line_amount(&from_sums, "disk", false),
        Some(("0.50".into(), "0.50".into()))
    );
    for line in &from_sums.lines {
        let unit = if line.meter == "disk" { "GB-h" } else { "h" };
        assert_eq!(line.unit, unit, "{line:?}");
    }
    assert_eq!(from_sums.total, "7.50");
    assert_exact(&from_sums);
    // Past a million the counter widens (PostgreSQL numbers in SQL, checked against the rule).
    gw.execute_sql("UPDATE invoice_number_sequences SET last_number = 999999")
        .await;
    let december = close(&mut client, summed, None).await;
    assert_eq!(december.total, "8.00");
    assert_eq!(december.number_counter, 1_000_000);
    assert!(december.number.ends_with("-1000000"), "{}", december.number);

    let mut request = crate::customers::new_customer("inv-chatham", "INV-CHATHAM");
    request.time_zone = "Pacific/Chatham".into();
    request.billing_cycle = v1::BillingCycle::Quarterly.into();
    request.billing_anchor = Some(v1::BillingAnchor { month: 1, day: 15 });
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Simulator.into(),
        partner_account_id: String::new(),
        new_account: None,
    }];
    let chatham = gw
        .customers(&gw.admin_key)
        .await
        .create_customer(request)
        .await
        .unwrap()
        .into_inner()
        .id;
    let c = &chatham;
    push(
        &gw,
        &account,
        vec![
            // 23:45 on 14 January in Chatham (+13:45): the quarter before.
            line(c, "vm", "1.00", at("2026-01-14T10:00:00Z")),
            // 00:00 on 15 January: the days of January from the daily totals.
            line(c, "vm", "2.00", at("2026-01-14T10:15:00Z")),
            // February: a whole month from the rollups.
            line(c, "disk", "3.00", at("2026-02-20T00:00:00Z")),
            // 01:45 on 1 April: the days of April.
            line(c, "disk", "0.25", at("2026-03-31T12:00:00Z")),
            // 23:45 on 14 April (+12:45 since 5 April): this quarter; 00:00 on 15 April: open.
            line(c, "net", "5.00", at("2026-04-14T11:00:00Z")),
            line(c, "net", "6.00", at("2026-04-14T11:15:00Z")),
        ],
    )
    .await;
    let before = close(&mut client, c, None).await;
    assert_eq!(before.total, "1.00");
    let quarter = close(&mut client, c, None).await;
    assert_eq!(quarter.period_start, Some(ts("2026-01-14T10:15:00Z")));
    assert_eq!(quarter.period_end, Some(ts("2026-04-14T11:15:00Z")));
    assert_eq!(
        line_amount(&quarter, "disk", false),
        Some(("3.25".into(), "3.25".into()))
    );
    assert_eq!(quarter.total, "10.25");
    assert_exact(&quarter);
    assert_eq!(
        dec(&before.unrounded_total) + dec(&quarter.unrounded_total) + dec("6.00"),
        ledger_sum(&gw, c).await
    );
    gw.stop().await;
}

/// A close moves exposure by its rounding difference: one that rounds up to the limit crosses
/// it (the crossing recorded with the close, the state's crossed thresholds with it), and a
/// payment of the rounding crosses back down. Exposure is exact all along.
async fn a_close_rounding_up_to_the_limit_crosses_it(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["UTC"]).await;
    let c = &customers[0];
    let mut credit = credit_client(&gw).await;
    let settings = v1::CreditSettings {
        customer_id: c.clone(),
        credit_limit: "100".into(),
        threshold_percents: vec![50, 100],
        ..Default::default()
    };
    set_credit(
        &mut credit,
        settings,
        &["credit_limit", "threshold_percents"],
    )
    .await;
    // Half-even: 99.995 rounds to 100.00 (the digit before the 5 is odd).
    push(
        &gw,
        &account,
        vec![line(c, "vm", "99.995", at("2025-05-05T10:00:00Z"))],
    )
    .await;
    let before = credit_position(&mut credit, c).await;
    assert_eq!(dec(&before.exposure), dec("99.995"));
    assert_eq!(before.crossed_threshold_percents, vec![50]);
    let mut client = invoices(&gw, &gw.admin_key).await;
    let invoice = close(&mut client, c, Some("2025-05-01T00:00:00Z")).await;
    assert_eq!(invoice.total, "100.00");
    let closed = credit_position(&mut credit, c).await;
    assert_eq!(
        (dec(&closed.open_charges), dec(&closed.unpaid_invoices)),
        (Decimal::ZERO, dec("100.00"))
    );
    assert_eq!(closed.crossed_threshold_percents, vec![50, 100]);
    let paid = client
        .record_payment(v1::RecordPaymentRequest {
            request_id: "pay-rounding".into(),
            invoice_id: invoice.id.clone(),
            amount: "0.01".into(),
            reference: "bank".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.balance_after, "99.99");
    let after = credit_position(&mut credit, c).await;
    assert_eq!(dec(&after.exposure), dec("99.99"));
    assert_eq!(after.crossed_threshold_percents, vec![50]);
    // The crossings, in order: 50 up at the push, 100 up at the close, 100 down at the payment;
    // nothing more (the stream's heartbeat says where it ends).
    let mut stream = crate::credit_control::open(&mut credit, 0).await;
    let events = crate::credit_control::take(&mut stream, 3).await;
    assert_eq!(
        crate::credit_control::summary(&events),
        vec![(50, "UP"), (100, "UP"), (100, "DOWN")]
    );
    let (more, hwm) = crate::credit_control::until_heartbeat(&mut stream).await;
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(hwm, 3);
    gw.stop().await;
}

crate::both_backends!(
    closes_periods_across_dst_with_exact_totals,
    late_usage_becomes_a_prior_period_adjustment,
    payments_partial_full_over_and_retried,
    a_close_rounding_up_to_the_limit_crosses_it,
    close_run_closes_every_due_customer_with_gap_free_numbers,
    a_close_racing_pushes_bills_each_charge_once,
    period_sums_bill_what_the_charges_make,
    bad_input_scopes_and_tenants,
);
