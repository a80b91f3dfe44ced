//! Invoice assembly: grouping, rounding per currency and rule, totals, adjustments naming the
//! period and invoice they correct, and the errors a store bug would cause.
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

use super::billing_schedule::BillingSchedule;
use super::customer::BillingCycle;
use super::error::Error;
use super::invoice::{
    BilledCustomer, ChargeAmount, InvoiceCharge, InvoiceContext, InvoiceDraft, InvoiceRef,
    PriorInvoice, assemble, close_invoice,
};
use super::invoice_selection::ClosePoint;
use super::money::Currency;
use super::period::{BillingTerms, Period};
use super::rounding::RoundingRule;
use super::vendor::Vendor;

fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn currency(code: &str) -> Currency {
    Currency::parse("c", code).unwrap()
}

fn schedule() -> BillingSchedule {
    BillingSchedule::new(BillingTerms::calendar(
        BillingCycle::Monthly,
        chrono_tz::Africa::Johannesburg,
    ))
}

fn customer() -> BilledCustomer {
    BilledCustomer {
        id: "cus_1".into(),
        external_ref: "BSS-1".into(),
        display_name: "Acme".into(),
    }
}

fn context<'a>(
    schedule: &'a BillingSchedule,
    period: Period,
    code: &str,
    rounding: RoundingRule,
) -> InvoiceContext<'a> {
    InvoiceContext {
        customer: customer(),
        currency: currency(code),
        rounding,
        period,
        close_sequence: 100,
        previous: None,
        schedule,
        prior_invoices: &[],
    }
}

fn november(schedule: &BillingSchedule) -> Period {
    schedule.period_containing(utc(2026, 11, 10, 0)).unwrap()
}

fn amount(meter: &str, unit: &str, value: &str, code: &str, at: DateTime<Utc>) -> ChargeAmount {
    ChargeAmount {
        vendor: Vendor::Aws,
        service: "EC2".into(),
        meter: meter.into(),
        unit: unit.into(),
        quantity: Decimal::ONE,
        amount: dec(value),
        currency: currency(code),
        window_start: at,
    }
}

fn charge(sequence: i64, meter: &str, value: &str, at: DateTime<Utc>) -> InvoiceCharge {
    InvoiceCharge {
        sequence,
        customer_id: "cus_1".into(),
        charge: amount(meter, "Hrs", value, "ZAR", at),
    }
}

#[track_caller]
fn assert_consistent(draft: &InvoiceDraft) {
    let rounded: Decimal = draft.lines.iter().map(|l| l.amount).sum();
    let unrounded: Decimal = draft.lines.iter().map(|l| l.unrounded_amount).sum();
    assert_eq!(draft.total, rounded);
    assert_eq!(draft.unrounded_total, unrounded);
    assert_eq!(
        draft.rounding_difference,
        draft.total - draft.unrounded_total
    );
    let digits = draft.currency.minor_digits();
    assert!(draft.lines.iter().all(|l| l.amount.scale() == digits));
}

