//! InvoiceService's streams and settings through the generated client on both backends:
//! StreamInvoices resumes from a cursor and delivers an invoice as its close commits;
//! ExportInvoices' CSV and JSON lines agree with GetInvoice to the digit; invoicing settings
//! are admin-written, validated and replayed by request id; a payment that brings exposure
//! back under the limit emits RESUMPTION_ALLOWED.
use std::collections::HashMap;
use std::time::Duration;

use msp_gateway::proto::v1;
use tonic::{Code, Streaming};

use crate::charge_streams::line;
use crate::harness::{Backend, TestGateway, assert_violation, field_violations};
use crate::invoicing::{Invoices, at, books, close, credit_client, invoices, push, ts};

const WAIT: Duration = Duration::from_secs(20);

async fn next_event(
    stream: &mut Streaming<v1::StreamInvoicesResponse>,
) -> v1::stream_invoices_response::Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("timed out waiting for the invoice stream")
        .expect("stream error")
        .expect("stream ended")
        .event
        .expect("an event")
}

async fn next_invoice(stream: &mut Streaming<v1::StreamInvoicesResponse>) -> v1::Invoice {
    loop {
        if let v1::stream_invoices_response::Event::Invoice(i) = next_event(stream).await {
            return i;
        }
    }
}

async fn open(client: &mut Invoices, after: i64) -> Streaming<v1::StreamInvoicesResponse> {
    client
        .stream_invoices(v1::StreamInvoicesRequest {
            after_number_counter: after,
        })
        .await
        .expect("invoice stream")
        .into_inner()
}

