//! The portal's pages: askama templates (checked at compile time, escaped by default) and the
//! figures they show, formatted in the customer's currency.
use askama::Template;
use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::chart::daily_bars;
use crate::domain::invoice::InvoiceLine;
use crate::domain::invoice_record::Invoice;
use crate::domain::money::{Currency, display_amount, format_amount};
use crate::domain::payment::PaymentStatus;
use crate::domain::service_action::ServiceAction;
use crate::domain::service_action::record::Requester;
use crate::domain::spend::{SpendOverview, SpendRow, SpendSummary};
use crate::domain::tenant::Branding;

/// An amount as people read it: rounded to the currency's minor digits (none for JPY, three for
/// KWD) and its code. Only the HTML pages round; the CSV export and the API carry
/// `money::format_amount`'s exact form.
pub fn money(amount: Decimal, currency: Currency) -> String {
    format!("{} {}", display_amount(amount, currency), currency.code())
}

/// What every page shares.
pub struct Frame {
    /// The MSP's name (white label: the tenant's brand, not ours).
    pub brand: String,
    pub title: String,
    /// "/portal/c/<customer id>", or empty on pages outside a session.
    pub base: String,
    /// Which navigation entry is current: "overview", "breakdown", "invoices" or "".
    pub page: &'static str,
    pub return_url: String,
    pub colours: Colours,
}

/// The tenant's colours as the style sheet uses them ("#rrggbb").
pub struct Colours {
    pub primary: String,
    /// Black or white, whichever reads better on `primary`.
    pub on_primary: String,
    pub accent: String,
}

