//! ExportInvoices' formats: a period's invoices and lines as CSV (one row per line, the invoice's
//! columns repeated; an invoice without lines has one row with empty line columns) or JSON lines
//! (one invoice per line, its lines inside). Both are written from the same `v1::Invoice`
//! GetInvoice answers, so every value is the same string to the digit: money as exact decimal
//! strings, each row or object carrying its currency; times as RFC 3339 UTC; enums by their
//! proto names. The columns are documented in docs/invoicing.md.
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::error::FieldViolation;
use crate::proto::v1;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    JsonLines,
}

impl ExportFormat {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        match value.to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" => Ok(ExportFormat::JsonLines),
            "" => Err(FieldViolation::new(
                field,
                "is required: \"csv\" or \"jsonl\"",
            )),
            _ => Err(FieldViolation::new(
                field,
                format!("{value:?} is not a format: \"csv\" or \"jsonl\""),
            )),
        }
    }

    /// What starts the export (the CSV header).
    pub fn header(self) -> Vec<u8> {
        match self {
            ExportFormat::Csv => {
                let mut out = Vec::new();
                csv_row(&mut out, CSV_COLUMNS.iter().copied());
                out
            }
            ExportFormat::JsonLines => Vec::new(),
        }
    }

    /// Appends `invoice` to `out`.
    pub fn write(self, out: &mut Vec<u8>, invoice: &v1::Invoice) {
        match self {
            ExportFormat::Csv => write_csv(out, invoice),
            ExportFormat::JsonLines => {
                let json = serde_json::to_vec(&JsonInvoice::of(invoice))
                    .expect("strings and integers always serialize");
                out.extend_from_slice(&json);
                out.push(b'\n');
            }
        }
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "invoice_id",
    "invoice_number",
    "number_counter",
    "customer_id",
    "customer_external_ref",
    "customer_name",
    "period_start",
    "period_end",
    "time_zone",
    "billing_cycle",
    "close_sequence",
    "rounding",
    "currency",
    "invoice_total",
    "invoice_unrounded_total",
    "invoice_rounding_difference",
    "invoice_paid",
    "invoice_balance",
    "payment_status",
    "finalize_time",
    "line_number",
    "vendor",
    "service",
    "meter",
    "unit",
    "quantity",
    "line_unrounded_amount",
    "line_amount",
    "line_currency",
    "adjusts_period_start",
    "adjusts_period_end",
    "adjusts_invoice_id",
    "adjusts_invoice_number",
];

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(value).map(name).unwrap_or("").to_string()
}

fn vendor(value: i32) -> String {
    enum_name(value, |v: v1::Vendor| v.as_str_name())
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(out: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

fn csv_row<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = &'a str>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, field);
    }
    out.extend_from_slice(b"\r\n");
}

