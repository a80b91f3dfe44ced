//! The windows a partner account's poll restates: each a window of the vendor's data that the
//! pull states in full, so lines missing from it are reversed.
use chrono::{DateTime, Datelike, Duration as Span, DurationRound, TimeZone, Utc};

use crate::domain::aws_settings::{Granularity, HOURLY_LOOKBACK_DAYS};
use crate::domain::partner_account::PartnerAccountSpec;
use crate::domain::vendor::Vendor;
use crate::vendors::simulator::Simulator;
use crate::vendors::{PullRequest, VendorPeriod};

/// Days into a month during which Microsoft's `last` billing period is read too: Partner
/// Center invoices the previous calendar month's Azure plan usage on the 8th, and revises it
/// until then. (An empty `last` export means it is billed already: nothing is reversed.)
pub const LAST_PERIOD_READ_DAYS: i64 = 10;

fn month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()
}

/// The first instants of the previous, the current and the next calendar month (UTC).
fn months_around(now: DateTime<Utc>) -> Option<[DateTime<Utc>; 3]> {
    let (y, m) = (now.year(), now.month());
    let previous = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some([
        month_start(previous.0, previous.1)?,
        month_start(y, m)?,
        month_start(next.0, next.1)?,
    ])
}

/// What a poll of the account restates at `now`, oldest window first.
pub fn restatement_windows(spec: &PartnerAccountSpec, now: DateTime<Utc>) -> Vec<PullRequest> {
    let day = Span::days(1);
    let today = now.duration_trunc(day).unwrap_or(now);
    let Some([previous_month, this_month, next_month]) = months_around(now) else {
        return Vec::new();
    };
    match spec.vendor {
        // No partner account has it (nothing to poll).
        Vendor::Msp => Vec::new(),
        Vendor::Simulator => {
            let (start, end) = Simulator::new(0, vec![]).at(now).window();
            vec![PullRequest::current(start, end)]
        }
        // Cost Explorer keeps hourly data for 14 days: restate the whole days within them (a
        // day boundary, so a day polled DAILY before is restated whole, never half-overlapped).
        Vendor::Aws if spec.aws_settings().map(|a| a.granularity) == Some(Granularity::Hourly) => {
            let oldest = now - Span::days(HOURLY_LOOKBACK_DAYS);
            let oldest_day = oldest.duration_trunc(day).unwrap_or(oldest);
            let start = if oldest_day < oldest {
                oldest_day + day
            } else {
                oldest_day
            };
            vec![PullRequest::current(start, today + day)]
        }
        // AWS revises until the month is closed, a few days into the next: re-read from the
        // start of the previous month.
        Vendor::Aws => vec![PullRequest::current(previous_month, today + day)],
        // Partner Center exports one billing period at a time: the current one, and the last
        // one while Microsoft may still revise it.
        Vendor::Microsoft => {
            let current = PullRequest::current(this_month, next_month);
            if now < this_month + Span::days(LAST_PERIOD_READ_DAYS) {
                let last = PullRequest {
                    period: VendorPeriod::Previous,
                    ..PullRequest::current(previous_month, this_month)
                };
                vec![last, current]
            } else {
                vec![current]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::aws_settings::AwsSettings;
    use crate::domain::microsoft_settings::MicrosoftSettings;
    use crate::domain::money::Currency;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn spec(vendor: Vendor) -> PartnerAccountSpec {
        PartnerAccountSpec {
            vendor,
            display_name: "partner".into(),
            vendor_account_id: "111122223333".into(),
            partner_discount_rate: Decimal::ZERO,
            credentials_ref: "env:PARTNER".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: None,
            microsoft: None,
        }
    }

    fn aws(granularity: Granularity) -> PartnerAccountSpec {
        PartnerAccountSpec {
            aws: Some(AwsSettings {
                granularity,
                ..Default::default()
            }),
            ..spec(Vendor::Aws)
        }
    }

    fn windows(
        spec: &PartnerAccountSpec,
        now: &str,
    ) -> Vec<(VendorPeriod, DateTime<Utc>, DateTime<Utc>)> {
        restatement_windows(spec, at(now))
            .into_iter()
            .map(|r| (r.period, r.start, r.end))
            .collect()
    }

    #[test]
    fn aws_windows_follow_the_granularity() {
        let now = "2026-11-25T11:30:00Z";
        let tomorrow = at("2026-11-26T00:00:00Z");
        assert_eq!(
            windows(&aws(Granularity::Daily), now),
            [(VendorPeriod::Current, at("2026-10-01T00:00:00Z"), tomorrow)]
        );
        // The whole days within the last 14 days: hourly data reaches no further back.
        assert_eq!(
            windows(&aws(Granularity::Hourly), now),
            [(VendorPeriod::Current, at("2026-11-12T00:00:00Z"), tomorrow)]
        );
        assert_eq!(
            windows(&aws(Granularity::Hourly), "2026-11-25T00:00:00Z")[0].1,
            at("2026-11-11T00:00:00Z")
        );
        // January restates from December (DAILY).
        assert_eq!(
            windows(&aws(Granularity::Daily), "2027-01-03T08:00:00Z")[0].1,
            at("2026-12-01T00:00:00Z")
        );
    }

    #[test]
    fn microsoft_reads_the_last_period_until_it_is_invoiced() {
        let microsoft = PartnerAccountSpec {
            microsoft: Some(MicrosoftSettings::billed_in(
                Currency::parse("c", "EUR").unwrap(),
            )),
            ..spec(Vendor::Microsoft)
        };
        let (dec, jan, feb) = (
            at("2026-12-01T00:00:00Z"),
            at("2027-01-01T00:00:00Z"),
            at("2027-02-01T00:00:00Z"),
        );
        assert_eq!(
            windows(&microsoft, "2027-01-03T08:00:00Z"),
            [
                (VendorPeriod::Previous, dec, jan),
                (VendorPeriod::Current, jan, feb)
            ]
        );
        assert_eq!(
            windows(&microsoft, "2027-01-10T23:59:59Z"),
            [
                (VendorPeriod::Previous, dec, jan),
                (VendorPeriod::Current, jan, feb)
            ]
        );
        assert_eq!(
            windows(&microsoft, "2027-01-11T00:00:00Z"),
            [(VendorPeriod::Current, jan, feb)]
        );
        // The whole month, whatever the day: nothing of the period is out of the window.
        assert_eq!(
            windows(&microsoft, "2026-12-31T23:00:00Z"),
            [(VendorPeriod::Current, dec, jan)]
        );
    }
}
