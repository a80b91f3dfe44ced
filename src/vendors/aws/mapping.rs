//! Pure translation between our windows and lines and Cost Explorer's strings.
use aws_sdk_costexplorer::types::{
    Dimension, DimensionValues, Expression, Group, MetricValue, ResultByTime,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use super::settings::{CostMetric, Granularity};
use crate::domain::money::parse_decimal;
use crate::domain::usage::{UsageKey, UsageLine};
use crate::vendors::VendorError;

pub(crate) const USAGE_QUANTITY: &str = "UsageQuantity";

/// What the two group keys of a query are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grouping<'a> {
    /// LINKED_ACCOUNT, SERVICE.
    AccountService,
    /// LINKED_ACCOUNT, USAGE_TYPE, in a query filtered to this one service.
    AccountUsageType { service: &'a str },
}

impl Grouping<'_> {
    pub(crate) fn dimensions(self) -> [&'static str; 2] {
        match self {
            Grouping::AccountService => ["LINKED_ACCOUNT", "SERVICE"],
            Grouping::AccountUsageType { .. } => ["LINKED_ACCOUNT", "USAGE_TYPE"],
        }
    }
}

/// The metrics one request asks for: the cost, the list price where the setting has one, and
/// the quantity. Several metrics cost no more than one.
pub(crate) fn metrics(metric: CostMetric) -> Vec<String> {
    [
        Some(metric.cost_metric()),
        metric.list_metric(),
        Some(USAGE_QUANTITY),
    ]
    .into_iter()
    .flatten()
    .map(str::to_string)
    .collect()
}

/// Record types kept out of usage: the MSP decides whether a credit or refund reaches a customer
/// (see the module documentation of `vendors::aws`).
pub(crate) const EXCLUDED_RECORD_TYPES: [&str; 2] = ["Credit", "Refund"];

/// Usage only (no credits or refunds), and for a usage-type query only its service.
pub(crate) fn usage_filter(grouping: Grouping<'_>) -> Expression {
    let dimension = |key: Dimension, values: &[&str]| {
        Expression::builder()
            .dimensions(
                DimensionValues::builder()
                    .key(key)
                    .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                    .build(),
            )
            .build()
    };
    let usage = Expression::builder()
        .not(dimension(Dimension::RecordType, &EXCLUDED_RECORD_TYPES))
        .build();
    match grouping {
        Grouping::AccountService => usage,
        Grouping::AccountUsageType { service } => Expression::builder()
            .and(usage)
            .and(dimension(Dimension::Service, &[service]))
            .build(),
    }
}

/// The Cost Explorer periods whose start lies in `[start, end)`: both bounds rounded up to the
/// granularity (a period that begins before `start` is not ours). None when no period fits.
pub(crate) fn query_window(
    granularity: Granularity,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let step = match granularity {
        Granularity::Hourly => Duration::hours(1),
        Granularity::Daily => Duration::days(1),
    };
    let (start, end) = (ceil_to(start, step), ceil_to(end, step));
    (start < end).then_some((start, end))
}

fn ceil_to(t: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    let step_secs = step.num_seconds();
    let secs = t.timestamp();
    let floored = secs.div_euclid(step_secs) * step_secs;
    let whole = floored == secs && t.timestamp_subsec_nanos() == 0;
    let rounded = if whole { floored } else { floored + step_secs };
    Utc.timestamp_opt(rounded, 0).single().unwrap_or(t)
}

/// DAILY takes dates, HOURLY takes UTC timestamps.
pub(crate) fn format_bound(granularity: Granularity, t: DateTime<Utc>) -> String {
    match granularity {
        Granularity::Daily => t.format("%Y-%m-%d").to_string(),
        Granularity::Hourly => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// A TimePeriod bound as Cost Explorer writes it: a date (midnight UTC) or an RFC 3339 time.
pub(crate) fn parse_bound(text: &str) -> Result<DateTime<Utc>, VendorError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| VendorError::Malformed(format!("time period bound {text:?}")))
}

/// An Amount string, exactly: no rounding, no float. Cost Explorer writes plain decimals
/// ("0.0101516483") but tiny amounts can come in exponent form ("-1.2E-9"); read as the API
/// reads decimals. (`Decimal::from_scientific` rounds a mantissa of more than 28 digits: fuzzing
/// found "1111111.125799111111111111111125714e-6" read as a different amount.)
pub(crate) fn parse_amount(text: &str) -> Result<Decimal, VendorError> {
    parse_decimal("Amount", text)
        .map_err(|e| VendorError::Malformed(format!("amount {text:?}: {e}")))
}

/// The lines of one page of results.
pub(crate) fn lines_from_results(
    results: &[ResultByTime],
    grouping: Grouping<'_>,
    metric: CostMetric,
) -> Result<Vec<UsageLine>, VendorError> {
    let mut lines = Vec::new();
    for result in results {
        let period = result
            .time_period()
            .ok_or_else(|| VendorError::Malformed("a result without a TimePeriod".into()))?;
        let window_start = parse_bound(period.start())?;
        let window_end = parse_bound(period.end())?;
        for group in result.groups() {
            lines.push(line_from_group(
                group,
                grouping,
                metric,
                (window_start, window_end),
                result.estimated(),
            )?);
        }
    }
    Ok(lines)
}