fn write_csv(out: &mut Vec<u8>, i: &v1::Invoice) {
    let head = [
        i.id.clone(),
        i.number.clone(),
        i.number_counter.to_string(),
        i.customer_id.clone(),
        i.customer_external_ref.clone(),
        i.customer_name.clone(),
        time(i.period_start.as_ref()),
        time(i.period_end.as_ref()),
        i.time_zone.clone(),
        enum_name(i.billing_cycle, |c: v1::BillingCycle| c.as_str_name()),
        i.close_sequence.to_string(),
        enum_name(i.rounding, |r: v1::RoundingRule| r.as_str_name()),
        i.currency.clone(),
        i.total.clone(),
        i.unrounded_total.clone(),
        i.rounding_difference.clone(),
        i.paid.clone(),
        i.balance.clone(),
        enum_name(i.payment_status, |s: v1::PaymentStatus| s.as_str_name()),
        time(i.finalize_time.as_ref()),
    ];
    let no_line: [String; 13] = Default::default();
    let rows: Vec<[String; 13]> = if i.lines.is_empty() {
        vec![no_line]
    } else {
        (1..)
            .zip(&i.lines)
            .map(|(n, l): (i32, _)| {
                let adjusts = l.adjusts.as_ref();
                [
                    n.to_string(),
                    vendor(l.vendor),
                    l.service.clone(),
                    l.meter.clone(),
                    l.unit.clone(),
                    l.quantity.clone(),
                    l.unrounded_amount.clone(),
                    l.amount.clone(),
                    l.currency.clone(),
                    time(adjusts.and_then(|a| a.period_start.as_ref())),
                    time(adjusts.and_then(|a| a.period_end.as_ref())),
                    adjusts.map(|a| a.invoice_id.clone()).unwrap_or_default(),
                    adjusts
                        .map(|a| a.invoice_number.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect()
    };
    for line in &rows {
        csv_row(out, head.iter().chain(line).map(String::as_str));
    }
}

#[derive(Serialize)]
struct JsonAdjusted {
    period_start: String,
    period_end: String,
    invoice_id: String,
    invoice_number: String,
}

#[derive(Serialize)]
struct JsonLine {
    line_number: i32,
    vendor: String,
    service: String,
    meter: String,
    unit: String,
    quantity: String,
    unrounded_amount: String,
    amount: String,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    adjusts: Option<JsonAdjusted>,
}

#[derive(Serialize)]
struct JsonInvoice {
    id: String,
    number: String,
    number_counter: i64,
    customer_id: String,
    customer_external_ref: String,
    customer_name: String,
    period_start: String,
    period_end: String,
    time_zone: String,
    billing_cycle: String,
    close_sequence: i64,
    rounding: String,
    currency: String,
    total: String,
    unrounded_total: String,
    rounding_difference: String,
    paid: String,
    balance: String,
    payment_status: String,
    finalize_time: String,
    lines: Vec<JsonLine>,
}

impl JsonInvoice {
    fn of(i: &v1::Invoice) -> Self {
        JsonInvoice {
            id: i.id.clone(),
            number: i.number.clone(),
            number_counter: i.number_counter,
            customer_id: i.customer_id.clone(),
            customer_external_ref: i.customer_external_ref.clone(),
            customer_name: i.customer_name.clone(),
            period_start: time(i.period_start.as_ref()),
            period_end: time(i.period_end.as_ref()),
            time_zone: i.time_zone.clone(),
            billing_cycle: enum_name(i.billing_cycle, |c: v1::BillingCycle| c.as_str_name()),
            close_sequence: i.close_sequence,
            rounding: enum_name(i.rounding, |r: v1::RoundingRule| r.as_str_name()),
            currency: i.currency.clone(),
            total: i.total.clone(),
            unrounded_total: i.unrounded_total.clone(),
            rounding_difference: i.rounding_difference.clone(),
            paid: i.paid.clone(),
            balance: i.balance.clone(),
            payment_status: enum_name(i.payment_status, |s: v1::PaymentStatus| s.as_str_name()),
            finalize_time: time(i.finalize_time.as_ref()),
            lines: (1..)
                .zip(&i.lines)
                .map(|(n, l)| JsonLine {
                    line_number: n,
                    vendor: vendor(l.vendor),
                    service: l.service.clone(),
                    meter: l.meter.clone(),
                    unit: l.unit.clone(),
                    quantity: l.quantity.clone(),
                    unrounded_amount: l.unrounded_amount.clone(),
                    amount: l.amount.clone(),
                    currency: l.currency.clone(),
                    adjusts: l.adjusts.as_ref().map(|a| JsonAdjusted {
                        period_start: time(a.period_start.as_ref()),
                        period_end: time(a.period_end.as_ref()),
                        invoice_id: a.invoice_id.clone(),
                        invoice_number: a.invoice_number.clone(),
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(lines: usize) -> v1::Invoice {
        v1::Invoice {
            id: "inv_1".into(),
            number: "INV-2026-11-000001".into(),
            number_counter: 1,
            customer_name: "Acme, \"the\" best".into(),
            currency: "KWD".into(),
            total: "1.235".into(),
            period_start: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            lines: (0..lines)
                .map(|i| v1::InvoiceLine {
                    vendor: v1::Vendor::Aws.into(),
                    meter: format!("m{i}"),
                    amount: "0.100".into(),
                    currency: "KWD".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn formats_parse_and_name_the_field() {
        assert_eq!(ExportFormat::parse("format", "CSV"), Ok(ExportFormat::Csv));
        assert_eq!(
            ExportFormat::parse("format", "jsonl"),
            Ok(ExportFormat::JsonLines)
        );
        assert_eq!(
            ExportFormat::parse("format", "xml").unwrap_err().field,
            "format"
        );
        assert_eq!(
            ExportFormat::parse("format", "").unwrap_err().field,
            "format"
        );
    }

    #[test]
    fn csv_has_a_row_per_line_and_quotes_what_needs_it() {
        let mut out = ExportFormat::Csv.header();
        ExportFormat::Csv.write(&mut out, &invoice(2));
        ExportFormat::Csv.write(&mut out, &invoice(0));
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(rows[0].starts_with("invoice_id,invoice_number,"));
        assert!(
            rows[1].contains(",\"Acme, \"\"the\"\" best\","),
            "{}",
            rows[1]
        );
        assert!(rows[1].contains(",2023-11-14T22:13:20Z,"), "{}", rows[1]);
        assert!(rows[2].contains(",2,AWS,,m1,,,,0.100,KWD,"), "{}", rows[2]);
        assert!(rows[3].ends_with(",,,,,,,,,,,,,"), "{}", rows[3]);
    }

    #[test]
    fn json_lines_hold_one_invoice_each_with_exact_strings() {
        let mut out = ExportFormat::JsonLines.header();
        ExportFormat::JsonLines.write(&mut out, &invoice(1));
        let text = String::from_utf8(out).unwrap();
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["total"], "1.235");
        assert_eq!(value["currency"], "KWD");
        assert_eq!(value["lines"][0]["amount"], "0.100");
        assert_eq!(value["lines"][0]["vendor"], "AWS");
        assert!(value["lines"][0].get("adjusts").is_none());
    }
}
