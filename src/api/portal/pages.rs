//! The portal's pages: askama templates (checked at compile time, escaped by default) and the
//! figures they show, formatted in the customer's currency.
use askama::Template;
use rust_decimal::Decimal;

use super::chart::daily_bars;
use crate::domain::money::{Currency, display_amount};
use crate::domain::spend::{SpendOverview, SpendRow, SpendSummary};

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
    /// Which navigation entry is current: "overview", "breakdown" or "".
    pub page: &'static str,
    pub return_url: String,
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