fn line_from_group(
    group: &Group,
    grouping: Grouping<'_>,
    metric: CostMetric,
    (window_start, window_end): (DateTime<Utc>, DateTime<Utc>),
    estimated: bool,
) -> Result<UsageLine, VendorError> {
    let [account, second] = group.keys() else {
        return Err(VendorError::Malformed(format!(
            "a group with keys {:?}, expected {:?}",
            group.keys(),
            grouping.dimensions()
        )));
    };
    let metric_value = |name: &str| -> Result<&MetricValue, VendorError> {
        group
            .metrics()
            .and_then(|m| m.get(name))
            .ok_or_else(|| VendorError::Malformed(format!("group {:?} lacks {name}", group.keys())))
    };
    let cost = metric_value(metric.cost_metric())?;
    let quantity = metric_value(USAGE_QUANTITY)?;
    let currency = cost.unit().filter(|u| !u.is_empty()).ok_or_else(|| {
        VendorError::Malformed(format!("{} without a unit", metric.cost_metric()))
    })?;
    // Cost Explorer answers every metric asked for; were the list one missing, rating falls back
    // to the partner discount rather than refuse the usage.
    let list = match metric.list_metric() {
        Some(name) => match group.metrics().and_then(|m| m.get(name)) {
            Some(list) => {
                if list.unit().is_some_and(|unit| unit != currency) {
                    return Err(VendorError::Malformed(format!(
                        "group {:?}: {name} is in {:?}, {} in {currency}",
                        group.keys(),
                        list.unit().unwrap_or_default(),
                        metric.cost_metric()
                    )));
                }
                Some(amount_of(list, name)?)
            }
            None => None,
        },
        None => None,
    };
    let service = match grouping {
        Grouping::AccountService => second.as_str(),
        Grouping::AccountUsageType { service } => service,
    };
    Ok(UsageLine {
        key: UsageKey {
            vendor_account_id: account.clone(),
            service: service.to_string(),
            meter: second.clone(),
            region: String::new(),
            window_start,
        },
        window_end,
        meter_name: second.clone(),
        quantity: amount_of(quantity, USAGE_QUANTITY)?,
        unit: quantity.unit().unwrap_or_default().to_string(),
        cost: amount_of(cost, metric.cost_metric())?,
        list_cost: list,
        currency: currency.to_string(),
        estimated,
        vendor_tenant_id: None,
    })
}

fn amount_of(value: &MetricValue, name: &str) -> Result<Decimal, VendorError> {
    parse_amount(
        value
            .amount()
            .ok_or_else(|| VendorError::Malformed(format!("{name} without an amount")))?,
    )
}

#[cfg(test)]
mod tests {
    use aws_sdk_costexplorer::types::DateInterval;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn metric(amount: &str, unit: &str) -> MetricValue {
        MetricValue::builder().amount(amount).unit(unit).build()
    }

    fn result(estimated: bool, groups: Vec<Group>) -> ResultByTime {
        ResultByTime::builder()
            .time_period(
                DateInterval::builder()
                    .start("2026-11-01")
                    .end("2026-11-02")
                    .build()
                    .unwrap(),
            )
            .set_groups(Some(groups))
            .estimated(estimated)
            .build()
    }

    fn group(keys: [&str; 2], cost: &str, quantity: &str) -> Group {
        Group::builder()
            .keys(keys[0])
            .keys(keys[1])
            .metrics("NetUnblendedCost", metric(cost, "USD"))
            .metrics("UnblendedCost", metric("99.5", "USD"))
            .metrics(USAGE_QUANTITY, metric(quantity, "Hrs"))
            .build()
    }

    #[test]
    fn windows_keep_periods_that_start_inside() {
        let day = Granularity::Daily;
        assert_eq!(
            query_window(day, t("2026-11-01T00:00:00Z"), t("2026-11-03T00:00:00Z")),
            Some((t("2026-11-01T00:00:00Z"), t("2026-11-03T00:00:00Z")))
        );
        // The day that began before `start` is not ours; the one that began before `end` is.
        assert_eq!(
            query_window(day, t("2026-11-01T05:00:00Z"), t("2026-11-03T05:00:00Z")),
            Some((t("2026-11-02T00:00:00Z"), t("2026-11-04T00:00:00Z")))
        );
        assert_eq!(
            query_window(day, t("2026-11-01T05:00:00Z"), t("2026-11-01T23:00:00Z")),
            None
        );
        assert_eq!(
            query_window(
                Granularity::Hourly,
                t("2026-11-01T05:00:00.5Z"),
                t("2026-11-01T07:00:00Z")
            ),
            Some((t("2026-11-01T06:00:00Z"), t("2026-11-01T07:00:00Z")))
        );
    }