impl Colours {
    pub fn of(branding: &Branding) -> Colours {
        let primary = branding.primary_or_default();
        Colours {
            primary: primary.hex(),
            on_primary: primary.text_on().hex(),
            accent: branding.accent_or_default().hex(),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/message.html")]
pub struct MessagePage {
    pub frame: Frame,
    pub message: String,
}

pub struct TopService {
    pub vendor: &'static str,
    pub service: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "portal/overview.html")]
pub struct OverviewPage {
    pub frame: Frame,
    pub customer_name: String,
    pub currency: &'static str,
    pub time_zone: String,
    pub period: String,
    pub month_to_date: String,
    pub forecast: String,
    pub credit_limit: String,
    pub headroom: String,
    pub run_rate: String,
    pub chart: String,
    pub daily: Vec<(String, String)>,
    pub top_services: Vec<TopService>,
    pub as_of_sequence: i64,
    pub recent_invoices: Vec<InvoiceSummary>,
    pub recent_actions: Vec<ActionSummary>,
}

impl OverviewPage {
    pub fn new(frame: Frame, o: &SpendOverview) -> Self {
        let currency = o.context.currency;
        let m = |a: Decimal| money(a, currency);
        let last_day = o
            .context
            .period
            .end
            .pred_opt()
            .unwrap_or(o.context.period.end);
        let no_limit = o.credit.credit_limit <= Decimal::ZERO;
        OverviewPage {
            customer_name: o.context.display_name.clone(),
            currency: currency.code(),
            time_zone: o.context.time_zone.clone(),
            period: format!(
                "{} to {}",
                o.context.period.first.format("%-d %B %Y"),
                last_day.format("%-d %B %Y")
            ),
            month_to_date: m(o.month_to_date),
            forecast: m(o.forecast_to_period_end),
            credit_limit: if no_limit {
                "No limit".into()
            } else {
                m(o.credit.credit_limit)
            },
            headroom: match o.credit.headroom {
                Some(headroom) if !no_limit => m(headroom),
                _ => "—".into(),
            },
            run_rate: m(o.run_rate_per_day),
            chart: daily_bars(
                &format!("Daily cost in {} over the last 30 days", currency.code()),
                &o.daily,
                m,
            ),
            daily: o
                .daily
                .iter()
                .map(|(d, a)| (d.format("%Y-%m-%d").to_string(), m(*a)))
                .collect(),
            top_services: o
                .top_services
                .iter()
                .map(|r| TopService {
                    vendor: r.vendor.map_or("", |v| v.as_str()),
                    service: r.service.clone().unwrap_or_default(),
                    amount: m(r.amount),
                })
                .collect(),
            as_of_sequence: o.as_of_sequence,
            recent_invoices: o.recent_invoices.iter().map(InvoiceSummary::of).collect(),
            recent_actions: o
                .recent_service_actions
                .iter()
                .map(|a| ActionSummary::of(a, &o.context.time_zone))
                .collect(),
            frame,
        }
    }
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::UTC)
}

/// `[start, end)` as the local dates it covers: "1 November 2026 to 30 November 2026".
pub fn local_period(start: DateTime<Utc>, end: DateTime<Utc>, time_zone: &str) -> String {
    let zone = zone(time_zone);
    let first = start.with_timezone(&zone).date_naive();
    let end = end.with_timezone(&zone).date_naive();
    let last = end.checked_sub_days(Days::new(1)).unwrap_or(end).max(first);
    format!(
        "{} to {}",
        first.format("%-d %B %Y"),
        last.format("%-d %B %Y")
    )
}

/// A time as the customer reads it, in its time zone.
fn local_time(at: DateTime<Utc>, time_zone: &str) -> String {
    at.with_timezone(&zone(time_zone))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn status_label(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Unpaid => "Unpaid",
        PaymentStatus::PartiallyPaid => "Partly paid",
        PaymentStatus::Paid => "Paid",
        PaymentStatus::Credit => "Credit",
    }
}

/// An invoice in a list: its number, period and what is owed.
pub struct InvoiceSummary {
    pub id: String,
    pub number: String,
    pub period: String,
    pub total: String,
    pub paid: String,
    pub balance: String,
    pub status: &'static str,
}

impl InvoiceSummary {
    pub fn of(i: &Invoice) -> Self {
        let m = |a: Decimal| money(a, i.currency);
        InvoiceSummary {
            id: i.id.clone(),
            number: i
                .number
                .clone()
                .unwrap_or_else(|| "(nothing billed)".into()),
            period: local_period(i.period_start, i.period_end, &i.time_zone),
            total: m(i.total),
            paid: m(i.paid),
            balance: m(i.balance()),
            status: status_label(i.payment_status()),
        }
    }
}

/// A service action on the overview.
pub struct ActionSummary {
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub by: &'static str,
    pub requested: String,
    pub finished: String,
}

impl ActionSummary {
    pub fn of(a: &ServiceAction, time_zone: &str) -> Self {
        let word = |s: &str| {
            let lower = s.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        };
        ActionSummary {
            kind: word(a.kind.as_str()),
            status: word(a.status.as_str()),
            reason: a.reason.clone(),
            by: match a.requester {
                Requester::CreditPolicy { .. } => "Credit policy",
                _ => "Your provider",
            },
            requested: local_time(a.created_at, time_zone),
            finished: a
                .finished_at
                .map(|t| local_time(t, time_zone))
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/invoices.html")]
pub struct InvoicesPage {
    pub frame: Frame,
    pub invoices: Vec<InvoiceSummary>,
    /// The query of the next (older) page, or empty.
    pub older: String,
}

/// One invoice line as shown.
pub struct LineView {
    pub vendor: &'static str,
    pub service: String,
    pub meter: String,
    pub quantity: String,
    pub amount: String,
    /// "Adjusts 1 October 2026 to 31 October 2026 (INV-…)", or empty.
    pub adjusts: String,
}

#[derive(Template)]
#[template(path = "portal/invoice.html")]
pub struct InvoicePage {
    pub frame: Frame,
    pub summary: InvoiceSummary,
    pub currency: &'static str,
    pub time_zone: String,
    pub finalized: String,
    pub lines: Vec<LineView>,
    pub has_adjustments: bool,
    pub unrounded_total: String,
}

impl InvoicePage {
    pub fn new(frame: Frame, i: &Invoice) -> Self {
        let line = |l: &InvoiceLine| LineView {
            vendor: l.vendor.as_str(),
            service: l.service.clone(),
            meter: l.meter.clone(),
            quantity: format!("{} {}", l.quantity.normalize(), l.unit)
                .trim()
                .to_string(),
            amount: money(l.amount, i.currency),
            adjusts: l
                .adjusts
                .as_ref()
                .map(|a| {
                    let of = a
                        .invoice
                        .as_ref()
                        .and_then(|r| r.number.clone())
                        .map(|n| format!(" (invoice {n})"))
                        .unwrap_or_default();
                    format!("Adjusts {}{of}", local_period(a.start, a.end, &i.time_zone))
                })
                .unwrap_or_default(),
        };
        let lines: Vec<LineView> = i.lines.iter().map(line).collect();
        InvoicePage {
            summary: InvoiceSummary::of(i),
            currency: i.currency.code(),
            time_zone: i.time_zone.clone(),
            finalized: local_time(i.finalized_at, &i.time_zone),
            has_adjustments: lines.iter().any(|l| !l.adjusts.is_empty()),
            lines,
            unrounded_total: format!(
                "{} {}",
                format_amount(i.unrounded_total, i.currency),
                i.currency.code()
            ),
            frame,
        }
    }
}

pub struct BreakdownRow {
    pub vendor: &'static str,
    pub service: String,
    pub meter: String,
    pub quantity: String,
    pub amount: String,
}

/// The breakdown's choices: (query value, label).
pub const BREAKDOWN_OPTIONS: &[(&str, &str)] = &[
    ("vendor", "Vendor"),
    ("service", "Service"),
    ("meter", "Meter"),
];

#[derive(Template)]
#[template(path = "portal/breakdown.html")]
pub struct BreakdownPage {
    pub frame: Frame,
    pub start: String,
    pub end: String,
    pub by: String,
    pub options: &'static [(&'static str, &'static str)],
    pub query: String,
    pub error: String,
    pub currency: String,
    pub time_zone: String,
    pub show_service: bool,
    pub show_meter: bool,
    pub total_span: usize,
    pub rows: Vec<BreakdownRow>,
    pub total: String,
}

impl BreakdownPage {
    pub fn new(frame: Frame, by: &str, query: String, s: &SpendSummary) -> Self {
        let currency = s.context.currency;
        let row = |r: &SpendRow| BreakdownRow {
            vendor: r.vendor.map_or("", |v| v.as_str()),
            service: r.service.clone().unwrap_or_default(),
            meter: r.meter.clone().unwrap_or_default(),
            quantity: r
                .quantity
                .map(|q| q.normalize().to_string())
                .unwrap_or_default(),
            amount: money(r.amount, currency),
        };
        BreakdownPage {
            start: s.range.first.format("%Y-%m-%d").to_string(),
            end: s.range.end.format("%Y-%m-%d").to_string(),
            by: by.to_string(),
            options: BREAKDOWN_OPTIONS,
            query,
            error: String::new(),
            currency: currency.code().to_string(),
            time_zone: s.context.time_zone.clone(),
            show_service: s.grouping.service,
            show_meter: s.grouping.meter,
            total_span: 1 + usize::from(s.grouping.service) + 2 * usize::from(s.grouping.meter),
            rows: s.rows.iter().map(row).collect(),
            total: money(s.total, currency),
            frame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_the_currencys_minor_digits() {
        let c = |code| Currency::parse("c", code).unwrap();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(money(d("1234.6"), c("JPY")), "1235 JPY");
        assert_eq!(money(d("1.23456"), c("KWD")), "1.235 KWD");
        assert_eq!(money(d("7"), c("ZAR")), "7.00 ZAR");
    }

    #[test]
    fn pages_escape_what_customers_and_tenants_named() {
        let page = MessagePage {
            frame: Frame {
                brand: "<b>ISP</b>".into(),
                title: "Gone".into(),
                base: String::new(),
                page: "",
                return_url: String::new(),
                colours: Colours::of(&Branding::default()),
            },
            message: "a & b".into(),
        };
        let html = page.render().unwrap();
        assert!(
            html.contains("&#60;b&#62;ISP") || html.contains("&lt;b&gt;ISP"),
            "{html}"
        );
        assert!(!html.contains("<b>ISP"));
    }
}
