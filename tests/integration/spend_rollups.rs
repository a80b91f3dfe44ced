//! The spend reads take rollups of the daily totals (whole months, partial months' days, a month
//! less its days outside the range; see `domain::spend::rollup`): through the generated client,
//! every grouping of summaries, cost drivers and the overview equal, to the digit, what the daily
//! totals one by one give (`Ledger::daily_totals` and the domain's reference `summarize`), after
//! revisions, a revision to zero, a re-rate and a time-zone change, on both backends.
use chrono::{DateTime, Duration, NaiveDate, Utc};
use msp_gateway::api::helpdesk::row_to_proto;
use msp_gateway::domain::credit::RUN_RATE_DAYS;
use msp_gateway::domain::money::{Currency, format_amount};
use msp_gateway::domain::spend::{
    DayRange, Grouping, OVERVIEW_DAYS, OVERVIEW_TOP_SERVICES, cost_drivers, daily, period_to_date,
    summarize, top,
};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::proto::v1;
use rust_decimal::Decimal;

use crate::charge_streams::{Ledger, ledger, line};
use crate::harness::{Backend, TestGateway};
use crate::helpdesk::{HelpDesk, help_desk, record, summary_request};

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn usage(
    customer: &str,
    service: &str,
    meter: &str,
    cost: &str,
    window: DateTime<Utc>,
) -> UsageLine {
    let mut l = line(customer, meter, cost, window);
    l.key.service = service.into();
    l
}

/// Charges of customer 0 from 2026-09-20 to 2026-11-10 (3 services, 5 meters, amounts to 10
/// places), a service only late in October, charges over the last few days, and a key revised
/// to zero; customer 1 has a charge that must never count.
async fn history(gw: &TestGateway, l: &Ledger) {
    let c0 = &l.customers[0];
    let start: DateTime<Utc> = "2026-09-20T05:00:00Z".parse().unwrap();
    let mut lines = Vec::new();
    for d in 0..52 {
        let at = start + Duration::days(d) + Duration::hours(d % 23);
        let cost = format!("{}.{:010}", d % 7, 1_234_567_891 + d * 97);
        lines.push(usage(c0, "Compute", "vm", &cost, at));
        if d % 3 == 0 {
            lines.push(usage(c0, "Compute", "big", "2.5", at));
        }
        if d % 4 != 1 {
            lines.push(usage(c0, "Storage", "gb", &format!("0.{:03}", d + 1), at));
            lines.push(usage(c0, "Storage", "iops", "-0.0000000003", at));
        }
    }
    // Only on 28 October: a month less its other days must not keep it at zero.
    lines.push(usage(
        c0,
        "Backup",
        "tb",
        "9.99",
        "2026-10-28T09:00:00Z".parse().unwrap(),
    ));
    // The last week, for the overview.
    for d in 0..6 {
        lines.push(usage(
            c0,
            "Compute",
            "vm",
            "1.0000000001",
            l.base - Duration::days(d),
        ));
    }
    lines.push(usage(&l.customers[1], "Compute", "vm", "100", start));
    record(gw, l, lines).await;
    // Revisions: new costs for some keys, one of them to zero (its daily total stays, at 0).
    record(
        gw,
        l,
        vec![
            usage(
                c0,
                "Compute",
                "vm",
                "7.77",
                start + Duration::days(12) + Duration::hours(12),
            ),
            usage(
                c0,
                "Compute",
                "big",
                "0",
                start + Duration::days(15) + Duration::hours(15),
            ),
            usage(
                c0,
                "Storage",
                "gb",
                "0.5",
                start + Duration::days(40) + Duration::hours(17),
            ),
        ],
    )
    .await;
}

/// Ranges with whole months, partial months read day by day, a month less its days outside,
/// single days and empty months.
fn ranges() -> Vec<DayRange> {
    [
        ("2026-09-01", "2026-12-01"),
        ("2026-09-25", "2026-11-05"),
        ("2026-10-01", "2026-10-20"),
        ("2026-10-05", "2026-10-29"),
        ("2026-10-02", "2026-10-03"),
        ("2026-08-15", "2026-09-22"),
        ("2026-10-29", "2026-11-30"),
    ]
    .into_iter()
    .map(|(first, end)| DayRange {
        first: day(first),
        end: day(end),
    })
    .collect()
}

fn groupings() -> Vec<(Grouping, Vec<v1::SpendDimension>)> {
    use v1::SpendDimension as D;
    (0..16)
        .map(|bits: u8| {
            let g = Grouping {
                vendor: bits & 1 != 0,
                service: bits & 2 != 0,
                meter: bits & 4 != 0,
                day: bits & 8 != 0,
            };
            let dims = [
                (g.vendor, D::Vendor),
                (g.service, D::Service),
                (g.meter, D::Meter),
                (g.day, D::Day),
            ]
            .into_iter()
            .filter_map(|(on, d)| on.then_some(d))
            .collect();
            (g, dims)
        })
        .collect()
}