    #[test]
    fn bounds_round_trip_in_both_granularities() {
        let at = t("2026-11-01T06:00:00Z");
        assert_eq!(format_bound(Granularity::Daily, at), "2026-11-01");
        assert_eq!(
            format_bound(Granularity::Hourly, at),
            "2026-11-01T06:00:00Z"
        );
        assert_eq!(
            parse_bound("2026-11-01").unwrap(),
            t("2026-11-01T00:00:00Z")
        );
        assert_eq!(parse_bound("2026-11-01T06:00:00Z").unwrap(), at);
        assert!(parse_bound("yesterday").is_err());
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(
            parse_amount("0.0101516483").unwrap().to_string(),
            "0.0101516483"
        );
        assert_eq!(
            parse_amount("123456.123456789012345").unwrap().to_string(),
            "123456.123456789012345"
        );
        assert_eq!(
            parse_amount("-1.2E-9").unwrap().to_string(),
            "-0.0000000012"
        );
        assert_eq!(parse_amount("0").unwrap(), Decimal::ZERO);
        // More digits than a Decimal holds is refused, not rounded.
        assert!(parse_amount("0.12345678901234567890123456789").is_err());
        assert!(parse_amount("1,5").is_err());
        assert!(parse_amount("").is_err());
        // Found by fuzzing: a mantissa of more than 28 digits in exponent form was rounded.
        assert!(parse_amount("1111111.125799111111111111111125714e-6").is_err());
        assert!(parse_amount("0.00000000000007777777777777721E-00").is_err());
    }

    #[test]
    fn service_groups_become_lines() {
        let page = [result(
            true,
            vec![group(
                ["111122223333", "Amazon Elastic Compute Cloud - Compute"],
                "12.3456789012",
                "48",
            )],
        )];
        let lines =
            lines_from_results(&page, Grouping::AccountService, CostMetric::UnblendedCost).unwrap();
        let line = &lines[0];
        assert_eq!(line.key.vendor_account_id, "111122223333");
        assert_eq!(line.key.service, "Amazon Elastic Compute Cloud - Compute");
        assert_eq!(line.key.meter, line.key.service);
        assert_eq!(line.key.region, "");
        assert_eq!(line.key.window_start, t("2026-11-01T00:00:00Z"));
        assert_eq!(line.window_end, t("2026-11-02T00:00:00Z"));
        // Cost is what the MSP pays (net of its discounts), list the public rate.
        assert_eq!(line.cost.to_string(), "12.3456789012");
        assert_eq!(
            line.list_cost.map(|l| l.to_string()).as_deref(),
            Some("99.5")
        );
        assert_eq!(line.quantity.to_string(), "48");
        assert_eq!((line.unit.as_str(), line.currency.as_str()), ("Hrs", "USD"));
        assert!(line.estimated);
    }

    #[test]
    fn usage_type_groups_keep_their_service() {
        let page = [result(
            false,
            vec![group(["1", "EU-BoxUsage:t3.micro"], "1", "2")],
        )];
        let grouping = Grouping::AccountUsageType {
            service: "Amazon EC2",
        };
        let line = &lines_from_results(&page, grouping, CostMetric::UnblendedCost).unwrap()[0];
        assert_eq!(line.key.service, "Amazon EC2");
        assert_eq!(line.key.meter, "EU-BoxUsage:t3.micro");
        assert_eq!(line.meter_name, "EU-BoxUsage:t3.micro");
        assert!(!line.estimated);
    }

    #[test]
    fn the_net_metric_alone_leaves_list_to_the_discount() {
        let page = [result(false, vec![group(["1", "S"], "8", "2")])];
        let line = &lines_from_results(
            &page,
            Grouping::AccountService,
            CostMetric::NetUnblendedCost,
        )
        .unwrap()[0];
        assert_eq!((line.cost.to_string(), line.list_cost), ("8".into(), None));

        // A list in another currency than the cost is refused, not mixed.
        let odd = Group::builder()
            .keys("1")
            .keys("S")
            .metrics("NetUnblendedCost", metric("8", "USD"))
            .metrics("UnblendedCost", metric("9", "EUR"))
            .metrics(USAGE_QUANTITY, metric("2", "Hrs"))
            .build();
        assert!(matches!(
            lines_from_results(
                &[result(false, vec![odd])],
                Grouping::AccountService,
                CostMetric::UnblendedCost
            ),
            Err(VendorError::Malformed(_))
        ));
    }

    #[test]
    fn missing_metrics_and_keys_are_malformed() {
        let page = [result(false, vec![group(["1", "S"], "1", "2")])];
        // Asked for the amortized pair, got the unblended one.
        assert!(matches!(
            lines_from_results(&page, Grouping::AccountService, CostMetric::AmortizedCost),
            Err(VendorError::Malformed(_))
        ));
        let one_key = Group::builder().keys("1").build();
        assert!(matches!(
            lines_from_results(
                &[result(false, vec![one_key])],
                Grouping::AccountService,
                CostMetric::UnblendedCost
            ),
            Err(VendorError::Malformed(_))
        ));
    }
}