#[test]
fn lines_group_by_vendor_service_meter_and_unit_and_round_once() {
    let s = schedule();
    let p = november(&s);
    let at = utc(2026, 11, 5, 0);
    let ctx = context(&s, p, "ZAR", RoundingRule::HalfUp);
    let draft = assemble(
        &ctx,
        [
            amount("vm", "Hrs", "0.333", "ZAR", at),
            amount("vm", "Hrs", "0.333", "ZAR", at),
            amount("vm", "Hrs", "0.333", "ZAR", utc(2026, 11, 20, 0)),
            amount("disk", "GB-Mo", "0.005", "ZAR", at),
            // The same meter in an unknown unit is not summed with the hours.
            amount("vm", "", "1", "ZAR", at),
        ],
    )
    .unwrap();
    assert_consistent(&draft);
    let lines: Vec<(&str, &str, String, String, String)> = draft
        .lines
        .iter()
        .map(|l| {
            (
                l.meter.as_str(),
                l.unit.as_str(),
                l.quantity.to_string(),
                l.unrounded_amount.to_string(),
                l.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("disk", "GB-Mo", "1".into(), "0.005".into(), "0.01".into()),
            ("vm", "", "1".into(), "1".into(), "1.00".into()),
            ("vm", "Hrs", "3".into(), "0.999".into(), "1.00".into()),
        ]
    );
    assert_eq!(draft.total.to_string(), "2.01");
    assert_eq!(draft.unrounded_total.to_string(), "2.004");
    assert_eq!(draft.rounding_difference.to_string(), "0.006");
    assert!(draft.lines.iter().all(|l| l.adjusts.is_none()));
    assert!(draft.needs_number());
    // Half-even rounds the exact half cent down.
    let even = assemble(
        &context(&s, p, "ZAR", RoundingRule::HalfEven),
        [amount("disk", "GB-Mo", "0.005", "ZAR", at)],
    )
    .unwrap();
    assert_eq!(even.total.to_string(), "0.00");
    assert_eq!(even.rounding_difference.to_string(), "-0.005");
}

#[test]
fn yen_and_dinar_round_to_their_minor_units_at_exact_halves() {
    let s = schedule();
    let p = november(&s);
    let at = utc(2026, 11, 5, 0);
    let yen = |rule| {
        assemble(
            &context(&s, p, "JPY", rule),
            [
                amount("a", "", "10.5", "JPY", at),
                amount("b", "", "20.5", "JPY", at),
                amount("c", "", "-3.5", "JPY", at),
            ],
        )
        .unwrap()
    };
    let up = yen(RoundingRule::HalfUp);
    assert_consistent(&up);
    let amounts: Vec<String> = up.lines.iter().map(|l| l.amount.to_string()).collect();
    assert_eq!(amounts, ["11", "21", "-4"]);
    assert_eq!(
        (up.total.to_string(), up.rounding_difference.to_string()),
        ("28".into(), "0.5".into())
    );
    let even = yen(RoundingRule::HalfEven);
    let amounts: Vec<String> = even.lines.iter().map(|l| l.amount.to_string()).collect();
    assert_eq!(amounts, ["10", "20", "-4"]);
    assert_eq!(even.total.to_string(), "26");
    let dinar = |rule| {
        assemble(
            &context(&s, p, "KWD", rule),
            [
                amount("a", "", "1.0005", "KWD", at),
                amount("b", "", "2.0015", "KWD", at),
            ],
        )
        .unwrap()
    };
    let up = dinar(RoundingRule::HalfUp);
    assert_consistent(&up);
    assert_eq!(up.total.to_string(), "3.003");
    assert_eq!(up.rounding_difference.to_string(), "0.001");
    // Half-even: 1.0005 down to 1.000, 2.0015 up to 2.002; the halves cancel out.
    let even = dinar(RoundingRule::HalfEven);
    assert_eq!(even.total.to_string(), "3.002");
    assert_eq!(even.rounding_difference, Decimal::ZERO);
}

#[test]
fn tenth_of_a_nano_amounts_sum_exactly_over_many_charges_and_lines() {
    let s = schedule();
    let p = november(&s);
    let at = utc(2026, 11, 5, 0);
    let ctx = context(&s, p, "ZAR", RoundingRule::HalfUp);
    // 100,000 charges of 1e-10 on one line: exactly 0.00001.
    let one_line = assemble(
        &ctx,
        (0..100_000).map(|_| amount("vm", "Hrs", "0.0000000001", "ZAR", at)),
    )
    .unwrap();
    assert_eq!(one_line.unrounded_total.to_string(), "0.00001");
    assert_eq!(one_line.total.to_string(), "0.00");
    // 10,000 lines of 1e-10 each round to zero; the shown difference is exactly their sum.
    let many_lines = assemble(
        &ctx,
        (0..10_000).map(|i| amount(&format!("m{i:05}"), "", "0.0000000001", "ZAR", at)),
    )
    .unwrap();
    assert_consistent(&many_lines);
    assert_eq!(many_lines.lines.len(), 10_000);
    assert_eq!(many_lines.unrounded_total.to_string(), "0.000001");
    assert_eq!(many_lines.total.to_string(), "0.00");
    assert_eq!(many_lines.rounding_difference.to_string(), "-0.000001");
    // A large amount keeps its tenth of a nano.
    let big = assemble(
        &ctx,
        [
            amount("vm", "", "12345678901.0000000001", "ZAR", at),
            amount("vm", "", "0.0000000001", "ZAR", at),
        ],
    )
    .unwrap();
    assert_eq!(big.unrounded_total.to_string(), "12345678901.0000000002");
}

#[test]
fn late_charges_for_closed_periods_become_adjustments_naming_period_and_invoice() {
    let s = schedule();
    let september = s.period_containing(utc(2026, 9, 10, 0)).unwrap();
    let october = s.next(&september).unwrap();
    let november = s.next(&october).unwrap();
    let prior = [PriorInvoice {
        period_start: october.start,
        period_end: october.end,
        invoice: InvoiceRef {
            id: "inv_oct".into(),
            number: Some("ISP-2026-11-000007".into()),
        },
    }];
    let ctx = InvoiceContext {
        previous: Some(ClosePoint {
            period_end: october.end,
            sequence: 10,
        }),
        close_sequence: 20,
        prior_invoices: &prior,
        ..context(&s, november, "ZAR", RoundingRule::HalfUp)
    };
    let oct_day = utc(2026, 10, 15, 0);
    let charges = [
        charge(3, "vm", "100", oct_day), // on October's invoice already
        charge(5, "vm", "7", utc(2026, 11, 2, 0)), // early usage for November
        charge(12, "vm", "-2.5", oct_day), // a revision after October closed
        charge(14, "vm", "1.25", oct_day), // and another
        charge(15, "vm", "4", utc(2026, 9, 3, 0)), // before the first closed period
        charge(16, "vm", "3", utc(2026, 11, 29, 0)), // November, after October's close
        charge(18, "vm", "9", utc(2026, 12, 1, 0)), // December: stays open
        charge(25, "vm", "1000", utc(2026, 11, 3, 0)), // after this close: next invoice
    ];
    let draft = close_invoice(&ctx, &charges).unwrap();
    assert_consistent(&draft);
    assert_eq!(draft.lines.len(), 3);
    let current = &draft.lines[0];
    assert!(current.adjusts.is_none());
    assert_eq!(current.unrounded_amount, dec("10"));
    // Adjustments come after the period's lines, oldest period first.
    let to_september = &draft.lines[1];
    let adjusts = to_september.adjusts.as_ref().unwrap();
    assert_eq!(
        (adjusts.start, adjusts.end),
        (september.start, september.end)
    );
    assert_eq!(adjusts.invoice, None);
    assert_eq!(to_september.amount, dec("4.00"));
    let to_october = &draft.lines[2];
    let adjusts = to_october.adjusts.as_ref().unwrap();
    assert_eq!((adjusts.start, adjusts.end), (october.start, october.end));
    assert_eq!(
        adjusts.invoice.as_ref().and_then(|i| i.number.as_deref()),
        Some("ISP-2026-11-000007")
    );
    assert_eq!(to_october.unrounded_amount, dec("-1.25"));
    assert_eq!(draft.total, dec("12.75"));
}

#[test]
fn charges_that_cancel_out_leave_no_line_and_no_number() {
    let s = schedule();
    let p = november(&s);
    let at = utc(2026, 11, 5, 0);
    let mut reversal = amount("vm", "Hrs", "-5.123", "ZAR", at);
    reversal.quantity = -Decimal::ONE;
    let draft = assemble(
        &context(&s, p, "ZAR", RoundingRule::HalfUp),
        [amount("vm", "Hrs", "5.123", "ZAR", at), reversal],
    )
    .unwrap();
    assert!(draft.lines.is_empty());
    assert!(!draft.needs_number());
    assert_eq!(draft.total, Decimal::ZERO);
    // Free usage (a quantity at no charge) is still shown.
    let mut free = amount("vm", "Hrs", "0", "ZAR", at);
    free.quantity = dec("3");
    let draft = assemble(&context(&s, p, "ZAR", RoundingRule::HalfUp), [free]).unwrap();
    assert_eq!(draft.lines.len(), 1);
}

#[test]
fn store_mistakes_are_internal_errors_not_wrong_invoices() {
    let s = schedule();
    let p = november(&s);
    let at = utc(2026, 11, 5, 0);
    let ctx = context(&s, p, "ZAR", RoundingRule::HalfUp);
    let usd = assemble(&ctx, [amount("vm", "", "1", "USD", at)]);
    assert!(matches!(usd, Err(Error::Internal(_))));
    let december = assemble(&ctx, [amount("vm", "", "1", "ZAR", utc(2026, 12, 5, 0))]);
    assert!(matches!(december, Err(Error::Internal(_))));
    let mut other = charge(1, "vm", "1", at);
    other.customer_id = "cus_2".into();
    assert!(matches!(
        close_invoice(&ctx, &[other]),
        Err(Error::Internal(_))
    ));
    // A previous close that does not end where this period starts, or at a later sequence.
    let gap = InvoiceContext {
        previous: Some(ClosePoint {
            period_end: p.start - chrono::Duration::days(1),
            sequence: 5,
        }),
        ..ctx.clone()
    };
    assert!(matches!(assemble(&gap, []), Err(Error::Internal(_))));
    let backwards = InvoiceContext {
        previous: Some(ClosePoint {
            period_end: p.start,
            sequence: 500,
        }),
        ..ctx.clone()
    };
    assert!(matches!(assemble(&backwards, []), Err(Error::Internal(_))));
    let huge = assemble(
        &ctx,
        [
            amount("vm", "", "70000000000000000000000000000", "ZAR", at),
            amount("vm", "", "70000000000000000000000000000", "ZAR", at),
        ],
    );
    assert!(matches!(huge, Err(Error::Internal(_))));
}