/// Every summary, both kinds of cost drivers and the overview of customer 0, through the API,
/// against the daily totals one by one.
async fn assert_reads_match_the_daily_totals(
    gw: &TestGateway,
    hd: &mut HelpDesk,
    l: &Ledger,
    when: &str,
) {
    let c0 = &l.customers[0];
    let zar = Currency::from_stored("ZAR").unwrap();
    let all = DayRange {
        first: day("2026-06-01"),
        end: Utc::now().date_naive() + Duration::days(2),
    };
    let totals = gw
        .ledger
        .daily_totals(&gw.tenant_id, c0, all)
        .await
        .unwrap()
        .totals;
    for range in ranges() {
        let (start, end) = (range.first.to_string(), range.end.to_string());
        for (grouping, dims) in groupings() {
            let got = hd
                .get_spend_summary(summary_request(c0, &start, &end, &dims))
                .await
                .unwrap()
                .into_inner();
            let (rows, total) = summarize(&totals, range, grouping);
            let expected: Vec<v1::SpendRow> = rows.iter().map(|r| row_to_proto(r, zar)).collect();
            assert_eq!(got.rows, expected, "{when}: {range:?} by {dims:?}");
            assert_eq!(
                got.total,
                format_amount(total, zar),
                "{when}: {range:?} by {dims:?}"
            );
        }
        for (by, by_meter) in [
            (v1::SpendDimension::Service, false),
            (v1::SpendDimension::Meter, true),
        ] {
            let got = hd
                .list_cost_drivers(v1::ListCostDriversRequest {
                    customer_id: c0.clone(),
                    start_date: start.clone(),
                    end_date: end.clone(),
                    by: by.into(),
                    limit: 100,
                })
                .await
                .unwrap()
                .into_inner();
            let got: Vec<_> = got
                .drivers
                .iter()
                .map(|d| {
                    (
                        d.service.clone(),
                        d.meter.clone(),
                        d.amount.clone(),
                        d.previous_amount.clone(),
                        d.change.clone(),
                        d.change_percent.clone(),
                    )
                })
                .collect();
            let expected: Vec<_> = cost_drivers(&totals, range, range.previous(), by_meter, 100)
                .iter()
                .map(|d| {
                    (
                        d.service.clone(),
                        d.meter.clone().unwrap_or_default(),
                        format_amount(d.amount, zar),
                        format_amount(d.previous_amount, zar),
                        format_amount(d.change, zar),
                        d.change_percent.map(|p| p.to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{when}: drivers of {range:?} by {by:?}");
        }
    }
    let overview = hd
        .get_spend_overview(v1::GetSpendOverviewRequest {
            customer_id: c0.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let context = gw
        .ledger
        .spend_context(&gw.tenant_id, c0, Utc::now())
        .await
        .unwrap();
    let to_date = period_to_date(context.period.first, context.period.end, context.today);
    let (_, month_to_date) = summarize(&totals, to_date, Grouping::default());
    assert_eq!(
        overview.month_to_date,
        format_amount(month_to_date, zar),
        "{when}"
    );
    let week = DayRange::ending_with(context.today, RUN_RATE_DAYS);
    let (_, last_week) = summarize(&totals, week, Grouping::default());
    let run_rate = last_week / Decimal::from(RUN_RATE_DAYS);
    assert_eq!(
        overview.run_rate_per_day,
        format_amount(run_rate, zar),
        "{when}: run rate"
    );
    // The portal's chart and top services (the HTML renders these values).
    let portal = gw
        .ledger
        .spend_overview(&gw.tenant_id, c0, Utc::now())
        .await
        .unwrap();
    let chart = daily(&totals, DayRange::ending_with(context.today, OVERVIEW_DAYS));
    assert_eq!(portal.daily, chart, "{when}: the overview's chart");
    let by_service = Grouping {
        vendor: true,
        service: true,
        ..Default::default()
    };
    let (services, _) = summarize(&totals, to_date, by_service);
    assert_eq!(
        portal.top_services,
        top(services, OVERVIEW_TOP_SERVICES),
        "{when}"
    );
}

async fn rollup_reads_equal_the_daily_totals_to_the_digit(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "1000000").await;
    history(&gw, &l).await;
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    assert_reads_match_the_daily_totals(&gw, &mut hd, &l, "after revisions").await;

    // A price rule re-rates every line in its transaction: the rollups follow.
    gw.pricing(&gw.admin_key)
        .await
        .create_price_rule(v1::CreatePriceRuleRequest {
            request_id: "storage-markup".into(),
            price_rule: Some(v1::PriceRule {
                service: "Storage".into(),
                kind: v1::PriceRuleKind::Markup.into(),
                value: "0.125".into(),
                effective_from: Some(crate::usage::ts("2026-01-01T00:00:00Z".parse().unwrap())),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_reads_match_the_daily_totals(&gw, &mut hd, &l, "after a re-rate").await;

    // A new time zone re-buckets the days (windows near midnight move): the rollups are rebuilt.
    let mut customers = gw.customers(&gw.admin_key).await;
    let mut customer = customers
        .get_customer(v1::GetCustomerRequest {
            id: l.customers[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    customer.time_zone = "Pacific/Auckland".into();
    customers
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(customer),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["time_zone".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_reads_match_the_daily_totals(&gw, &mut hd, &l, "after a time-zone change").await;
    gw.stop().await;
}

crate::both_backends!(rollup_reads_equal_the_daily_totals_to_the_digit);
