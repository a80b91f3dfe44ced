//! The overview's daily cost chart as inline SVG: one bar per day, each with its date and
//! amount as a tooltip, labelled for screen readers (the same figures are in a table beside it).
//! Geometry is computed in exact decimals and written with one decimal place.
use std::fmt::Write;

use chrono::NaiveDate;
use rust_decimal::Decimal;

const WIDTH: i64 = 600;
const HEIGHT: i64 = 180;
const TOP: i64 = 10;
const BOTTOM: i64 = 20;

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A bar chart of `days` (date, amount shown as `label(amount)`), titled `title`.
pub fn daily_bars(
    title: &str,
    days: &[(NaiveDate, Decimal)],
    label: impl Fn(Decimal) -> String,
) -> String {
    let max = days
        .iter()
        .map(|(_, a)| *a)
        .fold(Decimal::ZERO, Decimal::max);
    let plot = Decimal::from(HEIGHT - TOP - BOTTOM);
    let slot = Decimal::from(WIDTH) / Decimal::from(days.len().max(1) as i64);
    let bar = (slot * Decimal::new(8, 1)).round_dp(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{}</title><desc id="chart-desc">One bar per day from {} to {}; the highest day is {}.</desc>"#,
        escape(title),
        days.first().map(|d| d.0.to_string()).unwrap_or_default(),
        days.last().map(|d| d.0.to_string()).unwrap_or_default(),
        escape(&label(max)),
    );
    let baseline = HEIGHT - BOTTOM;
    let _ = write!(
        svg,
        r#"<line x1="0" y1="{baseline}" x2="{WIDTH}" y2="{baseline}" class="axis"/>"#
    );
    for (i, (day, amount)) in days.iter().enumerate() {
        let height = if max > Decimal::ZERO && *amount > Decimal::ZERO {
            (*amount / max * plot).round_dp(1)
        } else {
            Decimal::ZERO
        };
        let x = (slot * Decimal::from(i as i64) + (slot - bar) / Decimal::TWO).round_dp(1);
        let y = Decimal::from(baseline) - height;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x}" y="{y}" width="{bar}" height="{height}"><title>{day}: {}</title></rect>"#,
            escape(&label(*amount))
        );
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            svg,
            r#"<text x="0" y="{HEIGHT}" class="tick">{}</text><text x="{WIDTH}" y="{HEIGHT}" text-anchor="end" class="tick">{}</text>"#,
            first.0.format("%-d %b"),
            last.0.format("%-d %b")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_highest_day_and_escape_labels() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let svg = daily_bars(
            "Cost <per> day",
            &[
                (d("2026-12-01"), Decimal::new(5, 0)),
                (d("2026-12-02"), Decimal::new(10, 0)),
                (d("2026-12-03"), Decimal::new(-1, 0)),
            ],
            |a| format!("R {a}"),
        );
        assert!(svg.contains("Cost &lt;per&gt; day"));
        assert!(svg.contains(r#"height="150""#), "{svg}");
        assert!(svg.contains(r#"height="75.0""#), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("2026-12-03: R -1"));
    }
}