async fn get(client: &mut Invoices, id: &str) -> v1::Invoice {
    client
        .get_invoice(v1::GetInvoiceRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn streams_invoices_from_a_cursor_then_live(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    gw.ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(300));
    let (account, customers) = books(&gw, &["Europe/London", "Africa/Johannesburg"]).await;
    let (c0, c1) = (&customers[0], &customers[1]);
    push(
        &gw,
        &account,
        vec![
            line(c0, "vm", "1.10", at("2026-01-10T10:00:00Z")),
            line(c0, "vm", "2.20", at("2026-02-10T10:00:00Z")),
            line(c1, "vm", "3.30", at("2026-01-10T10:00:00Z")),
        ],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let first = close(&mut client, c0, Some("2026-01-01T00:00:00Z")).await;
    let second = close(&mut client, c1, Some("2025-12-31T22:00:00Z")).await;
    assert_eq!((first.number_counter, second.number_counter), (1, 2));

    // Resuming after 1 delivers 2 only, then heartbeats carry the high-water mark.
    let mut resumed = open(&mut client, 1).await;
    assert_eq!(
        next_invoice(&mut resumed).await,
        get(&mut client, &second.id).await
    );
    match next_event(&mut resumed).await {
        v1::stream_invoices_response::Event::HighWaterMark(hwm) => assert_eq!(hwm, 2),
        v1::stream_invoices_response::Event::Invoice(i) => panic!("unexpected {i:?}"),
    }
    // From the beginning: every numbered invoice in number order.
    let mut all = open(&mut client, 0).await;
    assert_eq!(next_invoice(&mut all).await.number_counter, 1);
    assert_eq!(next_invoice(&mut all).await.number_counter, 2);

    // Live: a close that finalizes an invoice reaches both streams at once.
    let closed_at = std::time::Instant::now();
    let third = close(&mut client, c0, None).await;
    assert_eq!(third.number_counter, 3);
    let live = next_invoice(&mut resumed).await;
    assert!(
        closed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        closed_at.elapsed()
    );
    assert_eq!(live, third);
    assert_eq!(next_invoice(&mut all).await, third);

    // A portal key streams its own customer's invoices only.
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let key = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "inv-portal".into(),
            name: "portal".into(),
            scope: v1::ApiKeyScope::Portal.into(),
            customer_id: c1.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut portal = invoices(&gw, &key.secret).await;
    let mut own = open(&mut portal, 0).await;
    assert_eq!(next_invoice(&mut own).await.id, second.id);
    match next_event(&mut own).await {
        v1::stream_invoices_response::Event::HighWaterMark(hwm) => assert_eq!(hwm, 3),
        v1::stream_invoices_response::Event::Invoice(i) => panic!("another customer's {i:?}"),
    }

    assert_violation(
        client
            .stream_invoices(v1::StreamInvoicesRequest {
                after_number_counter: -1,
            })
            .await,
        Code::InvalidArgument,
        "after_number_counter",
    );
    gw.stop().await;
}

/// RFC 4180 records (quoted fields may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "unterminated last row");
    rows
}

async fn export(client: &mut Invoices, start: &str, format: &str) -> (String, usize) {
    let mut stream = client
        .export_invoices(v1::ExportInvoicesRequest {
            period_start: Some(ts(start)),
            format: format.into(),
        })
        .await
        .expect("export")
        .into_inner();
    let mut data = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.expect("export chunk") {
        assert!(chunk.data.len() <= 64 * 1024);
        data.extend_from_slice(&chunk.data);
        chunks += 1;
    }
    (String::from_utf8(data).expect("UTF-8"), chunks)
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .map(|t| {
            chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        })
        .unwrap_or_default()
}

/// Each field of `object` is exactly the string wanted.
#[track_caller]
fn assert_strings(object: &serde_json::Value, fields: &[(&str, &String)]) {
    for (field, want) in fields {
        assert_eq!(object[*field].as_str(), Some(want.as_str()), "{field}");
    }
}

async fn exports_agree_with_get_invoice_to_the_digit(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    // Two London customers share February's start; Kolkata's February starts elsewhere.
    let (account, customers) =
        books(&gw, &["Europe/London", "Europe/London", "Asia/Kolkata"]).await;
    let (c0, c1, c2) = (&customers[0], &customers[1], &customers[2]);
    push(
        &gw,
        &account,
        vec![
            line(c0, "vm", "10.00", at("2026-01-15T12:00:00Z")),
            line(c0, "vm", "0.125", at("2026-02-03T12:00:00Z")),
            line(
                c0,
                "ip, \"static\"",
                "0.0000000001",
                at("2026-02-04T12:00:00Z"),
            ),
            line(c2, "vm", "7.77", at("2026-02-10T12:00:00Z")),
        ],
    )
    .await;
    // Enough lines for several chunks.
    let many: Vec<_> = (0..400)
        .map(|i| {
            line(
                c1,
                &format!("meter-{i:03}"),
                "1.005",
                at("2026-02-20T12:00:00Z"),
            )
        })
        .collect();
    push(&gw, &account, many).await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let january = close(&mut client, c0, Some("2026-01-01T00:00:00Z")).await;
    // January is restated after it closed: February bills the difference as an adjustment.
    push(
        &gw,
        &account,
        vec![line(c0, "vm", "12.345", at("2026-01-15T12:00:00Z"))],
    )
    .await;
    let feb0 = close(&mut client, c0, None).await;
    let feb1 = close(&mut client, c1, Some("2026-02-01T00:00:00Z")).await;
    close(&mut client, c2, Some("2026-01-31T18:30:00Z")).await;
    assert!(feb0.lines.iter().any(|l| l.adjusts.is_some()), "{feb0:#?}");
    let mut expected: HashMap<String, v1::Invoice> = HashMap::new();
    for i in [&feb0, &feb1] {
        expected.insert(i.id.clone(), get(&mut client, &i.id).await);
    }

    let (csv, chunks) = export(&mut client, "2026-02-01T00:00:00Z", "csv").await;
    assert!(chunks >= 2, "{chunks} chunks");
    let rows = parse_csv(&csv);
    let header = &rows[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(rows.len() - 1, feb0.lines.len() + feb1.lines.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in &rows[1..] {
        assert_eq!(row.len(), header.len());
        let invoice = &expected[&row[col("invoice_id")]];
        let n: usize = row[col("line_number")].parse().unwrap();
        *seen.entry(invoice.id.clone()).or_default() += 1;
        let line = &invoice.lines[n - 1];
        let pairs = [
            ("invoice_number", invoice.number.as_str()),
            ("customer_external_ref", &invoice.customer_external_ref),
            ("customer_name", &invoice.customer_name),
            ("currency", &invoice.currency),
            ("invoice_total", &invoice.total),
            ("invoice_unrounded_total", &invoice.unrounded_total),
            ("invoice_rounding_difference", &invoice.rounding_difference),
            ("invoice_paid", &invoice.paid),
            ("invoice_balance", &invoice.balance),
            ("time_zone", &invoice.time_zone),
            ("service", &line.service),
            ("meter", &line.meter),
            ("unit", &line.unit),
            ("quantity", &line.quantity),
            ("line_unrounded_amount", &line.unrounded_amount),
            ("line_amount", &line.amount),
            ("line_currency", &line.currency),
        ];
        for (column, want) in pairs {
            assert_eq!(row[col(column)], want, "{column} of {}", invoice.id);
        }
        assert_eq!(row[col("period_start")], time(&invoice.period_start));
        assert_eq!(row[col("period_end")], time(&invoice.period_end));
        assert_eq!(
            row[col("number_counter")],
            invoice.number_counter.to_string()
        );
        assert_eq!(
            row[col("payment_status")],
            invoice.payment_status().as_str_name()
        );
        assert_eq!(row[col("vendor")], line.vendor().as_str_name());
        let adjusts = line.adjusts.clone().unwrap_or_default();
        assert_eq!(row[col("adjusts_invoice_id")], adjusts.invoice_id);
        assert_eq!(row[col("adjusts_invoice_number")], adjusts.invoice_number);
        assert_eq!(
            row[col("adjusts_period_start")],
            time(&adjusts.period_start)
        );
        if line.adjusts.is_some() {
            assert_eq!(adjusts.invoice_id, january.id);
        }
    }
    assert_eq!(seen[&feb0.id], feb0.lines.len());
    assert_eq!(seen[&feb1.id], feb1.lines.len());

    let (jsonl, _) = export(&mut client, "2026-02-01T00:00:00Z", "jsonl").await;
    let objects: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 2);
    for object in &objects {
        let invoice = &expected[object["id"].as_str().unwrap()];
        assert_strings(
            object,
            &[
                ("number", &invoice.number),
                ("currency", &invoice.currency),
                ("total", &invoice.total),
                ("unrounded_total", &invoice.unrounded_total),
                ("rounding_difference", &invoice.rounding_difference),
                ("paid", &invoice.paid),
                ("balance", &invoice.balance),
            ],
        );
        let lines = object["lines"].as_array().unwrap();
        assert_eq!(lines.len(), invoice.lines.len());
        for (json, line) in lines.iter().zip(&invoice.lines) {
            assert_strings(
                json,
                &[
                    ("meter", &line.meter),
                    ("quantity", &line.quantity),
                    ("unrounded_amount", &line.unrounded_amount),
                    ("amount", &line.amount),
                    ("currency", &line.currency),
                ],
            );
            assert_eq!(json["adjusts"].is_object(), line.adjusts.is_some());
        }
    }
    // A period nobody's starts at: the header alone.
    let (empty, _) = export(&mut client, "2026-02-02T00:00:00Z", "csv").await;
    assert_eq!(parse_csv(&empty).len(), 1);

    assert_violation(
        client
            .export_invoices(v1::ExportInvoicesRequest {
                period_start: Some(ts("2026-02-01T00:00:00Z")),
                format: "xml".into(),
            })
            .await,
        Code::InvalidArgument,
        "format",
    );
    let status = client
        .export_invoices(v1::ExportInvoicesRequest {
            period_start: None,
            format: String::new(),
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["period_start", "format"], "{status:?}");
    gw.stop().await;
}

fn settings(prefix: &str, rounding: v1::RoundingRule, grace_days: u32) -> v1::InvoiceSettings {
    v1::InvoiceSettings {
        number_prefix: prefix.into(),
        rounding: rounding.into(),
        grace_days,
    }
}

async fn invoice_settings_are_validated_admin_written_and_replayed(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut client = invoices(&gw, &gw.admin_key).await;
    let defaults = client
        .get_invoice_settings(v1::GetInvoiceSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defaults, settings("INV", v1::RoundingRule::HalfUp, 3));

    let update = |request_id: &str, s: v1::InvoiceSettings| v1::UpdateInvoiceSettingsRequest {
        request_id: request_id.into(),
        settings: Some(s),
    };
    let status = client
        .update_invoice_settings(v1::UpdateInvoiceSettingsRequest {
            request_id: String::new(),
            settings: Some(v1::InvoiceSettings {
                number_prefix: "isp".into(),
                rounding: 0,
                grace_days: 400,
            }),
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        fields,
        [
            "request_id",
            "settings.number_prefix",
            "settings.rounding",
            "settings.grace_days"
        ],
        "{status:?}"
    );
    assert_violation(
        client
            .update_invoice_settings(update("s-0", {
                let mut s = settings("ISP", v1::RoundingRule::HalfUp, 1);
                s.rounding = 9;
                s
            }))
            .await,
        Code::InvalidArgument,
        "settings.rounding",
    );
    assert_violation(
        client
            .update_invoice_settings(v1::UpdateInvoiceSettingsRequest {
                request_id: "s-x".into(),
                settings: None,
            })
            .await,
        Code::InvalidArgument,
        "settings",
    );

    // Billing keys read the settings but only admins change them.
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let key = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "inv-billing".into(),
            name: "billing".into(),
            scope: v1::ApiKeyScope::Billing.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut billing = invoices(&gw, &key.secret).await;
    let denied = billing
        .update_invoice_settings(update(
            "s-b",
            settings("ISP", v1::RoundingRule::HalfEven, 0),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let wanted = settings("ISP-ZA", v1::RoundingRule::HalfEven, 0);
    let first = client
        .update_invoice_settings(update("s-1", wanted.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, wanted);
    client
        .update_invoice_settings(update(
            "s-2",
            settings("OTHER", v1::RoundingRule::HalfUp, 5),
        ))
        .await
        .unwrap();
    // A retry answers the first call, and changes nothing.
    let retried = client
        .update_invoice_settings(update("s-1", wanted.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    assert_violation(
        client
            .update_invoice_settings(update("s-1", settings("ISP", v1::RoundingRule::HalfUp, 1)))
            .await,
        Code::InvalidArgument,
        "request_id",
    );
    assert_eq!(
        billing
            .get_invoice_settings(v1::GetInvoiceSettingsRequest {})
            .await
            .unwrap()
            .into_inner(),
        settings("OTHER", v1::RoundingRule::HalfUp, 5)
    );

    // The settings apply to the next close: its prefix and its rounding at an exact half.
    client
        .update_invoice_settings(update("s-3", wanted.clone()))
        .await
        .unwrap();
    let (account, customers) = books(&gw, &["UTC"]).await;
    push(
        &gw,
        &account,
        vec![line(
            &customers[0],
            "vm",
            "0.125",
            at("2026-03-05T00:00:00Z"),
        )],
    )
    .await;
    let invoice = close(&mut client, &customers[0], Some("2026-03-01T00:00:00Z")).await;
    // PREFIX-YYYY-MM (the month it was finalized)-NNNNNN.
    assert!(
        invoice.number.starts_with("ISP-ZA-") && invoice.number.ends_with("-000001"),
        "{}",
        invoice.number
    );
    assert_eq!(invoice.total, "0.12");
    assert_eq!(invoice.rounding(), v1::RoundingRule::HalfEven);
    gw.stop().await;
}

async fn a_payment_below_the_limit_allows_resumption(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    gw.ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(300));
    let (account, customers) = books(&gw, &["UTC"]).await;
    let c = &customers[0];
    let mut credit = credit_client(&gw).await;
    let settings = v1::CreditSettings {
        customer_id: c.clone(),
        credit_limit: "100.00".into(),
        policy: v1::CreditPolicy::AutoSuspend.into(),
        ..Default::default()
    };
    crate::invoicing::set_credit(&mut credit, settings, &["credit_limit", "policy"]).await;
    push(
        &gw,
        &account,
        vec![line(c, "vm", "150.00", at("2025-05-05T10:00:00Z"))],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let invoice = close(&mut client, c, Some("2025-05-01T00:00:00Z")).await;
    assert_eq!(invoice.total, "150.00");
    let mut stream = credit
        .stream_credit_events(v1::StreamCreditEventsRequest {
            after_sequence: 0,
            customer_ids: vec![c.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    // Drain the crossings of the charge until the stream is idle.
    let mut before = Vec::new();
    let hwm = loop {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("credit stream timed out")
            .unwrap()
            .unwrap();
        match message.event.unwrap() {
            v1::stream_credit_events_response::Event::CreditEvent(e) => before.push(e),
            v1::stream_credit_events_response::Event::Heartbeat(h) => break h.high_water_mark,
        }
    };
    let suspended = before.last().expect("a crossing at the limit");
    assert_eq!(
        (suspended.threshold_percent, suspended.action()),
        (100, v1::CreditAction::SuspensionRequired)
    );
    // Closing moved the exposure from open charges to the unpaid invoice: nothing crossed.
    assert_eq!(suspended.sequence, hwm);

    // Paying 40 leaves 110 unpaid: still above the limit.
    let pay = |id: &str, amount: &str| v1::RecordPaymentRequest {
        request_id: id.into(),
        invoice_id: invoice.id.clone(),
        amount: amount.into(),
        reference: id.into(),
    };
    client.record_payment(pay("pay-1", "40.00")).await.unwrap();
    // Paying 20 more leaves 90: under the limit, resumption is allowed.
    client.record_payment(pay("pay-2", "20.00")).await.unwrap();
    let resumed = loop {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("no credit event after the payment")
            .unwrap()
            .unwrap();
        if let Some(v1::stream_credit_events_response::Event::CreditEvent(e)) = message.event {
            break e;
        }
    };
    assert_eq!(resumed.sequence, hwm + 1);
    assert_eq!(resumed.threshold_percent, 100);
    assert_eq!(resumed.direction(), v1::CrossingDirection::Down);
    assert_eq!(resumed.action(), v1::CreditAction::ResumptionAllowed);
    assert_eq!(
        crate::invoicing::dec(&resumed.exposure),
        crate::invoicing::dec("90")
    );
    let position = crate::invoicing::credit_position(&mut credit, c).await;
    assert_eq!(
        crate::invoicing::dec(&position.unpaid_invoices),
        crate::invoicing::dec("90")
    );
    gw.stop().await;
}

crate::both_backends!(
    streams_invoices_from_a_cursor_then_live,
    exports_agree_with_get_invoice_to_the_digit,
    invoice_settings_are_validated_admin_written_and_replayed,
    a_payment_below_the_limit_allows_resumption,
);
